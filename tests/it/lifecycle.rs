//! The upload lifecycle without HTTP (`postgate::lifecycle`), against real S3 servers (s3s-fs,
//! and Garage when it runs): `complete` acts only on an object carrying its grant's marker, so
//! someone else's object at the key — a single PUT's, a POST form's staging or final key, a
//! multipart upload's before and after an abort — is never checked, deleted or replaced.

use postgate::lifecycle::{self, Code, Grant};
use postgate::profile::{Method, UploadRequest};
use postgate::ratelimit::RateClock;
use postgate::sign::{FieldStyle, Signed};
use time::OffsetDateTime;

use crate::support::s3::{S3Server, put_upload};
use crate::support::state::{app_limits, policies_copy, registry_signing};

const MIB: u64 = 1024 * 1024;

fn request(user: &str, filename: &str, content_type: &str, size: u64, method: Option<Method>) -> UploadRequest {
    UploadRequest {
        vars: [("user".to_owned(), user.to_owned())].into_iter().collect(),
        filename: Some(filename.into()),
        content_type: Some(content_type.into()),
        size: Some(size),
        method,
        ..UploadRequest::default()
    }
}

fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89".to_vec();
    bytes.resize(len, 7);
    bytes
}

/// A registry of the example profiles signing for `store`, with the test upload keys and a
/// store client that gives up fast.
struct Setup {
    _dir: tempfile::TempDir,
    registry: std::sync::Arc<postgate::registry::Registry>,
    uploads: lifecycle::Uploads,
}

impl Setup {
    fn new(store: postgate::sign::Store) -> Setup {
        let dir = policies_copy();
        let registry = registry_signing(dir.path(), app_limits(), RateClock::manual(Default::default()), store);
        Setup {
            _dir: dir,
            registry,
            uploads: crate::support::state::uploads(),
        }
    }

    fn tokens(&self) -> &postgate::upload::TokenKeys {
        self.uploads.tokens().unwrap()
    }

    fn open(&self, token: &str) -> postgate::upload::Claims {
        self.tokens().open(token, OffsetDateTime::now_utc()).unwrap()
    }
}

/// A PUT granted to app `web` by `served`, and its token's claims.
fn grant_put<'p>(
    setup: &Setup,
    served: &'p postgate::registry::Served,
    req: &UploadRequest,
) -> (postgate::sign::PresignedPut<'p>, postgate::upload::Claims) {
    let granted = lifecycle::grant(
        Some(setup.tokens()),
        served,
        req,
        &Grant::now("web", None),
        FieldStyle::default(),
    )
    .unwrap();
    let claims = setup.open(granted.upload_token.as_deref().unwrap());
    let Signed::Put(put) = granted.signed else {
        panic!("a PUT")
    };
    (put, claims)
}

/// The headers a client sends with a PUT URL.
fn put_headers(put: &postgate::sign::PresignedPut<'_>) -> Vec<(String, String)> {
    put.client_headers()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test]
async fn another_principals_object_is_never_touched_on_s3s() {
    let server = S3Server::start().await;
    check_foreign_objects(&server).await;
    check_replays(&server).await;
}

/// The same against Garage (skipped, saying so, when it is not running, unless
/// `CI_REQUIRE_GARAGE` is set, as in CI).
#[tokio::test]
async fn garage_another_principals_object_is_never_touched() {
    let _turn = crate::support::s3::garage_turn().await;
    if let Some(server) = S3Server::garage() {
        check_foreign_objects(&server).await;
        check_replays(&server).await;
    }
}

/// The same against SeaweedFS, skipped or required as on Garage.
#[tokio::test]
async fn seaweedfs_another_principals_object_is_never_touched() {
    let _turn = crate::support::s3::garage_turn().await;
    if let Some(server) = S3Server::seaweedfs() {
        check_foreign_objects(&server).await;
        check_replays(&server).await;
    }
}

async fn check_foreign_objects(server: &S3Server) {
    let setup = Setup::new(server.store());
    let snapshot = setup.registry.current();
    let foreign = png(777);

    // A single PUT whose key someone else wrote first (no marker, or another grant's): complete
    // answers not-this-upload and the object keeps its bytes; this upload's own object then
    // completes.
    let media = snapshot.get("media").unwrap();
    for other in [None, Some("01930000-0000-7000-8000-0000000000ff")] {
        let req = request("alice", "a.png", "image/png", 4096, Some(Method::Put));
        let (put, claims) = grant_put(&setup, media, &req);
        assert_eq!(
            server.raw_put("user-content", &put.key, other, foreign.clone()).await,
            200
        );
        let failure = lifecycle::complete(&setup.uploads, &snapshot, &claims, None, None)
            .await
            .unwrap_err();
        assert_eq!(failure.code, Code::NotThisUpload, "{failure}");
        let kept = server.object("user-content", &put.key).await.expect("left in place");
        assert!(kept.bytes == foreign, "someone else's bytes were changed");
    }
    // A PUT of this grant's own: completed, sniffed.
    let req = request("alice", "b.png", "image/png", 4096, Some(Method::Put));
    let (put, claims) = grant_put(&setup, media, &req);
    let (status, text) = put_upload(&put.url, &put_headers(&put), png(4096)).await;
    assert_eq!(status, 200, "{text}");
    let completed = lifecycle::complete(&setup.uploads, &snapshot, &claims, None, None)
        .await
        .unwrap();
    assert_eq!((completed.size, completed.sniff), (4096, lifecycle::Sniff::Matched));

    // A staged POST/PUT (scans): someone else's object at the staging key, then at the final
    // key: neither is checked, promoted, quarantined nor deleted.
    let scans = snapshot.get("scans").unwrap();
    let req = request("bob", "s.pdf", "application/pdf", 9, Some(Method::Put));
    let (_, claims) = grant_put(&setup, scans, &req);
    let staged = claims.bounds.key.clone();
    let final_key = claims.bounds.promote_to.clone().unwrap();
    let html = b"<!DOCTYPE html><html>".to_vec();
    let quarantined_before = server
        .objects()
        .await
        .into_iter()
        .filter(|k| k.contains("quarantine/"))
        .count();
    assert_eq!(server.raw_put("user-documents", &staged, None, html.clone()).await, 200);
    let failure = lifecycle::complete(&setup.uploads, &snapshot, &claims, None, None)
        .await
        .unwrap_err();
    assert_eq!(failure.code, Code::NotThisUpload, "{failure}");
    assert!(
        server
            .object("user-documents", &staged)
            .await
            .is_some_and(|o| o.bytes == html)
    );
    assert!(
        server.object("user-documents", &final_key).await.is_none(),
        "nothing promoted"
    );
    let objects = server.objects().await;
    let quarantined = objects.iter().filter(|k| k.contains("quarantine/")).count();
    assert_eq!(quarantined, quarantined_before, "nothing quarantined: {objects:?}");

    // A POST form granted for a fixed key: someone else's object there (here another grant's,
    // with its own marker) is not this form's upload, and stays.
    let req = UploadRequest {
        method: Some(Method::Post),
        ..request("bob", "form.pdf", "application/pdf", 9, None)
    };
    let granted = lifecycle::grant(
        Some(setup.tokens()),
        scans,
        &req,
        &Grant::now("web", None),
        FieldStyle::default(),
    )
    .unwrap();
    let Signed::Post(form) = &granted.signed else {
        panic!("a POST form")
    };
    let claims = setup.open(granted.upload_token.as_deref().unwrap());
    assert_eq!(claims.carry, postgate::upload::Carry::Post);
    let other = "01930000-0000-7000-8000-0000000000ee";
    assert_eq!(
        server
            .raw_put("user-documents", &form.key, Some(other), html.clone())
            .await,
        200
    );
    let failure = lifecycle::complete(&setup.uploads, &snapshot, &claims, None, None)
        .await
        .unwrap_err();
    assert_eq!(failure.code, Code::NotThisUpload, "{failure}");
    assert!(
        server
            .object("user-documents", &form.key)
            .await
            .is_some_and(|o| o.bytes == html && o.metadata.get("postgate-upload").map(String::as_str) == Some(other))
    );

    // A multipart upload started (the token may be days old: no clock decides), someone else's
    // object at its key, no part sent: complete leaves the object (and aborts only this upload's
    // own upload ID); after that, complete finds nothing of its own.
    let req = request("alice", "big.png", "image/png", 6 * MIB, None);
    let started = lifecycle::start_multipart(&setup.uploads, &snapshot, media, &req, &Grant::now("web", None))
        .await
        .unwrap();
    let claims = setup.open(&started.upload_token);
    assert_eq!(
        server
            .raw_put("user-content", &started.key, None, foreign.clone())
            .await,
        200
    );
    // First: s3s-fs keeps the upload (no part: parts-mismatch, and this upload aborted); Garage
    // ends an upload when its key is written (upload-not-found). Then the upload is gone. Either
    // way the object stays.
    let expected: [&[Code]; 2] = [
        &[Code::PartsMismatch, Code::UploadNotFound],
        &[Code::UploadNotFound, Code::NotThisUpload],
    ];
    for codes in expected {
        let failure = lifecycle::complete(&setup.uploads, &snapshot, &claims, None, None)
            .await
            .unwrap_err();
        assert!(codes.contains(&failure.code), "{failure}");
        assert!(
            server
                .object("user-content", &started.key)
                .await
                .is_some_and(|o| o.bytes == foreign)
        );
    }
}

/// `postgate dev`'s store answers as S3 does where s3s-fs does not: an upload it no longer
/// knows is `NoSuchUpload`, so a second abort is an abort and `complete` after an abort is
/// `upload-not-found` (not a 502); its error answers carry `x-amz-error-code`.
#[tokio::test]
async fn the_dev_store_answers_aborted_uploads_as_s3() {
    let data = tempfile::tempdir().unwrap();
    let dev = postgate::dev::start(data.path(), "127.0.0.1:0", Vec::new()).unwrap();
    let store = crate::support::s3::dev_store(&dev.endpoint);
    let setup = Setup::new(store);
    let snapshot = setup.registry.current();
    postgate::dev::ensure_buckets(data.path(), &snapshot);
    let client = &setup.uploads.client;
    let media = snapshot.get("media").unwrap();
    let req = request("alice", "big.png", "image/png", 6 * MIB, None);
    let started = lifecycle::start_multipart(&setup.uploads, &snapshot, media, &req, &Grant::now("web", None))
        .await
        .unwrap();
    let claims = setup.open(&started.upload_token);
    lifecycle::abort(&setup.uploads, &snapshot, &claims).await.unwrap();
    lifecycle::abort(&setup.uploads, &snapshot, &claims)
        .await
        .expect("a second abort is an abort");
    let failure = lifecycle::complete(&setup.uploads, &snapshot, &claims, None, None)
        .await
        .unwrap_err();
    assert_eq!(failure.code, Code::UploadNotFound, "{failure}");
    let parts = lifecycle::list_parts(client, &snapshot, &claims).await.unwrap_err();
    assert_eq!(parts.code, Code::UploadNotFound, "{parts}");

    // An error answer names its code in a header.
    let signer = snapshot
        .stores
        .get("default")
        .unwrap()
        .signer(OffsetDateTime::now_utc())
        .unwrap();
    let url = signer.presigned_object_url(
        "GET",
        "user-content",
        "missing",
        &[],
        &[],
        OffsetDateTime::now_utc(),
        60,
    );
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers().get("x-amz-error-code").and_then(|v| v.to_str().ok()),
        Some("NoSuchKey")
    );
}

/// Verification sticks: after `complete`, the still valid URLs of the upload cannot put
/// unchecked bytes where the checked ones are. A single upload's URL writes only the staging key
/// (a second `complete` checks what is there again and removes it); a multipart upload's part
/// URLs die with its upload ID.
async fn check_replays(server: &S3Server) {
    let setup = Setup::new(server.store());
    let snapshot = setup.registry.current();
    let media = snapshot.get("media").unwrap();
    let good = png(4096);
    let mut html = b"<!DOCTYPE html><html><body><script>alert(1)</script>".to_vec();
    html.resize(good.len(), b' ');

    // A PUT, staged: completed and promoted; the URL replayed with HTML lands on the staging key
    // only, and a second complete removes it; the promoted bytes stay.
    let req = request(
        "alice",
        "replayed.png",
        "image/png",
        good.len() as u64,
        Some(Method::Put),
    );
    let (put, claims) = grant_put(&setup, media, &req);
    let headers = put_headers(&put);
    assert_eq!(put_upload(&put.url, &headers, good.clone()).await.0, 200);
    let completed = lifecycle::complete(&setup.uploads, &snapshot, &claims, None, None)
        .await
        .unwrap();
    let final_key = completed.key.clone();
    assert_eq!(completed.promoted_from.as_deref(), Some(put.key.as_str()));
    let _ = put_upload(&put.url, &headers, html.clone()).await;
    let kept = server.object("user-content", &final_key).await.expect("promoted");
    assert!(kept.bytes == good, "a replayed URL replaced the checked bytes");
    let failure = lifecycle::complete(&setup.uploads, &snapshot, &claims, None, None)
        .await
        .unwrap_err();
    assert_eq!(failure.code, Code::ContentSniffMismatch, "{failure}");
    assert!(
        server.object("user-content", &put.key).await.is_none(),
        "the replay is removed"
    );
    let kept = server.object("user-content", &final_key).await.expect("still promoted");
    assert!(kept.bytes == good, "the checked bytes stay");

    // A multipart upload writes its key; once completed, its part URL is refused.
    let req = request("alice", "parts.png", "image/png", good.len() as u64, None);
    let started = lifecycle::start_multipart(&setup.uploads, &snapshot, media, &req, &Grant::now("web", None))
        .await
        .unwrap();
    let claims = setup.open(&started.upload_token);
    let parts = lifecycle::sign_parts(&snapshot, &claims, &[1], OffsetDateTime::now_utc()).unwrap();
    let part = |bytes: Vec<u8>| {
        let url = parts[0].url.clone();
        async move {
            match reqwest::Client::new().put(url).body(bytes).send().await {
                Ok(response) => response.status().as_u16(),
                Err(_) => 599,
            }
        }
    };
    assert_eq!(part(good.clone()).await, 200);
    let completed = lifecycle::complete(&setup.uploads, &snapshot, &claims, None, None)
        .await
        .unwrap();
    assert_eq!(
        (completed.key.as_str(), completed.sniff),
        (started.key.as_str(), lifecycle::Sniff::Matched)
    );
    let status = part(html.clone()).await;
    assert!(status >= 400, "a part URL was taken after completion: {status}");
    let kept = server.object("user-content", &started.key).await.expect("completed");
    assert!(kept.bytes == good, "a replayed part replaced the checked bytes");
}
