//! The multipart renderer: the headers of the create call (the PUT-filled plan minus what only a
//! single PUT carries) and presigned `UploadPart` URLs, each signing its part's exact
//! `Content-Length`, so no part can be larger (or smaller) than the part plan says.
//!
//! Spec: <https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPart.html>. Pure: `now` is a
//! parameter.

use std::borrow::Cow;
use std::time::Duration;

use time::OffsetDateTime;

use super::{Signer, validity};
use crate::profile::plan::Target;
use crate::profile::{Filled, MAX_EXPIRES_IN, Value};

/// The headers CreateMultipartUpload sets on the object: every entry a PUT carries as a header
/// (`Content-Type`, `x-amz-meta-*`, pinned fields), but not the length (each part signs its
/// own), the checksum (`admit_multipart` takes none) or `If-None-Match` (sent on complete).
pub fn create_headers<'p>(filled: &Filled<'p>) -> Vec<(Cow<'p, str>, Cow<'p, str>)> {
    filled
        .entries
        .iter()
        .filter(|entry| !matches!(entry.target, Target::NoOverwrite | Target::Checksum | Target::Size))
        .filter_map(|entry| match (&entry.name, &entry.value) {
            (Some(name), Value::Exact(value)) => Some((name.clone(), value.clone())),
            _ => None,
        })
        .collect()
}

/// One presigned `UploadPart` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartUrl {
    pub part_number: u32,
    /// The part's exact size, signed as `Content-Length`.
    pub size: u64,
    pub url: String,
    pub expires_at: OffsetDateTime,
}

/// Where a part goes and how long its URL may live.
pub struct PartTarget<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub upload_id: &'a str,
    pub expires_in: Duration,
    /// The URL never outlives the upload's token.
    pub not_after: OffsetDateTime,
}

/// Presigns `PUT ?partNumber=N&uploadId=…` with `Content-Length: size` signed.
pub fn part_url(
    store: &Signer<'_>,
    target: &PartTarget<'_>,
    part_number: u32,
    size: u64,
    now: OffsetDateTime,
) -> PartUrl {
    let (now, mut expires_at, _) = validity(store, now, target.expires_in);
    expires_at = expires_at.min(target.not_after).max(now);
    let expires_in = (expires_at - now)
        .whole_seconds()
        .clamp(1, MAX_EXPIRES_IN.as_secs() as i64) as u64;
    let number = part_number.to_string();
    let length = size.to_string();
    let url = store.presigned_object_url(
        "PUT",
        target.bucket,
        target.key,
        &[("partNumber", &number), ("uploadId", target.upload_id)],
        &[("Content-Length", &length)],
        now,
        expires_in,
    );
    PartUrl {
        part_number,
        size,
        url,
        expires_at,
    }
}
