//! End to end against a real S3-compatible server: s3s + s3s-fs serve a temporary directory on
//! 127.0.0.1:0 with SigV4 and POST-policy checking. Forms from postgate upload; every constraint
//! is proven by an upload the server rejects, with nothing written.
//!
//! s3s-fs 0.14 does not substitute `${filename}`: a form without a named filename stores the key
//! with `${filename}` literally, which is what these tests expect.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use indexmap::IndexMap;
use postgate::profile::{self, Context, Profile, ProfileName, UploadRequest, admit};
use postgate::registry;
use postgate::secret::Secret;
use postgate::sign::{Addressing, Credentials, Endpoint, PresignedPost, Store, presign};
use s3s::S3;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::repo_path;

const ACCESS_KEY: &str = "AKIAPOSTGATETEST0001";
const SECRET_KEY: &str = "postgate/test/secret/key/0123456789abcdef";
const BUCKETS: &[&str] = &[
    "user-content",
    "user-documents",
    "tenant-datasets",
    "finance-inbox",
    "other-bucket",
];

struct S3Server {
    root: tempfile::TempDir,
    endpoint: String,
    fs: s3s_fs::FileSystem,
}

impl S3Server {
    async fn start() -> S3Server {
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
        S3Server { root, endpoint, fs }
    }

    fn store(&self) -> Store {
        let credentials = Credentials {
            access_key_id: ACCESS_KEY.to_owned(),
            secret_access_key: Secret::new(SECRET_KEY),
            session_token: None,
            expires_at: None,
        };
        Store::new(
            "default",
            "us-east-1",
            Endpoint::Custom(self.endpoint.clone()),
            Addressing::Path,
            credentials,
        )
    }

    /// Every stored object (data files, not s3s-fs's own dot files), relative to the root.
    fn objects(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                if path.is_dir() {
                    walk(&path, root, out);
                } else {
                    out.push(path.strip_prefix(root).unwrap().to_owned());
                }
            }
        }
        let mut out = Vec::new();
        walk(self.root.path(), self.root.path(), &mut out);
        out.sort();
        out
    }

    /// Content-Type and user metadata of a stored object, read back through the S3 API.
    async fn head(&self, bucket: &str, key: &str) -> (Option<String>, BTreeMap<String, String>) {
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
        let output = self.fs.head_object(request).await.unwrap().output;
        let metadata = output.metadata.unwrap_or_default().into_iter().collect();
        (output.content_type.map(|t| t.to_string()), metadata)
    }
}

/// Posts a multipart form: the fields in order, the file last.
async fn upload(url: &str, fields: &[(String, String)], file_name: &str, bytes: Vec<u8>) -> (u16, String) {
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in fields {
        form = form.text(name.clone(), value.clone());
    }
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_owned()),
    );
    let response = reqwest::Client::new().post(url).multipart(form).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn load_policies() -> registry::Snapshot {
    registry::load(&repo_path("policies"), &["default".to_owned()]).unwrap()
}

fn sign(store: &Store, profile: &Profile, app: &str, request: &UploadRequest) -> PresignedPost {
    let now = OffsetDateTime::now_utc();
    let ctx = Context {
        app,
        now,
        uuid: Uuid::now_v7(),
    };
    let upload = admit(profile, request, &ctx).unwrap_or_else(|r| panic!("refused: {r:?}"));
    presign(&upload, store, now)
}

#[derive(Deserialize)]
struct UploadCase {
    profile: Option<String>,
    app: String,
    request: UploadRequest,
    #[serde(default)]
    form: IndexMap<String, String>,
    file: FileSpec,
    expect: Expect,
}

#[derive(Deserialize)]
struct FileSpec {
    name: String,
    bytes: usize,
}

#[derive(Deserialize)]
struct Expect {
    key_prefix: String,
    #[serde(default)]
    key_suffix: Option<String>,
    content_type: String,
    metadata: BTreeMap<String, String>,
}

fn file_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn every_example_profile_uploads() {
    let server = S3Server::start().await;
    let store = server.store();
    let snapshot = load_policies();
    let cases: IndexMap<String, UploadCase> =
        serde_yaml::from_str(&std::fs::read_to_string(repo_path("tests/data/uploads.yaml")).unwrap()).unwrap();
    for name in snapshot.profiles.keys() {
        assert!(
            cases.values().any(|c| c.profile.as_deref().unwrap_or("") == name) || cases.contains_key(name),
            "policies/{name}.yaml has no upload case in tests/data/uploads.yaml"
        );
    }
    for (case_name, case) in &cases {
        let profile = snapshot.get(case.profile.as_deref().unwrap_or(case_name)).unwrap();
        let post = sign(&store, profile, &case.app, &case.request);
        let mut fields = post.fields.clone();
        fields.extend(case.form.iter().map(|(k, v)| (k.clone(), v.clone())));
        let bytes = file_bytes(case.file.bytes);
        let (status, body) = upload(&post.url, &fields, &case.file.name, bytes.clone()).await;
        assert!((200..300).contains(&status), "{case_name}: {status} {body}");

        let expect = &case.expect;
        assert!(post.key.starts_with(&expect.key_prefix), "{case_name}: {}", post.key);
        if let Some(suffix) = &expect.key_suffix {
            assert!(post.key.ends_with(suffix), "{case_name}: {}", post.key);
        }
        let stored = server.root.path().join(profile.bucket()).join(&post.key);
        assert_eq!(std::fs::read(&stored).unwrap(), bytes, "{case_name}: stored bytes");
        let (content_type, metadata) = server.head(profile.bucket(), &post.key).await;
        assert_eq!(
            content_type.as_deref(),
            Some(expect.content_type.as_str()),
            "{case_name}"
        );
        assert_eq!(metadata, expect.metadata, "{case_name}");
    }
}

/// A form that S3 must reject: what to change, and the status it answers.
struct Rejection {
    name: &'static str,
    status: u16,
    /// A word of S3's error body that says why (its error code).
    code: &'static str,
}

fn avatar_request(user: &str) -> UploadRequest {
    UploadRequest {
        vars: [("user".to_owned(), user.to_owned())].into_iter().collect(),
        metadata: [("purpose".to_owned(), "avatar".to_owned())].into_iter().collect(),
        ..UploadRequest::default()
    }
}

fn set(fields: &mut Vec<(String, String)>, name: &str, value: &str) {
    match fields.iter_mut().find(|(n, _)| n == name) {
        Some(field) => field.1 = value.to_owned(),
        None => fields.push((name.to_owned(), value.to_owned())),
    }
}

#[tokio::test]
async fn every_constraint_is_enforced_by_the_server() {
    let server = S3Server::start().await;
    let store = server.store();
    let snapshot = load_policies();
    let avatars = snapshot.get("avatars").unwrap();
    let datasets = snapshot.get("datasets").unwrap();
    let png = ("Content-Type".to_owned(), "image/png".to_owned());

    let cases = [
        Rejection {
            name: "too large",
            status: 400,
            code: "EntityTooLarge",
        },
        Rejection {
            name: "too small",
            status: 400,
            code: "EntityTooSmall",
        },
        Rejection {
            name: "exact size, other size",
            status: 400,
            code: "EntityTooLarge",
        },
        Rejection {
            name: "wrong content type",
            status: 400,
            code: "InvalidPolicyDocument",
        },
        Rejection {
            name: "missing content type",
            status: 400,
            code: "InvalidPolicyDocument",
        },
        Rejection {
            name: "exact content type changed",
            status: 400,
            code: "InvalidPolicyDocument",
        },
        Rejection {
            name: "wrong metadata",
            status: 400,
            code: "InvalidPolicyDocument",
        },
        Rejection {
            name: "missing metadata",
            status: 400,
            code: "InvalidPolicyDocument",
        },
        Rejection {
            name: "fixed metadata changed",
            status: 400,
            code: "InvalidPolicyDocument",
        },
        Rejection {
            name: "key outside the prefix",
            status: 400,
            code: "InvalidPolicyDocument",
        },
        Rejection {
            name: "key of a longer user (u4 form, u42 key)",
            status: 400,
            code: "InvalidPolicyDocument",
        },
        Rejection {
            name: "exact key changed",
            status: 400,
            code: "InvalidPolicyDocument",
        },
        Rejection {
            name: "extra field",
            status: 403,
            code: "AccessDenied",
        },
        Rejection {
            name: "extra metadata",
            status: 403,
            code: "AccessDenied",
        },
        Rejection {
            name: "acl changed",
            status: 400,
            code: "InvalidPolicyDocument",
        },
        Rejection {
            name: "tampered signature",
            status: 403,
            code: "SignatureDoesNotMatch",
        },
        Rejection {
            name: "tampered policy",
            status: 403,
            code: "SignatureDoesNotMatch",
        },
        Rejection {
            name: "wrong secret",
            status: 403,
            code: "SignatureDoesNotMatch",
        },
        Rejection {
            name: "wrong bucket",
            status: 400,
            code: "InvalidPolicyDocument",
        },
    ];

    for case in &cases {
        let before = server.objects();
        let mut request = avatar_request("u4");
        let mut file_len = 1000;
        let mut profile = avatars;
        match case.name {
            "exact size, other size" => request.size = Some(100),
            "exact key changed" => request.filename = Some("a.png".into()),
            _ => {}
        }
        if case.name == "exact content type changed" {
            profile = datasets;
            request = UploadRequest {
                vars: [("tenant".into(), "t-0001".into()), ("dataset".into(), "x".into())]
                    .into_iter()
                    .collect(),
                ..UploadRequest::default()
            };
        }
        let mut post = sign(&store, profile, "web", &request);
        if case.name == "wrong secret" {
            let mut wrong = server.store();
            wrong.credentials.secret_access_key = Secret::new("not-the-secret");
            let wrong = Store::new(
                "default",
                "us-east-1",
                wrong.endpoint.clone(),
                Addressing::Path,
                wrong.credentials,
            );
            post = sign(&wrong, profile, "web", &request);
        }
        let mut fields = post.fields.clone();
        if profile.name().as_str() == "avatars" {
            fields.push(png.clone());
        }
        let mut url = post.url.clone();
        match case.name {
            "too large" => file_len = 5 * 1024 * 1024 + 1,
            "too small" => file_len = 0,
            "wrong content type" => set(&mut fields, "Content-Type", "text/html"),
            "missing content type" => fields.retain(|(n, _)| n != "Content-Type"),
            "exact content type changed" => set(&mut fields, "Content-Type", "text/html"),
            "wrong metadata" => set(&mut fields, "x-amz-meta-purpose", "wallpaper"),
            "missing metadata" => fields.retain(|(n, _)| n != "x-amz-meta-purpose"),
            "fixed metadata changed" => set(&mut fields, "x-amz-meta-uploaded-by", "mallory"),
            "key outside the prefix" => set(&mut fields, "key", "avatars/mallory/x/${filename}"),
            "key of a longer user (u4 form, u42 key)" => {
                let key = post.key.replacen("avatars/u4/", "avatars/u42/", 1);
                set(&mut fields, "key", &key);
            }
            "exact key changed" => set(&mut fields, "key", &post.key.replace("a.png", "b.png")),
            "extra field" => fields.push(("Content-Encoding".into(), "gzip".into())),
            "extra metadata" => fields.push(("x-amz-meta-admin".into(), "true".into())),
            "acl changed" => set(&mut fields, "acl", "public-read"),
            "tampered signature" => {
                let signature = fields.iter_mut().find(|(n, _)| n == "x-amz-signature").unwrap();
                let flipped = if signature.1.starts_with('0') { "1" } else { "0" };
                signature.1.replace_range(0..1, flipped);
            }
            "tampered policy" => {
                use base64::Engine as _;
                let engine = base64::engine::general_purpose::STANDARD;
                let policy = post.policy.replace("5242880", "52428800");
                set(&mut fields, "policy", &engine.encode(policy));
            }
            "wrong bucket" => url = url.replace("/user-content", "/other-bucket"),
            _ => {}
        }
        let (status, body) = upload(&url, &fields, "x.png", file_bytes(file_len)).await;
        assert_eq!(status, case.status, "{}: {body}", case.name);
        assert!(
            body.contains(case.code),
            "{}: expected {} in {body}",
            case.name,
            case.code
        );
        assert_eq!(server.objects(), before, "{}: an object was written", case.name);
    }

    // Control: the unchanged form uploads, so each rejection above is the change's doing.
    let post = sign(&store, avatars, "web", &avatar_request("u4"));
    let mut fields = post.fields.clone();
    fields.push(png);
    let (status, body) = upload(&post.url, &fields, "x.png", file_bytes(1000)).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn an_expired_policy_is_rejected() {
    let server = S3Server::start().await;
    let store = server.store();
    let yaml = "bucket: user-content\nkey: \"quick/${uuid}\"\nsize: { max: 1KiB }\nexpires_in: 1s\n";
    let profile = profile::parse(&ProfileName::new("quick").unwrap(), yaml).unwrap();
    let post = sign(&store, &profile, "web", &UploadRequest::default());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = upload(&post.url, &post.fields, "x", file_bytes(10)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("expired"), "{body}");
    assert!(server.objects().is_empty());

    // Control: the same profile signed now uploads.
    let post = sign(&store, &profile, "web", &UploadRequest::default());
    let (status, body) = upload(&post.url, &post.fields, "x", file_bytes(10)).await;
    assert_eq!(status, 204, "{body}");
}
