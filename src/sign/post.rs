//! The POST renderer: a filled plan → a signed form (`{url, fields}` as the AWS SDKs return it).
//!
//! Every entry of the plan becomes one POST policy condition and, where the form carries a
//! value, the form field it covers; the signing fields follow. The policy is base64-encoded and
//! signed with SigV4.
//! Spec: <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-HTTPPOSTConstructPolicy.html>

use std::borrow::Cow;

use serde::Deserialize;
use time::OffsetDateTime;

use super::{ALGORITHM, Answer, Signer, amz_date, format_rfc3339, sigv4, validity};
use crate::profile::conditions::Condition;
use crate::profile::plan::Target;
use crate::profile::{Entry, Filled, Value};
use crate::text::write_json_string;

/// The casing of the signing fields, after the SDK a client was written for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FieldStyle {
    /// botocore's `generate_presigned_post`: `x-amz-algorithm`, `policy`, `x-amz-signature`.
    #[default]
    Botocore,
    /// The AWS SDK for JavaScript's `createPresignedPost`: a `bucket` field, `X-Amz-Algorithm`,
    /// `Policy`, `X-Amz-Signature`.
    JsSdk,
}

impl FieldStyle {
    /// The names of `[algorithm, credential, date, security token, policy, signature]`.
    fn names(self) -> [&'static str; 6] {
        match self {
            FieldStyle::Botocore => [
                "x-amz-algorithm",
                "x-amz-credential",
                "x-amz-date",
                "x-amz-security-token",
                "policy",
                "x-amz-signature",
            ],
            FieldStyle::JsSdk => [
                "X-Amz-Algorithm",
                "X-Amz-Credential",
                "X-Amz-Date",
                "X-Amz-Security-Token",
                "Policy",
                "X-Amz-Signature",
            ],
        }
    }
}

/// A signed form: post `fields` (in order) and then the file to `url`. Field names and fixed
/// values are borrowed from the profile. `Debug` hides the session token and the signature.
#[derive(Clone)]
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

impl std::fmt::Debug for PresignedPost<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fields: Vec<(&str, &str)> = self
            .fields
            .iter()
            .map(|(name, value)| (name.as_ref(), super::shown_value(name, value)))
            .collect();
        f.debug_struct("PresignedPost")
            .field("url", &self.url)
            .field("fields", &fields)
            .field("key", &self.key)
            .field("expires_at", &self.expires_at)
            .field("max_size", &self.max_size)
            .field("expiry_clamped", &self.expiry_clamped)
            .finish_non_exhaustive()
    }
}

impl PresignedPost<'_> {
    /// `{method, url, fields, key, expires_at, max_size}` members as compact JSON, without the
    /// braces. (Hand-written: it is on the signing path.)
    pub fn write_json_members(&self, out: &mut String) {
        let pairs = self.fields.iter().map(|(n, v)| (n.as_ref(), v.as_ref()));
        let answer = Answer {
            method: "POST",
            url: &self.url,
            key: &self.key,
            expires_at: self.expires_at,
            max_size: self.max_size,
        };
        answer.write_json_members("fields", pairs, out);
    }

    /// `{method, url, fields, key, expires_at, max_size}` as compact JSON.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        self.write_json_members(&mut out);
        out.push('}');
        out
    }
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

/// A POST form's fields, in order.
type FormFields<'p> = Vec<(Cow<'p, str>, Cow<'p, str>)>;

/// The policy conditions and form fields of a filled plan's entries, in plan order.
pub(super) fn conditions_and_fields<'p>(
    entries: Vec<Entry<'p>>,
    key: &str,
    style: FieldStyle,
) -> (Vec<Condition<'p>>, FormFields<'p>) {
    let mut conditions: Vec<Condition<'p>> = Vec::with_capacity(entries.len() + 4);
    let mut fields: FormFields<'p> = Vec::with_capacity(entries.len() + 6);
    for entry in entries {
        match (entry.name, entry.value) {
            (_, Value::Range { min, max }) => conditions.push(Condition::ContentLengthRange { min, max }),
            (Some(name), Value::Exact(value)) => {
                // botocore sends the bucket in the URL only; the JS SDK also as a field.
                if entry.target != Target::Bucket || style == FieldStyle::JsSdk {
                    fields.push((name.clone(), value.clone()));
                }
                conditions.push(Condition::Eq { field: name, value });
            }
            (Some(name), Value::Prefix(prefix)) => {
                // S3 compares the policy against the form value before it substitutes
                // ${filename}, so the condition is on the prefix (which always ends with `/`);
                // a content-type prefix is the client's to complete with the file's type.
                if entry.target == Target::Key {
                    fields.push((name.clone(), Cow::Owned(key.to_owned())));
                }
                conditions.push(Condition::StartsWith { field: name, prefix });
            }
            (None, _) => {}
        }
    }

    (conditions, fields)
}

/// Renders a filled plan as a signed POST form. Infallible: everything that could be wrong was
/// refused by admission.
pub fn post_form<'p>(
    filled: Filled<'p>,
    store: &Signer<'_>,
    now: OffsetDateTime,
    style: FieldStyle,
) -> PresignedPost<'p> {
    let (now, expires_at, expiry_clamped) = validity(store, now, filled.expires_in);

    let key = filled.key;
    let (conditions, mut fields) = conditions_and_fields(filled.entries, &key, style);

    let amz_date = amz_date(now);
    let date = &amz_date[..8];
    let credential = format!(
        "{}/{date}/{}/s3/aws4_request",
        store.credentials().access_key_id,
        store.region
    );
    let [
        algorithm,
        credential_name,
        date_name,
        token_name,
        policy_name,
        signature_name,
    ] = style.names();
    let mut signing: Vec<(&'static str, String)> = vec![
        (algorithm, ALGORITHM.to_owned()),
        (credential_name, credential),
        (date_name, amz_date.clone()),
    ];
    if let Some(token) = &store.credentials().session_token {
        signing.push((token_name, token.expose().to_owned()));
    }
    let signing_conditions: Vec<Condition> = signing
        .iter()
        .map(|(field, value)| Condition::eq(*field, value))
        .collect();
    let policy = policy_document_parts(expires_at, &[&conditions, &signing_conditions]);
    let policy_b64 = base64_simd::STANDARD.encode_to_string(policy.as_bytes());
    let signature = sigv4::signature(&store.signing_key(date), policy_b64.as_bytes());

    fields.extend(
        signing
            .into_iter()
            .map(|(field, value)| (Cow::Borrowed(field), Cow::Owned(value))),
    );
    fields.push((policy_name.into(), policy_b64.into()));
    fields.push((signature_name.into(), signature.into()));

    PresignedPost {
        url: store.bucket_url(&filled.profile.bucket),
        fields,
        key,
        expires_at,
        max_size: filled.max_size,
        expiry_clamped,
        policy,
    }
}
