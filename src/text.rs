//! Text on the signing and logging paths, shared by every floor: the JSON string writer,
//! fixed-width digits, dates and byte sizes. Depends on nothing in the crate.

use time::OffsetDateTime;

/// Appends `text` as a JSON string literal.
pub fn write_json_string(out: &mut String, text: &str) {
    out.push('"');
    // Writing to a String cannot fail.
    let _ = write_json_string_body(out, text);
    out.push('"');
}

/// Appends `text` as a JSON string literal without looking for escapes: for text that holds none
/// by construction (base64, hex, digits, an upload token). Checked in debug builds.
pub fn write_json_clean(out: &mut String, text: &str) {
    debug_assert!(find_escape(text.as_bytes()).is_none(), "`{text}` needs escapes");
    out.push('"');
    out.push_str(text);
    out.push('"');
}

/// Bytes that JSON strings must escape: controls, `"` and `\\`.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Writes `text` escaped for the inside of a JSON string literal (no quotes) to any
/// `fmt::Write`: a `String` here, a log line's writer in `logs`.
pub fn write_json_string_body<W: std::fmt::Write + ?Sized>(out: &mut W, text: &str) -> std::fmt::Result {
    // Copy runs of bytes that need no escape in one go; escapes are rare in policies.
    let bytes = text.as_bytes();
    let mut start = 0;
    while let Some(offset) = find_escape(&bytes[start..]) {
        let i = start + offset;
        out.write_str(&text[start..i])?;
        match bytes[i] {
            b'"' => out.write_str("\\\"")?,
            b'\\' => out.write_str("\\\\")?,
            b'\n' => out.write_str("\\n")?,
            b'\r' => out.write_str("\\r")?,
            b'\t' => out.write_str("\\t")?,
            byte => write!(out, "\\u{byte:04x}")?,
        }
        start = i + 1;
    }
    out.write_str(&text[start..])
}

/// The index of the first byte that needs an escape. Skips eight clean bytes at a time: a word
/// has none when no byte is below 0x20 and none equals `"` or `\\` (SWAR zero-byte tests).
fn find_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut chunks = bytes.chunks_exact(8);
    let mut index = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
        let quote = has_zero(word ^ (ONES * u64::from(b'"')));
        let backslash = has_zero(word ^ (ONES * u64::from(b'\\')));
        if below_space | quote | backslash != 0 {
            break;
        }
        index += 8;
    }
    bytes[index..]
        .iter()
        .position(|b| NEEDS_ESCAPE[usize::from(*b)])
        .map(|i| index + i)
}

/// Appends `value` as exactly `width` decimal digits (dates and times on the signing path,
/// without `fmt` machinery).
pub fn push_digits(out: &mut String, value: u32, width: u32) {
    for position in (0..width).rev() {
        let digit = (value / 10u32.pow(position)) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

/// `2015-12-29T01:00:00Z` of `at` (UTC, whole seconds).
pub fn format_rfc3339(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let mut out = utc_date(at);
    out.push('T');
    push_digits(&mut out, at.hour().into(), 2);
    out.push(':');
    push_digits(&mut out, at.minute().into(), 2);
    out.push(':');
    push_digits(&mut out, at.second().into(), 2);
    out.push('Z');
    out
}

/// `YYYY-MM-DD` of `at` in UTC.
pub fn utc_date(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let mut out = String::with_capacity(20);
    push_digits(&mut out, at.year().unsigned_abs(), 4);
    out.push('-');
    push_digits(&mut out, u8::from(at.month()).into(), 2);
    out.push('-');
    push_digits(&mut out, at.day().into(), 2);
    out
}

/// Formats a byte count the way an operator would write it.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{} {name}", bytes / unit);
        }
    }
    if bytes == 1 {
        "1 byte".to_owned()
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_round_trip() {
        for text in [
            "",
            "plain",
            "quote\" back\\slash",
            "nl\ncr\rtab\t",
            "ctl\u{1}\u{1f}",
            "ünï €",
            "${filename}",
        ] {
            let mut out = String::new();
            write_json_string(&mut out, text);
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), text, "{out}");
        }
    }

    #[test]
    fn finds_every_escape_at_every_offset() {
        for special in [b'"', b'\\', 0u8, 0x1f, b'\n'] {
            for len in 0..20 {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = special;
                    assert_eq!(find_escape(&bytes), Some(at), "{special} at {at} of {len}");
                }
                assert_eq!(find_escape(&vec![b'~'; len]), None);
            }
        }
        // Bytes just outside the escaped set, and UTF-8 continuation bytes, are clean.
        assert_eq!(find_escape(" !#[]~\x7f".as_bytes()), None);
        assert_eq!(find_escape("ünï €ünï €".as_bytes()), None);
    }
}
