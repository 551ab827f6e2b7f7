//! `postgate explain` and the profile endpoint's annotated plan: each rule of a profile as its
//! POST condition and PUT header (`profile::conditions::shown`) with a note for a reader, the
//! signing fields of a POST form, and the text the command prints.

use std::fmt::Write as _;

use crate::profile::conditions::{Condition, Header, Shown, key_left_to_store, shown};
use crate::profile::plan::{Check, Target};
use crate::profile::{MAX_UPLOAD_BYTES, Method, Profile};
use crate::text::format_bytes;

/// One rule of a profile's plan as one method carries it, with a note for a reader.
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
/// carriers of every rule are shown where the profile allows the method.
pub fn explain(profile: &Profile) -> Vec<ExplainedCondition<'_>> {
    let mut list: Vec<ExplainedCondition> = shown(profile).into_iter().map(|s| annotate(profile, s)).collect();
    if profile.plan().allows(Method::Post) {
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

fn annotate<'a>(profile: &'a Profile, shown: Shown<'a>) -> ExplainedCondition<'a> {
    let rule = shown.rule;
    let checksum = matches!(rule.target, Target::ChecksumAlgorithm | Target::Checksum);
    let optional = (rule.optional && !checksum).then_some("optional; absent when the request omits it");
    let note = match (note(profile, rule.target, &rule.check), optional) {
        (Some(note), Some(optional)) => Some(format!("{note}; {optional}")),
        (note, optional) => note.or(optional.map(str::to_owned)),
    };
    let put_note = match &rule.check {
        Check::Range(range) => Some(format!(
            "the request's exact size, {} to {}",
            format_bytes(range.min),
            format_bytes(range.max.min(MAX_UPLOAD_BYTES))
        )),
        Check::Prefix(prefix) => Some(format!("the request's type, starting with `{prefix}`")),
        _ => note.clone(),
    };
    ExplainedCondition {
        condition: shown.condition.filter(|_| profile.plan().allows(Method::Post)),
        header: shown.header.filter(|_| profile.plan().allows(Method::Put)),
        note,
        put_note,
    }
}

/// What a reader needs to know about one rule beyond its condition.
fn note(profile: &Profile, target: Target, check: &Check) -> Option<String> {
    Some(match (target, check) {
        (_, Check::Key(_)) if key_left_to_store(profile) => {
            "exact key instead when the request names a filename (a PUT must)".into()
        }
        (_, Check::Key(_)) if profile.key().ends_with_filename() => {
            "the request names the file (`filename: request`)".into()
        }
        (_, Check::Range(_)) => "exact size instead when the request names one (a PUT must)".into(),
        (_, Check::Prefix(_)) => "exact type instead when the request names one (a PUT must)".into(),
        (Target::ContentType, Check::OneOf(types)) => format!("the request names one of {}", types.join(", ")),
        (_, Check::OneOf(values)) => format!("one of {}", values.join(", ")),
        (_, Check::Pattern(_, source)) => format!("matching `{source}`"),
        (_, Check::Default(_)) => "no content_type rule: what a form without a type stores too".into(),
        (_, Check::Fresh) => "fresh for every signature and sealed in its upload token: `complete` acts only on the object that carries it".into(),
        (_, Check::Checksum(algorithms)) => {
            let names: Vec<&str> = algorithms.iter().map(|a| a.name()).collect();
            let when = if profile.checksum().required {
                "required"
            } else {
                "when the request declares a checksum"
            };
            format!("{when}: {}", names.join(", "))
        }
        (Target::NoOverwrite, _) => "the store refuses the upload when the key exists".into(),
        _ => return None,
    })
}

/// The human-readable explanation `postgate explain` prints: the profile's settings, the
/// methods that carry it, its POST condition list and its PUT headers, placeholders shown.
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
        format_bytes(profile.size.min),
        format_bytes(profile.size.max)
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
                format_bytes(rule.part_size),
                humantime::format_duration(rule.expires_in)
            );
        }
        _ => {
            let _ = writeln!(out, "  multipart    no");
        }
    }
    write_complete(&mut out, profile);
    write_plan(&mut out, profile);
    out
}

/// What `complete` checks and does, on one line.
fn write_complete(out: &mut String, profile: &Profile) {
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
}

/// The POST condition list and the PUT headers, each with its note.
fn write_plan(out: &mut String, profile: &Profile) {
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
}
