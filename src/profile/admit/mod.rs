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

mod fill;

use self::fill::Refusals;
pub use self::fill::{MAX_FILENAME_BYTES, check_value, is_single_media_type, sanitize_filename};
use super::Profile;
use super::plan::{Carrier, ChecksumAlgorithm, Method, Target};
use super::template::Values;
use crate::text::utc_date;

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

crate::listed_enum! {
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
    let mut refusals = Refusals::default();
    let out = &mut refusals;
    fill::check_method(profile, request.checksum.is_some(), method, multipart, out);
    let var_values = fill::vars(profile, request, out);
    let filename = fill::filename(profile, request, method == Method::Put, out);
    fill::metadata_names(profile, request, out);
    let date = utc_date(ctx.now);
    let mut uuid_buffer = Uuid::encode_buffer();
    let values = Values {
        vars: &var_values,
        filename: filename.as_deref(),
        uuid: ctx.uuid.hyphenated().encode_lower(&mut uuid_buffer),
        date: &date,
        app: ctx.app,
    };
    let key = fill::key(profile, &values, multipart, out);
    let input = fill::Input {
        request,
        method,
        multipart,
        values,
        key: &key,
    };

    // Each rule filled by its own check, in plan order, with the name its carrier gives it for
    // this method (`ProfileNamed` resolves to the profile's own name for it).
    let mut entries = Vec::with_capacity(profile.plan.rules().len());
    for rule in profile.plan.rules() {
        let Some((profile_name, value)) = fill::rule(profile, rule, &input, out) else {
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
    let metadata = entries.iter().filter_map(|entry| match (entry.target, &entry.value) {
        (Target::Metadata(i), Value::Exact(value)) => Some((profile.metadata[i].name.as_str(), value.len())),
        _ => None,
    });
    fill::metadata_bytes(metadata, out);

    if !refusals.0.is_empty() {
        return Err(refusals.0);
    }
    let max_size = entries
        .iter()
        .find_map(|entry| match entry.value {
            Value::Range { max, .. } if entry.target == Target::Size => Some(max),
            _ => None,
        })
        .unwrap_or(profile.size.max);
    Ok(Filled {
        profile,
        method,
        key: key.key,
        promote_to: key.promote_to,
        entries,
        expires_in: profile.expires_in,
        max_size,
    })
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
