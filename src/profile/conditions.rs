//! POST policy conditions: the three forms S3 knows, their JSON, and a profile's condition list
//! with placeholders shown (what `postgate explain` prints).
//!
//! Spec: <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-HTTPPOSTConstructPolicy.html>

use std::borrow::Cow;
use std::fmt::Write as _;

use super::template::Part;
use super::{ContentTypeRule, MetadataValue, Profile};

/// One POST policy condition. Text is borrowed from the compiled profile where it can be (the
/// signing path then allocates only for per-request values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition<'a> {
    /// `{"field": "value"}`: the form field must equal the value.
    Eq { field: Cow<'a, str>, value: Cow<'a, str> },
    /// `["starts-with", "$field", "prefix"]`; the compiler never lets the prefix be empty.
    StartsWith { field: Cow<'a, str>, prefix: Cow<'a, str> },
    /// `["content-length-range", min, max]`, inclusive, in bytes.
    ContentLengthRange { min: u64, max: u64 },
}

impl<'a> Condition<'a> {
    pub fn eq(field: impl Into<Cow<'a, str>>, value: impl Into<Cow<'a, str>>) -> Condition<'a> {
        Condition::Eq {
            field: field.into(),
            value: value.into(),
        }
    }

    /// Appends the condition's JSON, with the spacing botocore uses (`", "` and `": "`).
    pub fn write_json(&self, out: &mut String) {
        match self {
            Condition::Eq { field, value } => {
                out.push('{');
                write_json_string(out, field);
                out.push_str(": ");
                write_json_string(out, value);
                out.push('}');
            }
            Condition::StartsWith { field, prefix } => {
                out.push_str("[\"starts-with\", \"$");
                write_json_string_body(out, field);
                out.push_str("\", ");
                write_json_string(out, prefix);
                out.push(']');
            }
            Condition::ContentLengthRange { min, max } => {
                let _ = write!(out, "[\"content-length-range\", {min}, {max}]");
            }
        }
    }

    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }
}

/// Appends `text` as a JSON string literal.
pub fn write_json_string(out: &mut String, text: &str) {
    out.push('"');
    write_json_string_body(out, text);
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

fn write_json_string_body(out: &mut String, text: &str) {
    // Copy runs of bytes that need no escape in one go; escapes are rare in policies.
    let bytes = text.as_bytes();
    let mut start = 0;
    while let Some(offset) = find_escape(&bytes[start..]) {
        let i = start + offset;
        out.push_str(&text[start..i]);
        match bytes[i] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            byte => {
                let _ = write!(out, "\\u{byte:04x}");
            }
        }
        start = i + 1;
    }
    out.push_str(&text[start..]);
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

/// A condition of a profile with placeholders shown, and a note for a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainedCondition<'a> {
    pub condition: Condition<'a>,
    pub note: Option<String>,
}

fn explained(condition: Condition<'_>, note: Option<String>) -> ExplainedCondition<'_> {
    ExplainedCondition { condition, note }
}

/// The condition list every form of this profile is signed with, placeholders shown as `${name}`
/// and per-request values as `<…>`.
pub fn explain(profile: &Profile) -> Vec<ExplainedCondition<'_>> {
    let mut list = vec![explained(Condition::eq("bucket", &profile.bucket), None)];

    let key = profile.key.to_string();
    if profile.key.ends_with_filename() {
        let prefix: String = profile.key.parts()[..profile.key.parts().len() - 1]
            .iter()
            .map(|part| match part {
                Part::Literal(text) => text.clone(),
                Part::Placeholder(_, name) => format!("${{{name}}}"),
            })
            .collect();
        list.push(explained(
            Condition::StartsWith {
                field: "key".into(),
                prefix: prefix.into(),
            },
            Some("exact key instead when the request names a filename".into()),
        ));
    } else {
        list.push(explained(Condition::eq("key", key), None));
    }

    list.push(explained(
        Condition::ContentLengthRange {
            min: profile.size.min,
            max: profile.size.max,
        },
        Some("exact size instead when the request names one".into()),
    ));

    match &profile.content_type {
        Some(ContentTypeRule::Prefix(prefix)) => list.push(explained(
            Condition::StartsWith {
                field: "Content-Type".into(),
                prefix: prefix.as_str().into(),
            },
            Some("exact type instead when the request names one".into()),
        )),
        Some(ContentTypeRule::OneOf(types)) => list.push(explained(
            Condition::eq("Content-Type", "<content_type>"),
            Some(format!("the request names one of {}", types.join(", "))),
        )),
        Some(ContentTypeRule::Exact(exact)) => list.push(explained(Condition::eq("Content-Type", exact), None)),
        None => {}
    }

    for (field, value) in &profile.fields {
        list.push(explained(Condition::eq(field, value), None));
    }

    for rule in &profile.metadata {
        let optional = (!rule.required).then_some("optional; absent when the request omits it");
        let (value, note) = match &rule.value {
            MetadataValue::Fixed(template) => (template.to_string(), None),
            MetadataValue::OneOf(values) => (
                format!("<metadata.{}>", rule.name),
                Some(format!("one of {}", values.join(", "))),
            ),
            MetadataValue::Pattern(_, source) => (
                format!("<metadata.{}>", rule.name),
                Some(format!("matching `{source}`")),
            ),
        };
        let note = match (note, optional) {
            (Some(note), Some(optional)) => Some(format!("{note}; {optional}")),
            (note, optional) => note.or(optional.map(str::to_owned)),
        };
        list.push(explained(Condition::eq(&rule.field, value), note));
    }

    list.push(explained(Condition::eq("x-amz-algorithm", "AWS4-HMAC-SHA256"), None));
    list.push(explained(
        Condition::eq(
            "x-amz-credential",
            "<access-key-id>/<yyyymmdd>/<region>/s3/aws4_request",
        ),
        None,
    ));
    list.push(explained(Condition::eq("x-amz-date", "<yyyymmddThhmmssZ>"), None));
    list.push(explained(
        Condition::eq("x-amz-security-token", "<session-token>"),
        Some("only when the store's credentials carry a session token".into()),
    ));
    list
}

/// The human-readable explanation `postgate explain` prints: the profile's settings and its
/// condition list with placeholders shown.
pub fn explain_text(profile: &Profile) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "profile {}", profile.name);
    if let Some(description) = &profile.description {
        let _ = writeln!(out, "  description  {description}");
    }
    let _ = writeln!(out, "  bucket       {} (store {})", profile.bucket, profile.store);
    let _ = writeln!(out, "  key          {}", profile.key);
    for var in &profile.vars {
        let _ = writeln!(out, "  var          {} matching `{}`", var.name, var.pattern_source);
    }
    let _ = writeln!(
        out,
        "  size         {} to {}",
        super::compile::format_bytes(profile.size.min),
        super::compile::format_bytes(profile.size.max)
    );
    let _ = writeln!(out, "  expires_in   {}", humantime::format_duration(profile.expires_in));
    match &profile.apps {
        Some(apps) => {
            let _ = writeln!(out, "  apps         {}", apps.join(", "));
        }
        None => {
            let _ = writeln!(out, "  apps         (every app)");
        }
    }
    let _ = writeln!(out, "conditions:");
    for item in explain(profile) {
        let json = item.condition.to_json();
        match &item.note {
            Some(note) => {
                let _ = writeln!(out, "  {json:<56}  # {note}");
            }
            None => {
                let _ = writeln!(out, "  {json}");
            }
        }
    }
    out
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

    #[test]
    fn condition_forms() {
        let cases = [
            (Condition::eq("bucket", "b"), r#"{"bucket": "b"}"#),
            (
                Condition::StartsWith {
                    field: "key".into(),
                    prefix: "a/\"b".into(),
                },
                r#"["starts-with", "$key", "a/\"b"]"#,
            ),
            (
                Condition::ContentLengthRange { min: 1, max: 2 },
                r#"["content-length-range", 1, 2]"#,
            ),
        ];
        for (condition, json) in cases {
            assert_eq!(condition.to_json(), json);
        }
    }
}
