//! The upload plan: one ordered list per profile of the constraints an upload must meet, each on
//! one named value of the upload (bucket, key, size, content type, each pinned field, each
//! metadata entry, the checksum, no-overwrite), with its kind and the POST form field and PUT
//! header that carry it.
//!
//! The compiler builds the plan once; admission fills it in for one request (`admit::Filled`);
//! the renderers in `sign` turn a filled plan into a POST form or a PUT URL; `explain`, the
//! profile endpoint and the policy-size estimate print or measure the same plan. Nothing else
//! lists constraints, so a constraint cannot be signed in one carrier and forgotten in another.

use std::fmt;
use std::sync::Arc;

use regex::Regex;
use serde::Deserialize;

use super::template::Template;
use super::{ContentTypeRule, MetadataValue, Profile, SizeRange};

/// How an upload is carried to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// A presigned POST: an HTML form or `FormData` with a signed policy.
    Post,
    /// A presigned PUT URL: a raw body with signed headers.
    Put,
}

impl Method {
    pub const ALL: [Method; 2] = [Method::Post, Method::Put];

    /// `POST` or `PUT`, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The checksum algorithms S3 verifies on upload.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64nvme,
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    pub const ALL: [ChecksumAlgorithm; 5] = [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32c,
        ChecksumAlgorithm::Crc64nvme,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ];

    /// The name a profile and a request use: `sha256`.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "crc32",
            ChecksumAlgorithm::Crc32c => "crc32c",
            ChecksumAlgorithm::Crc64nvme => "crc64nvme",
            ChecksumAlgorithm::Sha1 => "sha1",
            ChecksumAlgorithm::Sha256 => "sha256",
        }
    }

    /// The value of `x-amz-checksum-algorithm`: `SHA256`.
    pub fn s3_name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "CRC32",
            ChecksumAlgorithm::Crc32c => "CRC32C",
            ChecksumAlgorithm::Crc64nvme => "CRC64NVME",
            ChecksumAlgorithm::Sha1 => "SHA1",
            ChecksumAlgorithm::Sha256 => "SHA256",
        }
    }

    /// The form field and header carrying the value: `x-amz-checksum-sha256`.
    pub fn field(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "x-amz-checksum-crc32",
            ChecksumAlgorithm::Crc32c => "x-amz-checksum-crc32c",
            ChecksumAlgorithm::Crc64nvme => "x-amz-checksum-crc64nvme",
            ChecksumAlgorithm::Sha1 => "x-amz-checksum-sha1",
            ChecksumAlgorithm::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// The digest's length in bytes (its base64 form is what S3 takes).
    pub fn digest_bytes(self) -> usize {
        match self {
            ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c => 4,
            ChecksumAlgorithm::Crc64nvme => 8,
            ChecksumAlgorithm::Sha1 => 20,
            ChecksumAlgorithm::Sha256 => 32,
        }
    }
}

/// What a profile says about checksums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumRule {
    /// Whether every request must declare one.
    pub required: bool,
    /// The algorithms a request may use.
    pub algorithms: Vec<ChecksumAlgorithm>,
}

impl Default for ChecksumRule {
    fn default() -> ChecksumRule {
        ChecksumRule {
            required: false,
            algorithms: ChecksumAlgorithm::ALL.to_vec(),
        }
    }
}

/// The value of the upload a rule constrains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Bucket,
    Key,
    Size,
    ContentType,
    /// A pinned field: the profile's `fields[i]`.
    Field(usize),
    /// A metadata entry: the profile's `metadata[i]`.
    Metadata(usize),
    /// The per-upload marker (`x-amz-meta-postgate-upload`): a value fresh for every grant,
    /// sealed in the upload token, by which `complete` knows the object is this upload's bytes.
    Marker,
    /// `x-amz-checksum-algorithm`, which names the algorithm in a POST form.
    ChecksumAlgorithm,
    /// `x-amz-checksum-<algorithm>`: the declared digest.
    Checksum,
    /// The object must not exist yet (`If-None-Match: *`).
    NoOverwrite,
}

/// What a rule admits, with the profile's data for it. Admission fills each rule by its check
/// (`admit::fill`), `explain` prints it, and `Filled::bounds` reads the filled values back.
#[derive(Debug, Clone)]
pub enum Check {
    /// Exactly this: the bucket, a pinned field, an exact content type, `If-None-Match: *`.
    Exact(String),
    /// The key template, filled per signature (behind the staging prefix when the profile
    /// promotes); a POST may leave a trailing `${filename}` to the store, signed as a prefix.
    Key(Template),
    /// A template filled per signature: a fixed metadata value.
    Template(Template),
    /// The request's value, one of these (content type, metadata).
    OneOf(Vec<String>),
    /// The request's value, matching this full-match pattern (its source kept for messages).
    Pattern(Arc<Regex>, String),
    /// The request's value starting with this; unnamed, a POST signs the prefix itself.
    Prefix(String),
    /// A size range in bytes, inclusive; exact when the request names a size.
    Range(SizeRange),
    /// The request's checksum, in one of these algorithms: its algorithm (`ChecksumAlgorithm`)
    /// or its digest (`Checksum`).
    Checksum(Vec<ChecksumAlgorithm>),
    /// A value fresh for every grant: the grant's UUID (the marker).
    Fresh,
    /// Nothing the request may name: a POST sends no field, a PUT signs this (the content type
    /// of a profile without a content-type rule).
    Default(&'static str),
}

impl Check {
    /// The check's kind, as the plan snapshots print it.
    pub fn kind(&self) -> &'static str {
        match self {
            Check::Exact(_) => "exact",
            Check::Key(_) => "key",
            Check::Template(_) => "template",
            Check::OneOf(_) => "one-of",
            Check::Pattern(..) => "pattern",
            Check::Prefix(_) => "prefix",
            Check::Range(_) => "range",
            Check::Checksum(_) => "checksum",
            Check::Fresh => "fresh",
            Check::Default(_) => "default",
        }
    }
}

/// Where one method carries a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// In the URL (bucket and key of a PUT, the bucket of a POST).
    Url,
    /// A form field or header of this name; the checksum's name follows the algorithm.
    Named(&'static str),
    /// A form field or header named by the profile (pinned fields, metadata).
    ProfileNamed,
    /// POST: `content-length-range`; PUT: the exact `Content-Length`.
    Length,
    /// Carried without a field or header of its own: a PUT names the checksum's algorithm by
    /// the header that carries the digest; a POST form without a content-type rule sends no
    /// `Content-Type` (its policy refuses one) and the store stores its default type.
    Implied,
    /// This method cannot carry the value (the rule then makes the method unavailable).
    None,
}

/// One constraint on one value of the upload: what it constrains, how, and what carries it.
#[derive(Debug, Clone)]
pub struct Rule {
    pub target: Target,
    pub check: Check,
    /// Whether a request may leave the value out (optional metadata, a checksum not required).
    pub optional: bool,
    pub post: Carrier,
    pub put: Carrier,
}

/// Why a method is unavailable for a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub method: Method,
    pub reason: String,
}

/// A profile's rules, in the order forms list them, and which methods can carry them.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    rules: Vec<Rule>,
    /// The methods the profile can be served with, and why each other one is not.
    methods: Vec<Method>,
    unavailable: Vec<Unavailable>,
    multipart_unavailable: Option<String>,
}

/// The Content-Type a PUT signs for a profile without a content-type rule: what S3 stores for a
/// form without one, and never a type a browser renders.
pub const UNRULED_PUT_TYPE: &str = "application/octet-stream";

/// The metadata name of the per-upload marker (`Target::Marker`); a profile may not declare it.
pub const MARKER_NAME: &str = "postgate-upload";
/// The form field and header that carry the marker.
pub const MARKER_FIELD: &str = "x-amz-meta-postgate-upload";
/// The marker's length: a hyphenated UUID.
pub const MARKER_BYTES: usize = 36;

pub use crate::vocabulary::{POST_ONLY_FIELDS, put_header};

impl Plan {
    /// The plan of a compiled profile; `allowed` is the profile's `methods` (`None`: every
    /// method that can carry the profile). The compiler refuses a profile whose plan has no
    /// method.
    pub fn build(profile: &Profile, allowed: Option<&[Method]>) -> Plan {
        let mut rules = Vec::with_capacity(6 + profile.fields.len() + profile.metadata.len());
        let rule = |target, check, post, put| Rule {
            target,
            check,
            optional: false,
            post,
            put,
        };
        let named = Carrier::Named;
        rules.push(rule(
            Target::Bucket,
            Check::Exact(profile.bucket.clone()),
            named("bucket"),
            Carrier::Url,
        ));
        rules.push(rule(
            Target::Key,
            Check::Key(profile.key.clone()),
            named("key"),
            Carrier::Url,
        ));
        rules.push(rule(
            Target::Size,
            Check::Range(profile.size),
            Carrier::Length,
            Carrier::Length,
        ));
        rules.push(content_type_rule(profile.content_type.as_ref()));
        profile_named_rules(profile, &mut rules);
        rules.push(rule(
            Target::Marker,
            Check::Fresh,
            named(MARKER_FIELD),
            named(MARKER_FIELD),
        ));
        let optional = !profile.checksum.required;
        let algorithms = || Check::Checksum(profile.checksum.algorithms.clone());
        rules.push(Rule {
            optional,
            ..rule(
                Target::ChecksumAlgorithm,
                algorithms(),
                named("x-amz-checksum-algorithm"),
                Carrier::Implied,
            )
        });
        rules.push(Rule {
            optional,
            ..rule(
                Target::Checksum,
                algorithms(),
                Carrier::ProfileNamed,
                Carrier::ProfileNamed,
            )
        });
        if !profile.overwrite {
            rules.push(rule(
                Target::NoOverwrite,
                Check::Exact("*".to_owned()),
                Carrier::None,
                named("If-None-Match"),
            ));
        }
        let (methods, unavailable) = methods(profile, &rules, allowed);
        let multipart_unavailable = multipart_unavailable(profile, &rules);
        Plan {
            rules,
            methods,
            unavailable,
            multipart_unavailable,
        }
    }

    /// Why a multipart upload is unavailable; `None` when the profile takes one.
    pub fn multipart_unavailable(&self) -> Option<&str> {
        self.multipart_unavailable.as_deref()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The methods the profile can be served with, POST first.
    pub fn methods(&self) -> &[Method] {
        &self.methods
    }

    pub fn allows(&self, method: Method) -> bool {
        self.methods.contains(&method)
    }

    /// Why `method` is unavailable; `None` when it is available.
    pub fn unavailable(&self, method: Method) -> Option<&str> {
        self.unavailable
            .iter()
            .find(|u| u.method == method)
            .map(|u| u.reason.as_str())
    }
}

/// The content-type rule. Without one a POST form sends no Content-Type (its policy refuses one,
/// and the store stores its default), while a PUT signs `application/octet-stream`: an unsigned
/// type would be the uploader's to choose (`text/html`).
fn content_type_rule(rule: Option<&ContentTypeRule>) -> Rule {
    let (check, post) = match rule {
        Some(ContentTypeRule::Prefix(prefix)) => (Check::Prefix(prefix.clone()), Carrier::Named("Content-Type")),
        Some(ContentTypeRule::OneOf(types)) => (Check::OneOf(types.clone()), Carrier::Named("Content-Type")),
        Some(ContentTypeRule::Exact(exact)) => (Check::Exact(exact.clone()), Carrier::Named("Content-Type")),
        None => (Check::Default(UNRULED_PUT_TYPE), Carrier::Implied),
    };
    Rule {
        target: Target::ContentType,
        check,
        optional: false,
        post,
        put: Carrier::Named("Content-Type"),
    }
}

/// The rules of the profile's pinned fields and metadata, named by the profile.
fn profile_named_rules(profile: &Profile, rules: &mut Vec<Rule>) {
    for (i, (field, value)) in profile.fields.iter().enumerate() {
        // A header value is ASCII (browsers refuse others in `fetch`). The header's name is
        // looked up here, once, not per request.
        let put = match put_header(field) {
            Some(header) if value.is_ascii() => Carrier::Named(header),
            _ => Carrier::None,
        };
        rules.push(Rule {
            target: Target::Field(i),
            check: Check::Exact(value.clone()),
            optional: false,
            post: Carrier::ProfileNamed,
            put,
        });
    }
    for (i, metadata) in profile.metadata.iter().enumerate() {
        let check = match &metadata.value {
            MetadataValue::Fixed(template) => Check::Template(template.clone()),
            MetadataValue::OneOf(values) => Check::OneOf(values.clone()),
            MetadataValue::Pattern(regex, source) => Check::Pattern(regex.clone(), source.clone()),
        };
        rules.push(Rule {
            target: Target::Metadata(i),
            check,
            optional: !metadata.required,
            post: Carrier::ProfileNamed,
            put: Carrier::ProfileNamed,
        });
    }
}

/// Multipart carries the rules as a PUT does (headers on the create call, each part's
/// `Content-Length`), except a checksum of the whole file, which no part carries.
fn multipart_unavailable(profile: &Profile, rules: &[Rule]) -> Option<String> {
    if profile.multipart.is_none() {
        Some("this profile takes no multipart uploads; its operator adds `multipart:` to allow them".to_owned())
    } else if let Some(rule) = rules.iter().find(|rule| rule.put == Carrier::None) {
        Some(why_not(profile, Method::Put, rule.target))
    } else if profile.checksum.required {
        Some("a multipart upload carries no checksum of the whole file, and this profile requires one".to_owned())
    } else {
        None
    }
}

/// The methods that can carry every rule (and that `allowed` lists), and why each other is not.
fn methods(profile: &Profile, rules: &[Rule], allowed: Option<&[Method]>) -> (Vec<Method>, Vec<Unavailable>) {
    let mut methods = Vec::new();
    let mut unavailable = Vec::new();
    for method in Method::ALL {
        let blocked = rules.iter().find(|rule| rule.carrier(method) == Carrier::None);
        let reason = match (blocked, allowed) {
            (Some(rule), _) => Some(why_not(profile, method, rule.target)),
            (None, Some(list)) if !list.contains(&method) => {
                Some(format!("the profile's `methods` does not list {}", method.as_str()))
            }
            _ => None,
        };
        match reason {
            Some(reason) => unavailable.push(Unavailable { method, reason }),
            None => methods.push(method),
        }
    }
    (methods, unavailable)
}

impl Rule {
    pub fn carrier(&self, method: Method) -> Carrier {
        match method {
            Method::Post => self.post,
            Method::Put => self.put,
        }
    }
}

fn why_not(profile: &Profile, method: Method, target: Target) -> String {
    match (method, target) {
        (Method::Put, Target::Field(i)) if put_header(&profile.fields[i].0).is_some() => format!(
            "fields.{} is not ASCII, which a PUT header cannot carry: the profile is POST-only",
            profile.fields[i].0
        ),
        (Method::Put, Target::Field(i)) => {
            let field = &profile.fields[i].0;
            let why = POST_ONLY_FIELDS
                .iter()
                .find(|(name, _)| name == field)
                .map_or("PUT has no header for it", |(_, why)| why);
            format!("fields.{field} makes the profile POST-only: {why}")
        }
        (Method::Post, Target::NoOverwrite) => "`overwrite: false` makes the profile PUT-only: S3 takes no \
             condition on an existing object with a POST form, and a form can be replayed until it expires"
            .to_owned(),
        (method, target) => format!("{method} cannot carry {target:?}"),
    }
}
