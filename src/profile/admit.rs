//! Admission: one upload request checked against a profile's plan for one method, producing the
//! `Filled` plan to sign — its rendered key and one value per rule, each with the form field or
//! header that carries it.
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

use super::compile::{forbidden_char, format_bytes, is_media_type};
use super::plan::{Carrier, ChecksumAlgorithm, MARKER_BYTES, MARKER_NAME, Method, Target, put_header};
use super::template::Values;
use super::{ContentTypeRule, MAX_KEY_BYTES, MAX_METADATA_BYTES, MAX_UPLOAD_BYTES, MetadataValue, Profile, SizeRange};

/// The Content-Type a PUT signs for a profile without a content-type rule: what S3 stores for a
/// form without one, and never a type a browser renders.
pub const UNRULED_PUT_TYPE: &str = "application/octet-stream";

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
    #[schema(max_length = 255)]
    pub filename: Option<String>,
    /// The file's content type; must satisfy the profile's rule.
    #[serde(default)]
    pub content_type: Option<String>,
    /// The file's exact size in bytes; signed as an exact length (at most 5 TiB, S3's largest
    /// object).
    #[serde(default)]
    #[schema(maximum = 5_497_558_138_880_u64)]
    pub size: Option<u64>,
    /// Values for the profile's per-request metadata.
    #[serde(default)]
    pub metadata: IndexMap<String, String>,
    /// `post` (a form) or `put` (a presigned URL). Default: POST where the store takes it and
    /// the profile allows it, else PUT.
    #[serde(default)]
    pub method: Option<Method>,
    /// The file's checksum, which the store verifies.
    #[serde(default)]
    pub checksum: Option<ChecksumRequest>,
}

/// A checksum the request declares: the algorithm and the base64 digest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChecksumRequest {
    pub algorithm: ChecksumAlgorithm,
    /// The digest, base64 (as S3's `x-amz-checksum-*` headers take it).
    pub value: String,
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
    KeyInvalid,
    MethodUnavailable,
    SizeRequired,
    FilenameRequired,
    ChecksumRequired,
    ChecksumInvalid,
    /// The request supplied a var that comes from the end user's token.
    VarBound,
    /// A var comes from a token claim, and there is no token or no such claim.
    ClaimMissing,
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

/// A value of the upload as admitted for one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'p> {
    /// Exactly this.
    Exact(Cow<'p, str>),
    /// Starting with this (never empty).
    Prefix(Cow<'p, str>),
    /// A size range in bytes, inclusive; `min == max` when the request declared a size.
    Range { min: u64, max: u64 },
}

/// One rule of the plan, filled in: the value and the form field (POST) or header (PUT) that
/// carries it; `name` is `None` where the URL or the length carries the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'p> {
    pub target: Target,
    pub name: Option<Cow<'p, str>>,
    pub value: Value<'p>,
}

/// An admitted upload: the profile's plan filled in for one request and one method, everything
/// a renderer adds credentials and a date to.
#[derive(Debug, Clone)]
pub struct Filled<'p> {
    pub profile: &'p Profile,
    pub method: Method,
    /// The key the upload goes to: whole, or (POST only) ending in a literal `${filename}`.
    pub key: String,
    /// With `verify.staging`: the key `complete` promotes the upload to (`key` is then the
    /// staging prefix + this).
    pub promote_to: Option<String>,
    /// One entry per rule that applies, in plan order (`bucket` first).
    pub entries: Vec<Entry<'p>>,
    pub expires_in: Duration,
    /// The largest upload the signature admits.
    pub max_size: u64,
}

impl<'p> Filled<'p> {
    /// The entry for `target`, if the request has one.
    pub fn get(&self, target: Target) -> Option<&Entry<'p>> {
        self.entries.iter().find(|e| e.target == target)
    }

    /// What the signature allows, as `complete` checks it on the stored object: read off the
    /// filled plan, so it holds exactly what was signed.
    pub fn bounds(&self) -> Bounds {
        let mut bounds = Bounds {
            key: self.key.clone(),
            promote_to: self.promote_to.clone(),
            min_size: 0,
            max_size: self.max_size,
            content_type: None,
            metadata: Vec::new(),
            checksum: None,
            no_overwrite: false,
            marker: String::new(),
        };
        for entry in &self.entries {
            match (entry.target, &entry.value) {
                (Target::Size, Value::Range { min, max }) => (bounds.min_size, bounds.max_size) = (*min, *max),
                (Target::ContentType, Value::Exact(value)) => {
                    bounds.content_type = Some(TypeBound::Exact(value.to_string()))
                }
                (Target::ContentType, Value::Prefix(value)) => {
                    bounds.content_type = Some(TypeBound::Prefix(value.to_string()))
                }
                (Target::Metadata(i), Value::Exact(value)) => {
                    bounds
                        .metadata
                        .push((self.profile.metadata[i].name.clone(), value.to_string()));
                }
                (Target::Checksum, Value::Exact(value)) => {
                    let algorithm = ChecksumAlgorithm::ALL
                        .into_iter()
                        .find(|a| entry.name.as_deref() == Some(a.field()));
                    if let Some(algorithm) = algorithm {
                        bounds.checksum = Some((algorithm, value.to_string()));
                    }
                }
                (Target::Marker, Value::Exact(value)) => bounds.marker = value.to_string(),
                (Target::NoOverwrite, _) => bounds.no_overwrite = true,
                _ => {}
            }
        }
        bounds
    }
}

/// What one signature allows the stored object to be: the filled plan's size range, content
/// type, metadata and checksum, and where it is (`key`, and `promote_to` with a staging prefix).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Bounds {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote_to: Option<String>,
    pub min_size: u64,
    pub max_size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<TypeBound>,
    /// `x-amz-meta-*` names (without the prefix) and values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<(ChecksumAlgorithm, String)>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_overwrite: bool,
    /// The per-upload marker the signature set on the object (`x-amz-meta-postgate-upload`):
    /// `complete` acts only on an object that carries it. Empty in tokens sealed before markers.
    #[serde(default)]
    pub marker: String,
}

/// The content type a signature allows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TypeBound {
    Exact(String),
    Prefix(String),
}

impl TypeBound {
    pub fn admits(&self, content_type: &str) -> bool {
        match self {
            TypeBound::Exact(exact) => exact == content_type,
            TypeBound::Prefix(prefix) => content_type.starts_with(prefix.as_str()),
        }
    }
}

/// Checks a request against a profile's plan for `method`. Returns every refusal, not just the
/// first.
pub fn admit<'p>(
    profile: &'p Profile,
    request: &UploadRequest,
    method: Method,
    ctx: &Context<'_>,
) -> Result<Filled<'p>, Vec<Refusal>> {
    admit_as(profile, request, method, false, ctx)
}

/// Checks a request to start a multipart upload. The plan is filled in as for a PUT (the create
/// call carries its headers, each part its exact `Content-Length`), but the size may go up to
/// the profile's `size.max` (5 TiB), and no checksum of the whole file is taken.
pub fn admit_multipart<'p>(
    profile: &'p Profile,
    request: &UploadRequest,
    ctx: &Context<'_>,
) -> Result<Filled<'p>, Vec<Refusal>> {
    admit_as(profile, request, Method::Put, true, ctx)
}

fn admit_as<'p>(
    profile: &'p Profile,
    request: &UploadRequest,
    method: Method,
    multipart: bool,
    ctx: &Context<'_>,
) -> Result<Filled<'p>, Vec<Refusal>> {
    let mut refusals = Vec::new();
    let mut refuse = |kind, field: String, message: String| refusals.push(Refusal { kind, field, message });
    let put = method == Method::Put;

    if multipart {
        if let Some(reason) = profile.plan.multipart_unavailable() {
            refuse(RefusalKind::MethodUnavailable, "method".into(), reason.to_owned());
        }
        if request.checksum.is_some() {
            refuse(
                RefusalKind::ChecksumInvalid,
                "checksum".into(),
                "a multipart upload takes no checksum of the whole file; omit it".into(),
            );
        }
    } else if let Some(reason) = profile.plan.unavailable(method) {
        refuse(RefusalKind::MethodUnavailable, "method".into(), reason.to_owned());
    }

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
        // Named only when refused: the happy path formats nothing.
        let field = || format!("vars.{}", var.name);
        match request.vars.get(&var.name) {
            None => {
                refuse(
                    RefusalKind::VarMissing,
                    field(),
                    format!("missing; `{}` must match `{}`", var.name, var.pattern_source),
                );
                var_values.push("");
            }
            Some(value) => {
                if let Err(why) = check_value(value) {
                    refuse(RefusalKind::VarInvalid, field(), why);
                } else if !var.pattern.is_match(value) {
                    refuse(
                        RefusalKind::VarInvalid,
                        field(),
                        format!("does not match `{}`", var.pattern_source),
                    );
                }
                var_values.push(value);
            }
        }
    }

    // Filename: only where the key ends in `${filename}`; reduced to its last path segment. A PUT
    // URL signs the whole key, so it needs the name.
    let filename = match &request.filename {
        None if profile.key.ends_with_filename() && (put || profile.filename_required) => {
            let why = if profile.filename_required {
                "required: this profile has the request name the file (`filename: request`)"
            } else {
                "required for a PUT: the URL signs the whole key, and this key ends in `${filename}`"
            };
            refuse(RefusalKind::FilenameRequired, "filename".into(), why.into());
            None
        }
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

    // Content type: narrowed to exact when named; a PUT signs it exact, so it needs one.
    let mut content_type: Option<Value<'p>> = match (&profile.content_type, request.content_type.as_deref()) {
        (None, None) if put => Some(Value::Exact(UNRULED_PUT_TYPE.into())),
        (None, None) => None,
        (None, Some(_)) => {
            refuse(
                RefusalKind::ContentTypeNotAllowed,
                "content_type".into(),
                "this profile sets no content type; omit it".into(),
            );
            None
        }
        (Some(ContentTypeRule::Prefix(prefix)), None) if !put => Some(Value::Prefix(prefix.as_str().into())),
        (Some(ContentTypeRule::Prefix(prefix)), None) => {
            refuse(
                RefusalKind::ContentTypeRequired,
                "content_type".into(),
                format!("required for a PUT (the URL signs it exact); a type starting with `{prefix}`"),
            );
            None
        }
        (Some(ContentTypeRule::OneOf(types)), None) => {
            refuse(
                RefusalKind::ContentTypeRequired,
                "content_type".into(),
                format!("required; one of {}", types.join(", ")),
            );
            None
        }
        (Some(ContentTypeRule::Exact(exact)), None) => Some(Value::Exact(exact.as_str().into())),
        (Some(rule), Some(named)) => {
            if is_single_media_type(named) && rule.admits(named) {
                Some(Value::Exact(Cow::Owned(named.to_owned())))
            } else {
                refuse(
                    RefusalKind::ContentTypeNotAllowed,
                    "content_type".into(),
                    format!(
                        "`{}` is not allowed; this profile accepts {} (one media type, like `image/png`)",
                        named.escape_debug(),
                        describe_rule(rule)
                    ),
                );
                None
            }
        }
    };

    // Size: an exact length when named; a PUT signs `Content-Length`, so it needs one. One POST
    // or PUT carries at most 5 GiB; a multipart upload, the profile's whole range.
    let size = SizeRange {
        min: profile.size.min,
        max: if multipart {
            profile.size.max
        } else {
            profile.size.max.min(MAX_UPLOAD_BYTES)
        },
    };
    let size = &size;
    let (min, max) = match request.size {
        Some(bytes) if bytes > size.max && bytes <= profile.size.max => {
            refuse(
                RefusalKind::SizeOutOfRange,
                "size".into(),
                format!(
                    "{bytes} bytes is above 5 GiB, the most one {} carries; start a multipart upload",
                    if put { "PUT" } else { "POST" }
                ),
            );
            (size.min, size.max)
        }
        None if put => {
            refuse(
                RefusalKind::SizeRequired,
                "size".into(),
                format!(
                    "required for a PUT (the URL signs the exact Content-Length); {}..={} bytes",
                    size.min, size.max
                ),
            );
            (size.min, size.max)
        }
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
    let mut metadata: Vec<Option<String>> = Vec::with_capacity(profile.metadata.len());
    for rule in &profile.metadata {
        let field = || format!("metadata.{}", rule.name);
        let value = match (&rule.value, request.metadata.get(&rule.name)) {
            (MetadataValue::Fixed(template), _) => Some(template.render(&values)),
            (_, None) if rule.required => {
                refuse(
                    RefusalKind::MetadataMissing,
                    field(),
                    "missing; this profile requires it".into(),
                );
                None
            }
            (_, None) => None,
            (MetadataValue::OneOf(allowed), Some(value)) => {
                if allowed.contains(value) {
                    Some(value.clone())
                } else {
                    refuse(
                        RefusalKind::MetadataInvalid,
                        field(),
                        format!("must be one of {}", allowed.join(", ")),
                    );
                    None
                }
            }
            (MetadataValue::Pattern(regex, source), Some(value)) => {
                if let Err(why) = forbidden_char(value) {
                    refuse(RefusalKind::MetadataInvalid, field(), why);
                    None
                } else if !regex.is_match(value) {
                    refuse(
                        RefusalKind::MetadataInvalid,
                        field(),
                        format!("does not match `{source}`"),
                    );
                    None
                } else {
                    Some(value.clone())
                }
            }
        };
        metadata.push(value);
    }
    // A PUT carries metadata as headers, and header values are ASCII (`fetch` refuses others).
    if put {
        for (rule, value) in profile.metadata.iter().zip(&metadata) {
            if value.as_ref().is_some_and(|v| !v.is_ascii()) {
                refuse(
                    RefusalKind::MetadataInvalid,
                    format!("metadata.{}", rule.name),
                    "is not ASCII, which a PUT header cannot carry; ask for a POST form, or use ASCII".into(),
                );
            }
        }
    }
    let metadata_bytes: usize = profile
        .metadata
        .iter()
        .zip(&metadata)
        .filter_map(|(rule, value)| value.as_ref().map(|v| rule.name.len() + v.len()))
        .sum::<usize>()
        + MARKER_NAME.len()
        + MARKER_BYTES;
    if metadata_bytes > MAX_METADATA_BYTES {
        refuse(
            RefusalKind::MetadataInvalid,
            "metadata".into(),
            format!("{metadata_bytes} bytes of metadata; S3 allows {MAX_METADATA_BYTES}"),
        );
    }

    // Checksum: an algorithm the profile takes, a digest of the algorithm's length.
    let checksum = match &request.checksum {
        None if profile.checksum.required => {
            let names: Vec<&str> = profile.checksum.algorithms.iter().map(|a| a.name()).collect();
            refuse(
                RefusalKind::ChecksumRequired,
                "checksum".into(),
                format!(
                    "required: declare the file's checksum, one of {} (base64)",
                    names.join(", ")
                ),
            );
            None
        }
        None => None,
        Some(checksum) => match check_checksum(profile, checksum) {
            Ok(()) => Some(checksum),
            Err(why) => {
                refuse(RefusalKind::ChecksumInvalid, "checksum".into(), why);
                None
            }
        },
    };

    let mut key = profile.key.render(&values);
    // Promotion: a single upload goes to the staging prefix + the key; `complete` copies it to
    // the key. A multipart upload writes the key itself: its part URLs die with its upload ID at
    // completion, so nothing can be replayed over the checked object (and a copy would stop at
    // 5 GiB).
    let staging = profile.verify.staging.as_ref().filter(|_| !multipart);
    let promote_to = staging.map(|staging| {
        let final_key = key.clone();
        key.insert_str(0, staging);
        final_key
    });
    let filename_left = filename.is_none() && profile.key.ends_with_filename();
    let signed_part = if filename_left {
        &key[..key.len() - "${filename}".len()]
    } else {
        key.as_str()
    };
    // Values never contain `${`, but two adjacent ones can splice one (`x$` + `{filename}`).
    if signed_part.contains("${") {
        refuse(
            RefusalKind::KeyInvalid,
            "key".into(),
            "the vars would render a key containing `${`, which S3 would read as a placeholder; change the vars".into(),
        );
    }
    // S3 substitutes at least one character for `${filename}`. A refused object may move under
    // the quarantine prefix, which must still make a key S3 takes.
    // (`<quarantine><marker>/<key>`: one place per upload.)
    let quarantine = profile
        .verify
        .quarantine
        .as_deref()
        .map_or(0, |prefix| prefix.len() + MARKER_BYTES + 1);
    let key_bytes = signed_part.len() + usize::from(filename_left) + quarantine;
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

    // Fill the plan in, rule by rule, in its order: each rule's value, and the name its carrier
    // gives it for this method (`ProfileNamed` resolves to the profile's own name for it).
    let mut entries = Vec::with_capacity(profile.plan.rules().len());
    for rule in profile.plan.rules() {
        let filled: Option<(&'p str, Value<'p>)> = match rule.target {
            Target::Bucket => Some(("", Value::Exact(profile.bucket.as_str().into()))),
            Target::Key if filename_left => Some(("", Value::Prefix(Cow::Owned(signed_part.to_owned())))),
            Target::Key => Some(("", Value::Exact(Cow::Owned(key.clone())))),
            Target::Size => Some(("", Value::Range { min, max })),
            Target::ContentType => content_type.take().map(|value| ("", value)),
            Target::Field(i) => {
                let (field, value) = &profile.fields[i];
                let name = match method {
                    Method::Post => field.as_str(),
                    Method::Put => put_header(field).unwrap_or_default(),
                };
                Some((name, Value::Exact(value.as_str().into())))
            }
            Target::Metadata(i) => metadata[i]
                .take()
                .map(|value| (profile.metadata[i].field.as_str(), Value::Exact(value.into()))),
            // The grant's own UUID: fresh per signature, so no other grant signs it.
            Target::Marker => Some(("", Value::Exact(Cow::Owned(uuid.to_owned())))),
            Target::ChecksumAlgorithm => checksum.map(|c| ("", Value::Exact(c.algorithm.s3_name().into()))),
            Target::Checksum => checksum.map(|c| (c.algorithm.field(), Value::Exact(Cow::Owned(c.value.clone())))),
            Target::NoOverwrite => Some(("", Value::Exact("*".into()))),
        };
        let Some((profile_name, value)) = filled else {
            continue;
        };
        let name = match rule.carrier(method) {
            Carrier::Named(fixed) => Some(Cow::Borrowed(fixed)),
            Carrier::ProfileNamed => Some(Cow::Borrowed(profile_name)),
            Carrier::Url | Carrier::Length | Carrier::Implied | Carrier::None => None,
        };
        entries.push(Entry {
            target: rule.target,
            name,
            value,
        });
    }

    Ok(Filled {
        profile,
        method,
        key,
        promote_to,
        entries,
        expires_in: profile.expires_in,
        max_size: max,
    })
}

/// One media type, `type/subtype` with optional `; name=value` parameters: never a list, so a
/// rule that admits `image/` cannot sign `image/png, text/html`.
pub fn is_single_media_type(text: &str) -> bool {
    if !text.chars().all(|c| c.is_ascii_graphic() || c == ' ') || text.contains(',') {
        return false;
    }
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or_default();
    if essence != essence.trim() || !is_media_type(essence) {
        return false;
    }
    parts.all(|param| {
        let param = param.trim();
        let token = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c));
        matches!(param.split_once('='), Some((name, value)) if token(name)
            && (token(value) || (value.len() >= 2 && value.starts_with('"') && value.ends_with('"') && !value[1..value.len() - 1].contains('"'))))
    })
}

fn check_checksum(profile: &Profile, checksum: &ChecksumRequest) -> Result<(), String> {
    use base64::Engine as _;
    let algorithm = checksum.algorithm;
    if !profile.checksum.algorithms.contains(&algorithm) {
        let names: Vec<&str> = profile.checksum.algorithms.iter().map(|a| a.name()).collect();
        return Err(format!(
            "`{}` is not taken by this profile; use one of {}",
            algorithm.name(),
            names.join(", ")
        ));
    }
    match base64::engine::general_purpose::STANDARD.decode(&checksum.value) {
        Ok(digest) if digest.len() == algorithm.digest_bytes() => Ok(()),
        Ok(digest) => Err(format!(
            "a {} digest is {} bytes; this one is {}",
            algorithm.name(),
            algorithm.digest_bytes(),
            digest.len()
        )),
        Err(_) => Err(format!(
            "`value` is not base64; send the {} digest base64-encoded, as S3's `{}` takes it",
            algorithm.name(),
            algorithm.field()
        )),
    }
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

/// Fills the vars bound to token claims (`vars.<name>.claim`) from the end user's verified
/// claims. A request that supplies a bound var is refused (`var-bound`), as is one without the
/// claim (`claim-missing`: no token, or a token without it); string and number claims are taken
/// as text, and `admit` then checks them like any var.
pub fn bind_claims(
    profile: &Profile,
    request: &mut UploadRequest,
    claims: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<(), Vec<Refusal>> {
    let mut refusals = Vec::new();
    for var in &profile.vars {
        let Some(claim) = &var.claim else { continue };
        let field = format!("vars.{}", var.name);
        if request.vars.contains_key(&var.name) {
            refusals.push(Refusal {
                kind: RefusalKind::VarBound,
                field,
                message: format!(
                    "`{}` comes from the end-user token's `{claim}` claim; do not send it",
                    var.name
                ),
            });
            continue;
        }
        let value = match claims.and_then(|c| c.get(claim)) {
            Some(serde_json::Value::String(text)) => Some(text.clone()),
            Some(serde_json::Value::Number(number)) => Some(number.to_string()),
            _ => None,
        };
        match value {
            Some(value) => {
                request.vars.insert(var.name.clone(), value);
            }
            None => refusals.push(Refusal {
                kind: RefusalKind::ClaimMissing,
                field,
                message: match claims {
                    None => format!(
                        "`{}` comes from the end user's token (claim `{claim}`); send the token as `Authorization: Bearer <ID token>`",
                        var.name
                    ),
                    Some(_) => format!("the end-user token has no string `{claim}` claim for `{}`", var.name),
                },
            }),
        }
    }
    if refusals.is_empty() { Ok(()) } else { Err(refusals) }
}
