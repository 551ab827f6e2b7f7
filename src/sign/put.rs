//! The PUT renderer: a filled plan → a presigned PUT URL whose signed headers carry the plan.
//!
//! Every entry the PUT carries becomes a signed header the client must send with exactly that
//! value (`Content-Length` from the exact size, `Content-Type`, every `x-amz-meta-*`, the pinned
//! fields as their headers, the checksum, `If-None-Match: *`); bucket and key are the URL.
//! Signed headers are never hoisted into the query: stores other than AWS ignore them there.
//! Spec: <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html>

use std::borrow::Cow;

use time::OffsetDateTime;

use super::{Answer, Signer, validity};
use crate::profile::{Filled, MAX_EXPIRES_IN, Value};

/// A presigned PUT: send the file as the body to `url` with `headers`. `Debug` hides the
/// session token and the signature in the URL.
#[derive(Clone)]
pub struct PresignedPut<'p> {
    pub url: String,
    /// Every signed header but `Host`, in plan order, `Content-Length` included.
    pub headers: Vec<(Cow<'p, str>, Cow<'p, str>)>,
    pub key: String,
    pub expires_at: OffsetDateTime,
    /// The exact size the URL admits.
    pub max_size: u64,
    /// True when the store's credentials expire before the profile's `expires_in`.
    pub expiry_clamped: bool,
}

impl std::fmt::Debug for PresignedPut<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresignedPut")
            .field("url", &super::shown_url(&self.url))
            .field("headers", &self.headers)
            .field("key", &self.key)
            .field("expires_at", &self.expires_at)
            .field("max_size", &self.max_size)
            .field("expiry_clamped", &self.expiry_clamped)
            .finish()
    }
}

impl PresignedPut<'_> {
    /// The headers the client sets itself: all signed ones but `Content-Length`, which HTTP
    /// clients and browsers derive from the body (and `fetch` may not set).
    pub fn client_headers(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.headers
            .iter()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("content-length"))
            .map(|(n, v)| (n.as_ref(), v.as_ref()))
    }

    /// `{method, url, headers, key, expires_at, max_size}` members as compact JSON, without the
    /// braces.
    pub fn write_json_members(&self, out: &mut String) {
        let answer = Answer {
            method: "PUT",
            url: &self.url,
            key: &self.key,
            expires_at: self.expires_at,
            max_size: self.max_size,
        };
        answer.write_json_members("headers", self.client_headers(), out);
    }
}

/// Renders a filled plan as a presigned PUT URL. Infallible: admission refused every PUT
/// request that leaves a value open (no size, no filename for a `${filename}` key, no type for a
/// prefix rule).
pub fn put_url<'p>(filled: Filled<'p>, store: &Signer<'_>, now: OffsetDateTime) -> PresignedPut<'p> {
    let (now, expires_at, expiry_clamped) = validity(store, now, filled.expires_in);
    let expires_in = (expires_at - now)
        .whole_seconds()
        .clamp(1, MAX_EXPIRES_IN.as_secs() as i64) as u64;

    let mut headers: Vec<(Cow<'p, str>, Cow<'p, str>)> = Vec::with_capacity(filled.entries.len());
    for entry in filled.entries {
        match (entry.name, entry.value) {
            (_, Value::Range { min, .. }) => headers.push(("Content-Length".into(), min.to_string().into())),
            (Some(name), Value::Exact(value)) => headers.push(store.carried(name, value)),
            // Bucket and key travel in the URL; admission leaves no prefix in a PUT.
            _ => {}
        }
    }

    if store.kind == super::Kind::Azure {
        let (name, value) = super::azure::BLOB_TYPE;
        headers.push((name.into(), value.into()));
    }
    let signed: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_ref(), v.as_ref())).collect();
    let url = store.presigned_object_url(
        "PUT",
        &filled.profile.bucket,
        &filled.key,
        &[],
        &signed,
        now,
        expires_in,
    );
    PresignedPut {
        url,
        headers,
        key: filled.key,
        expires_at,
        max_size: filled.max_size,
        expiry_clamped,
    }
}
