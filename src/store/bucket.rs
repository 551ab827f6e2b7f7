//! Bucket-level calls `postgate probe` makes: the keys and pending multipart uploads under its
//! own prefix (to clean up), and the bucket's CORS and lifecycle configuration (to audit them).

use reqwest::Method as HttpMethod;
use serde::Deserialize;

use super::{Call, StoreClient, StoreError, parse_xml};
use crate::sign::Store;

/// A pending multipart upload: its key and upload ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub key: String,
    pub upload_id: String,
}

impl StoreClient {
    /// Every key under `prefix` (ListObjectsV2, all pages, at most 100,000 keys).
    pub async fn list_keys(&self, store: &Store, bucket: &str, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut token = String::new();
        for _ in 0..100 {
            let mut params = vec![("list-type", "2"), ("prefix", prefix), ("max-keys", "1000")];
            if !token.is_empty() {
                params.push(("continuation-token", &token));
            }
            let call = Call::new("ListObjectsV2", HttpMethod::GET, bucket, "").params(&params);
            let answer = self.send(store, call, Vec::new()).await?;
            let page: ListResult = parse_xml(store, "ListObjectsV2", &answer.body)?;
            keys.extend(page.contents.into_iter().map(|c| c.key));
            match page.next_continuation_token {
                Some(next) if page.is_truncated == Some(true) && next != token => token = next,
                _ => return Ok(keys),
            }
        }
        Ok(keys)
    }

    /// The multipart uploads pending under `prefix` (ListMultipartUploads, all pages). A store
    /// without the call answers `Refused` (`NotImplemented`).
    pub async fn list_multipart(
        &self,
        store: &Store,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<PendingUpload>, StoreError> {
        let mut uploads = Vec::new();
        let (mut key_marker, mut id_marker) = (String::new(), String::new());
        for _ in 0..100 {
            let mut params = vec![("uploads", ""), ("prefix", prefix)];
            if !key_marker.is_empty() {
                params.push(("key-marker", &key_marker));
                params.push(("upload-id-marker", &id_marker));
            }
            let call = Call::new("ListMultipartUploads", HttpMethod::GET, bucket, "").params(&params);
            let answer = self.send(store, call, Vec::new()).await?;
            let page: ListUploadsResult = parse_xml(store, "ListMultipartUploads", &answer.body)?;
            uploads.extend(page.uploads.into_iter().map(|u| PendingUpload {
                key: u.key,
                upload_id: u.upload_id,
            }));
            match (page.is_truncated, page.next_key_marker, page.next_upload_id_marker) {
                (Some(true), Some(key), Some(id)) if key != key_marker || id != id_marker => {
                    (key_marker, id_marker) = (key, id);
                }
                _ => return Ok(uploads),
            }
        }
        Ok(uploads)
    }

    /// The bucket's `?cors` or `?lifecycle` document as stored; `None` when the bucket has none
    /// (`NoSuchCORSConfiguration`, `NoSuchLifecycleConfiguration`).
    pub async fn bucket_config(
        &self,
        store: &Store,
        bucket: &str,
        which: BucketConfig,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let (operation, param, missing) = match which {
            BucketConfig::Cors => ("GetBucketCors", "cors", "NoSuchCORSConfiguration"),
            BucketConfig::Lifecycle => (
                "GetBucketLifecycleConfiguration",
                "lifecycle",
                "NoSuchLifecycleConfiguration",
            ),
        };
        let call = Call::new(operation, HttpMethod::GET, bucket, "").params(&[(param, "")]);
        match self.send(store, call, Vec::new()).await {
            Ok(answer) => Ok(Some(answer.body)),
            Err(StoreError::Refused { code, .. }) if code == missing => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// A bucket subresource the probe reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketConfig {
    Cors,
    Lifecycle,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListResult {
    #[serde(default)]
    is_truncated: Option<bool>,
    #[serde(default)]
    next_continuation_token: Option<String>,
    #[serde(default)]
    contents: Vec<ListedObject>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedObject {
    key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListUploadsResult {
    #[serde(default)]
    is_truncated: Option<bool>,
    #[serde(default)]
    next_key_marker: Option<String>,
    #[serde(default)]
    next_upload_id_marker: Option<String>,
    #[serde(default, rename = "Upload")]
    uploads: Vec<ListedUpload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedUpload {
    key: String,
    upload_id: String,
}
