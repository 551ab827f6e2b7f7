//! S3 servers the tests start (s3s-fs in process; Garage and SeaweedFS when set up) and uploads
//! to them.

use super::repo_path;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use postgate::profile::UploadRequest;
use postgate::registry;
use postgate::secret::Secret;
use postgate::sign::{Addressing, Credentials, Endpoint, PresignedPost, PresignedPut, Signed, Store};
use s3s::S3;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

pub const ACCESS_KEY: &str = "AKIAPOSTGATETEST0001";
pub const SECRET_KEY: &str = "postgate/test/secret/key/0123456789abcdef";
const BUCKETS: &[&str] = &[
    "user-content",
    "user-documents",
    "tenant-datasets",
    "finance-inbox",
    "other-bucket",
];

/// One test on an external server at a time (they share its buckets).
static REMOTE_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn garage_turn() -> tokio::sync::MutexGuard<'static, ()> {
    REMOTE_TURN.lock().await
}

/// Which S3 server implementation answers: the expectation tables of the suites are per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// s3s + s3s-fs in this process.
    S3sFs,
    /// Garage 2.5, started by `tests/garage/start.sh`.
    Garage,
    /// SeaweedFS 4.48, started by `tests/seaweedfs/start.sh`.
    SeaweedFs,
}

impl Kind {
    /// The server's name in tables and messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::S3sFs => "s3s-fs",
            Kind::Garage => "garage",
            Kind::SeaweedFs => "seaweedfs",
        }
    }

    /// The prefix of the variables its start script exports, and the directory of its scripts.
    fn env_prefix(self) -> (&'static str, &'static str) {
        match self {
            Kind::S3sFs => ("", ""),
            Kind::Garage => ("GARAGE", "garage"),
            Kind::SeaweedFs => ("SEAWEEDFS", "seaweedfs"),
        }
    }
}

/// Which server answers.
enum Backend {
    /// s3s + s3s-fs in this process, over a temporary directory.
    Fs {
        root: tempfile::TempDir,
        fs: s3s_fs::FileSystem,
    },
    /// A server a start script started (Garage, SeaweedFS), read through the S3 API.
    Remote { client: reqwest::Client, kind: Kind },
}

pub struct S3Server {
    pub endpoint: String,
    pub region: String,
    access_key: String,
    secret_key: String,
    backend: Backend,
}

/// A stored object as read back: bytes, Content-Type and user metadata.
pub struct StoredObject {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

impl S3Server {
    pub async fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        for bucket in BUCKETS {
            std::fs::create_dir(root.path().join(bucket)).unwrap();
        }
        let mut builder = s3s::service::S3ServiceBuilder::new(s3s_fs::FileSystem::new(root.path()).unwrap());
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        S3Server {
            endpoint,
            region: "us-east-1".into(),
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
            backend: Backend::Fs { root, fs },
        }
    }

    /// The Garage server `tests/garage/start.sh` started: `S3Server::remote(Kind::Garage)`.
    pub fn garage() -> Option<S3Server> {
        S3Server::remote(Kind::Garage)
    }

    /// The SeaweedFS server `tests/seaweedfs/start.sh` started.
    pub fn seaweedfs() -> Option<S3Server> {
        S3Server::remote(Kind::SeaweedFs)
    }

    /// The server of `kind` its start script started, from the `<KIND>_*` variables it exports
    /// (`GARAGE_ENDPOINT`, `SEAWEEDFS_ENDPOINT`, …); `None` when they are not set: the calling
    /// test then prints `SKIPPED:` with how to run it (its name is its thread's, as the test
    /// harness names it) and passes, unless `CI_REQUIRE_<KIND>` is set, as in CI, which fails
    /// it. Tests share its buckets and compare listings, so one holds it at a time: keep the
    /// guard of `garage_turn` for the whole test.
    pub fn remote(kind: Kind) -> Option<S3Server> {
        let (prefix, dir) = kind.env_prefix();
        let var = |name: &str| std::env::var(format!("{prefix}_{name}")).ok().filter(|v| !v.is_empty());
        let Some(endpoint) = var("ENDPOINT") else {
            assert!(
                std::env::var_os(format!("CI_REQUIRE_{prefix}")).is_none_or(|v| v.is_empty()),
                "CI_REQUIRE_{prefix} is set but {prefix}_ENDPOINT is not: run tests/{dir}/start.sh"
            );
            let test = std::thread::current().name().unwrap_or("a test").to_owned();
            eprintln!(
                "SKIPPED: {test} did not run: {prefix}_ENDPOINT is not set. Start {name} with \
                 `eval \"$(bash tests/{dir}/start.sh target/{dir})\"` from the repository root \
                 (it exports {prefix}_ENDPOINT, {prefix}_REGION, {prefix}_ACCESS_KEY_ID and \
                 {prefix}_SECRET_ACCESS_KEY; tests/{dir}/install.sh installs it once; see \
                 tests/{dir}/README.md)",
                name = kind.name()
            );
            return None;
        };
        Some(S3Server {
            endpoint,
            region: var("REGION").unwrap_or_else(|| "us-east-1".into()),
            access_key: var("ACCESS_KEY_ID").unwrap(),
            secret_key: var("SECRET_ACCESS_KEY").unwrap(),
            backend: Backend::Remote {
                client: reqwest::Client::new(),
                kind,
            },
        })
    }

    /// The s3s-fs root directory (`None` for a remote server).
    pub fn fs_root(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Fs { root, .. } => Some(root.path()),
            Backend::Remote { .. } => None,
        }
    }

    pub fn kind(&self) -> Kind {
        match self.backend {
            Backend::Fs { .. } => Kind::S3sFs,
            Backend::Remote { kind, .. } => kind,
        }
    }

    pub fn is_garage(&self) -> bool {
        self.kind() == Kind::Garage
    }

    /// The access key ID and secret the server accepts.
    pub fn credentials(&self) -> (&str, &str) {
        (&self.access_key, &self.secret_key)
    }

    pub fn store(&self) -> Store {
        let credentials = Credentials {
            access_key_id: self.access_key.clone(),
            secret_access_key: Secret::new(&self.secret_key),
            session_token: None,
            expires_at: None,
        };
        Store::new(
            "default",
            &self.region,
            Endpoint::Custom(self.endpoint.clone()),
            Addressing::Path,
            credentials,
        )
    }

    /// The key an upload lands under: Garage and SeaweedFS substitute `${filename}` as S3 does;
    /// s3s-fs keeps it literally.
    pub fn stored_key(&self, form_key: &str, file_name: &str) -> String {
        if self.kind() != Kind::S3sFs {
            form_key.replace("${filename}", file_name)
        } else {
            form_key.to_owned()
        }
    }

    fn bucket(&self, name: &str) -> (rusty_s3::Bucket, rusty_s3::Credentials) {
        let bucket = rusty_s3::Bucket::new(
            self.endpoint.parse().unwrap(),
            rusty_s3::UrlStyle::Path,
            name.to_owned(),
            self.region.clone(),
        )
        .unwrap();
        (bucket, rusty_s3::Credentials::new(&self.access_key, &self.secret_key))
    }

    /// Every stored object as `bucket/key`, sorted.
    pub async fn objects(&self) -> Vec<String> {
        match &self.backend {
            Backend::Fs { root, .. } => {
                fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
                    for entry in std::fs::read_dir(dir).unwrap().flatten() {
                        let path = entry.path();
                        if entry.file_name().to_string_lossy().starts_with('.') {
                            continue;
                        }
                        if path.is_dir() {
                            walk(&path, root, out);
                        } else {
                            out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                        }
                    }
                }
                let mut out = Vec::new();
                walk(root.path(), root.path(), &mut out);
                out.sort();
                out
            }
            Backend::Remote { client, .. } => {
                use rusty_s3::S3Action as _;
                let mut out = Vec::new();
                for name in BUCKETS {
                    let (bucket, credentials) = self.bucket(name);
                    let url = bucket.list_objects_v2(Some(&credentials)).sign(Duration::from_secs(60));
                    let text = client.get(url).send().await.unwrap().text().await.unwrap();
                    let listing = rusty_s3::actions::ListObjectsV2::parse_response(&text)
                        .unwrap_or_else(|e| panic!("listing {name}: {e}: {text}"));
                    out.extend(listing.contents.into_iter().map(|c| format!("{name}/{}", c.key)));
                }
                out.sort();
                out
            }
        }
    }

    /// A PUT URL signed with the store's own credentials: what someone holding them could send,
    /// to make the store hold what no postgate signature allowed. `part`: an UploadPart.
    pub fn raw_put_url(&self, bucket: &str, key: &str, part: Option<(u16, &str)>) -> String {
        use rusty_s3::S3Action as _;
        let (bucket, credentials) = self.bucket(bucket);
        let url = match part {
            Some((number, upload_id)) => bucket
                .upload_part(Some(&credentials), key, number, upload_id)
                .sign(Duration::from_secs(300)),
            None => bucket
                .put_object(Some(&credentials), key)
                .sign(Duration::from_secs(300)),
        };
        url.to_string()
    }

    /// Stores `bytes` at `key` with the store's own credentials, carrying `marker` as the
    /// per-upload marker when given (signed, so every store takes it): an object someone else
    /// wrote (no marker, or another grant's), or this upload's bytes as a store that enforces
    /// nothing would keep them. Returns the PUT's status.
    pub async fn raw_put(&self, bucket: &str, key: &str, marker: Option<&str>, bytes: Vec<u8>) -> u16 {
        use rusty_s3::S3Action as _;
        let (bucket, credentials) = self.bucket(bucket);
        let mut action = bucket.put_object(Some(&credentials), key);
        if let Some(marker) = marker {
            action
                .headers_mut()
                .insert(postgate::profile::plan::MARKER_FIELD, marker.to_owned());
        }
        let url = action.sign(Duration::from_secs(300));
        let mut request = reqwest::Client::new().put(url.as_str()).body(bytes);
        if let Some(marker) = marker {
            request = request.header(postgate::profile::plan::MARKER_FIELD, marker);
        }
        match request.send().await {
            Ok(response) => response.status().as_u16(),
            Err(_) => 599,
        }
    }

    /// A stored object's bytes, Content-Type and user metadata, read back through the S3 API.
    pub async fn object(&self, bucket: &str, key: &str) -> Option<StoredObject> {
        match &self.backend {
            Backend::Fs { root, fs } => {
                let bytes = std::fs::read(root.path().join(bucket).join(key)).ok()?;
                let input = s3s::dto::HeadObjectInput::builder()
                    .bucket(bucket.to_owned())
                    .key(key.to_owned())
                    .build()
                    .unwrap();
                let request = s3s::S3Request {
                    input,
                    method: http::Method::HEAD,
                    uri: http::Uri::from_static("/"),
                    headers: http::HeaderMap::new(),
                    extensions: http::Extensions::new(),
                    credentials: None,
                    region: None,
                    service: None,
                    trailing_headers: None,
                };
                let output = fs.head_object(request).await.unwrap().output;
                Some(StoredObject {
                    bytes,
                    content_type: output.content_type.map(|t| t.to_string()),
                    metadata: output.metadata.unwrap_or_default().into_iter().collect(),
                })
            }
            Backend::Remote { client, .. } => {
                use rusty_s3::S3Action as _;
                let (bucket, credentials) = self.bucket(bucket);
                let url = bucket.get_object(Some(&credentials), key).sign(Duration::from_secs(60));
                let response = client.get(url).send().await.unwrap();
                if response.status() == 404 {
                    return None;
                }
                assert!(response.status().is_success(), "GET {key}: {}", response.status());
                let headers = response.headers().clone();
                let metadata = headers
                    .iter()
                    .filter_map(|(name, value)| {
                        let name = name.as_str().strip_prefix("x-amz-meta-")?;
                        Some((name.to_owned(), value.to_str().unwrap().to_owned()))
                    })
                    .collect();
                Some(StoredObject {
                    bytes: response.bytes().await.unwrap().to_vec(),
                    content_type: headers.get("content-type").map(|v| v.to_str().unwrap().to_owned()),
                    metadata,
                })
            }
        }
    }
}

/// Posts a multipart form: the fields in order, the file last.
pub async fn upload(url: &str, fields: &[(String, String)], file_name: &str, bytes: Vec<u8>) -> (u16, String) {
    try_upload(url, fields, file_name, bytes).await.unwrap()
}

/// `upload`, with a connection the store closed before answering as an error.
pub async fn try_upload(
    url: &str,
    fields: &[(String, String)],
    file_name: &str,
    bytes: Vec<u8>,
) -> Result<(u16, String), String> {
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in fields {
        form = form.text(name.clone(), value.clone());
    }
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_owned()),
    );
    // Redirects (`success_action_redirect`) are answers to check, not to follow.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .post(url)
        .multipart(form)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    if response.status().is_redirection() {
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        return Ok((status, location.unwrap_or_default()));
    }
    Ok((status, response.text().await.unwrap_or_default()))
}

pub fn load_policies() -> registry::Snapshot {
    registry::load(
        &repo_path("policies"),
        &std::sync::Arc::new(registry::unsigned_stores(&["default"])),
    )
    .unwrap()
}

/// Sends a file as the raw body of a PUT with `headers` (Content-Length follows the body).
pub async fn put_upload(url: &str, headers: &[(String, String)], bytes: Vec<u8>) -> (u16, String) {
    let client = reqwest::Client::new();
    let mut request = client.put(url).body(bytes);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// A signed PUT as a client sees it: the URL and the headers to send.
pub struct SignedPut {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub key: String,
}

/// A signed upload as a client sees it.
pub enum SignedUpload {
    Form(SignedForm),
    Put(SignedPut),
}

impl SignedUpload {
    pub fn key(&self) -> &str {
        match self {
            SignedUpload::Form(form) => &form.key,
            SignedUpload::Put(put) => &put.key,
        }
    }

    pub fn form(self) -> SignedForm {
        match self {
            SignedUpload::Form(form) => form,
            SignedUpload::Put(put) => panic!("a PUT where a form was expected: {}", put.url),
        }
    }

    pub fn put(self) -> SignedPut {
        match self {
            SignedUpload::Put(put) => put,
            SignedUpload::Form(form) => panic!("a form where a PUT was expected: {}", form.url),
        }
    }

    /// Sends `bytes` as `file_name` (form extras are added to a form only).
    pub async fn send(&self, extra: &[(String, String)], file_name: &str, bytes: Vec<u8>) -> (u16, String) {
        match self {
            SignedUpload::Form(form) => {
                let mut fields = form.fields.clone();
                fields.extend(extra.iter().cloned());
                upload(&form.url, &fields, file_name, bytes).await
            }
            SignedUpload::Put(put) => put_upload(&put.url, &put.headers, bytes).await,
        }
    }
}

impl From<Signed<'_>> for SignedUpload {
    fn from(signed: Signed<'_>) -> SignedUpload {
        match signed {
            Signed::Post(post) => SignedUpload::Form(post.into()),
            Signed::Put(put) => SignedUpload::Put(put.into()),
        }
    }
}

impl From<PresignedPut<'_>> for SignedPut {
    fn from(put: PresignedPut<'_>) -> SignedPut {
        SignedPut {
            headers: put
                .client_headers()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect(),
            url: put.url,
            key: put.key,
        }
    }
}

/// The base64 SHA-256 of `bytes`, as `x-amz-checksum-sha256` takes it.
pub fn sha256_b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(bytes))
}

/// A signed form as a client sees it: where to post, and the fields in order.
pub struct SignedForm {
    pub url: String,
    pub fields: Vec<(String, String)>,
    pub key: String,
}

impl SignedForm {
    /// The POST policy document the form carries, decoded.
    pub fn policy(&self) -> String {
        use base64::Engine as _;
        let b64 = &self.fields.iter().find(|(n, _)| n == "policy").unwrap().1;
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
    }
}

impl From<PresignedPost<'_>> for SignedForm {
    fn from(post: PresignedPost<'_>) -> SignedForm {
        SignedForm {
            url: post.url,
            fields: post
                .fields
                .into_iter()
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect(),
            key: post.key,
        }
    }
}

pub fn file_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

pub fn avatar_request(user: &str) -> UploadRequest {
    UploadRequest {
        vars: [("user".to_owned(), user.to_owned())].into_iter().collect(),
        metadata: [("purpose".to_owned(), "avatar".to_owned())].into_iter().collect(),
        ..UploadRequest::default()
    }
}

/// A `Store` signing for `postgate dev`'s embedded store at `endpoint`, with its dev credentials.
pub fn dev_store(endpoint: &str) -> Store {
    let credentials = Credentials {
        access_key_id: postgate::dev::ACCESS_KEY.into(),
        secret_access_key: Secret::new(postgate::dev::SECRET_KEY),
        session_token: None,
        expires_at: None,
    };
    Store::new(
        "default",
        "us-east-1",
        Endpoint::Custom(endpoint.to_owned()),
        Addressing::Path,
        credentials,
    )
}
