//! POST policy conditions: the three forms S3 knows, their JSON, and a profile's plan with
//! placeholders shown, as POST conditions and PUT headers (what `postgate explain` prints).
//!
//! Spec: <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-HTTPPOSTConstructPolicy.html>

use std::borrow::Cow;
use std::fmt::Write as _;

use super::plan::{Method, Target, put_header};
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
                let _ = write_json_string_body(out, field);
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
    // Writing to a String cannot fail.
    let _ = write_json_string_body(out, text);
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

/// A PUT header and its value, placeholders shown.
type Header<'a> = (Cow<'a, str>, Cow<'a, str>);

/// One rule of a profile's plan as one method carries it, placeholders shown as `${name}` and
/// per-request values as `<…>`, with a note for a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainedCondition<'a> {
    /// The POST policy condition; `None` for rules that only PUT carries.
    pub condition: Option<Condition<'a>>,
    /// The PUT header and its value; `None` where the URL carries the value or PUT cannot.
    pub header: Option<Header<'a>>,
    pub note: Option<String>,
    /// The note for the PUT header where it differs from the POST one.
    pub put_note: Option<String>,
}

/// The plan of a profile, rule by rule, followed by the signing fields of a POST form. Both
/// carriers of every rule are shown; `conditions` and `put_headers` pick one.
pub fn explain(profile: &Profile) -> Vec<ExplainedCondition<'_>> {
    let mut list = Vec::with_capacity(profile.plan.rules().len() + 4);
    for rule in profile.plan.rules() {
        let optional = rule.optional.then_some("optional; absent when the request omits it");
        let (condition, header, note): (Option<Condition>, Option<Header>, Option<String>) = match rule.target {
            Target::Bucket => (Some(Condition::eq("bucket", &profile.bucket)), None, None),
            Target::Key if profile.key.ends_with_filename() && !profile.filename_required => (
                Some(Condition::StartsWith {
                    field: "key".into(),
                    prefix: key_prefix(profile).into(),
                }),
                None,
                Some("exact key instead when the request names a filename (a PUT must)".into()),
            ),
            Target::Key if profile.key.ends_with_filename() => (
                Some(Condition::eq("key", staged_key(profile))),
                None,
                Some("the request names the file (`filename: request`)".into()),
            ),
            Target::Key => (Some(Condition::eq("key", staged_key(profile))), None, None),
            Target::Size => (
                // One POST or PUT carries at most 5 GiB; more goes in parts.
                Some(Condition::ContentLengthRange {
                    min: profile.size.min,
                    max: profile.size.max.min(super::MAX_UPLOAD_BYTES),
                }),
                Some(("Content-Length".into(), "<size>".into())),
                Some("exact size instead when the request names one (a PUT must)".into()),
            ),
            Target::ContentType => match &profile.content_type {
                Some(ContentTypeRule::Prefix(prefix)) => (
                    Some(Condition::StartsWith {
                        field: "Content-Type".into(),
                        prefix: prefix.as_str().into(),
                    }),
                    Some(("Content-Type".into(), "<content_type>".into())),
                    Some("exact type instead when the request names one (a PUT must)".into()),
                ),
                Some(ContentTypeRule::OneOf(types)) => (
                    Some(Condition::eq("Content-Type", "<content_type>")),
                    Some(("Content-Type".into(), "<content_type>".into())),
                    Some(format!("the request names one of {}", types.join(", "))),
                ),
                Some(ContentTypeRule::Exact(exact)) => (
                    Some(Condition::eq("Content-Type", exact)),
                    Some(("Content-Type".into(), exact.as_str().into())),
                    None,
                ),
                None => (
                    None,
                    Some(("Content-Type".into(), super::admit::UNRULED_PUT_TYPE.into())),
                    Some("no content_type rule: what a form without a type stores too".into()),
                ),
            },
            Target::Field(i) => {
                let (field, value) = &profile.fields[i];
                (
                    Some(Condition::eq(field, value)),
                    put_header(field).map(|h| (h.into(), value.as_str().into())),
                    None,
                )
            }
            Target::Metadata(i) => {
                let rule = &profile.metadata[i];
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
                (
                    Some(Condition::eq(&rule.field, value.clone())),
                    Some((rule.field.as_str().into(), value.into())),
                    note,
                )
            }
            Target::Marker => (
                Some(Condition::eq(super::plan::MARKER_FIELD, "<upload-id>")),
                Some((super::plan::MARKER_FIELD.into(), "<upload-id>".into())),
                Some("fresh for every signature and sealed in its upload token: `complete` acts only on the object that carries it".into()),
            ),
            Target::ChecksumAlgorithm => (
                Some(Condition::eq("x-amz-checksum-algorithm", "<CHECKSUM.ALGORITHM>")),
                None,
                Some(checksum_note(profile)),
            ),
            Target::Checksum => (
                Some(Condition::eq("x-amz-checksum-<algorithm>", "<checksum.value>")),
                Some(("x-amz-checksum-<algorithm>".into(), "<checksum.value>".into())),
                Some(checksum_note(profile)),
            ),
            Target::NoOverwrite => (
                None,
                Some(("If-None-Match".into(), "*".into())),
                Some("the store refuses the upload when the key exists".into()),
            ),
        };
        let note = match (note, optional) {
            (Some(note), Some(optional)) if !matches!(rule.target, Target::ChecksumAlgorithm | Target::Checksum) => {
                Some(format!("{note}; {optional}"))
            }
            (note @ Some(_), _) => note,
            (None, optional) => optional.map(str::to_owned),
        };
        let put_note = match rule.target {
            Target::Size => Some(format!(
                "the request's exact size, {} to {}",
                super::compile::format_bytes(profile.size.min),
                super::compile::format_bytes(profile.size.max.min(super::MAX_UPLOAD_BYTES))
            )),
            Target::ContentType => match &profile.content_type {
                Some(ContentTypeRule::Prefix(prefix)) => Some(format!("the request's type, starting with `{prefix}`")),
                _ => note.clone(),
            },
            _ => note.clone(),
        };
        list.push(ExplainedCondition {
            condition: condition.filter(|_| profile.plan.allows(Method::Post)),
            header: header.filter(|_| profile.plan.allows(Method::Put)),
            note,
            put_note,
        });
    }
    if profile.plan.allows(Method::Post) {
        let signing = |condition, note: Option<&str>| ExplainedCondition {
            condition: Some(condition),
            header: None,
            note: note.map(str::to_owned),
            put_note: None,
        };
        list.push(signing(Condition::eq("x-amz-algorithm", "AWS4-HMAC-SHA256"), None));
        list.push(signing(
            Condition::eq(
                "x-amz-credential",
                "<access-key-id>/<yyyymmdd>/<region>/s3/aws4_request",
            ),
            None,
        ));
        list.push(signing(Condition::eq("x-amz-date", "<yyyymmddThhmmssZ>"), None));
        list.push(signing(
            Condition::eq("x-amz-security-token", "<session-token>"),
            Some("only when the store's credentials carry a session token"),
        ));
    }
    list
}

fn checksum_note(profile: &Profile) -> String {
    let names: Vec<&str> = profile.checksum.algorithms.iter().map(|a| a.name()).collect();
    let when = if profile.checksum.required {
        "required"
    } else {
        "when the request declares a checksum"
    };
    format!("{when}: {}", names.join(", "))
}

/// The key's text before `${filename}`, placeholders shown.
fn key_prefix(profile: &Profile) -> String {
    profile.key.parts()[..profile.key.parts().len() - 1]
        .iter()
        .map(|part| match part {
            Part::Literal(text) => text.clone(),
            Part::Placeholder(_, name) => format!("${{{name}}}"),
        })
        .collect()
}

/// The human-readable explanation `postgate explain` prints: the profile's settings, the
/// methods that carry it, its POST condition list and its PUT headers, placeholders shown.
/// The key template as signed: behind the staging prefix when the profile promotes.
fn staged_key(profile: &Profile) -> String {
    format!(
        "{}{}",
        profile.verify.staging.as_deref().unwrap_or_default(),
        profile.key
    )
}

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
    for method in Method::ALL {
        match profile.plan.unavailable(method) {
            None => {
                let _ = writeln!(out, "  {:<12} yes", method.as_str());
            }
            Some(reason) => {
                let _ = writeln!(out, "  {:<12} no: {reason}", method.as_str());
            }
        }
    }
    match (profile.plan.multipart_unavailable(), &profile.multipart) {
        (None, Some(rule)) => {
            let _ = writeln!(
                out,
                "  multipart    yes: parts of {} (larger when 10,000 would not do), complete within {}",
                super::compile::format_bytes(rule.part_size),
                humantime::format_duration(rule.expires_in)
            );
        }
        _ => {
            let _ = writeln!(out, "  multipart    no");
        }
    }
    let verify = &profile.verify;
    let mut checks = vec!["size, type, metadata, checksum".to_owned()];
    if verify.sniff {
        checks.push("first bytes against the type".into());
    }
    if let Some(staging) = &verify.staging {
        checks.push(format!(
            "uploads land under {staging}, promoted to the key once checked"
        ));
    }
    match &verify.quarantine {
        Some(prefix) => checks.push(format!("refused objects move under {prefix}")),
        None => checks.push("refused objects are deleted".into()),
    }
    let _ = writeln!(
        out,
        "  complete     {}; within {} of the signature's expiry",
        checks.join("; "),
        humantime::format_duration(verify.within)
    );
    let explained = explain(profile);
    if profile.plan.allows(Method::Post) {
        let _ = writeln!(out, "conditions (POST):");
        for item in &explained {
            let Some(condition) = &item.condition else { continue };
            let json = condition.to_json();
            match &item.note {
                Some(note) => {
                    let _ = writeln!(out, "  {json:<56}  # {note}");
                }
                None => {
                    let _ = writeln!(out, "  {json}");
                }
            }
        }
    }
    if profile.plan.allows(Method::Put) {
        let _ = writeln!(out, "signed headers (PUT; bucket and key in the URL):");
        for item in &explained {
            let Some((name, value)) = &item.header else { continue };
            let line = format!("{name}: {value}");
            match &item.put_note {
                Some(note) => {
                    let _ = writeln!(out, "  {line:<56}  # {note}");
                }
                None => {
                    let _ = writeln!(out, "  {line}");
                }
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
