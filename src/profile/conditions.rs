//! POST policy conditions: the three forms S3 knows and their JSON; and a profile's plan shown
//! with placeholders, rule by rule, as the POST condition and PUT header that carry it (what
//! `postgate explain` annotates and the compiler measures).
//!
//! Spec: <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-HTTPPOSTConstructPolicy.html>

use std::borrow::Cow;
use std::fmt::Write as _;

use super::Profile;
use super::plan::{Carrier, Check, Method, Rule, Target};
use super::template::Part;
use crate::text::{write_json_string, write_json_string_body};

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

/// A PUT header and its value, placeholders shown.
pub type Header<'a> = (Cow<'a, str>, Cow<'a, str>);

/// One rule of a profile's plan as each method carries it, placeholders shown as `${name}` and
/// per-request values as `<…>`.
#[derive(Debug, Clone)]
pub struct Shown<'a> {
    pub rule: &'a Rule,
    /// The POST policy condition; `None` where a POST carries nothing for the rule.
    pub condition: Option<Condition<'a>>,
    /// The PUT header and its value; `None` where the URL carries the value or nothing does.
    pub header: Option<Header<'a>>,
}

/// Every rule of the plan, shown by its check through each method's carrier.
pub fn shown(profile: &Profile) -> Vec<Shown<'_>> {
    profile
        .plan
        .rules()
        .iter()
        .map(|rule| Shown {
            rule,
            condition: condition(profile, rule),
            header: header(profile, rule),
        })
        .collect()
}

/// The carrier's name for a rule, as one method carries it; `None` for the URL, a length, or
/// nothing.
fn carried_name<'a>(profile: &'a Profile, rule: &Rule, method: Method) -> Option<&'a str> {
    match (rule.carrier(method), rule.target) {
        (Carrier::Named(name), _) => Some(name),
        // A PUT names a field by its header, as `Carrier::Named`.
        (Carrier::ProfileNamed, Target::Field(i)) => Some(&profile.fields[i].0),
        (Carrier::ProfileNamed, Target::Metadata(i)) => Some(&profile.metadata[i].field),
        (Carrier::ProfileNamed, _) => Some("x-amz-checksum-<algorithm>"),
        (Carrier::Length, _) if method == Method::Put => Some("Content-Length"),
        _ => None,
    }
}

/// How a value the request supplies is shown.
fn placeholder(profile: &Profile, target: Target) -> Cow<'static, str> {
    match target {
        Target::Metadata(i) => format!("<metadata.{}>", profile.metadata[i].name).into(),
        Target::ChecksumAlgorithm => "<CHECKSUM.ALGORITHM>".into(),
        Target::Checksum => "<checksum.value>".into(),
        Target::Size => "<size>".into(),
        Target::Marker => "<upload-id>".into(),
        _ => "<content_type>".into(),
    }
}

fn condition<'a>(profile: &'a Profile, rule: &'a Rule) -> Option<Condition<'a>> {
    if rule.post == Carrier::Length {
        // One POST carries at most 5 GiB; more goes in parts.
        let Check::Range(range) = rule.check else { return None };
        let max = range.max.min(super::MAX_UPLOAD_BYTES);
        return Some(Condition::ContentLengthRange { min: range.min, max });
    }
    let field = carried_name(profile, rule, Method::Post)?;
    Some(match &rule.check {
        Check::Key(_) if key_left_to_store(profile) => Condition::StartsWith {
            field: field.into(),
            prefix: key_prefix(profile).into(),
        },
        Check::Key(_) => Condition::eq(field, staged_key(profile)),
        Check::Prefix(prefix) => Condition::StartsWith {
            field: field.into(),
            prefix: prefix.as_str().into(),
        },
        check => Condition::eq(field, shown_value(profile, rule.target, check)?),
    })
}

fn header<'a>(profile: &'a Profile, rule: &'a Rule) -> Option<Header<'a>> {
    let name = carried_name(profile, rule, Method::Put)?;
    let value = match &rule.check {
        Check::Prefix(_) | Check::Range(_) => placeholder(profile, rule.target),
        check => shown_value(profile, rule.target, check)?,
    };
    Some((name.into(), value))
}

/// A check's value as signed, placeholders shown.
fn shown_value<'a>(profile: &Profile, target: Target, check: &'a Check) -> Option<Cow<'a, str>> {
    Some(match check {
        Check::Exact(value) => value.as_str().into(),
        Check::Default(value) => (*value).into(),
        Check::Template(template) | Check::Key(template) => template.to_string().into(),
        Check::OneOf(_) | Check::Pattern(..) | Check::Checksum(_) | Check::Fresh => placeholder(profile, target),
        Check::Prefix(_) | Check::Range(_) => return None,
    })
}

/// Whether a POST may leave `${filename}` to the store (the key is then signed as a prefix).
pub fn key_left_to_store(profile: &Profile) -> bool {
    profile.key.ends_with_filename() && !profile.filename_required
}

/// The key's text before `${filename}`, placeholders shown.
fn key_prefix(profile: &Profile) -> String {
    let parts = profile.key.parts();
    let mut out = profile.verify.staging.clone().unwrap_or_default();
    for part in &parts[..parts.len() - 1] {
        match part {
            Part::Literal(text) => out.push_str(text),
            Part::Placeholder(_, name) => {
                out.push_str("${");
                out.push_str(name);
                out.push('}');
            }
        }
    }
    out
}

/// The key template as signed: behind the staging prefix when the profile promotes.
fn staged_key(profile: &Profile) -> String {
    format!(
        "{}{}",
        profile.verify.staging.as_deref().unwrap_or_default(),
        profile.key
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
