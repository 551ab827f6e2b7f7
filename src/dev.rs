//! `postgate dev`'s embedded S3-compatible store: s3s-fs serving a local directory with real
//! SigV4 and POST-policy checks, plus what a browser upload needs that s3s-fs 0.14 lacks —
//! `${filename}` substitution and CORS answers — and the refusal S3 gives a presigned request
//! carrying `x-amz-*` headers it did not sign (s3s takes them: an unsigned `x-amz-copy-source`
//! would turn a presigned PUT into a copy).
//!
//! Development only (cargo feature `dev-store`); production builds leave it out.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::dto::*;
use s3s::service::S3Service;
use s3s::{S3, S3Request, S3Response, S3Result};

use crate::registry::Snapshot;
use crate::store::xml_escape;

/// The dev store's fixed credentials (they guard nothing but a local directory).
pub const ACCESS_KEY: &str = "POSTGATEDEVACCESSKEY";
pub const SECRET_KEY: &str = "postgate-dev-secret-key-not-for-production";

/// The largest form the dev store buffers (the whole body is read to find the file's name).
const MAX_FORM_BYTES: usize = 512 * 1024 * 1024;

/// The name of the uploaded file, carried from the multipart body to `post_object`.
#[derive(Clone)]
struct UploadFileName(String);

/// Where `post_object` leaves the stored key and ETag for the answer (s3s sends neither as a
/// header, and a 201 body's `Location` relative).
#[derive(Clone, Default)]
struct StoredForm(std::sync::Arc<std::sync::Mutex<Option<(String, String)>>>);

/// s3s-fs with `${filename}` substitution on POST uploads.
struct DevFs {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
}

/// Implements `S3` for `DevFs`: the listed operations delegate to s3s-fs, those of an upload ID
/// after `known_upload` (S3's `NoSuchUpload` where s3s-fs answers `AccessDenied`, or for
/// ListParts an empty list); `post_object` substitutes `${filename}` first. (A macro around the
/// whole impl, so `async_trait` sees the expanded methods.)
macro_rules! dev_fs_s3 {
    (
        $($method:ident: $input:ty => $output:ty),* ;
        upload id: $($upload_method:ident: $upload_input:ty => $upload_output:ty),* $(,)?
    ) => {
        #[async_trait::async_trait]
        impl S3 for DevFs {
            $(
                async fn $method(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.fs.$method(req).await
                }
            )*
            $(
                async fn $upload_method(&self, req: S3Request<$upload_input>) -> S3Result<S3Response<$upload_output>> {
                    self.known_upload(&req.input.upload_id)?;
                    self.fs.$upload_method(req).await
                }
            )*

            async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
                // s3s-fs 0.14 leaves the object's metadata files behind; S3 keeps nothing.
                // (Not those of a multipart upload in progress to the same key.)
                let sidecar = sidecar_prefix(&req.input.bucket, &req.input.key);
                let response = self.fs.delete_object(req).await?;
                for suffix in ["metadata.json", "internal.json"] {
                    let _ = std::fs::remove_file(self.root.join(format!("{sidecar}{suffix}")));
                }
                Ok(response)
            }

            async fn post_object(&self, mut req: S3Request<PostObjectInput>) -> S3Result<S3Response<PostObjectOutput>> {
                // S3 substitutes ${filename} after checking the policy; s3s has checked it by now.
                if let Some(UploadFileName(name)) = req.extensions.get::<UploadFileName>().cloned() {
                    req.input.key = req.input.key.replace("${filename}", &name);
                }
                let slot = req.extensions.get::<StoredForm>().cloned();
                let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
                let response = self.fs.post_object(req).await?;
                if let (Some(StoredForm(slot)), Some(etag)) = (slot, &response.output.e_tag) {
                    let stored = (format!("{bucket}/{key}"), etag.value().to_owned());
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(stored);
                }
                Ok(response)
            }
        }
    };
}

dev_fs_s3! {
    create_bucket: CreateBucketInput => CreateBucketOutput,
    delete_bucket: DeleteBucketInput => DeleteBucketOutput,
    get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput,
    get_object: GetObjectInput => GetObjectOutput,
    head_bucket: HeadBucketInput => HeadBucketOutput,
    head_object: HeadObjectInput => HeadObjectOutput,
    list_buckets: ListBucketsInput => ListBucketsOutput,
    list_objects: ListObjectsInput => ListObjectsOutput,
    list_objects_v2: ListObjectsV2Input => ListObjectsV2Output,
    put_object: PutObjectInput => PutObjectOutput,
    copy_object: CopyObjectInput => CopyObjectOutput,
    create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput;
    upload id:
    upload_part: UploadPartInput => UploadPartOutput,
    list_parts: ListPartsInput => ListPartsOutput,
    complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput,
    abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput,
}

impl DevFs {
    /// `NoSuchUpload` unless s3s-fs holds the upload (its `.upload-<id>.json`).
    fn known_upload(&self, upload_id: &str) -> S3Result<()> {
        let known =
            uuid::Uuid::parse_str(upload_id).is_ok_and(|id| self.root.join(format!(".upload-{id}.json")).is_file());
        if known {
            Ok(())
        } else {
            Err(s3s::s3_error!(NoSuchUpload, "The specified upload does not exist"))
        }
    }
}

/// The start of the names of s3s-fs's metadata files for one object (`.bucket-<b64>.object-<b64>.`).
fn sidecar_prefix(bucket: &str, key: &str) -> String {
    use base64::Engine as _;
    let encode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    format!(".bucket-{}.object-{}.", encode(bucket), encode(key))
}

/// The running dev store.
pub struct DevStore {
    pub endpoint: String,
    pub data_dir: PathBuf,
}

/// Starts the store on its own thread and runtime. Binds before returning, so a busy port is
/// reported here.
pub fn start(data_dir: &Path, listen: &str, origins: Vec<String>) -> std::io::Result<DevStore> {
    // Only these origins may read the store's answers from a browser: not any page the
    // developer happens to visit.
    let origins: Arc<[String]> = origins.into();
    std::fs::create_dir_all(data_dir)?;
    let listener = std::net::TcpListener::bind(listen).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("the dev store cannot listen on {listen}: {e} (use --store-listen)"),
        )
    })?;
    listener.set_nonblocking(true)?;
    let addr: SocketAddr = listener.local_addr()?;
    let mut builder = s3s::service::S3ServiceBuilder::new(DevFs {
        fs: s3s_fs::FileSystem::new(data_dir).map_err(|e| std::io::Error::other(format!("{e:?}")))?,
        root: data_dir.to_owned(),
    });
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    std::thread::Builder::new()
        .name("postgate-dev-store".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                while let Ok((socket, _)) = listener.accept().await {
                    // Answers go out in two writes (head, body): without this, Nagle holds the
                    // body for the client's delayed ACK (~40 ms on Linux).
                    let _ = socket.set_nodelay(true);
                    let service = service.clone();
                    let origins = origins.clone();
                    tokio::spawn(async move {
                        let handler =
                            hyper::service::service_fn(move |req| handle(service.clone(), origins.clone(), req));
                        let _ = ConnBuilder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(socket), handler)
                            .await;
                    });
                }
            });
        })?;
    Ok(DevStore {
        endpoint: format!("http://{addr}"),
        data_dir: data_dir.to_owned(),
    })
}

/// Creates a directory (a bucket) for every bucket the snapshot's profiles name.
pub fn ensure_buckets(data_dir: &Path, snapshot: &Snapshot) {
    for profile in snapshot.profiles.values() {
        let dir = data_dir.join(profile.bucket());
        if let Err(error) = std::fs::create_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), %error, "cannot create the dev bucket");
        }
    }
}

type DevResponse = Response<http_body_util::combinators::BoxBody<Bytes, s3s::HttpError>>;

async fn handle(service: S3Service, origins: Arc<[String]>, req: Request<Incoming>) -> Result<DevResponse, Infallible> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .filter(|o| o.to_str().is_ok_and(|o| origins.iter().any(|allowed| allowed == o)))
        .cloned();
    if req.method() == Method::OPTIONS {
        let mut response = Response::new(boxed_empty());
        *response.status_mut() = StatusCode::OK;
        add_cors(&mut response, origin.as_ref());
        return Ok(response);
    }
    let is_form = req.method() == Method::POST
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
    let unsigned = unsigned_amz_headers(&req);
    if !unsigned.is_empty() {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>There were headers present in the request which were not signed</Message><HeadersNotSigned>{}</HeadersNotSigned></Error>",
            xml_escape(&unsigned.join(", "))
        );
        let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
        *response.status_mut() = StatusCode::FORBIDDEN;
        response
            .headers_mut()
            .insert("x-amz-error-code", HeaderValue::from_static("AccessDenied"));
        add_cors(&mut response, origin.as_ref());
        return Ok(response);
    }
    let mut file_name = None;
    let stored = StoredForm::default();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let req = if is_form {
        let (mut parts, body) = req.into_parts();
        let bytes = match Limited::new(body, MAX_FORM_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return Ok(plain(StatusCode::PAYLOAD_TOO_LARGE, "form too large for the dev store")),
        };
        if let Some(name) = file_part_name(&bytes) {
            file_name = Some(name.clone());
            parts.extensions.insert(UploadFileName(name));
        }
        parts.extensions.insert(stored.clone());
        Request::from_parts(parts, s3s::Body::from(bytes))
    } else {
        req.map(s3s::Body::from)
    };
    let mut response = match service.call(req).await {
        Ok(response) => response.map(|body| body.map_err(s3s::HttpError::new).boxed()),
        Err(error) => {
            tracing::warn!(?error, "dev store error");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "dev store error")
        }
    };
    if let Some(name) = file_name {
        response = substitute_in_answer(response, &name).await;
    }
    if is_form {
        let stored = stored.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        response = form_answer_as_s3(response, stored, &host).await;
    }
    // After the form's answer is made S3's: the header names the code the body says.
    if response.status().is_client_error() || response.status().is_server_error() {
        response = with_error_code(response).await;
    }
    add_cors(&mut response, origin.as_ref());
    Ok(response)
}

/// A form upload's answer as S3 gives it: `ETag` (quoted) and an absolute `Location` as headers
/// of every success, the same in a 201 body; a failed policy condition is 403 `AccessDenied`
/// ("Invalid according to Policy"), where s3s answers 400 `InvalidPolicyDocument`.
async fn form_answer_as_s3(response: DevResponse, stored: Option<(String, String)>, host: &str) -> DevResponse {
    let (mut parts, body) = response.into_parts();
    let Ok(collected) = body.collect().await else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "dev store error");
    };
    let mut text = String::from_utf8_lossy(&collected.to_bytes()).into_owned();
    if parts.status == StatusCode::BAD_REQUEST
        && text.contains("<Code>InvalidPolicyDocument</Code>")
        && text.contains("<Message>Policy condition")
    {
        parts.status = StatusCode::FORBIDDEN;
        text = text
            .replace("<Code>InvalidPolicyDocument</Code>", "<Code>AccessDenied</Code>")
            .replace(
                "<Message>Policy condition",
                "<Message>Invalid according to Policy: Policy condition",
            );
    }
    if parts.status.is_success()
        && let Some((path, etag)) = stored
    {
        let mut location = format!("http://{host}/");
        crate::sign::sigv4::uri_encode(&mut location, &path, true);
        let quoted = format!("\"{etag}\"");
        if let (Ok(location), Ok(etag)) = (HeaderValue::from_str(&location), HeaderValue::from_str(&quoted)) {
            parts.headers.insert(header::LOCATION, location);
            parts.headers.insert(header::ETAG, etag);
        }
        if parts.status == StatusCode::CREATED {
            text = text
                .replace(
                    &format!("<Location>/{}</Location>", xml_escape(&path)),
                    &format!("<Location>{}</Location>", xml_escape(&location)),
                )
                .replace(
                    &format!("<ETag>{etag}</ETag>"),
                    &format!("<ETag>&quot;{etag}&quot;</ETag>"),
                );
        }
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = Full::new(Bytes::from(text)).map_err(|never| match never {}).boxed();
    Response::from_parts(parts, body)
}

/// The `x-amz-*` headers of a presigned request (query-string SigV4) that its
/// `X-Amz-SignedHeaders` does not list, lowercased. Empty for other requests.
fn unsigned_amz_headers<B>(req: &Request<B>) -> Vec<String> {
    let Some(query) = req.uri().query() else {
        return Vec::new();
    };
    // Names and values decoded, as s3s reads them (`X-Amz-SignedHeader%73` is the same name).
    let decode = |text: &str| {
        let mut out = Vec::with_capacity(text.len());
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match (bytes[i], bytes.get(i + 1..i + 3)) {
                (b'%', Some(hex)) => match std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                },
                (b'+', _) => out.push(b' '),
                (byte, _) => out.push(byte),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let signed: Vec<String> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, _)| decode(name).eq_ignore_ascii_case("X-Amz-SignedHeaders"))
        .map(|(_, value)| decode(value))
        .collect();
    // A presigned request names its signed headers once; none (or twice) leaves nothing signed.
    let signed: Vec<&str> = match signed.as_slice() {
        [one] => one.split(';').collect(),
        [] if !query.contains("X-Amz-Signature") && !query.to_ascii_lowercase().contains("x-amz-signature") => {
            return Vec::new();
        }
        _ => Vec::new(),
    };
    req.headers()
        .keys()
        .map(|name| name.as_str())
        .filter(|name| name.starts_with("x-amz-") && !signed.contains(name))
        .map(str::to_owned)
        .collect()
}

/// s3s answers a form upload with the key as the form sent it: put the file's name into the
/// redirect's `key` parameter and the 201 body's `<Key>`, as S3 does.
async fn substitute_in_answer(response: DevResponse, name: &str) -> DevResponse {
    let (mut parts, body) = response.into_parts();
    if let Some(location) = parts.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) {
        let replaced = location.replace("%24%7Bfilename%7D", &form_urlencode(name));
        if let Ok(value) = HeaderValue::from_str(&replaced) {
            parts.headers.insert(header::LOCATION, value);
        }
    }
    if parts.status != StatusCode::CREATED {
        return Response::from_parts(parts, body);
    }
    let Ok(collected) = body.collect().await else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "dev store error");
    };
    let text = String::from_utf8_lossy(&collected.to_bytes()).replace("${filename}", &xml_escape(name));
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = Full::new(Bytes::from(text)).map_err(|never| match never {}).boxed();
    Response::from_parts(parts, body)
}

/// `application/x-www-form-urlencoded` encoding of one value (what a redirect's query holds).
fn form_urlencode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(byte as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The `filename` of the multipart part named `file` (the last part of an S3 POST form).
fn file_part_name(body: &[u8]) -> Option<String> {
    let needle = b"name=\"file\"; filename=\"";
    let start = body.windows(needle.len()).rposition(|w| w == needle)? + needle.len();
    let end = body[start..].iter().position(|b| *b == b'"')? + start;
    let name = String::from_utf8(body[start..end].to_vec()).ok()?;
    Some(name.rsplit(['/', '\\']).next().unwrap_or_default().to_owned()).filter(|n| !n.is_empty())
}

/// CORS headers for an allowed origin; none for any other (the browser then keeps the answer
/// from the page).
fn add_cors(response: &mut DevResponse, origin: Option<&HeaderValue>) {
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    let Some(allow) = origin.cloned() else { return };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE"),
    );
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("*"));
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("ETag, Location, x-amz-error-code, x-amz-request-id"),
    );
}

/// An error answer with S3's `x-amz-error-code` header (its `<Code>`), which the CORS rule
/// exposes: a browser reads the code without parsing XML.
async fn with_error_code(response: DevResponse) -> DevResponse {
    let (mut parts, body) = response.into_parts();
    let Ok(collected) = body.collect().await else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "dev store error");
    };
    let bytes = collected.to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    let code = text
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code);
    if let Some(value) = code.and_then(|c| HeaderValue::from_str(c).ok()) {
        parts.headers.insert("x-amz-error-code", value);
    }
    Response::from_parts(parts, Full::new(bytes).map_err(|never| match never {}).boxed())
}

fn boxed_empty() -> http_body_util::combinators::BoxBody<Bytes, s3s::HttpError> {
    Full::new(Bytes::new()).map_err(|never| match never {}).boxed()
}

fn plain(status: StatusCode, text: &'static str) -> DevResponse {
    let mut response = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presigned_requests_name_their_unsigned_amz_headers_however_the_query_spells_them() {
        let request = Request::builder()
            .uri("/b/k?X-Amz-SignedHeader%73=host&X-Amz-Signature=00")
            .header("x-amz-copy-source", "b/other")
            .body(())
            .unwrap();
        assert_eq!(unsigned_amz_headers(&request), ["x-amz-copy-source"]);
    }

    #[test]
    fn presigned_requests_name_their_unsigned_amz_headers() {
        let request = |uri: &str, headers: &[(&str, &str)]| {
            let mut builder = Request::builder().method(Method::PUT).uri(uri);
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            builder.body(()).unwrap()
        };
        let presigned = "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=content-length%3Bhost%3Bx-amz-meta-a&X-Amz-Signature=0";
        let signed_only = request(presigned, &[("x-amz-meta-a", "1"), ("content-type", "x/y")]);
        assert!(unsigned_amz_headers(&signed_only).is_empty());
        let extra = request(presigned, &[("x-amz-meta-a", "1"), ("x-amz-copy-source", "b/other")]);
        assert_eq!(unsigned_amz_headers(&extra), ["x-amz-copy-source"]);
        // Header-signed requests are s3s's to check.
        let plain = request("/b/k", &[("x-amz-copy-source", "b/other")]);
        assert!(unsigned_amz_headers(&plain).is_empty());
    }

    #[test]
    fn finds_the_file_part_name() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\na/${filename}\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"C:\\\\x\\\\me.png\"\r\n\r\nDATA\r\n--b--\r\n";
        assert_eq!(file_part_name(body).as_deref(), Some("me.png"));
        assert_eq!(file_part_name(b"no file here"), None);
    }
}
