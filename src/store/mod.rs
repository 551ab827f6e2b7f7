//! The gateway's own calls to a store: CreateMultipartUpload, ListParts (every page),
//! CompleteMultipartUpload, AbortMultipartUpload, HeadObject, a ranged GetObject, CopyObject and
//! DeleteObject. A thin client over the project's SigV4 (`Signer::presigned_object_url` over `sign::sigv4`, the
//! signer the PUT URLs use) and `reqwest`; XML answers read with `quick-xml`. ARCHITECTURE.md
//! says why this is not the AWS SDK.
//!
//! Every call has a deadline and is retried (three attempts, backoff) on what S3 clients retry:
//! no answer, 500/502/503/504, `SlowDown`, `RequestTimeout`, `InternalError`. A store that stays
//! down is `StoreError::Unavailable`, which the HTTP edge answers with 503.

mod azure;
mod bucket;

use std::time::Duration;

use reqwest::{Method as HttpMethod, StatusCode};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::profile::ChecksumAlgorithm;
use crate::sign::Store;
use crate::sign::sigv4::uri_encode;
use crate::upload::{ListedPart, ObjectHead};
pub use bucket::{BucketConfig, PendingUpload};

/// How long one attempt may take, and how many attempts a call makes.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    pub connect_timeout: Duration,
    /// One attempt, request and answer.
    pub timeout: Duration,
    /// CompleteMultipartUpload and CopyObject, which S3 may take minutes over for large objects.
    pub long_timeout: Duration,
    pub attempts: u32,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(10),
            long_timeout: Duration::from_secs(120),
            attempts: 3,
        }
    }
}

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No usable answer after every attempt: down, unreachable, timing out, or failing (5xx).
    #[error("store `{store}` is unavailable: {detail}")]
    Unavailable { store: String, detail: String },
    /// The store has no credentials to sign the call with.
    #[error("{0}")]
    NoCredentials(crate::sign::CredentialsUnavailable),
    /// The store answered and refused (4xx, or an `<Error>` in a 200 answer).
    #[error("store `{store}` refused {operation}: {status} {code}: {message}")]
    Refused {
        store: String,
        operation: &'static str,
        status: u16,
        code: String,
        message: String,
    },
}

impl StoreError {
    /// The S3 error code of a refusal (`NoSuchUpload`, `AccessDenied`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            StoreError::Refused { code, .. } => Some(code),
            StoreError::Unavailable { .. } | StoreError::NoCredentials(_) => None,
        }
    }
}

/// An S3 client for the gateway's own calls, shared by every request (one connection pool).
#[derive(Clone)]
pub struct StoreClient {
    http: reqwest::Client,
    config: ClientConfig,
}

impl StoreClient {
    pub fn new(config: ClientConfig) -> StoreClient {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS backend is compiled in");
        StoreClient { http, config }
    }

    /// Starts a multipart upload with the object's headers (Content-Type, metadata, pinned
    /// fields) set by the gateway; returns the upload ID.
    pub async fn create_multipart(
        &self,
        store: &Store,
        bucket: &str,
        key: &str,
        headers: &[(&str, &str)],
    ) -> Result<String, StoreError> {
        if store.kind == crate::sign::Kind::Azure {
            // Azure has no upload to create; its blob's headers are set when it is committed.
            let _ = headers;
            return Ok(crate::sign::azure::upload_id());
        }
        let call = Call::new("CreateMultipartUpload", HttpMethod::POST, bucket, key)
            .params(&[("uploads", "")])
            .headers(headers);
        let answer = self.send(store, call, Vec::new()).await?;
        let result: InitiateResult = parse_xml(store, "CreateMultipartUpload", &answer.body)?;
        Ok(result.upload_id)
    }

    /// Every part the store holds for an upload, all pages.
    pub async fn list_parts(
        &self,
        store: &Store,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<ListedPart>, StoreError> {
        if store.kind == crate::sign::Kind::Azure {
            return self.azure_blocks(store, bucket, key, upload_id).await;
        }
        let mut parts = Vec::new();
        let mut marker = String::new();
        // 10,000 parts at 1,000 a page: 10 pages; a store that keeps saying "truncated" stops here.
        for _ in 0..20 {
            let mut params = vec![("uploadId", upload_id), ("max-parts", "1000")];
            if !marker.is_empty() {
                params.push(("part-number-marker", &marker));
            }
            let call = Call::new("ListParts", HttpMethod::GET, bucket, key).params(&params);
            let answer = self.send(store, call, Vec::new()).await?;
            let page: ListPartsResult = parse_xml(store, "ListParts", &answer.body)?;
            let last = page.parts.last().map(|p| p.part_number);
            parts.extend(page.parts.into_iter().map(|p| ListedPart {
                part_number: p.part_number,
                size: p.size,
                etag: p.etag.map(|e| unquote(&e)),
            }));
            match (page.is_truncated, page.next_part_number_marker.or(last)) {
                (Some(true), Some(next)) if next.to_string() != marker => marker = next.to_string(),
                (Some(true), _) => break,
                _ => return Ok(parts),
            }
        }
        Err(StoreError::Unavailable {
            store: store.name.clone(),
            detail: "ListParts kept answering truncated pages without moving on".into(),
        })
    }

    /// Completes an upload from the parts the store listed (never the client's ETags), passing
    /// the expected object size (`x-amz-mp-object-size`, which AWS checks) and, for
    /// `overwrite: false`, `If-None-Match: *`. Returns the object's ETag.
    pub async fn complete_multipart(
        &self,
        store: &Store,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[ListedPart],
        expect: Completion,
    ) -> Result<Option<String>, StoreError> {
        if store.kind == crate::sign::Kind::Azure {
            return self.azure_commit(store, bucket, key, upload_id, parts, expect).await;
        }
        let Completion {
            object_size,
            no_overwrite,
            ..
        } = expect;
        let mut body = String::from(r#"<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#);
        for part in parts {
            body.push_str(&format!("<Part><PartNumber>{}</PartNumber>", part.part_number));
            if let Some(etag) = &part.etag {
                body.push_str(&format!("<ETag>&quot;{}&quot;</ETag>", xml_escape(etag)));
            }
            body.push_str("</Part>");
        }
        body.push_str("</CompleteMultipartUpload>");
        let size = object_size.to_string();
        let mut headers = vec![("x-amz-mp-object-size", size.as_str())];
        if no_overwrite {
            headers.push(("If-None-Match", "*"));
        }
        let call = Call::new("CompleteMultipartUpload", HttpMethod::POST, bucket, key)
            .params(&[("uploadId", upload_id)])
            .headers(&headers)
            .long();
        let answer = self.send(store, call, body.into_bytes()).await?;
        let result: CompleteResult = parse_xml(store, "CompleteMultipartUpload", &answer.body)?;
        Ok(result.etag.map(|e| unquote(&e)))
    }

    /// Aborts an upload; its parts are gone. An upload that is already gone is fine.
    pub async fn abort_multipart(
        &self,
        store: &Store,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), StoreError> {
        if store.kind == crate::sign::Kind::Azure {
            return self.azure_abort(store, bucket, key, upload_id).await;
        }
        let call =
            Call::new("AbortMultipartUpload", HttpMethod::DELETE, bucket, key).params(&[("uploadId", upload_id)]);
        match self.send(store, call, Vec::new()).await {
            Err(StoreError::Refused { code, .. }) if code == "NoSuchUpload" => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// The object's head; `None` when there is no such object.
    pub async fn head(&self, store: &Store, bucket: &str, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        let mut call = Call::new("HeadObject", HttpMethod::HEAD, bucket, key);
        if store.kind == crate::sign::Kind::S3 {
            call = call.headers(&[("x-amz-checksum-mode", "ENABLED")]);
        }
        let answer = match self.send(store, call, Vec::new()).await {
            Ok(answer) => answer,
            // Without `s3:ListBucket`, S3 answers 403 for a missing key: also "not there" (and
            // `complete` deletes nothing on a not-found).
            Err(StoreError::Refused { status: 404, .. }) => return Ok(None),
            Err(StoreError::Refused { status: 403, .. }) if store.kind != crate::sign::Kind::Azure => return Ok(None),
            Err(error) => return Err(error),
        };
        let header = |name: &str| {
            answer
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let mut head = ObjectHead {
            size: header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or_default(),
            content_type: header("content-type"),
            etag: header("etag").map(|e| unquote(&e)),
            last_modified: header("last-modified").and_then(|v| http_date(&v)),
            version_id: header("x-amz-version-id").filter(|v| v != "null"),
            ..ObjectHead::default()
        };
        for (name, value) in &answer.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            // GCS's XML API answers with `x-goog-meta-*`; Azure with `x-ms-meta-*`, `_` for `-`.
            let meta = name.as_str().strip_prefix("x-amz-meta-");
            if let Some(meta) = meta.or_else(|| name.as_str().strip_prefix("x-goog-meta-")) {
                head.metadata.insert(meta.to_owned(), decode_rfc2047(&value));
            } else if crate::upload::verify::OBJECT_HEADERS.contains(&name.as_str()) {
                head.headers.insert(name.as_str().to_owned(), value.into_owned());
            } else if let Some(meta) = name.as_str().strip_prefix("x-ms-meta-") {
                head.metadata
                    .insert(crate::sign::azure::metadata_name(meta), value.into_owned());
            } else if let Some(algorithm) = ChecksumAlgorithm::ALL.into_iter().find(|a| a.field() == name.as_str()) {
                head.checksums.push((algorithm, value.into_owned()));
            }
        }
        Ok(Some(head))
    }

    /// The object's first `len` bytes (fewer for a smaller object; none for an empty one), of the
    /// version whose ETag is `etag` when given (another version: 412 `PreconditionFailed`).
    pub async fn first_bytes(
        &self,
        store: &Store,
        bucket: &str,
        key: &str,
        len: u64,
        etag: Option<&str>,
    ) -> Result<Vec<u8>, StoreError> {
        let range = format!("bytes=0-{}", len.saturating_sub(1));
        let quoted = etag.map(|e| format!("\"{e}\""));
        let mut call = Call::new("GetObject", HttpMethod::GET, bucket, key)
            .unsigned_header("Range", &range)
            .max_body(usize::try_from(len).unwrap_or(usize::MAX));
        if let Some(quoted) = &quoted {
            call = call.unsigned_header("If-Match", quoted);
        }
        match self.send(store, call, Vec::new()).await {
            Ok(answer) => {
                let mut body = answer.body;
                body.truncate(len as usize);
                Ok(body)
            }
            Err(StoreError::Refused { status: 416, .. }) => Ok(Vec::new()),
            Err(error) => Err(error),
        }
    }

    /// Copies `from` to `to` in one bucket, keeping its type and metadata (at most 5 GiB).
    /// `headers`: what a copy does not carry over and the profile pins (`x-amz-acl`, storage
    /// class, encryption).
    pub async fn copy(
        &self,
        store: &Store,
        bucket: &str,
        from: &str,
        to: &str,
        headers: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        if store.kind == crate::sign::Kind::Azure {
            return self.azure_copy(store, bucket, from, to, headers).await;
        }
        let mut source = format!("/{bucket}/");
        uri_encode(&mut source, from, true);
        let call = Call::new("CopyObject", HttpMethod::PUT, bucket, to)
            .headers(&[("x-amz-copy-source", &source), ("x-amz-metadata-directive", "COPY")])
            .headers(headers)
            .long();
        let answer = self.send(store, call, Vec::new()).await?;
        // CopyObject may fail after its 200: the body then holds an <Error>.
        check_error_body(store, "CopyObject", &answer.body)
    }

    /// Azure's Copy Blob: the source named by a read SAS URL, the destination written by the
    /// call's own SAS (`If-None-Match: *` in `headers` keeps an existing blob); the source
    /// precondition is `x-ms-source-if-match`. A copy still pending is waited for.
    async fn azure_copy(
        &self,
        store: &Store,
        container: &str,
        from: &str,
        to: &str,
        headers: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let now = OffsetDateTime::now_utc();
        let source = store
            .signer(now)
            .map_err(StoreError::NoCredentials)?
            .presigned_object_url("GET", container, from, &[], &[], now, 300);
        let renamed: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| match *name {
                "x-amz-copy-source-if-match" => ("x-ms-source-if-match", *value),
                other => (other, *value),
            })
            .collect();
        let call = Call::new("CopyBlob", HttpMethod::PUT, container, to)
            .headers(&[("x-ms-copy-source", &source)])
            .headers(&renamed)
            .long();
        let mut answer = self.send(store, call, Vec::new()).await?;
        for _ in 0..120 {
            let status = answer.headers.get("x-ms-copy-status").and_then(|v| v.to_str().ok());
            match status {
                Some("pending") => tokio::time::sleep(Duration::from_millis(500)).await,
                Some("success") | None => return Ok(()),
                Some(other) => {
                    // A failed or aborted copy leaves a blob at the destination: remove it.
                    let _ = self.delete(store, container, to).await;
                    return Err(StoreError::Refused {
                        store: store.name.clone(),
                        operation: "CopyBlob",
                        status: 500,
                        code: format!("copy {}", store_words(other, 16)),
                        message: "the copy did not succeed".into(),
                    });
                }
            }
            answer = self
                .send(
                    store,
                    Call::new("GetBlobProperties", HttpMethod::HEAD, container, to),
                    Vec::new(),
                )
                .await?;
        }
        Err(StoreError::Unavailable {
            store: store.name.clone(),
            detail: "the copy was still pending after 60 s".into(),
        })
    }

    /// Deletes an object (a missing one is fine).
    pub async fn delete(&self, store: &Store, bucket: &str, key: &str) -> Result<(), StoreError> {
        let mut call = Call::new("DeleteObject", HttpMethod::DELETE, bucket, key);
        if store.kind == crate::sign::Kind::Azure {
            // Snapshots a client took of its staged blob would make the delete fail.
            call = call.headers(&[("x-ms-delete-snapshots", "include")]);
        }
        match self.send(store, call, Vec::new()).await {
            Err(StoreError::Refused { status: 404, .. }) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Signs and sends one call, retrying what is worth retrying. A GCS store's headers are
    /// signed and sent in the XML API's names.
    async fn send(&self, store: &Store, call: Call<'_>, body: Vec<u8>) -> Result<Answer, StoreError> {
        let renamed: Vec<(String, String)>;
        let call = match store.kind {
            crate::sign::Kind::Gcs => {
                renamed = crate::sign::gcs::store_call_headers(&call.headers);
                Call {
                    headers: renamed.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect(),
                    ..call
                }
            }
            _ => call,
        };
        let unavailable = |detail: String| StoreError::Unavailable {
            store: store.name.clone(),
            detail,
        };
        let mut last = unavailable("no attempt made".into());
        for attempt in 0..self.config.attempts.max(1) {
            if attempt > 0 {
                // 100 ms, 400 ms, …, with up to 50 % jitter so replicas do not retry in step.
                let base = 100u64.saturating_mul(4u64.saturating_pow(attempt - 1)).min(10_000);
                let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * base / 512;
                tokio::time::sleep(Duration::from_millis(base + jitter)).await;
            }
            let url = presigned_url(store, &call).map_err(StoreError::NoCredentials)?;
            let mut request = self.http.request(call.method.clone(), &url).timeout(if call.long {
                self.config.long_timeout
            } else {
                self.config.timeout
            });
            for (name, value) in call.headers.iter().chain(call.unsigned.iter()) {
                request = request.header(*name, *value);
            }
            if !body.is_empty() {
                request = request.header("Content-Type", "application/xml").body(body.clone());
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) => {
                    last = unavailable(crate::transport::describe(error));
                    continue;
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = match read_capped(response, call.max_body).await {
                Ok(bytes) => bytes,
                Err(error) => {
                    last = unavailable(crate::transport::describe(error));
                    continue;
                }
            };
            // A 200 may carry an <Error> (CompleteMultipartUpload, CopyObject fail after it).
            let failed = !status.is_success() || root_element(&bytes) == Some("Error");
            if !failed {
                return Ok(Answer { headers, body: bytes });
            }
            let (code, message) = error_document(&bytes, status);
            // 501 Not Implemented is an answer, not a passing failure.
            if (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED) || is_retryable(&code) {
                last = unavailable(format!("{} {code}: {message}", status.as_u16()));
                continue;
            }
            return Err(StoreError::Refused {
                store: store.name.clone(),
                operation: call.operation,
                status: status.as_u16(),
                code,
                message,
            });
        }
        Err(last)
    }
}

/// The store error codes S3 clients retry, wherever they appear (a 200 answer included).
fn is_retryable(code: &str) -> bool {
    matches!(
        code,
        "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable" | "Throttling" | "RequestLimitExceeded"
    )
}

/// The answer's body, at most `limit` bytes: a store (or a proxy) that ignores `Range` or sends
/// an endless answer is read no further.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    Ok(body)
}

/// What a completed object must be: its size (`x-amz-mp-object-size`) and, for
/// `overwrite: false`, new (`If-None-Match: *`); and the object's headers in S3's names, which
/// a store that sets them only at completion (Azure's Put Block List) takes from here.
#[derive(Debug, Clone)]
pub struct Completion {
    pub object_size: u64,
    pub no_overwrite: bool,
    pub headers: Vec<(String, String)>,
}

/// One S3 call before signing.
struct Call<'a> {
    operation: &'static str,
    method: HttpMethod,
    bucket: &'a str,
    key: &'a str,
    params: Vec<(&'a str, &'a str)>,
    /// Signed headers.
    headers: Vec<(&'a str, &'a str)>,
    /// Headers sent unsigned (`Range`).
    unsigned: Vec<(&'a str, &'a str)>,
    long: bool,
    /// The most bytes of the answer read.
    max_body: usize,
}

impl<'a> Call<'a> {
    fn new(operation: &'static str, method: HttpMethod, bucket: &'a str, key: &'a str) -> Call<'a> {
        Call {
            operation,
            method,
            bucket,
            key,
            params: Vec::new(),
            headers: Vec::new(),
            unsigned: Vec::new(),
            long: false,
            // ListParts of 1,000 parts is ~250 KB of XML.
            max_body: 4 * 1024 * 1024,
        }
    }
    fn params(mut self, params: &[(&'a str, &'a str)]) -> Call<'a> {
        self.params.extend_from_slice(params);
        self
    }
    fn headers(mut self, headers: &[(&'a str, &'a str)]) -> Call<'a> {
        self.headers.extend_from_slice(headers);
        self
    }
    fn unsigned_header(mut self, name: &'a str, value: &'a str) -> Call<'a> {
        self.unsigned.push((name, value));
        self
    }
    fn long(mut self) -> Call<'a> {
        self.long = true;
        self
    }
    fn max_body(mut self, bytes: usize) -> Call<'a> {
        self.max_body = bytes;
        self
    }
}

struct Answer {
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

/// The call as a presigned URL (query-string SigV4, valid 5 minutes): one signer for the
/// gateway's calls and the URLs it hands out.
fn presigned_url(store: &Store, call: &Call<'_>) -> Result<String, crate::sign::CredentialsUnavailable> {
    let now = OffsetDateTime::now_utc();
    let store = store.signer(now)?;
    Ok(store.presigned_object_url(
        call.method.as_str(),
        call.bucket,
        call.key,
        &call.params,
        &call.headers,
        now,
        300,
    ))
}

/// The `<Error><Code>…</Code><Message>…</Message></Error>` of a refusal, or the status.
fn error_document(body: &[u8], status: StatusCode) -> (String, String) {
    match quick_xml::de::from_reader::<_, ErrorDocument>(body) {
        Ok(doc) if !doc.code.is_empty() => (
            store_words(&doc.code, 64),
            store_words(doc.message.as_deref().unwrap_or_default(), 300),
        ),
        _ => (
            status.canonical_reason().unwrap_or("Error").replace(' ', ""),
            String::new(),
        ),
    }
}

/// A store's own words (an error code or message) as the gateway repeats them: printable, at
/// most `limit` characters, and withheld when they quote a request, whose presigned query holds
/// the access key id, the session token and the signature.
fn store_words(text: &str, limit: usize) -> String {
    let lower = text.to_ascii_lowercase();
    if [
        "x-amz-",
        "signature=",
        "credential=",
        "security-token",
        "http://",
        "https://",
    ]
    .iter()
    .any(|quoted| lower.contains(quoted))
    {
        return "(the store's message quotes the request; withheld)".to_owned();
    }
    text.chars().filter(|c| !c.is_control()).take(limit).collect()
}

/// An answer's root element name (after the XML declaration and whitespace).
fn root_element(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(body).ok()?;
    let mut rest = text.trim_start();
    while let Some(after) = rest.strip_prefix("<?") {
        rest = after.split_once("?>")?.1.trim_start();
    }
    let name = rest.strip_prefix('<')?;
    let end = name.find(|c: char| c.is_whitespace() || c == '>' || c == '/')?;
    Some(&name[..end])
}

fn check_error_body(store: &Store, operation: &'static str, body: &[u8]) -> Result<(), StoreError> {
    if root_element(body) == Some("Error") {
        let (code, message) = error_document(body, StatusCode::OK);
        return Err(StoreError::Refused {
            store: store.name.clone(),
            operation,
            status: 200,
            code,
            message,
        });
    }
    Ok(())
}

fn parse_xml<T: for<'de> Deserialize<'de>>(
    store: &Store,
    operation: &'static str,
    body: &[u8],
) -> Result<T, StoreError> {
    check_error_body(store, operation, body)?;
    quick_xml::de::from_reader(body).map_err(|error| StoreError::Unavailable {
        store: store.name.clone(),
        detail: format!("{operation} answered XML that could not be read: {error}"),
    })
}

/// A metadata value as S3 returns a non-ASCII one (RFC 2047: `=?UTF-8?B?…?=` or `=?UTF-8?Q?…?=`),
/// decoded; any other value as it is.
fn decode_rfc2047(value: &str) -> String {
    use base64::Engine as _;
    let Some(inner) = value.strip_prefix("=?").and_then(|v| v.strip_suffix("?=")) else {
        return value.to_owned();
    };
    let mut pieces = inner.splitn(3, '?');
    let (Some(charset), Some(encoding), Some(text)) = (pieces.next(), pieces.next(), pieces.next()) else {
        return value.to_owned();
    };
    if !charset.eq_ignore_ascii_case("utf-8") {
        return value.to_owned();
    }
    let bytes = match encoding {
        "B" | "b" => base64::engine::general_purpose::STANDARD.decode(text).ok(),
        "Q" | "q" => {
            let mut out = Vec::with_capacity(text.len());
            let mut bytes = text.bytes();
            while let Some(byte) = bytes.next() {
                match byte {
                    b'_' => out.push(b' '),
                    b'=' => {
                        let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                        match std::str::from_utf8(&hex)
                            .ok()
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                        {
                            Some(decoded) => out.push(decoded),
                            None => return value.to_owned(),
                        }
                    }
                    other => out.push(other),
                }
            }
            Some(out)
        }
        _ => None,
    };
    bytes
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| value.to_owned())
}

/// An HTTP date (`Tue, 01 Dec 2026 02:29:03 GMT`) as Unix seconds.
fn http_date(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc2822)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

fn unquote(etag: &str) -> String {
    etag.trim().trim_matches('"').to_owned()
}

/// Text as XML character data or an attribute value (the gateway's and the dev store's S3 answers).
pub fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InitiateResult {
    upload_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListPartsResult {
    #[serde(default)]
    is_truncated: Option<bool>,
    #[serde(default)]
    next_part_number_marker: Option<u32>,
    #[serde(default, rename = "Part")]
    parts: Vec<XmlPart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlPart {
    part_number: u32,
    size: u64,
    #[serde(default, rename = "ETag")]
    etag: Option<String>,
}

#[derive(Deserialize)]
struct CompleteResult {
    #[serde(default, rename = "ETag")]
    etag: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ErrorDocument {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_store_answers() {
        let list = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><Key>k</Key><UploadId>u</UploadId>
<PartNumberMarker>0</PartNumberMarker><NextPartNumberMarker>2</NextPartNumberMarker><MaxParts>2</MaxParts><IsTruncated>true</IsTruncated>
<Part><PartNumber>1</PartNumber><LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>&quot;abc&quot;</ETag><Size>5242880</Size></Part>
<Part><PartNumber>2</PartNumber><Size>7</Size></Part></ListPartsResult>"#;
        let page: ListPartsResult = quick_xml::de::from_reader(&list[..]).unwrap();
        assert_eq!(page.is_truncated, Some(true));
        assert_eq!(page.next_part_number_marker, Some(2));
        assert_eq!(page.parts.len(), 2);
        assert_eq!(page.parts[0].etag.as_deref().map(unquote).as_deref(), Some("abc"));
        assert_eq!(page.parts[1].etag, None);
        let error = b"<?xml version=\"1.0\"?>\n  <Error><Code>NoSuchUpload</Code><Message>gone</Message><RequestId>1</RequestId></Error>";
        assert_eq!(root_element(error), Some("Error"));
        assert_eq!(
            error_document(error, StatusCode::NOT_FOUND),
            ("NoSuchUpload".to_owned(), "gone".to_owned())
        );
        assert_eq!(
            error_document(b"", StatusCode::SERVICE_UNAVAILABLE).0,
            "ServiceUnavailable"
        );
        let created = br#"<InitiateMultipartUploadResult xmlns="x"><Bucket>b</Bucket><Key>k</Key><UploadId>abc-1</UploadId></InitiateMultipartUploadResult>"#;
        assert_eq!(
            quick_xml::de::from_reader::<_, InitiateResult>(&created[..])
                .unwrap()
                .upload_id,
            "abc-1"
        );
        assert_eq!(root_element(created), Some("InitiateMultipartUploadResult"));
        assert_eq!(http_date("Tue, 01 Dec 2026 02:29:03 GMT"), Some(1_796_092_143));
        assert_eq!(http_date("yesterday"), None);
        assert_eq!(decode_rfc2047("=?UTF-8?B?Y2Fmw6k=?="), "café");
        assert_eq!(decode_rfc2047("=?UTF-8?Q?caf=C3=A9_au_lait?="), "café au lait");
        assert_eq!(decode_rfc2047("plain"), "plain");
        assert_eq!(decode_rfc2047("=?UTF-8?B?!!?="), "=?UTF-8?B?!!?=");
    }
}
