//! Published SigV4 known-answer vectors (copied from the shared set into tests/data/vectors).

use postgate::profile::conditions::Condition;
use postgate::profile::{self, Context, Method, ProfileName, UploadRequest};
use postgate::secret::Secret;
use postgate::sign::sigv4::{QueryRequest, QuerySigner};
use postgate::sign::{Addressing, Credentials, Endpoint, FieldStyle, Signed, Store, policy_document, sigv4};
use time::macros::datetime;

use crate::repo_path;

/// Signs as `sign::sign` does, without the per-upload marker entry: the vectors and golden forms
/// were made before markers existed, and prove that the renderers sign the entries they are
/// given byte for byte (the marker is one more entry, rendered like any other; the coverage
/// checker and the end-to-end tests cover it).
fn sign_without_marker<'p>(
    profile: &'p profile::Profile,
    signer: &postgate::sign::Signer<'_>,
    request: &UploadRequest,
    ctx: &Context<'_>,
    style: FieldStyle,
) -> Signed<'p> {
    let method = postgate::sign::choose_method(profile, signer, request.method).unwrap();
    let mut filled = profile::admit(profile, request, method, ctx).unwrap();
    let before = filled.entries.len();
    filled
        .entries
        .retain(|entry| entry.target != profile::plan::Target::Marker);
    assert_eq!(filled.entries.len(), before - 1, "every signature carries one marker");
    match method {
        Method::Post => Signed::Post(postgate::sign::post::post_form(filled, signer, ctx.now, style)),
        Method::Put => Signed::Put(postgate::sign::put::put_url(filled, signer, ctx.now)),
    }
}

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(repo_path("tests/data/vectors").join(name)).unwrap()
}

fn sign(policy: &[u8], secret: &str, date: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(policy);
    sigv4::signature(&sigv4::signing_key(secret, date, "us-east-1", "s3"), b64.as_bytes())
}

#[test]
fn s3_docs_browser_upload_example() {
    let policy = vector("aws-sigv4-post-example.policy.json");
    assert_eq!(policy.len(), 648);
    let key = sigv4::signing_key(SECRET, "20151229", "us-east-1", "s3");
    assert_eq!(
        hex::encode(key),
        "cbcef1ebeaefc82cce6530b9f0a9ae598846065f5c5bae0674bd5ebc4ba52d28"
    );
    assert_eq!(
        sign(&policy, SECRET, "20151229"),
        "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e"
    );
    // Control: the same text with LF line endings signs differently.
    let lf: Vec<u8> = policy.iter().copied().filter(|b| *b != b'\r').collect();
    assert_eq!(
        sign(&lf, SECRET, "20151229"),
        "86aaafeda50e7b032f0fe24086079df198e4c3d0d308518251cf6653a9bf390d"
    );
}

#[test]
fn botocore_generate_presigned_post_document_and_signature() {
    let expected = vector("botocore-generate-presigned-post.policy.json");
    let conditions = [
        Condition::eq("bucket", "sigv4examplebucket"),
        Condition::eq("key", "user/user1/photo.jpg"),
        Condition::eq("x-amz-algorithm", "AWS4-HMAC-SHA256"),
        Condition::eq(
            "x-amz-credential",
            "AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request",
        ),
        Condition::eq("x-amz-date", "20151229T000000Z"),
    ];
    let document = policy_document(datetime!(2015-12-29 01:00:00 UTC), &conditions);
    assert_eq!(document.as_bytes(), expected.as_slice(), "{document}");
    assert_eq!(
        sign(document.as_bytes(), SECRET, "20151229"),
        "3364624b39010d9b06f5d9b8c9a18a6e478d261c048159c92f2fd6fa885f14e6"
    );
}

#[test]
fn iam_signing_key_derivation() {
    let chain = sigv4::signing_key_chain(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "20120215",
        "us-east-1",
        "iam",
    );
    let hex: Vec<String> = chain.iter().map(hex::encode).collect();
    assert_eq!(
        hex,
        [
            "969fbb94feb542b71ede6f87fe4d5fa29c789342b0f407474670f0c2489e0a0d",
            "69daa0209cd9c5ff5c8ced464a696fd4252e981430b10e3d3fd8e2f197d7a70c",
            "f72cfd46f26bc4643f06a11eabb6c0ba18780c19a8da0c31ace671265e3c87fa",
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d",
        ]
    );
}

/// The copies in tests/data/vectors match the shared originals, which sit beside the repository.
#[test]
fn vector_copies_match_shared_originals() {
    let shared = crate::shared_vectors();
    for name in [
        "aws-sigv4-post-example.policy.json",
        "botocore-generate-presigned-post.policy.json",
        "README.md",
    ] {
        assert_eq!(std::fs::read(shared.join(name)).unwrap(), vector(name), "{name}");
    }
}

fn url_vector(name: &str, field: &str) -> String {
    let text = std::fs::read_to_string(repo_path("tests/data/vectors/presigned-urls.yaml")).unwrap();
    let vectors: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    vectors[name][field].as_str().unwrap().to_owned()
}

fn example_signer<'a>(key: &'a [u8; 32], region: &'a str, expires_in: u64, token: Option<&'a str>) -> QuerySigner<'a> {
    QuerySigner {
        access_key_id: "AKIAIOSFODNN7EXAMPLE",
        session_token: token,
        key: sigv4::Key::Aws4(key),
        region,
        service: "s3",
        amz_date: "20151229T000000Z",
        expires_in,
    }
}

#[test]
fn s3_docs_presigned_url_example() {
    let key = sigv4::signing_key(SECRET, "20130524", "us-east-1", "s3");
    let request = QueryRequest {
        method: "GET",
        host: "examplebucket.s3.amazonaws.com",
        path: "/test.txt",
        params: &[],
        headers: &[],
        payload_hash: sigv4::UNSIGNED_PAYLOAD,
    };
    let signer = QuerySigner {
        amz_date: "20130524T000000Z",
        ..example_signer(&key, "us-east-1", 86400, None)
    };
    let query = sigv4::presign_query(&request, &signer);
    let signature = query.rsplit("X-Amz-Signature=").next().unwrap();
    assert_eq!(signature, url_vector("s3-docs-get-example", "signature"));
}

/// §5 through the whole PUT path: a profile, admission for PUT, the PUT renderer.
#[test]
fn botocore_put_object_through_the_put_renderer() {
    let yaml = "bucket: sigv4examplebucket\nkey: user/user1/photo.jpg\nsize: { max: 1MiB }\nexpires_in: 600s\ncontent_type: { exact: image/jpeg }\nmetadata:\n  uploaded-by: user1\napps: all\n";
    let profile = profile::parse(&ProfileName::new("photo").unwrap(), yaml).unwrap();
    let credentials = Credentials {
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: Secret::new(SECRET),
        session_token: None,
        expires_at: None,
    };
    let store = Store::new(
        "default",
        "us-east-1",
        Endpoint::Custom("https://s3.amazonaws.com".into()),
        Addressing::Virtual,
        credentials,
    );
    let request = UploadRequest {
        size: Some(12345),
        method: Some(Method::Put),
        ..UploadRequest::default()
    };
    let now = datetime!(2015-12-29 00:00:00 UTC);
    let ctx = Context {
        app: "web",
        now,
        uuid: uuid::Uuid::nil(),
    };
    let Signed::Put(put) = sign_without_marker(
        &profile,
        &store.signer(ctx.now).unwrap(),
        &request,
        &ctx,
        FieldStyle::default(),
    ) else {
        panic!("not a PUT");
    };
    assert_eq!(put.url, url_vector("botocore-put-object", "url"));
    let headers: Vec<(&str, &str)> = put.headers.iter().map(|(n, v)| (n.as_ref(), v.as_ref())).collect();
    assert_eq!(
        headers,
        [
            ("Content-Length", "12345"),
            ("Content-Type", "image/jpeg"),
            ("x-amz-meta-uploaded-by", "user1")
        ]
    );
}

/// §6: an UploadPart URL, path-style, with a session token and a key with a space.
#[test]
fn botocore_upload_part_url() {
    let credentials = Credentials {
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: Secret::new(SECRET),
        session_token: None,
        expires_at: None,
    };
    let store = Store::new("default", "eu-west-1", Endpoint::Aws, Addressing::Path, credentials);
    let (origin, host, path) = store.object_location("big-uploads", "videos/u1/movie file.mp4");
    let key = sigv4::signing_key(SECRET, "20151229", "eu-west-1", "s3");
    let request = QueryRequest {
        method: "PUT",
        host: &host,
        path: &path,
        params: &[
            ("uploadId", "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA"),
            ("partNumber", "7"),
        ],
        headers: &[("content-length", "8388608")],
        payload_hash: sigv4::UNSIGNED_PAYLOAD,
    };
    let query = sigv4::presign_query(
        &request,
        &example_signer(&key, "eu-west-1", 3600, Some("FQoGZXIvYXdzEXAMPLETOKEN/+=")),
    );
    assert_eq!(
        format!("{origin}{path}?{query}"),
        url_vector("botocore-upload-part", "url")
    );
}

/// The POST renderer signs today's profiles byte for byte as the signer before the upload plan
/// did: tests/data/post-forms.golden.json holds, per admitted case of tests/data/admit.yaml at
/// that time, the profile's text, the request, the form and the policy that signer made (fixed
/// clock, UUID and credentials with a session token).
#[test]
fn post_forms_are_byte_identical_to_the_golden_forms() {
    let text = std::fs::read_to_string(repo_path("tests/data/post-forms.golden.json")).unwrap();
    let golden: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert!(golden.len() >= 9);
    let credentials = Credentials {
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: Secret::new(SECRET),
        session_token: Some(Secret::new("FQoGZXIvYXdzEXAMPLETOKEN/+=")),
        expires_at: None,
    };
    let store = Store::new("default", "eu-west-1", Endpoint::Aws, Addressing::Auto, credentials);
    for case in &golden {
        let name = case["case"].as_str().unwrap();
        let profile = profile::parse(
            &ProfileName::new(case["profile"].as_str().unwrap()).unwrap(),
            case["yaml"].as_str().unwrap(),
        )
        .unwrap();
        let request: UploadRequest = serde_json::from_value(case["request"].clone()).unwrap();
        let ctx = Context {
            app: case["app"].as_str().unwrap(),
            now: datetime!(2026-11-21 12:34:56 UTC),
            uuid: uuid::Uuid::parse_str("019a9f3c-0000-7000-8000-000000000001").unwrap(),
        };
        let request = UploadRequest {
            method: Some(Method::Post),
            ..request
        };
        let Signed::Post(post) = sign_without_marker(
            &profile,
            &store.signer(ctx.now).unwrap(),
            &request,
            &ctx,
            FieldStyle::Botocore,
        ) else {
            panic!("{name}: not a POST");
        };
        assert_eq!(post.policy, case["policy"].as_str().unwrap(), "{name}: policy");
        let mut form: serde_json::Value = serde_json::from_str(&post.to_json()).unwrap();
        assert_eq!(
            form.as_object_mut().unwrap().shift_remove("method"),
            Some("POST".into())
        );
        assert_eq!(
            serde_json::to_string(&form).unwrap(),
            serde_json::to_string(&case["form"]).unwrap(),
            "{name}: form"
        );
    }
}
