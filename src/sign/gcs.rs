//! Google Cloud Storage (`kind: gcs`): the same filled plan, rendered in the XML API's words and
//! signed with Google's V4 (`GOOG4-HMAC-SHA256` for HMAC keys, `GOOG4-RSA-SHA256` for service
//! accounts). The plan names what it carries as S3 does; `carried` says how GCS carries each
//! name, and `problems` what a GCS store cannot carry at all (refused when the profile set is
//! built, so no signature leaves a rule out).
//!
//! Spec: <https://cloud.google.com/storage/docs/xml-api/post-object-forms>,
//! <https://cloud.google.com/storage/docs/authentication/signatures>. Proven by Google's own
//! conformance vectors (`tests/it/gcs_vectors.rs`); no emulator checks GCS signatures.

use std::borrow::Cow;

use time::OffsetDateTime;

use super::sigv4::{GOOG4_REGION, GOOG4_SERVICE, Key};
use super::{PresignedPost, Signer, amz_date, format_rfc3339, validity};
use crate::profile::conditions::Condition;
use crate::profile::plan::MARKER_FIELD;
use crate::profile::{Filled, Profile};

/// S3's headers the XML API has no use for, left out of the gateway's own calls: the expected
/// size of a completed upload (GCS checks the parts) and the checksum mode of a HEAD.
const DROPPED: &[&str] = &["x-amz-mp-object-size", "x-amz-checksum-mode"];

/// The pinned fields a GCS store carries as they are named (or renamed in `RENAMED`).
const CARRIED_FIELDS: &[&str] = &[
    "acl",
    "Cache-Control",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "success_action_redirect",
    "success_action_status",
    "x-amz-storage-class",
];

/// GCS's canned ACLs (the XML API's `x-goog-acl`) a profile may pin.
const CANNED_ACLS: &[&str] = &[
    "private",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "project-private",
    "public-read",
    "public-read-write",
    "authenticated-read",
];

/// GCS's storage classes (`x-goog-storage-class`).
const STORAGE_CLASSES: &[&str] = &["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"];

/// `If-None-Match: *` as the XML API says it: only if no live generation exists.
pub const NO_OVERWRITE: (&str, &str) = ("x-goog-if-generation-match", "0");

/// How GCS carries a plan entry or a store call's header named `name` with `value`: the XML
/// API spells every `x-amz-*` header `x-goog-*` (`x-goog-meta-*`, `x-goog-acl`,
/// `x-goog-copy-source`, …); `If-None-Match: *` is `x-goog-if-generation-match: 0`. Other names
/// (`Content-Type`, `key`) are GCS's too; what GCS cannot carry is refused by `problems`.
pub fn carried<'a>(name: Cow<'a, str>, value: Cow<'a, str>) -> (Cow<'a, str>, Cow<'a, str>) {
    if name.eq_ignore_ascii_case("If-None-Match") {
        return (NO_OVERWRITE.0.into(), NO_OVERWRITE.1.into());
    }
    if name.len() > 6 && name[..6].eq_ignore_ascii_case("x-amz-") {
        return (format!("x-goog-{}", name[6..].to_ascii_lowercase()).into(), value);
    }
    (name, value)
}

/// The headers of one of the gateway's own calls as the XML API takes them (`carried`), S3's
/// that GCS has no use for left out.
pub fn store_call_headers(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| !DROPPED.iter().any(|d| d.eq_ignore_ascii_case(name)))
        .map(|(name, value)| {
            let (name, value) = carried((*name).into(), (*value).into());
            (name.into_owned(), value.into_owned())
        })
        .collect()
}

/// The marker as a GCS object's metadata carries it.
pub fn marker_field() -> String {
    carried(MARKER_FIELD.into(), "".into()).0.into_owned()
}

/// What a GCS store cannot sign for `profile`, one sentence each (empty: it can serve it).
pub fn problems(profile: &Profile) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, value) in &profile.fields {
        if !CARRIED_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(name)) {
            problems.push(format!(
                "fields.{name}: a GCS store has no such field (it carries {}); GCS encrypts every object at rest, has no object tags, and sets retention per bucket",
                CARRIED_FIELDS.join(", ")
            ));
        } else if name == "x-amz-storage-class" && !STORAGE_CLASSES.contains(&value.as_str()) {
            problems.push(format!(
                "fields.x-amz-storage-class: `{value}` is not a GCS storage class ({})",
                STORAGE_CLASSES.join(", ")
            ));
        } else if name == "acl" && !CANNED_ACLS.contains(&value.as_str()) {
            problems.push(format!(
                "fields.acl: `{value}` is not a GCS canned ACL ({})",
                CANNED_ACLS.join(", ")
            ));
        }
    }
    if profile.checksum.required {
        problems.push(
            "checksum.required: a GCS store takes no x-amz-checksum-* (the XML API checks MD5 and CRC32C only)"
                .to_owned(),
        );
    }
    problems
}

/// The POST policy document as Google's client libraries write it: compact, `conditions` first,
/// every non-ASCII character escaped (`\u00e9`), the signing fields last.
pub fn policy_document(expiration: OffsetDateTime, conditions: &[Condition<'_>]) -> String {
    let mut out = String::with_capacity(160 + conditions.len() * 64);
    out.push_str("{\"conditions\":[");
    for (i, condition) in conditions.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match condition {
            Condition::Eq { field, value } => {
                out.push('{');
                write_json_ascii(&mut out, field);
                out.push(':');
                write_json_ascii(&mut out, value);
                out.push('}');
            }
            Condition::StartsWith { field, prefix } => {
                out.push_str("[\"starts-with\",");
                write_json_ascii(&mut out, &format!("${field}"));
                out.push(',');
                write_json_ascii(&mut out, prefix);
                out.push(']');
            }
            Condition::ContentLengthRange { min, max } => {
                out.push_str(&format!("[\"content-length-range\",{min},{max}]"));
            }
        }
    }
    out.push_str("],\"expiration\":");
    write_json_ascii(&mut out, &format_rfc3339(expiration));
    out.push('}');
    out
}

/// `text` as a JSON string with every non-ASCII character as `\uXXXX` (UTF-16, lowercase hex).
fn write_json_ascii(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// Who signs a GCS POST policy and when.
pub struct PolicySigner<'a> {
    /// The HMAC key id or the service account's email.
    pub access_id: &'a str,
    /// The key of `amz_date`'s day (HMAC) or the RSA key.
    pub key: Key<'a>,
    /// `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
}

/// A signed policy: the document, and the fields that carry it (`x-goog-algorithm`,
/// `-credential`, `-date`, `policy`, `x-goog-signature`), in that order.
pub struct SignedPolicy {
    pub document: String,
    pub fields: Vec<(&'static str, String)>,
}

/// Signs `conditions` (the profile's and the request's) until `expiration`; the signing
/// fields' own conditions are appended.
pub fn sign_policy(
    conditions: &[Condition<'_>],
    expiration: OffsetDateTime,
    signer: &PolicySigner<'_>,
) -> SignedPolicy {
    let credential = format!(
        "{}/{}/{GOOG4_REGION}/{GOOG4_SERVICE}/{}",
        signer.access_id,
        &signer.amz_date[..8],
        signer.key.dialect().terminator
    );
    let signing = [
        ("x-goog-date", signer.amz_date.to_owned()),
        ("x-goog-credential", credential),
        ("x-goog-algorithm", signer.key.algorithm().to_owned()),
    ];
    let mut all: Vec<Condition> = conditions.to_vec();
    all.extend(signing.iter().map(|(name, value)| Condition::eq(*name, value.as_str())));
    let document = policy_document(expiration, &all);
    let policy = base64_simd::STANDARD.encode_to_string(document.as_bytes());
    let signature = signer.key.signature(policy.as_bytes());
    let [date, credential, algorithm] = signing;
    SignedPolicy {
        document,
        fields: vec![
            algorithm,
            credential,
            date,
            ("policy", policy),
            ("x-goog-signature", signature),
        ],
    }
}

/// Renders a filled plan as a signed GCS POST form.
pub fn post_form<'p>(filled: Filled<'p>, store: &Signer<'_>, now: OffsetDateTime) -> PresignedPost<'p> {
    let (now, expires_at, expiry_clamped) = validity(store, now, filled.expires_in);
    let key = filled.key;
    let (conditions, fields) = super::post::conditions_and_fields(filled.entries, &key, super::FieldStyle::Botocore);
    let conditions: Vec<Condition<'p>> = conditions
        .into_iter()
        .map(|condition| match condition {
            Condition::Eq { field, value } => {
                let (field, value) = carried(field, value);
                Condition::Eq { field, value }
            }
            Condition::StartsWith { field, prefix } => Condition::StartsWith {
                field: carried(field, "".into()).0,
                prefix,
            },
            range => range,
        })
        .collect();
    let mut fields: Vec<(Cow<'p, str>, Cow<'p, str>)> =
        fields.into_iter().map(|(name, value)| carried(name, value)).collect();
    let amz_date = amz_date(now);
    let day_key = store.signing_key(&amz_date[..8]);
    let signed = sign_policy(
        &conditions,
        expires_at,
        &PolicySigner {
            access_id: &store.credentials().access_key_id,
            key: store.key(&day_key),
            amz_date: &amz_date,
        },
    );
    fields.extend(
        signed
            .fields
            .into_iter()
            .map(|(name, value)| (Cow::Borrowed(name), Cow::Owned(value))),
    );
    PresignedPost {
        url: store.bucket_url(&filled.profile.bucket),
        fields,
        key,
        expires_at,
        max_size: filled.max_size,
        expiry_clamped,
        policy: signed.document,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_carried_in_gcs_words() {
        let cases = [
            ("x-amz-meta-purpose", "a", "x-goog-meta-purpose", "a"),
            ("X-Amz-Meta-Purpose", "a", "x-goog-meta-purpose", "a"),
            ("x-amz-acl", "private", "x-goog-acl", "private"),
            (
                "x-amz-copy-source-if-match",
                "\"e\"",
                "x-goog-copy-source-if-match",
                "\"e\"",
            ),
            ("If-None-Match", "*", "x-goog-if-generation-match", "0"),
            ("Content-Type", "image/png", "Content-Type", "image/png"),
            ("key", "k", "key", "k"),
        ];
        for (name, value, gcs_name, gcs_value) in cases {
            let (n, v) = carried(name.into(), value.into());
            assert_eq!((n.as_ref(), v.as_ref()), (gcs_name, gcs_value), "{name}");
        }
        assert_eq!(marker_field(), "x-goog-meta-postgate-upload");
        // The gateway's own calls: S3's headers renamed, the ones GCS has no use for dropped.
        let call = store_call_headers(&[
            ("x-amz-copy-source", "/b/k"),
            ("x-amz-metadata-directive", "COPY"),
            ("x-amz-mp-object-size", "10"),
            ("If-None-Match", "*"),
        ]);
        let expected = [
            ("x-goog-copy-source", "/b/k"),
            ("x-goog-metadata-directive", "COPY"),
            ("x-goog-if-generation-match", "0"),
        ];
        assert_eq!(call, expected.map(|(n, v)| (n.to_owned(), v.to_owned())));
    }

    #[test]
    fn policy_json_escapes_what_google_escapes() {
        let mut out = String::new();
        write_json_ascii(&mut out, "a\"é😀\\");
        assert_eq!(out, r#""a\"\u00e9\ud83d\ude00\\""#);
    }
}
