//! The API's JSON shapes, built from the core's types.

use serde::Serialize;

use crate::explain::explain;
use crate::profile::Method;
use crate::profile::enforcement::gaps;
use crate::profile::{ContentTypeRule, MetadataValue, Placeholder, Profile};
use crate::sign::Signed;
use crate::text::{write_json_clean, write_json_string};

/// What an app needs to build its upload UI.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProfileSummary<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub min_size: u64,
    pub max_size: u64,
    /// An HTML `accept` attribute value; absent when any type is fine.
    pub accept: Option<String>,
    pub content_type: Option<ContentTypeWire<'a>>,
    /// Whether the request must name a content type (`one_of`).
    pub content_type_required: bool,
    /// Whether the request may name the file (the key ends in `${filename}`).
    pub accepts_filename: bool,
    /// Whether the request must name the file (`filename: request`, and every PUT).
    pub filename_required: bool,
    pub vars: Vec<VarWire<'a>>,
    /// Metadata the request supplies (fixed metadata is the profile's own).
    pub metadata: Vec<MetadataWire<'a>>,
    /// Seconds a signed form stays valid.
    pub expires_in: u64,
    /// How uploads may be carried: `POST` (a form), `PUT` (a presigned URL).
    #[schema(value_type = Vec<String>)]
    pub methods: Vec<&'static str>,
    /// Whether the request must declare a checksum, and which algorithms it may use.
    pub checksum_required: bool,
    pub checksum_algorithms: Vec<&'static str>,
    /// Multipart uploads (`POST /v1/profiles/{name}/multipart`): the preferred part size; absent
    /// when the profile takes none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multipart_part_size: Option<u64>,
    /// Whether `complete` checks the file's first bytes against its type.
    pub sniff: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContentTypeWire<'a> {
    Prefix(&'a str),
    OneOf(&'a [String]),
    Exact(&'a str),
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct VarWire<'a> {
    pub name: &'a str,
    pub pattern: &'a str,
    pub description: Option<&'a str>,
    /// The end-user token claim the value comes from; such a var is not sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim: Option<&'a str>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MetadataWire<'a> {
    pub name: &'a str,
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub one_of: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<&'a str>,
    pub description: Option<&'a str>,
}

impl<'a> ProfileSummary<'a> {
    pub fn of(profile: &'a Profile) -> ProfileSummary<'a> {
        ProfileSummary {
            name: profile.name().as_str(),
            description: profile.description(),
            min_size: profile.size().min,
            max_size: profile.size().max,
            accept: profile.content_type().map(ContentTypeRule::accept),
            content_type: profile.content_type().map(|rule| match rule {
                ContentTypeRule::Prefix(p) => ContentTypeWire::Prefix(p),
                ContentTypeRule::OneOf(types) => ContentTypeWire::OneOf(types),
                ContentTypeRule::Exact(e) => ContentTypeWire::Exact(e),
            }),
            content_type_required: matches!(profile.content_type(), Some(ContentTypeRule::OneOf(_))),
            accepts_filename: profile.key().uses(Placeholder::Filename),
            filename_required: profile.filename_required(),
            vars: profile
                .vars()
                .iter()
                .map(|v| VarWire {
                    name: &v.name,
                    pattern: &v.pattern_source,
                    description: v.description.as_deref(),
                    claim: v.claim.as_deref(),
                })
                .collect(),
            metadata: profile
                .metadata()
                .iter()
                .filter_map(|m| {
                    let (one_of, pattern) = match &m.value {
                        MetadataValue::Fixed(_) => return None,
                        MetadataValue::OneOf(values) => (Some(values.as_slice()), None),
                        MetadataValue::Pattern(_, source) => (None, Some(source.as_str())),
                    };
                    Some(MetadataWire {
                        name: &m.name,
                        required: m.required,
                        one_of,
                        pattern,
                        description: m.description.as_deref(),
                    })
                })
                .collect(),
            expires_in: profile.expires_in().as_secs(),
            methods: profile.plan().methods().iter().map(|m| m.as_str()).collect(),
            checksum_required: profile.checksum().required,
            checksum_algorithms: profile.checksum().algorithms.iter().map(|a| a.name()).collect(),
            multipart_part_size: profile.multipart().map(|m| m.part_size),
            sniff: profile.verify().sniff,
        }
    }
}

/// A compiled profile: the summary plus its condition list with placeholders shown.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProfileDetail<'a> {
    #[serde(flatten)]
    pub summary: ProfileSummary<'a>,
    pub bucket: &'a str,
    pub store: &'a str,
    pub key: String,
    pub apps: Option<&'a [String]>,
    /// The POST policy conditions, placeholders shown; empty when the profile is PUT-only.
    pub conditions: Vec<ConditionWire>,
    /// The headers a PUT URL signs, placeholders shown; empty when the profile is POST-only.
    pub put_headers: Vec<HeaderWire>,
    /// Why a method is unavailable, by method.
    pub unavailable: Vec<UnavailableWire>,
    /// The store's kind: `s3`, `gcs` or `azure`.
    pub store_kind: &'static str,
    /// What the store's kind enforces by signature and what only `complete` checks; absent for
    /// S3 stores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_note: Option<&'static str>,
    /// What the profile relies on that its store does not enforce, as the store's
    /// `stores.<name>.probe` file says; absent when none (or no probe file).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub store_gaps: Vec<GapWire>,
}

/// A constraint one method of the profile relies on, which `postgate probe` found the store
/// does not enforce.
#[derive(Serialize, utoipa::ToSchema)]
pub struct GapWire {
    /// `post`, `put` or `multipart`.
    pub method: &'static str,
    /// The constraint, as `postgate probe` names it (`overwrite`, `unsigned-headers`, …).
    pub constraint: &'static str,
    /// `not enforced` or `wrote, then refused`.
    pub verdict: &'static str,
    /// What to do about it.
    pub advice: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct HeaderWire {
    pub name: String,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UnavailableWire {
    pub method: &'static str,
    pub reason: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConditionWire {
    /// One POST-policy condition: `{"field": "value"}` or `["op", "$field", value]`.
    #[schema(value_type = Value)]
    pub condition: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl<'a> ProfileDetail<'a> {
    /// The profile, with the gaps of its store's probe file when `enforcement` is given.
    pub fn of(profile: &'a Profile, store: &crate::sign::Store) -> ProfileDetail<'a> {
        let enforcement = store.enforcement.as_deref();
        let explained = explain(profile);
        let store_gaps = enforcement
            .map(|found| gaps(profile, found))
            .unwrap_or_default()
            .into_iter()
            .map(|gap| GapWire {
                method: gap.method.name(),
                constraint: gap.constraint.name(),
                verdict: gap.verdict.name(),
                advice: gap.advice,
            })
            .collect();
        ProfileDetail {
            summary: ProfileSummary::of(profile),
            bucket: profile.bucket(),
            store: profile.store(),
            store_kind: store.kind.name(),
            store_note: store.kind.note(),
            key: profile.key().to_string(),
            apps: profile.apps(),
            conditions: explained
                .iter()
                .filter_map(|item| {
                    let condition = item.condition.as_ref()?;
                    Some(ConditionWire {
                        condition: serde_json::from_str(&condition.to_json()).unwrap_or_default(),
                        note: item.note.clone(),
                    })
                })
                .collect(),
            put_headers: explained
                .iter()
                .filter_map(|item| {
                    let (name, value) = item.header.clone()?;
                    let (name, value) = store.carried(name, value);
                    Some(HeaderWire {
                        name: name.into_owned(),
                        value: value.into_owned(),
                        note: item.put_note.clone(),
                    })
                })
                .collect(),
            unavailable: Method::ALL
                .iter()
                .filter_map(|m| {
                    Some(UnavailableWire {
                        method: m.as_str(),
                        reason: profile.plan().unavailable(*m)?.to_owned(),
                    })
                })
                .collect(),
            store_gaps,
        }
    }
}

/// `{method, url, fields | headers, key, expires_at, max_size, profile, generation}` (+
/// `expiry_clamped` when true).
pub fn presign_response(signed: &Signed, profile: &str, generation: u64, upload_token: Option<&str>) -> String {
    let mut out = String::from("{");
    signed.write_json_members(&mut out);
    out.push_str(",\"profile\":");
    write_json_string(&mut out, profile);
    out.push_str(",\"generation\":");
    out.push_str(&generation.to_string());
    if signed.expiry_clamped() {
        out.push_str(",\"expiry_clamped\":true");
    }
    if let Some(token) = upload_token {
        out.push_str(",\"upload_token\":");
        // base64url, `.` and a key id (`vocabulary::TOKEN_KEY_ID`): nothing to escape.
        write_json_clean(&mut out, token);
    }
    out.push('}');
    out
}

/// `POST /v1/profiles/{name}/presign`'s answer: the form, and what a client shows and needs.
/// (Documentation only: the gateway writes this JSON by hand on the hot path.)
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct PresignResponse {
    /// `POST`: post `fields` and then the file (a form) to `url`; `PUT`: send the file as the
    /// body to `url` with `headers`.
    #[schema(value_type = String, pattern = "^(POST|PUT)$")]
    method: String,
    /// Where to send the upload.
    url: String,
    /// POST only: the form fields, in the order to send them; the file goes last.
    fields: Option<indexmap::IndexMap<String, String>>,
    /// PUT only: the headers to send with exactly these values (`Content-Length`, signed too,
    /// is the body's length, which HTTP clients set themselves).
    headers: Option<indexmap::IndexMap<String, String>>,
    /// The object key (a POST form's ends in a literal `${filename}` when the request named no
    /// file and the profile leaves it to the store).
    key: String,
    /// When the form stops being accepted (RFC 3339, whole seconds, UTC).
    #[schema(format = DateTime)]
    expires_at: String,
    /// The largest upload the signature admits, in bytes (a PUT's exact size).
    max_size: u64,
    /// The profile that signed it.
    profile: String,
    /// The generation of the profile set that signed it.
    generation: u64,
    /// Present (true) when the form's expiry was cut short to the credentials' expiry.
    expiry_clamped: Option<bool>,
}

/// `GET /v1/profiles`'s answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ProfileList<'a> {
    generation: u64,
    profiles: Vec<ProfileSummary<'a>>,
}

/// `GET /healthz` and `GET /readyz`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Health {
    /// `ok` or `ready`.
    status: String,
    /// `readyz` only: the served generation.
    generation: Option<u64>,
    /// `readyz` only: how many profiles are loaded.
    profiles: Option<u64>,
}
