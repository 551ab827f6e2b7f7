//! The signer: an admitted `Upload` + a `Store` + `now` → a `PresignedPost` (`{url, fields}` as
//! the AWS SDKs return it).
//!
//! Pure: `now` is a parameter; no IO. Builds the POST policy document (expiration + conditions),
//! base64-encodes it and signs it with SigV4.
//! Spec: <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-HTTPPOSTConstructPolicy.html>

pub mod sigv4;

use std::borrow::Cow;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use time::OffsetDateTime;

use crate::profile::conditions::{Condition, write_json_string};
use crate::profile::{Upload, push_digits};
use crate::secret::Secret;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Credentials a store signs with.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    /// When temporary credentials stop working; forms never outlive them.
    pub expires_at: Option<OffsetDateTime>,
}

/// Where a store's endpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// AWS S3's regional endpoint.
    Aws,
    /// Any S3-compatible endpoint, `scheme://host[:port]` without a trailing slash.
    Custom(String),
}

/// How the bucket appears in the form URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Addressing {
    /// Virtual-hosted on AWS (path-style for bucket names with dots); path-style elsewhere.
    #[default]
    Auto,
    Path,
    Virtual,
}

/// A named S3 endpoint with the credentials that sign for it.
#[derive(Debug)]
pub struct Store {
    pub name: String,
    pub region: String,
    pub endpoint: Endpoint,
    pub addressing: Addressing,
    pub credentials: Credentials,
    /// The derived signing key for one day, reused until the date changes.
    signing_key_cache: Mutex<Option<(String, [u8; 32])>>,
}

impl Store {
    pub fn new(
        name: &str,
        region: &str,
        endpoint: Endpoint,
        addressing: Addressing,
        credentials: Credentials,
    ) -> Store {
        Store {
            name: name.to_owned(),
            region: region.to_owned(),
            endpoint,
            addressing,
            credentials,
            signing_key_cache: Mutex::new(None),
        }
    }

    /// The URL a form for `bucket` is posted to.
    pub fn bucket_url(&self, bucket: &str) -> String {
        match (&self.endpoint, self.addressing) {
            (Endpoint::Aws, Addressing::Path) => {
                format!("https://s3.{}.amazonaws.com/{bucket}", self.region)
            }
            // Dotted names break the wildcard TLS certificate of virtual-hosted URLs.
            (Endpoint::Aws, Addressing::Auto) if bucket.contains('.') => {
                format!("https://s3.{}.amazonaws.com/{bucket}", self.region)
            }
            (Endpoint::Aws, _) => format!("https://{bucket}.s3.{}.amazonaws.com/", self.region),
            (Endpoint::Custom(base), Addressing::Virtual) => match base.split_once("://") {
                Some((scheme, host)) => format!("{scheme}://{bucket}.{host}/"),
                None => format!("{base}/{bucket}"),
            },
            (Endpoint::Custom(base), _) => format!("{base}/{bucket}"),
        }
    }

    fn signing_key(&self, date: &str) -> [u8; 32] {
        let mut cache = self.signing_key_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached_date, key)) = cache.as_ref()
            && cached_date == date
        {
            return *key;
        }
        let key = sigv4::signing_key(self.credentials.secret_access_key.expose(), date, &self.region, "s3");
        *cache = Some((date.to_owned(), key));
        key
    }
}

/// A signed form: post `fields` (in order) and then the file to `url`. Field names and fixed
/// values are borrowed from the profile.
#[derive(Debug, Clone)]
pub struct PresignedPost<'p> {
    pub url: String,
    pub fields: Vec<(Cow<'p, str>, Cow<'p, str>)>,
    pub key: String,
    pub expires_at: OffsetDateTime,
    pub max_size: u64,
    /// True when the store's credentials expire before the profile's `expires_in`.
    pub expiry_clamped: bool,
    /// The POST policy document that was signed (not base64).
    pub policy: String,
}

impl PresignedPost<'_> {
    /// The members of `{url, fields, key, expires_at, max_size}` as compact JSON, without the
    /// braces, so an edge can add its own members. (Hand-written: it is on the signing path.)
    pub fn write_json_members(&self, out: &mut String) {
        out.reserve(256 + self.fields.iter().map(|(n, v)| n.len() + v.len() + 6).sum::<usize>());
        out.push_str("\"url\":");
        write_json_string(out, &self.url);
        out.push_str(",\"fields\":{");
        for (i, (name, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_string(out, name);
            out.push(':');
            write_json_string(out, value);
        }
        out.push_str("},\"key\":");
        write_json_string(out, &self.key);
        out.push_str(",\"expires_at\":");
        write_json_string(out, &format_rfc3339(self.expires_at));
        out.push_str(",\"max_size\":");
        out.push_str(&self.max_size.to_string());
    }

    /// `{url, fields, key, expires_at, max_size}` as compact JSON.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        self.write_json_members(&mut out);
        out.push('}');
        out
    }
}

/// `2015-12-29T01:00:00Z` (UTC, whole seconds).
pub fn format_rfc3339(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let mut out = String::with_capacity(20);
    push_digits(&mut out, at.year().unsigned_abs(), 4);
    out.push('-');
    push_digits(&mut out, u8::from(at.month()).into(), 2);
    out.push('-');
    push_digits(&mut out, at.day().into(), 2);
    out.push('T');
    push_digits(&mut out, at.hour().into(), 2);
    out.push(':');
    push_digits(&mut out, at.minute().into(), 2);
    out.push(':');
    push_digits(&mut out, at.second().into(), 2);
    out.push('Z');
    out
}

/// The POST policy document: `{"expiration": …, "conditions": […]}`, spaced as botocore does.
pub fn policy_document(expiration: OffsetDateTime, conditions: &[Condition]) -> String {
    policy_document_parts(expiration, &[conditions])
}

/// `policy_document` over the concatenation of `parts`.
fn policy_document_parts(expiration: OffsetDateTime, parts: &[&[Condition]]) -> String {
    let count: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = String::with_capacity(96 + count * 64);
    out.push_str("{\"expiration\": ");
    write_json_string(&mut out, &format_rfc3339(expiration));
    out.push_str(", \"conditions\": [");
    for (i, condition) in parts.iter().flat_map(|p| p.iter()).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        condition.write_json(&mut out);
    }
    out.push_str("]}");
    out
}

/// Signs an admitted upload. Infallible: everything that could be wrong was refused earlier.
pub fn presign<'p>(upload: Upload<'p>, store: &Store, now: OffsetDateTime) -> PresignedPost<'p> {
    let now = now.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).unwrap_or(now);
    let mut expires_at = now + upload.expires_in;
    let mut expiry_clamped = false;
    if let Some(limit) = store.credentials.expires_at
        && limit < expires_at
    {
        expires_at = limit.max(now);
        expiry_clamped = true;
    }

    let amz_date = amz_date(now);
    let date = &amz_date[..8];
    let credential = format!(
        "{}/{date}/{}/s3/aws4_request",
        store.credentials.access_key_id, store.region
    );

    let mut signing = vec![
        ("x-amz-algorithm", ALGORITHM.to_owned()),
        ("x-amz-credential", credential),
        ("x-amz-date", amz_date.clone()),
    ];
    if let Some(token) = &store.credentials.session_token {
        signing.push(("x-amz-security-token", token.expose().to_owned()));
    }
    let signing_conditions: Vec<Condition> = signing
        .iter()
        .map(|(field, value)| Condition::eq(*field, value))
        .collect();
    let policy = policy_document_parts(expires_at, &[&upload.conditions, &signing_conditions]);
    let policy_b64 = STANDARD.encode(policy.as_bytes());
    let signature = sigv4::signature(&store.signing_key(date), policy_b64.as_bytes());

    let mut fields = upload.fields;
    fields.reserve(signing.len() + 2);
    fields.extend(
        signing
            .into_iter()
            .map(|(field, value)| (Cow::Borrowed(field), Cow::Owned(value))),
    );
    fields.push(("policy".into(), policy_b64.into()));
    fields.push(("x-amz-signature".into(), signature.into()));

    PresignedPost {
        url: store.bucket_url(&upload.profile.bucket),
        fields,
        key: upload.key,
        expires_at,
        max_size: upload.max_size,
        expiry_clamped,
        policy,
    }
}

/// `YYYYMMDDTHHMMSSZ`, the SigV4 date.
fn amz_date(at: OffsetDateTime) -> String {
    let mut out = String::with_capacity(16);
    push_digits(&mut out, at.year().unsigned_abs(), 4);
    push_digits(&mut out, u8::from(at.month()).into(), 2);
    push_digits(&mut out, at.day().into(), 2);
    out.push('T');
    push_digits(&mut out, at.hour().into(), 2);
    push_digits(&mut out, at.minute().into(), 2);
    push_digits(&mut out, at.second().into(), 2);
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn response_json_is_valid_and_ordered() {
        let post = PresignedPost {
            url: "https://b.s3.eu-west-1.amazonaws.com/".into(),
            fields: vec![
                ("key".into(), "a/\"q\"/${filename}".into()),
                ("x-amz-meta-note".into(), "ünï\n".into()),
            ],
            key: "a/\"q\"/${filename}".into(),
            expires_at: datetime!(2026-01-02 03:04:05 UTC),
            max_size: 42,
            expiry_clamped: false,
            policy: String::new(),
        };
        let expected = serde_json::json!({
            "url": "https://b.s3.eu-west-1.amazonaws.com/",
            "fields": {"key": "a/\"q\"/${filename}", "x-amz-meta-note": "ünï\n"},
            "key": "a/\"q\"/${filename}",
            "expires_at": "2026-01-02T03:04:05Z",
            "max_size": 42,
        });
        // Byte-equal to serde_json's compact output of the same object, key order included.
        assert_eq!(post.to_json(), serde_json::to_string(&expected).unwrap());
    }

    fn upload_for(profile: &crate::profile::Profile) -> Upload<'_> {
        let ctx = crate::profile::Context {
            app: "web",
            now: datetime!(2026-11-21 12:00:00 UTC),
            uuid: uuid::Uuid::nil(),
        };
        crate::profile::admit(profile, &Default::default(), &ctx).unwrap()
    }

    fn profile(expires_in: &str) -> crate::profile::Profile {
        let yaml = format!("bucket: b-1\nkey: \"k/${{uuid}}\"\nsize: {{ max: 10 }}\nexpires_in: {expires_in}\n");
        crate::profile::parse(&crate::profile::ProfileName::new("p").unwrap(), &yaml).unwrap()
    }

    fn store_with(session_token: Option<&str>, expires_at: Option<OffsetDateTime>) -> Store {
        let credentials = Credentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Secret::new("s"),
            session_token: session_token.map(Secret::new),
            expires_at,
        };
        Store::new("default", "eu-west-1", Endpoint::Aws, Addressing::Auto, credentials)
    }

    #[test]
    fn a_session_token_is_a_field_and_a_condition() {
        let profile = profile("10m");
        let now = datetime!(2026-11-21 12:00:00 UTC);
        let post = presign(upload_for(&profile), &store_with(Some("TOKEN/123"), None), now);
        assert!(
            post.fields
                .contains(&("x-amz-security-token".into(), "TOKEN/123".into()))
        );
        assert!(
            post.policy.contains(r#"{"x-amz-security-token": "TOKEN/123"}"#),
            "{}",
            post.policy
        );
        let post = presign(upload_for(&profile), &store_with(None, None), now);
        assert!(!post.fields.iter().any(|(n, _)| n == "x-amz-security-token"));
        assert!(!post.policy.contains("x-amz-security-token"));
    }

    #[test]
    fn forms_never_outlive_the_credentials() {
        let profile = profile("1h");
        let now = datetime!(2026-11-21 12:00:00.750 UTC);
        let post = presign(upload_for(&profile), &store_with(None, None), now);
        assert_eq!(post.expires_at, datetime!(2026-11-21 13:00:00 UTC));
        assert!(!post.expiry_clamped);
        let soon = datetime!(2026-11-21 12:20:00 UTC);
        let post = presign(upload_for(&profile), &store_with(Some("t"), Some(soon)), now);
        assert_eq!(post.expires_at, soon);
        assert!(post.expiry_clamped);
        assert!(
            post.policy
                .starts_with(r#"{"expiration": "2026-11-21T12:20:00Z", "conditions": ["#)
        );
    }

    #[test]
    fn dates() {
        let at = datetime!(2026-01-02 03:04:05.999 UTC);
        assert_eq!(amz_date(at), "20260102T030405Z");
        assert_eq!(format_rfc3339(at), "2026-01-02T03:04:05Z");
        let offset = datetime!(2026-01-02 03:04:05 +02:00);
        assert_eq!(format_rfc3339(offset), "2026-01-02T01:04:05Z");
    }

    #[test]
    fn bucket_urls() {
        let credentials = Credentials {
            access_key_id: "AK".into(),
            secret_access_key: Secret::new("s"),
            session_token: None,
            expires_at: None,
        };
        let store =
            |endpoint: Endpoint, addressing| Store::new("s", "eu-west-1", endpoint, addressing, credentials.clone());
        let custom = || Endpoint::Custom("http://127.0.0.1:9000".into());
        let cases = [
            (
                store(Endpoint::Aws, Addressing::Auto),
                "b1",
                "https://b1.s3.eu-west-1.amazonaws.com/",
            ),
            (
                store(Endpoint::Aws, Addressing::Auto),
                "my.bucket",
                "https://s3.eu-west-1.amazonaws.com/my.bucket",
            ),
            (
                store(Endpoint::Aws, Addressing::Path),
                "b1",
                "https://s3.eu-west-1.amazonaws.com/b1",
            ),
            (store(custom(), Addressing::Auto), "b1", "http://127.0.0.1:9000/b1"),
            (store(custom(), Addressing::Virtual), "b1", "http://b1.127.0.0.1:9000/"),
        ];
        for (store, bucket, url) in cases {
            assert_eq!(store.bucket_url(bucket), url);
        }
    }
}
