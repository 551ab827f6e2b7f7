//! Admission: one upload request checked against a profile, producing the `Upload` to sign —
//! its rendered key, the profile's part of the condition list and the form fields they cover.
//!
//! Pure: `now` and the UUID arrive in `Context`. Every refusal is collected, each naming the
//! request field at fault, so an app can tell its user what to fix.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::compile::{forbidden_char, format_bytes};
use super::conditions::Condition;
use super::template::Values;
use super::{ContentTypeRule, MAX_KEY_BYTES, MAX_METADATA_BYTES, MetadataValue, Placeholder, Profile};

/// The longest filename a request may name, in bytes (what common filesystems allow).
pub const MAX_FILENAME_BYTES: usize = 255;

/// What an app asks for in one signature. Anything the profile does not declare is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    /// Values for the profile's declared vars.
    #[serde(default)]
    pub vars: IndexMap<String, String>,
    /// The uploaded file's name; the gateway then signs the whole key exact.
    #[serde(default)]
    pub filename: Option<String>,
    /// The file's content type; must satisfy the profile's rule.
    #[serde(default)]
    pub content_type: Option<String>,
    /// The file's exact size in bytes; signed as an exact length.
    #[serde(default)]
    pub size: Option<u64>,
    /// Values for the profile's per-request metadata.
    #[serde(default)]
    pub metadata: IndexMap<String, String>,
}

/// The effects admission needs, supplied by the caller.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The requesting app; `${app}` resolves to it.
    pub app: &'a str,
    pub now: OffsetDateTime,
    /// The value of `${uuid}` (a fresh v7 per signature).
    pub uuid: Uuid,
}

/// The kinds of refusal; the HTTP edge gives each a stable machine code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalKind {
    VarUnknown,
    VarMissing,
    VarInvalid,
    FilenameNotAccepted,
    FilenameInvalid,
    ContentTypeNotAllowed,
    ContentTypeRequired,
    SizeOutOfRange,
    MetadataUnknown,
    MetadataMissing,
    MetadataInvalid,
    KeyTooLong,
}

/// One reason a request was refused, naming the request field (`vars.user`, `size`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub field: String,
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// An admitted upload: everything the signer adds credentials and a date to.
#[derive(Debug, Clone)]
pub struct Upload<'p> {
    pub profile: &'p Profile,
    /// The key as sent in the form: whole, or ending in a literal `${filename}`.
    pub key: String,
    /// The profile's conditions, `bucket` first.
    pub conditions: Vec<Condition<'p>>,
    /// The form fields the conditions cover, in the order a form sends them.
    pub fields: Vec<(Cow<'p, str>, Cow<'p, str>)>,
    pub expires_in: Duration,
    /// The largest upload the form admits.
    pub max_size: u64,
}

/// Checks a request against a profile. Returns every refusal, not just the first.
pub fn admit<'p>(profile: &'p Profile, request: &UploadRequest, ctx: &Context<'_>) -> Result<Upload<'p>, Vec<Refusal>> {
    let mut refusals = Vec::new();
    let mut refuse = |kind, field: String, message: String| refusals.push(Refusal { kind, field, message });

    // Vars: every declared one present and valid, nothing undeclared.
    for name in request.vars.keys() {
        if !profile.vars.iter().any(|v| &v.name == name) {
            let declared: Vec<&str> = profile.vars.iter().map(|v| v.name.as_str()).collect();
            refuse(
                RefusalKind::VarUnknown,
                format!("vars.{name}"),
                format!(
                    "this profile declares no var `{name}`; it takes: {}",
                    list_or_none(&declared)
                ),
            );
        }
    }
    let mut var_values: Vec<&str> = Vec::with_capacity(profile.vars.len());
    for var in &profile.vars {
        let field = format!("vars.{}", var.name);
        match request.vars.get(&var.name) {
            None => {
                refuse(
                    RefusalKind::VarMissing,
                    field,
                    format!("missing; `{}` must match `{}`", var.name, var.pattern_source),
                );
                var_values.push("");
            }
            Some(value) => {
                if let Err(why) = check_value(value) {
                    refuse(RefusalKind::VarInvalid, field, why);
                } else if !var.pattern.is_match(value) {
                    refuse(
                        RefusalKind::VarInvalid,
                        field,
                        format!("does not match `{}`", var.pattern_source),
                    );
                }
                var_values.push(value);
            }
        }
    }

    // Filename: only where the key ends in `${filename}`; reduced to its last path segment.
    let filename = match &request.filename {
        None => None,
        Some(_) if !profile.key.ends_with_filename() => {
            refuse(
                RefusalKind::FilenameNotAccepted,
                "filename".into(),
                "this profile's key has no `${filename}`, so it takes no filename".into(),
            );
            None
        }
        Some(name) => match sanitize_filename(name) {
            Ok(name) => Some(name),
            Err(why) => {
                refuse(RefusalKind::FilenameInvalid, "filename".into(), why);
                None
            }
        },
    };

    // Content type: narrowed to exact when named.
    let content_type: Option<(Condition<'p>, Option<Cow<'p, str>>)> =
        match (&profile.content_type, request.content_type.as_deref()) {
            (None, None) => None,
            (None, Some(_)) => {
                refuse(
                    RefusalKind::ContentTypeNotAllowed,
                    "content_type".into(),
                    "this profile sets no content type; omit it".into(),
                );
                None
            }
            (Some(ContentTypeRule::Prefix(prefix)), None) => Some((
                Condition::StartsWith {
                    field: "Content-Type".into(),
                    prefix: prefix.as_str().into(),
                },
                None,
            )),
            (Some(ContentTypeRule::OneOf(types)), None) => {
                refuse(
                    RefusalKind::ContentTypeRequired,
                    "content_type".into(),
                    format!("required; one of {}", types.join(", ")),
                );
                None
            }
            (Some(ContentTypeRule::Exact(exact)), None) => Some((
                Condition::eq("Content-Type", exact.as_str()),
                Some(Cow::Borrowed(exact.as_str())),
            )),
            (Some(rule), Some(named)) => {
                if rule.admits(named) && named.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
                    Some((
                        Condition::eq("Content-Type", named.to_owned()),
                        Some(Cow::Owned(named.to_owned())),
                    ))
                } else {
                    refuse(
                        RefusalKind::ContentTypeNotAllowed,
                        "content_type".into(),
                        format!(
                            "`{}` is not allowed; this profile accepts {}",
                            named.escape_debug(),
                            describe_rule(rule)
                        ),
                    );
                    None
                }
            }
        };

    // Size: an exact length when named.
    let size = &profile.size;
    let (min, max) = match request.size {
        None => (size.min, size.max),
        Some(bytes) if bytes >= size.min && bytes <= size.max => (bytes, bytes),
        Some(bytes) => {
            refuse(
                RefusalKind::SizeOutOfRange,
                "size".into(),
                format!(
                    "{bytes} bytes is outside {}..={} ({} at most)",
                    size.min,
                    size.max,
                    format_bytes(size.max)
                ),
            );
            (size.min, size.max)
        }
    };

    let date = utc_date(ctx.now);
    let mut uuid_buffer = Uuid::encode_buffer();
    let uuid: &str = ctx.uuid.hyphenated().encode_lower(&mut uuid_buffer);
    let values = Values {
        vars: &var_values,
        filename: filename.as_deref(),
        uuid,
        date: &date,
        app: ctx.app,
    };

    // Metadata: fixed values rendered; per-request values checked.
    for name in request.metadata.keys() {
        match profile.metadata.iter().find(|m| &m.name == name) {
            None => {
                let declared: Vec<&str> = profile
                    .metadata
                    .iter()
                    .filter(|m| !matches!(m.value, MetadataValue::Fixed(_)))
                    .map(|m| m.name.as_str())
                    .collect();
                refuse(
                    RefusalKind::MetadataUnknown,
                    format!("metadata.{name}"),
                    format!(
                        "this profile takes no metadata `{name}`; it takes: {}",
                        list_or_none(&declared)
                    ),
                );
            }
            Some(rule) if matches!(rule.value, MetadataValue::Fixed(_)) => refuse(
                RefusalKind::MetadataUnknown,
                format!("metadata.{name}"),
                "is fixed by the profile; omit it".into(),
            ),
            Some(_) => {}
        }
    }
    let mut metadata: Vec<(&str, String)> = Vec::with_capacity(profile.metadata.len());
    for rule in &profile.metadata {
        let field = format!("metadata.{}", rule.name);
        let value = match (&rule.value, request.metadata.get(&rule.name)) {
            (MetadataValue::Fixed(template), _) => template.render(&values),
            (_, None) if rule.required => {
                refuse(
                    RefusalKind::MetadataMissing,
                    field,
                    "missing; this profile requires it".into(),
                );
                continue;
            }
            (_, None) => continue,
            (MetadataValue::OneOf(allowed), Some(value)) => {
                if !allowed.contains(value) {
                    refuse(
                        RefusalKind::MetadataInvalid,
                        field,
                        format!("must be one of {}", allowed.join(", ")),
                    );
                    continue;
                }
                value.clone()
            }
            (MetadataValue::Pattern(regex, source), Some(value)) => {
                if let Err(why) = forbidden_char(value) {
                    refuse(RefusalKind::MetadataInvalid, field, why);
                    continue;
                }
                if !regex.is_match(value) {
                    refuse(
                        RefusalKind::MetadataInvalid,
                        field,
                        format!("does not match `{source}`"),
                    );
                    continue;
                }
                value.clone()
            }
        };
        metadata.push((&rule.field, value));
    }
    let metadata_bytes: usize = metadata
        .iter()
        .map(|(f, v)| f.len() - "x-amz-meta-".len() + v.len())
        .sum();
    if metadata_bytes > MAX_METADATA_BYTES {
        refuse(
            RefusalKind::MetadataInvalid,
            "metadata".into(),
            format!("{metadata_bytes} bytes of metadata; S3 allows {MAX_METADATA_BYTES}"),
        );
    }

    let key = profile.key.render(&values);
    let key_bytes = if filename.is_none() && profile.key.uses(Placeholder::Filename) {
        // S3 substitutes at least one character for `${filename}`.
        key.len() - "${filename}".len() + 1
    } else {
        key.len()
    };
    if key_bytes > MAX_KEY_BYTES {
        refuse(
            RefusalKind::KeyTooLong,
            "key".into(),
            format!(
                "the key would be {key_bytes} bytes; S3 keys are at most {MAX_KEY_BYTES}; shorten the vars or filename"
            ),
        );
    }

    if !refusals.is_empty() {
        return Err(refusals);
    }

    let mut conditions = Vec::with_capacity(6 + profile.fields.len() + metadata.len());
    let mut fields = Vec::with_capacity(4 + profile.fields.len() + metadata.len());
    conditions.push(Condition::eq("bucket", profile.bucket.as_str()));
    if filename.is_none() && profile.key.ends_with_filename() {
        // S3 compares the policy against the form value before it substitutes ${filename}, so the
        // condition is on the prefix (which always ends with `/`, so is never empty).
        conditions.push(Condition::StartsWith {
            field: "key".into(),
            prefix: key[..key.len() - "${filename}".len()].to_owned().into(),
        });
    } else {
        conditions.push(Condition::eq("key", key.clone()));
    }
    fields.push(("key".into(), key.clone().into()));
    conditions.push(Condition::ContentLengthRange { min, max });
    if let Some((condition, field_value)) = content_type {
        conditions.push(condition);
        if let Some(value) = field_value {
            fields.push(("Content-Type".into(), value));
        }
    }
    for (field, value) in &profile.fields {
        conditions.push(Condition::eq(field.as_str(), value.as_str()));
        fields.push((field.as_str().into(), value.as_str().into()));
    }
    for (field, value) in metadata {
        conditions.push(Condition::eq(field, value.clone()));
        fields.push((field.into(), value.into()));
    }

    Ok(Upload {
        profile,
        key,
        conditions,
        fields,
        expires_in: profile.expires_in,
        max_size: max,
    })
}

/// The rules no var pattern can loosen. Returns why the value is refused.
pub fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("is empty".into());
    }
    if value == "." {
        return Err("is `.`, which is not a key segment".into());
    }
    if value.contains('/') || value.contains('\\') {
        return Err("contains a path separator (`/` or `\\`)".into());
    }
    if value.contains("..") {
        return Err("contains `..`".into());
    }
    if value.contains("${") {
        return Err("contains `${`".into());
    }
    forbidden_char(value)
}

/// Reduces a client's filename to its last path segment and checks it.
pub fn sanitize_filename(name: &str) -> Result<String, String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    if base.is_empty() {
        return Err("is empty (or ends with a path separator)".into());
    }
    if base == "." || base == ".." {
        return Err(format!("`{base}` is not a file name"));
    }
    if base.contains("${") {
        return Err("contains `${`".into());
    }
    forbidden_char(base)?;
    if base.len() > MAX_FILENAME_BYTES {
        return Err(format!("is {} bytes; at most {MAX_FILENAME_BYTES}", base.len()));
    }
    Ok(base.to_owned())
}

/// `YYYY-MM-DD` of `now` in UTC.
fn utc_date(now: OffsetDateTime) -> String {
    let now = now.to_offset(time::UtcOffset::UTC);
    let mut out = String::with_capacity(10);
    super::push_digits(&mut out, now.year().unsigned_abs(), 4);
    out.push('-');
    super::push_digits(&mut out, u8::from(now.month()).into(), 2);
    out.push('-');
    super::push_digits(&mut out, now.day().into(), 2);
    out
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn describe_rule(rule: &ContentTypeRule) -> String {
    match rule {
        ContentTypeRule::Prefix(prefix) => format!("types starting with `{prefix}`"),
        ContentTypeRule::OneOf(types) => format!("one of {}", types.join(", ")),
        ContentTypeRule::Exact(exact) => format!("only `{exact}`"),
    }
}
