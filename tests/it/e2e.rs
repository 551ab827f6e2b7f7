//! End to end against a real S3-compatible server: s3s + s3s-fs serve a temporary directory on
//! 127.0.0.1:0 with SigV4 and POST-policy checking. Forms from postgate upload; every constraint
//! is proven by an upload the server rejects, with nothing written.
//!
//! s3s-fs 0.14 does not substitute `${filename}`: a form without a named filename stores the key
//! with `${filename}` literally, which is what these tests expect.

use std::collections::BTreeMap;
use std::time::Duration;

use indexmap::IndexMap;
use postgate::profile::{
    self, ChecksumAlgorithm, ChecksumRequest, Context, Method, Profile, ProfileName, UploadRequest,
};
use postgate::secret::Secret;
use postgate::sign::{Addressing, FieldStyle, Store};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::repo_path;
use crate::support::s3::*;
fn sign(store: &Store, profile: &Profile, app: &str, request: &UploadRequest) -> SignedUpload {
    sign_styled(store, profile, app, request, FieldStyle::Botocore)
}

fn sign_styled(
    store: &Store,
    profile: &Profile,
    app: &str,
    request: &UploadRequest,
    style: FieldStyle,
) -> SignedUpload {
    let now = OffsetDateTime::now_utc();
    let ctx = Context {
        app,
        now,
        uuid: Uuid::now_v7(),
    };
    postgate::sign::sign(profile, &store.signer(ctx.now).unwrap(), request, &ctx, style)
        .unwrap_or_else(|r| panic!("refused: {r:?}"))
        .into()
}

/// Signs with the library directly.
fn library_signer(store: &Store) -> impl AsyncFn(&str, &str, &UploadRequest) -> SignedUpload {
    let snapshot = load_policies();
    async move |profile: &str, app: &str, request: &UploadRequest| {
        sign(store, snapshot.get(profile).unwrap(), app, request)
    }
}

#[derive(Deserialize)]
struct UploadCase {
    profile: Option<String>,
    app: String,
    request: UploadRequest,
    #[serde(default)]
    form: IndexMap<String, String>,
    file: FileSpec,
    /// Declare the file's checksum with this algorithm (computed here).
    #[serde(default)]
    checksum: Option<ChecksumAlgorithm>,
    expect: Expect,
}

#[derive(Deserialize)]
struct FileSpec {
    name: String,
    bytes: usize,
}

#[derive(Deserialize)]
struct Expect {
    /// The store's answer; any 2xx when absent.
    #[serde(default)]
    status: Option<u16>,
    /// What a redirect's `Location` starts with.
    #[serde(default)]
    location_prefix: Option<String>,
    key_prefix: String,
    #[serde(default)]
    key_suffix: Option<String>,
    /// The stored Content-Type; none when the form sets none.
    content_type: Option<String>,
    metadata: BTreeMap<String, String>,
}

/// Uploads one file per case of tests/data/uploads.yaml (every example profile) with forms from
/// `sign`, and checks the stored object's key, bytes, Content-Type and metadata.
pub async fn check_uploads(server: &S3Server, sign: impl AsyncFn(&str, &str, &UploadRequest) -> SignedUpload) {
    let snapshot = load_policies();
    let cases: IndexMap<String, UploadCase> =
        serde_yaml::from_str(&std::fs::read_to_string(repo_path("tests/data/uploads.yaml")).unwrap()).unwrap();
    let profile_of = |name: &str, case: &UploadCase| case.profile.clone().unwrap_or_else(|| name.to_owned());
    for (name, profile) in &snapshot.profiles {
        for method in profile.plan().methods() {
            assert!(
                cases.iter().any(|(case_name, c)| &profile_of(case_name, c) == name
                    && c.request.method.unwrap_or(profile.plan().methods()[0]) == *method),
                "policies/{name}.yaml has no {method} upload case in tests/data/uploads.yaml"
            );
        }
    }
    for (case_name, case) in &cases {
        let profile_name = profile_of(case_name, case);
        let bucket = snapshot.get(&profile_name).unwrap().bucket();
        let bytes = file_bytes(case.file.bytes);
        let mut request = case.request.clone();
        if let Some(algorithm) = case.checksum {
            assert_eq!(
                algorithm,
                ChecksumAlgorithm::Sha256,
                "{case_name}: the cases compute SHA-256 only"
            );
            request.checksum = Some(ChecksumRequest {
                algorithm,
                value: sha256_b64(&bytes),
            });
        }
        let signed = sign(&profile_name, &case.app, &request).await;
        let extra: Vec<(String, String)> = case.form.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let (status, body) = signed.send(&extra, &case.file.name, bytes.clone()).await;
        let form_key = signed.key().to_owned();
        let expect = &case.expect;
        match expect.status {
            Some(expected) => assert_eq!(status, expected, "{case_name}: {body}"),
            None => assert!((200..300).contains(&status), "{case_name}: {status} {body}"),
        }
        if let Some(prefix) = &expect.location_prefix {
            assert!(redirect_matches(&body, prefix), "{case_name}: redirected to {body}");
        }
        assert!(form_key.starts_with(&expect.key_prefix), "{case_name}: {form_key}");
        if let Some(suffix) = &expect.key_suffix {
            assert!(form_key.ends_with(suffix), "{case_name}: {form_key}");
        }
        let key = server.stored_key(&form_key, &case.file.name);
        let stored = server
            .object(bucket, &key)
            .await
            .unwrap_or_else(|| panic!("{case_name}: nothing stored at {bucket}/{key}"));
        assert_eq!(stored.bytes, bytes, "{case_name}: stored bytes");
        let content_type = stored.content_type.as_deref();
        match expect.content_type.as_deref() {
            Some(expected) => assert_eq!(content_type, Some(expected), "{case_name}"),
            // No Content-Type in the form: s3s-fs stores none, Garage the S3 default, SeaweedFS
            // what it guesses from the file (a profile that names no type allows any).
            None => assert!(
                matches!(
                    (server.kind(), content_type),
                    (_, None | Some("binary/octet-stream" | "application/octet-stream"))
                        | (Kind::SeaweedFs, Some("text/plain; charset=utf-8"))
                ),
                "{case_name}: {content_type:?}"
            ),
        }
        // Every upload carries its grant's marker, as the store kept it (a store that drops or
        // rewrites it would make `complete` refuse every upload: found here).
        let mut metadata = stored.metadata.clone();
        let marker = metadata.remove(postgate::profile::plan::MARKER_NAME);
        assert!(
            marker
                .as_deref()
                .is_some_and(|m| m.len() == postgate::profile::plan::MARKER_BYTES),
            "{case_name}: the store kept no marker: {:?}",
            stored.metadata
        );
        assert_eq!(metadata, expect.metadata, "{case_name}");
    }
}

/// Whether a `success_action_redirect` location is the expected URL with the expected query
/// parameters, in any order (S3 and Garage send `bucket`, `key`, `etag`; SeaweedFS `bucket`,
/// `etag`, `key`): the expectation's last parameter is a prefix of the actual one's value.
fn redirect_matches(location: &str, expected: &str) -> bool {
    let (Some((base, query)), Some((expected_base, expected_query))) =
        (location.split_once('?'), expected.split_once('?'))
    else {
        return location.starts_with(expected);
    };
    let params: Vec<&str> = query.split('&').collect();
    let wanted: Vec<&str> = expected_query.split('&').collect();
    base == expected_base
        && wanted.iter().enumerate().all(|(i, want)| {
            params.iter().any(|p| {
                if i + 1 == wanted.len() {
                    p.starts_with(want)
                } else {
                    p == want
                }
            })
        })
}

#[tokio::test]
async fn every_example_profile_uploads() {
    let server = S3Server::start().await;
    let store = server.store();
    check_uploads(&server, library_signer(&store)).await;
}

fn set(fields: &mut Vec<(String, String)>, name: &str, value: &str) {
    match fields.iter_mut().find(|(n, _)| n == name) {
        Some(field) => field.1 = value.to_owned(),
        None => fields.push((name.to_owned(), value.to_owned())),
    }
}

/// Forms S3 must reject: the change made to a good form, the status and the error code S3
/// answers with.
const REJECTIONS: &[(&str, u16, &str)] = &[
    ("too large", 400, "EntityTooLarge"),
    ("too small", 400, "EntityTooSmall"),
    ("exact size, other size", 400, "EntityTooLarge"),
    ("wrong content type", 400, "InvalidPolicyDocument"),
    ("missing content type", 400, "InvalidPolicyDocument"),
    ("exact content type changed", 400, "InvalidPolicyDocument"),
    ("wrong metadata", 400, "InvalidPolicyDocument"),
    ("missing metadata", 400, "InvalidPolicyDocument"),
    ("fixed metadata changed", 400, "InvalidPolicyDocument"),
    ("key outside the prefix", 400, "InvalidPolicyDocument"),
    ("key of a longer user (u4 form, u42 key)", 400, "InvalidPolicyDocument"),
    ("exact key changed", 400, "InvalidPolicyDocument"),
    ("extra field", 403, "AccessDenied"),
    ("extra metadata", 403, "AccessDenied"),
    ("acl changed", 400, "InvalidPolicyDocument"),
    ("tampered signature", 403, "SignatureDoesNotMatch"),
    ("tampered policy", 403, "SignatureDoesNotMatch"),
    ("wrong bucket", 400, "InvalidPolicyDocument"),
];

/// Where Garage answers a rejection differently from S3's documented answer (same refusal,
/// another status or code); see tests/garage/README.md.
/// Garage 2.5 answers policy failures with 400 `InvalidRequest` and says why in the message, which
/// is what these check.
/// SeaweedFS's answers where they differ from S3's: a failed condition is `403 AccessDenied`. A
/// `2xx` row pins a constraint it does not enforce (the object is then written).
const SEAWEEDFS_REJECTIONS: &[(&str, u16, &str)] = &[
    ("wrong content type", 403, "Policy Condition failed"),
    ("missing content type", 403, "Policy Condition failed"),
    ("exact content type changed", 403, "Policy Condition failed"),
    (
        "wrong metadata",
        403,
        "Policy Condition failed: [eq, $x-amz-meta-purpose, avatar]",
    ),
    (
        "missing metadata",
        403,
        "Policy Condition failed: [eq, $x-amz-meta-purpose, avatar]",
    ),
    (
        "fixed metadata changed",
        403,
        "Policy Condition failed: [eq, $x-amz-meta-uploaded-by, u4]",
    ),
    ("key outside the prefix", 403, "Policy Condition failed"),
    (
        "key of a longer user (u4 form, u42 key)",
        403,
        "Policy Condition failed",
    ),
    ("exact key changed", 403, "Policy Condition failed"),
    // Not enforced: SeaweedFS 4.48 refuses extra `x-amz-*` fields, but takes any other field no
    // condition covers (here `Content-Encoding`) and stores the object.
    ("extra field", 201, "PostResponse"),
    ("acl changed", 403, "Policy Condition failed"),
    ("wrong bucket", 403, "Policy Condition failed"),
];

const GARAGE_REJECTIONS: &[(&str, u16, &str)] = &[
    ("too large", 400, "File size does not match policy"),
    ("too small", 400, "File size does not match policy"),
    ("exact size, other size", 400, "File size does not match policy"),
    (
        "wrong content type",
        400,
        "Key &apos;content-type&apos; has value not allowed in policy",
    ),
    (
        "missing content type",
        400,
        "Key &apos;content-type&apos; is required in policy",
    ),
    (
        "exact content type changed",
        400,
        "Key &apos;content-type&apos; has value not allowed in policy",
    ),
    (
        "wrong metadata",
        400,
        "Key &apos;x-amz-meta-purpose&apos; has value not allowed in policy",
    ),
    (
        "missing metadata",
        400,
        "Key &apos;x-amz-meta-purpose&apos; is required in policy",
    ),
    (
        "fixed metadata changed",
        400,
        "Key &apos;x-amz-meta-uploaded-by&apos; has value not allowed in policy",
    ),
    (
        "key outside the prefix",
        400,
        "Key &apos;key&apos; has value not allowed in policy",
    ),
    (
        "key of a longer user (u4 form, u42 key)",
        400,
        "Key &apos;key&apos; has value not allowed in policy",
    ),
    (
        "exact key changed",
        400,
        "Key &apos;key&apos; has value not allowed in policy",
    ),
    (
        "extra field",
        400,
        "Key &apos;content-encoding&apos; is not allowed in policy",
    ),
    (
        "extra metadata",
        400,
        "Key &apos;x-amz-meta-admin&apos; is not allowed in policy",
    ),
    (
        "acl changed",
        400,
        "Key &apos;acl&apos; has value not allowed in policy",
    ),
    ("tampered signature", 403, "Invalid signature"),
    ("tampered policy", 403, "Invalid signature"),
    (
        "wrong bucket",
        400,
        "Key &apos;bucket&apos; has value not allowed in policy",
    ),
];

impl S3Server {
    /// The status and error code this server answers a rejection with.
    fn rejection(&self, name: &str, status: u16, code: &'static str) -> (u16, &'static str) {
        let table = match self.kind() {
            Kind::S3sFs => &[],
            Kind::Garage => GARAGE_REJECTIONS,
            Kind::SeaweedFs => SEAWEEDFS_REJECTIONS,
        };
        table
            .iter()
            .find(|(n, _, _)| *n == name)
            .map_or((status, code), |(_, s, c)| (*s, *c))
    }
}

/// Every rejection of `REJECTIONS` with forms from `sign`, each asserting the status, S3's error
/// code and that nothing was written; then the unchanged form, which must upload.
pub async fn check_rejections(server: &S3Server, sign: impl AsyncFn(&str, &str, &UploadRequest) -> SignedUpload) {
    let png = ("Content-Type".to_owned(), "image/png".to_owned());
    let mut wrong = Vec::new();
    for (name, status, code) in REJECTIONS {
        let (expected_status, expected_code) = server.rejection(name, *status, code);
        let before = server.objects().await;
        let mut request = avatar_request("u4");
        let mut profile = "avatars";
        match *name {
            "exact size, other size" => request.size = Some(100),
            "exact key changed" => request.filename = Some("a.png".into()),
            "exact content type changed" => {
                profile = "datasets";
                request = UploadRequest {
                    vars: [("tenant".into(), "t-0001".into()), ("dataset".into(), "x".into())]
                        .into_iter()
                        .collect(),
                    ..UploadRequest::default()
                };
            }
            _ => {}
        }
        let form = sign(profile, if profile == "datasets" { "ingest" } else { "web" }, &request)
            .await
            .form();
        let mut fields = form.fields.clone();
        if profile == "avatars" {
            fields.push(png.clone());
        }
        let mut url = form.url.clone();
        let mut file_len = 1000;
        match *name {
            "too large" => file_len = 5 * 1024 * 1024 + 1,
            "too small" => file_len = 0,
            "wrong content type" | "exact content type changed" => set(&mut fields, "Content-Type", "text/html"),
            "missing content type" => fields.retain(|(n, _)| n != "Content-Type"),
            "wrong metadata" => set(&mut fields, "x-amz-meta-purpose", "wallpaper"),
            "missing metadata" => fields.retain(|(n, _)| n != "x-amz-meta-purpose"),
            "fixed metadata changed" => set(&mut fields, "x-amz-meta-uploaded-by", "mallory"),
            "key outside the prefix" => set(&mut fields, "key", "avatars/mallory/x/${filename}"),
            "key of a longer user (u4 form, u42 key)" => {
                set(&mut fields, "key", &form.key.replacen("avatars/u4/", "avatars/u42/", 1))
            }
            "exact key changed" => set(&mut fields, "key", &form.key.replace("a.png", "b.png")),
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
                let policy = form.policy().replace("5242880", "52428800");
                set(
                    &mut fields,
                    "policy",
                    &base64::engine::general_purpose::STANDARD.encode(policy),
                );
            }
            "wrong bucket" => url = url.replace("/user-content", "/other-bucket"),
            _ => {}
        }
        let (status, body) = upload(&url, &fields, "x.png", file_bytes(file_len)).await;
        let written = server.objects().await != before;
        if status != expected_status
            || !body.contains(expected_code)
            || written != (200..300).contains(&expected_status)
        {
            wrong.push(format!(
                "{name}: {status} (written: {written}) {body}, expected {expected_status} {expected_code}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}: {}", server.kind().name(), wrong.join("\n"));

    // Control: the unchanged form uploads, so each rejection above is the change's doing.
    let form = sign("avatars", "web", &avatar_request("u4")).await.form();
    let mut fields = form.fields.clone();
    fields.push(png);
    let (status, body) = upload(&form.url, &fields, "x.png", file_bytes(1000)).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn every_constraint_is_enforced_by_the_server() {
    let server = S3Server::start().await;
    let store = server.store();
    check_rejections(&server, library_signer(&store)).await;
}

async fn check_wrong_secret(server: &S3Server) {
    let store = server.store();
    let mut credentials = store.credentials().unwrap().credentials.clone();
    credentials.secret_access_key = Secret::new("not-the-secret");
    let store = Store::new(
        "default",
        &server.region,
        store.endpoint.clone(),
        Addressing::Path,
        credentials,
    );
    let form: SignedForm = library_signer(&store)("invoices", "web", &{
        let mut request = UploadRequest::default();
        request.vars.insert("supplier".into(), "acme".into());
        request
    })
    .await
    .form();
    let before = server.objects().await;
    let (status, body) = upload(&form.url, &form.fields, "x.pdf", file_bytes(10)).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("SignatureDoesNotMatch") || body.contains("AccessDenied"),
        "{body}"
    );
    assert_eq!(server.objects().await, before);
}

async fn check_expired_policy(server: &S3Server) {
    let store = server.store();
    let yaml = "bucket: user-content\nkey: \"quick/${uuid}\"\nsize: { max: 1KiB }\nexpires_in: 1s\napps: all\n";
    let profile = profile::parse(&ProfileName::new("quick").unwrap(), yaml).unwrap();
    let post = sign(&store, &profile, "web", &UploadRequest::default()).form();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = server.objects().await;
    let (status, body) = upload(&post.url, &post.fields, "x", file_bytes(10)).await;
    assert!(status == 403 || status == 400, "{status} {body}");
    // S3 and s3s: "Invalid according to Policy: Policy expired"; Garage: "Expiration date is in the past".
    assert!(
        body.contains("expired") || body.contains("Expiration date is in the past"),
        "{body}"
    );
    assert_eq!(server.objects().await, before);

    // Control: the same profile signed now uploads.
    let post = sign(&store, &profile, "web", &UploadRequest::default()).form();
    let (status, body) = upload(&post.url, &post.fields, "x", file_bytes(10)).await;
    assert_eq!(status, 204, "{body}");
}

#[tokio::test]
async fn a_form_signed_with_the_wrong_secret_is_rejected() {
    check_wrong_secret(&S3Server::start().await).await;
}

#[tokio::test]
async fn an_expired_policy_is_rejected() {
    check_expired_policy(&S3Server::start().await).await;
}

/// The same suite against Garage (`tests/garage/`): every example profile uploads, every
/// rejection is rejected, wrong secrets and expired forms are refused. Without Garage it passes
/// after printing `SKIPPED:` and how to run it (`S3Server::remote`), unless
/// `CI_REQUIRE_GARAGE` is set, as in CI.
#[tokio::test]
async fn garage_enforces_the_same_forms() {
    enforces_the_same_forms(Kind::Garage).await;
}

/// The same suite against SeaweedFS (`tests/seaweedfs/`), skipped or required as on Garage.
#[tokio::test]
async fn seaweedfs_enforces_the_same_forms() {
    enforces_the_same_forms(Kind::SeaweedFs).await;
}

async fn enforces_the_same_forms(kind: Kind) {
    let _turn = garage_turn().await;
    let Some(server) = S3Server::remote(kind) else {
        return;
    };
    let store = server.store();
    check_uploads(&server, library_signer(&store)).await;
    check_rejections(&server, library_signer(&store)).await;
    check_put_rejections(&server, library_signer(&store)).await;
    check_wrong_secret(&server).await;
    check_expired_policy(&server).await;
    check_expired_put(&server).await;
    check_post_checksum(&server).await;
    check_js_sdk_form(&server).await;
    println!(
        "{}: {} example uploads, {} POST rejections, {} PUT changes, wrong secret, expired form: all as expected",
        kind.name(),
        std::fs::read_to_string(repo_path("tests/data/uploads.yaml"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with([' ', '#']) && l.ends_with(':'))
            .count(),
        REJECTIONS.len(),
        PUT_CHANGES.len()
    );
}

/// The probe case (`postgate probe`) that makes each change this suite makes.
const PROBE_CASES: &[(&str, &str)] = &[
    ("post-size-over", "too large"),
    ("post-size-under", "too small"),
    ("post-content-type-changed", "wrong content type"),
    ("post-metadata-changed", "wrong metadata"),
    ("post-metadata-dropped", "missing metadata"),
    ("post-metadata-added", "extra metadata"),
    ("post-field-added", "extra field"),
    ("post-key-changed", "key outside the prefix"),
    ("put-body-longer", "body longer than signed"),
    ("put-body-shorter", "body shorter than signed"),
    ("put-content-type-changed", "other Content-Type"),
    ("put-metadata-changed", "metadata header changed"),
    ("put-metadata-dropped", "metadata header dropped"),
    ("put-metadata-added", "metadata header added"),
    ("put-acl-added", "acl header added"),
    ("put-copy-source-added", "copy source added"),
    ("put-checksum-wrong", "wrong checksum"),
    ("put-checksum-dropped", "checksum header dropped"),
    ("put-overwrite", "overwrite where forbidden"),
    ("put-key-changed", "another key"),
];

/// This suite's verdict on each change a probe case also makes, from the tables above: a `2xx`
/// is not enforced, a refusal that wrote is "wrote, then refused".
pub fn verdicts(kind: Kind) -> Vec<(&'static str, postgate::profile::enforcement::Verdict)> {
    use postgate::profile::enforcement::Verdict;
    let put = match kind {
        Kind::S3sFs => S3S_PUT,
        Kind::Garage => GARAGE_PUT,
        Kind::SeaweedFs => SEAWEEDFS_PUT,
    };
    let post = match kind {
        Kind::S3sFs => &[][..],
        Kind::Garage => GARAGE_REJECTIONS,
        Kind::SeaweedFs => SEAWEEDFS_REJECTIONS,
    };
    PROBE_CASES
        .iter()
        .map(|(case, change)| {
            assert!(
                REJECTIONS.iter().any(|r| r.0 == *change) || PUT_CHANGES.contains(change),
                "{change}: no such change in this suite"
            );
            let (status, written) = match put.iter().find(|row| row.0 == *change) {
                Some(row) => (row.1, row.3),
                None => {
                    let status = post.iter().find(|row| row.0 == *change).map_or(400, |row| row.1);
                    (status, (200..300).contains(&status))
                }
            };
            let verdict = match ((200..300).contains(&status), written) {
                (true, _) => Verdict::NotEnforced,
                (false, true) => Verdict::WroteThenRefused,
                (false, false) => Verdict::Enforced,
            };
            (*case, verdict)
        })
        .collect()
}

/// Presigned PUTs the store must reject: the change made to a good PUT of a photos upload.
const PUT_CHANGES: &[&str] = &[
    "body longer than signed",
    "body shorter than signed",
    "other Content-Type",
    "metadata header changed",
    "metadata header dropped",
    "metadata header added",
    "pinned header changed",
    "wrong checksum",
    "checksum header dropped",
    "overwrite where forbidden",
    "acl header added",
    "copy source added",
    "tampered signature",
    "another key",
];

/// How each server answers each change: status, a piece of its error body, and whether an object
/// was written anyway. A `2xx` row, or one that writes, pins a constraint the server does not
/// enforce (README.md, "What each tested store enforces").
const S3S_PUT: &[(&str, u16, &str, bool)] = &[
    ("body longer than signed", 403, "SignatureDoesNotMatch", false),
    ("body shorter than signed", 403, "SignatureDoesNotMatch", false),
    ("other Content-Type", 403, "SignatureDoesNotMatch", false),
    ("metadata header changed", 403, "SignatureDoesNotMatch", false),
    ("metadata header dropped", 403, "SignatureDoesNotMatch", false),
    // Not enforced: s3s accepts an x-amz-meta-* header the URL did not sign, and stores it.
    ("metadata header added", 200, "", true),
    ("pinned header changed", 403, "SignatureDoesNotMatch", false),
    // Refused, but s3s-fs 0.14 has written the object before it compares the checksum.
    ("wrong checksum", 400, "BadDigest", true),
    ("checksum header dropped", 403, "SignatureDoesNotMatch", false),
    ("overwrite where forbidden", 412, "PreconditionFailed", false),
    // Not enforced: s3s takes an unsigned `x-amz-acl` (s3s-fs then ignores ACLs) …
    ("acl header added", 200, "", true),
    // … and an unsigned `x-amz-copy-source`, which turns the PUT into a CopyObject of an object
    // the URL never named.
    ("copy source added", 200, "CopyObjectResult", true),
    ("tampered signature", 403, "SignatureDoesNotMatch", false),
    ("another key", 403, "SignatureDoesNotMatch", false),
];

const GARAGE_PUT: &[(&str, u16, &str, bool)] = &[
    ("body longer than signed", 403, "Invalid signature", false),
    ("body shorter than signed", 403, "Invalid signature", false),
    ("other Content-Type", 403, "Invalid signature", false),
    ("metadata header changed", 403, "Invalid signature", false),
    ("metadata header dropped", 400, "is not present", false),
    ("metadata header added", 400, "should be signed", false),
    ("pinned header changed", 403, "Invalid signature", false),
    ("wrong checksum", 400, "InvalidDigest", false),
    ("checksum header dropped", 400, "is not present", false),
    // Not enforced: Garage 2.5 ignores `If-None-Match: *` on PutObject and replaces the object.
    ("overwrite where forbidden", 200, "", true),
    ("acl header added", 400, "should be signed", false),
    ("copy source added", 400, "should be signed", false),
    ("tampered signature", 403, "Invalid signature", false),
    ("another key", 403, "Invalid signature", false),
];

/// SeaweedFS 4.48 refuses every change; an unsigned `x-amz-*` header breaks the signature.
const SEAWEEDFS_PUT: &[(&str, u16, &str, bool)] = &[
    ("body longer than signed", 403, "SignatureDoesNotMatch", false),
    ("body shorter than signed", 403, "SignatureDoesNotMatch", false),
    ("other Content-Type", 403, "SignatureDoesNotMatch", false),
    ("metadata header changed", 403, "SignatureDoesNotMatch", false),
    ("metadata header dropped", 403, "SignatureDoesNotMatch", false),
    ("metadata header added", 403, "SignatureDoesNotMatch", false),
    ("pinned header changed", 403, "SignatureDoesNotMatch", false),
    ("wrong checksum", 400, "BadDigest", false),
    ("checksum header dropped", 403, "SignatureDoesNotMatch", false),
    ("overwrite where forbidden", 412, "PreconditionFailed", false),
    ("acl header added", 403, "SignatureDoesNotMatch", false),
    ("copy source added", 403, "SignatureDoesNotMatch", false),
    ("tampered signature", 403, "SignatureDoesNotMatch", false),
    ("another key", 403, "SignatureDoesNotMatch", false),
];

fn photo_request(bytes: &[u8]) -> UploadRequest {
    UploadRequest {
        vars: [("user".to_owned(), "u4".to_owned())].into_iter().collect(),
        filename: Some("x.jpg".into()),
        content_type: Some("image/jpeg".into()),
        size: Some(bytes.len() as u64),
        metadata: [("album".to_owned(), "a".to_owned())].into_iter().collect(),
        method: Some(Method::Put),
        checksum: Some(ChecksumRequest {
            algorithm: ChecksumAlgorithm::Sha256,
            value: sha256_b64(bytes),
        }),
    }
}

fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: Option<&str>) {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    if let Some(value) = value {
        headers.push((name.to_owned(), value.to_owned()));
    }
}

/// Every change of `PUT_CHANGES` to a PUT from `sign`, each checked against the server's row
/// (status, error, written or not); then the unchanged PUT, which must upload.
pub async fn check_put_rejections(server: &S3Server, sign: impl AsyncFn(&str, &str, &UploadRequest) -> SignedUpload) {
    let table = match server.kind() {
        Kind::S3sFs => S3S_PUT,
        Kind::Garage => GARAGE_PUT,
        Kind::SeaweedFs => SEAWEEDFS_PUT,
    };
    let mut wrong = Vec::new();
    let bytes = file_bytes(1000);
    // An object the changes may point at (the first upload of "overwrite where forbidden").
    let mut existing = String::new();
    for name in PUT_CHANGES {
        let (_, expected_status, expected_code, expected_written) = table
            .iter()
            .find(|row| row.0 == *name)
            .unwrap_or_else(|| panic!("no row for {name}"));
        let mut request = photo_request(&bytes);
        if *name == "wrong checksum" {
            request.checksum.as_mut().unwrap().value = sha256_b64(b"other bytes");
        }
        let put = sign("photos", "web", &request).await.put();
        let mut url = put.url.clone();
        let mut headers = put.headers.clone();
        let mut body = bytes.clone();
        match *name {
            "body longer than signed" => body.push(0),
            "body shorter than signed" => {
                body.pop();
            }
            "other Content-Type" => set_header(&mut headers, "Content-Type", Some("image/png")),
            "metadata header changed" => set_header(&mut headers, "x-amz-meta-uploaded-by", Some("mallory")),
            "metadata header dropped" => set_header(&mut headers, "x-amz-meta-uploaded-by", None),
            "metadata header added" => set_header(&mut headers, "x-amz-meta-admin", Some("true")),
            "pinned header changed" => set_header(&mut headers, "Content-Disposition", Some("inline")),
            "checksum header dropped" => set_header(&mut headers, "x-amz-checksum-sha256", None),
            "overwrite where forbidden" => {
                let (status, answer) = put_upload(&url, &headers, body.clone()).await;
                assert_eq!(status, 200, "{name}: the first upload: {answer}");
                existing = format!("user-content/{}", put.key);
            }
            "acl header added" => set_header(&mut headers, "x-amz-acl", Some("public-read")),
            "copy source added" => {
                assert!(!existing.is_empty(), "{name} runs after an upload");
                set_header(&mut headers, "x-amz-copy-source", Some(&existing));
            }
            "tampered signature" => {
                let at = url.len() - 1;
                let flipped = if url.ends_with('0') { "1" } else { "0" };
                url.replace_range(at.., flipped);
            }
            "another key" => url = url.replacen("/photos/u4/", "/photos/u5/", 1),
            _ => {}
        }
        let before = server.objects().await;
        let (status, answer) = put_upload(&url, &headers, body).await;
        // A 2xx wrote (an overwrite keeps the listing as it was); s3s-fs writes a bad checksum's
        // bytes before it refuses them.
        let written = (200..300).contains(&status)
            || server.objects().await != before
            || (*name == "wrong checksum"
                && server
                    .object("user-content", &put.key)
                    .await
                    .is_some_and(|o| o.bytes.is_empty() || o.bytes == bytes));
        if (status, written) != (*expected_status, *expected_written) || !answer.contains(expected_code) {
            wrong.push(format!(
                "{name}: {status} (written: {written}) {answer}, expected {expected_status} {expected_code}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}: {}", server.kind().name(), wrong.join("\n"));

    // Control: the unchanged PUT uploads, and what it stored reads back.
    let put = sign("photos", "web", &photo_request(&bytes)).await.put();
    let (status, answer) = put_upload(&put.url, &put.headers, bytes.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let stored = server
        .object("user-content", &put.key)
        .await
        .expect("the control upload");
    assert_eq!(stored.bytes, bytes);
    assert_eq!(stored.content_type.as_deref(), Some("image/jpeg"));
}

#[tokio::test]
async fn every_put_constraint_is_enforced_or_pinned() {
    let server = S3Server::start().await;
    let store = server.store();
    check_put_rejections(&server, library_signer(&store)).await;
}

/// A PUT URL past its expiry is refused, nothing written; the same profile signed now uploads.
async fn check_expired_put(server: &S3Server) {
    let store = server.store();
    let yaml = "bucket: user-content\nkey: \"quick/${uuid}\"\nsize: { max: 1KiB }\nexpires_in: 1s\napps: all\n";
    let profile = profile::parse(&ProfileName::new("quick").unwrap(), yaml).unwrap();
    let request = UploadRequest {
        size: Some(10),
        method: Some(Method::Put),
        ..UploadRequest::default()
    };
    let put = sign(&store, &profile, "web", &request).put();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = server.objects().await;
    let (status, body) = put_upload(&put.url, &put.headers, file_bytes(10)).await;
    // s3s: 403 AccessDenied "Request has expired"; Garage: 400 InvalidRequest "Date is too old".
    let expected = match server.kind() {
        Kind::S3sFs => (403, "expired"),
        Kind::Garage => (400, "too old"),
        Kind::SeaweedFs => (403, "expired"),
    };
    assert_eq!(status, expected.0, "{body}");
    assert!(body.contains(expected.1), "{body}");
    assert_eq!(server.objects().await, before);

    let put = sign(&store, &profile, "web", &request).put();
    let (status, body) = put_upload(&put.url, &put.headers, file_bytes(10)).await;
    assert_eq!(status, 200, "{body}");
}

/// A POST form with a declared checksum: the right digest uploads; a wrong one is refused (and
/// s3s-fs, which writes before it compares, is pinned as leaving the object behind).
async fn check_post_checksum(server: &S3Server) {
    let store = server.store();
    let snapshot = load_policies();
    let profile = snapshot.get("datasets").unwrap();
    let bytes = file_bytes(500);
    let request = |digest: String| UploadRequest {
        vars: [("tenant".into(), "t-0042".into()), ("dataset".into(), "sums".into())]
            .into_iter()
            .collect(),
        size: Some(500),
        checksum: Some(ChecksumRequest {
            algorithm: ChecksumAlgorithm::Sha256,
            value: digest,
        }),
        ..UploadRequest::default()
    };
    let form = sign(&store, profile, "ingest", &request(sha256_b64(&bytes))).form();
    let (status, body) = upload(&form.url, &form.fields, "sums.csv", bytes.clone()).await;
    assert_eq!(status, 204, "the right checksum: {body}");
    assert_eq!(server.object("tenant-datasets", &form.key).await.unwrap().bytes, bytes);

    let form = sign(&store, profile, "ingest", &request(sha256_b64(b"other"))).form();
    let before = server.objects().await;
    let (status, body) = upload(&form.url, &form.fields, "sums.csv", bytes.clone()).await;
    let written = server.objects().await != before;
    let (expected_status, expected_code, expected_written) = match server.kind() {
        // Refused, but s3s-fs 0.14 has written the object before it compares the checksum.
        Kind::S3sFs => (400, "BadDigest", true),
        Kind::Garage => (400, "InvalidDigest", false),
        Kind::SeaweedFs => (400, "BadDigest", false),
    };
    assert_eq!(
        (status, written),
        (expected_status, expected_written),
        "a wrong checksum: {body}"
    );
    assert!(body.contains(expected_code), "{body}");
}

#[tokio::test]
async fn an_expired_put_url_is_rejected() {
    check_expired_put(&S3Server::start().await).await;
}

#[tokio::test]
async fn post_checksums_are_verified_where_the_store_can() {
    check_post_checksum(&S3Server::start().await).await;
}

/// A POST form in the AWS SDK for JavaScript's casing uploads like botocore's.
async fn check_js_sdk_form(server: &S3Server) {
    let store = server.store();
    let snapshot = load_policies();
    let profile = snapshot.get("invoices").unwrap();
    let mut request = UploadRequest::default();
    request.vars.insert("supplier".into(), "js-sdk".into());
    let form = sign_styled(&store, profile, "web", &request, FieldStyle::JsSdk).form();
    let names: Vec<&str> = form.fields.iter().map(|(n, _)| n.as_str()).collect();
    for name in [
        "bucket",
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "Policy",
        "X-Amz-Signature",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let (status, body) = upload(&form.url, &form.fields, "invoice.pdf", file_bytes(10)).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        server.object("finance-inbox", &form.key).await.unwrap().bytes,
        file_bytes(10)
    );
}

#[tokio::test]
async fn a_js_sdk_style_form_uploads() {
    check_js_sdk_form(&S3Server::start().await).await;
}
