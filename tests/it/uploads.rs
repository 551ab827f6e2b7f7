//! Multipart uploads and `complete` through the HTTP API against real S3 servers (s3s-fs, and
//! Garage when it runs): uploads land with their bytes, type and metadata; every rule is proven
//! by an upload the gateway refuses, and nothing refused is left stored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header;
use actix_web::{App, test as actix_test};
use postgate::http;
use postgate::ratelimit::RateClock;
use serde_json::{Value, json};

use crate::support::s3::{S3Server, put_upload, upload};
use crate::support::state::{app_limits, key, policies_copy, registry_signing};

const MIB: usize = 1024 * 1024;
const PNG_HEAD: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
const HTML: &[u8] = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>";

/// A PNG-looking file of `len` bytes whose content depends on `seed`.
fn png(len: usize, seed: u8) -> Vec<u8> {
    let mut bytes = PNG_HEAD.to_vec();
    bytes.extend((0..len - PNG_HEAD.len()).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    bytes
}

/// POSTs `body` as `app` to the API; the status and the JSON answer.
pub(crate) async fn call<S, B>(service: &S, path: &str, app: &str, body: Value) -> (u16, Value)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    let req = actix_test::TestRequest::post()
        .uri(path)
        .insert_header((header::AUTHORIZATION, format!("Bearer {}", key(app))))
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .set_payload(body.to_string())
        .to_request();
    let response = actix_test::call_service(service, req).await;
    let status = response.status().as_u16();
    let bytes = actix_test::read_body(response).await;
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The status of a PUT; 599 when the store closed the connection before answering (Garage
/// refuses a wrong length that way), which is a refusal too.
async fn put_part(url: &str, bytes: Vec<u8>) -> u16 {
    match reqwest::Client::new().put(url).body(bytes).send().await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 599,
    }
}

fn media(size: usize) -> Value {
    json!({"vars": {"user": "alice"}, "filename": "clip.png", "content_type": "image/png", "size": size})
}

#[actix_web::test]
async fn multipart_and_complete_on_s3s() {
    check_lifecycle(S3Server::start().await).await;
}

/// The same against Garage (`tests/garage/`; skipped, saying so, when it is not running, unless
/// `CI_REQUIRE_GARAGE` is set, as in CI).
#[actix_web::test]
async fn garage_multipart_and_complete() {
    let _turn = crate::support::s3::garage_turn().await;
    if let Some(server) = S3Server::garage() {
        check_lifecycle(server).await;
    }
}

/// The same against SeaweedFS (`tests/seaweedfs/`), skipped or required as on Garage.
#[actix_web::test]
async fn seaweedfs_multipart_and_complete() {
    let _turn = crate::support::s3::garage_turn().await;
    if let Some(server) = S3Server::seaweedfs() {
        check_lifecycle(server).await;
    }
}

async fn check_lifecycle(server: S3Server) {
    let dir = policies_copy();
    let state = crate::support::state::state(registry_signing(
        dir.path(),
        app_limits(),
        RateClock::manual(Default::default()),
        server.store(),
    ));
    let service = actix_test::init_service(App::new().app_data(state.clone()).configure(http::routes)).await;
    let svc = &service;

    // A multipart upload of three parts (5 + 5 + 1 MiB) lands with its bytes, type and metadata.
    let file = png(11 * MIB, 1);
    let (status, created) = call(svc, "/v1/profiles/media/multipart", "web", media(file.len())).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        (created["part_size"].as_u64(), created["part_count"].as_u64()),
        (Some(5 * MIB as u64), Some(3))
    );
    assert_eq!(created["last_part_size"], MIB);
    let token = created["upload_token"].as_str().unwrap().to_owned();
    let object_key = created["key"].as_str().unwrap().to_owned();
    let (status, signed) = call(
        svc,
        "/v1/uploads/parts",
        "web",
        json!({"upload_token": token, "part_numbers": [1, 2, 3]}),
    )
    .await;
    assert_eq!(status, 200, "{signed}");
    let parts = signed["parts"].as_array().unwrap();
    // A part larger than planned is refused by the store (its Content-Length is signed).
    let first = parts[0]["url"].as_str().unwrap();
    assert!(
        put_part(first, png(5 * MIB + 1, 1)).await >= 400,
        "a part larger than planned was taken"
    );
    assert!(
        put_part(first, png(5 * MIB - 1, 1)).await >= 400,
        "a part smaller than planned was taken"
    );
    for (i, part) in parts.iter().enumerate().take(2) {
        let range = i * 5 * MIB..((i + 1) * 5 * MIB).min(file.len());
        assert_eq!(put_part(part["url"].as_str().unwrap(), file[range].to_vec()).await, 200);
    }
    // Resume: the store lists the two parts sent so far.
    let (status, listed) = call(svc, "/v1/uploads/list", "web", json!({"upload_token": token})).await;
    assert_eq!(status, 200, "{listed}");
    let numbers: Vec<u64> = listed["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["part_number"].as_u64().unwrap())
        .collect();
    let mut sorted = numbers.clone();
    sorted.sort();
    assert_eq!(sorted, [1, 2]);
    assert_eq!(
        put_part(parts[2]["url"].as_str().unwrap(), file[10 * MIB..].to_vec()).await,
        200
    );
    // Another app's key, a changed token: refused.
    let (status, problem) = call(svc, "/v1/uploads/complete", "mobile", json!({"upload_token": token})).await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("token-app-mismatch")));
    let mut tampered = token.clone();
    tampered.insert(tampered.len() - 50, 'x');
    let (status, problem) = call(svc, "/v1/uploads/complete", "web", json!({"upload_token": tampered})).await;
    assert_eq!((status, problem["code"].as_str()), (401, Some("token-invalid")));
    let started = Instant::now();
    let (status, done) = call(svc, "/v1/uploads/complete", "web", json!({"upload_token": token})).await;
    eprintln!("complete (multipart, 3 parts, 11 MiB): {:?}", started.elapsed());
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (done["size"].as_u64(), done["content_type"].as_str()),
        (Some(file.len() as u64), Some("image/png"))
    );
    assert_eq!(done["sniffed"], true);
    let stored = server.object("user-content", &object_key).await.expect("stored");
    assert!(stored.bytes == file, "the stored bytes differ");
    assert_eq!(stored.content_type.as_deref(), Some("image/png"));
    assert_eq!(stored.metadata.get("uploaded-by").map(String::as_str), Some("alice"));
    // Completing twice is harmless.
    let (status, again) = call(svc, "/v1/uploads/complete", "web", json!({"upload_token": token})).await;
    assert_eq!(status, 200, "{again}");

    // A missing part: complete aborts and refuses; nothing is stored.
    let (_, created) = call(svc, "/v1/profiles/media/multipart", "web", media(11 * MIB)).await;
    let token = created["upload_token"].as_str().unwrap().to_owned();
    let key_missing = created["key"].as_str().unwrap().to_owned();
    let (_, signed) = call(
        svc,
        "/v1/uploads/parts",
        "web",
        json!({"upload_token": token, "part_numbers": [1, 2]}),
    )
    .await;
    for part in signed["parts"].as_array().unwrap() {
        assert_eq!(put_part(part["url"].as_str().unwrap(), png(5 * MIB, 2)).await, 200);
    }
    let (status, problem) = call(svc, "/v1/uploads/complete", "web", json!({"upload_token": token})).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("parts-mismatch")),
        "{problem}"
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("part 3 is missing"),
        "{problem}"
    );
    assert!(server.object("user-content", &key_missing).await.is_none());

    // Parts the plan does not hold, written with the store's own credentials (a larger last
    // part; a part more than planned): complete aborts and refuses.
    for (part, len, expected) in [(3u16, 2 * MIB, "part 3 is"), (4u16, MIB, "part 4 is not in the plan")] {
        let (_, created) = call(svc, "/v1/profiles/media/multipart", "web", media(11 * MIB)).await;
        let token = created["upload_token"].as_str().unwrap().to_owned();
        let upload_id = created["upload_id"].as_str().unwrap().to_owned();
        let object = created["key"].as_str().unwrap().to_owned();
        let (_, signed) = call(
            svc,
            "/v1/uploads/parts",
            "web",
            json!({"upload_token": token, "part_numbers": [1, 2, 3]}),
        )
        .await;
        for (i, p) in signed["parts"].as_array().unwrap().iter().enumerate() {
            let len = if i == 2 { MIB } else { 5 * MIB };
            if part == 3 && i == 2 {
                continue;
            }
            assert_eq!(put_part(p["url"].as_str().unwrap(), png(len, 3)).await, 200);
        }
        let raw = server.raw_put_url("user-content", &object, Some((part, &upload_id)));
        assert_eq!(put_part(&raw, png(len, 4)).await, 200);
        let (status, problem) = call(svc, "/v1/uploads/complete", "web", json!({"upload_token": token})).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (422, Some("parts-mismatch")),
            "{problem}"
        );
        assert!(problem["detail"].as_str().unwrap().contains(expected), "{problem}");
        assert!(server.object("user-content", &object).await.is_none());
    }

    // Abort leaves nothing: no object, no parts.
    let (_, created) = call(svc, "/v1/profiles/media/multipart", "web", media(6 * MIB)).await;
    let token = created["upload_token"].as_str().unwrap().to_owned();
    let aborted_key = created["key"].as_str().unwrap().to_owned();
    let (_, signed) = call(
        svc,
        "/v1/uploads/parts",
        "web",
        json!({"upload_token": token, "part_numbers": [1]}),
    )
    .await;
    assert_eq!(
        put_part(signed["parts"][0]["url"].as_str().unwrap(), png(5 * MIB, 5)).await,
        200
    );
    let (status, answer) = call(svc, "/v1/uploads/abort", "web", json!({"upload_token": token})).await;
    assert_eq!(status, 200, "{answer}");
    let (status, listed) = call(svc, "/v1/uploads/list", "web", json!({"upload_token": token})).await;
    assert!(
        status == 404 || listed["parts"].as_array().is_some_and(Vec::is_empty),
        "parts left after abort: {status} {listed}"
    );
    assert!(server.object("user-content", &aborted_key).await.is_none());
    if let Some(root) = server.fs_root() {
        let upload_id = created["upload_id"].as_str().unwrap();
        let left: Vec<String> = std::fs::read_dir(root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains(upload_id))
            .collect();
        assert!(left.is_empty(), "abort left {left:?}");
    }

    // A single PUT: a PNG verifies; HTML declared as image/png is refused and removed.
    for (bytes, expected) in [(png(4096, 6), 200), (HTML.to_vec(), 422)] {
        let body = json!({"method": "put", "vars": {"user": "alice"}, "filename": "pic.png", "content_type": "image/png", "size": bytes.len()});
        let (status, signed) = call(svc, "/v1/profiles/media/presign", "web", body).await;
        assert_eq!(status, 200, "{signed}");
        let headers: Vec<(String, String)> = signed["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let (put_status, text) = put_upload(signed["url"].as_str().unwrap(), &headers, bytes).await;
        assert_eq!(put_status, 200, "{text}");
        let token = signed["upload_token"].as_str().unwrap();
        let (status, answer) = call(svc, "/v1/uploads/complete", "web", json!({"upload_token": token})).await;
        assert_eq!(status, expected, "{answer}");
        // Staged under incoming/: promoted when checked, removed when refused; never left.
        let staged = signed["key"].as_str().unwrap();
        assert!(staged.starts_with("incoming/media/"), "{staged}");
        assert!(server.object("user-content", staged).await.is_none());
        let promoted = server
            .object("user-content", staged.strip_prefix("incoming/").unwrap())
            .await
            .is_some();
        assert_eq!(promoted, expected == 200);
        if expected == 422 {
            assert_eq!(answer["code"], "content-sniff-mismatch");
            assert!(answer["detail"].as_str().unwrap().contains("text/html"), "{answer}");
        }
    }

    // Someone else's object at a PUT's key (written without this grant's marker): complete
    // answers not-this-upload and leaves it as it is.
    let body = json!({"method": "put", "vars": {"user": "alice"}, "filename": "theirs.png", "content_type": "image/png", "size": 4096});
    let (_, signed) = call(svc, "/v1/profiles/media/presign", "web", body).await;
    let key = signed["key"].as_str().unwrap();
    let theirs = png(4096, 8);
    assert_eq!(server.raw_put("user-content", key, None, theirs.clone()).await, 200);
    let (status, answer) = call(
        svc,
        "/v1/uploads/complete",
        "web",
        json!({"upload_token": signed["upload_token"]}),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (409, Some("not-this-upload")),
        "{answer}"
    );
    assert!(
        server
            .object("user-content", key)
            .await
            .is_some_and(|o| o.bytes == theirs)
    );

    // Complete before the upload: 404, and nothing deleted.
    let body = json!({"method": "put", "vars": {"user": "alice"}, "filename": "later.png", "content_type": "image/png", "size": 10});
    let (_, signed) = call(svc, "/v1/profiles/media/presign", "web", body).await;
    let (status, answer) = call(
        svc,
        "/v1/uploads/complete",
        "web",
        json!({"upload_token": signed["upload_token"]}),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (404, Some("upload-not-found")),
        "{answer}"
    );

    // Promotion: a PDF by POST form lands under incoming/, complete moves it to its key.
    let pdf = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n".to_vec();
    let body =
        json!({"method": "post", "vars": {"user": "bob"}, "filename": "scan.pdf", "content_type": "application/pdf"});
    let (status, signed) = call(svc, "/v1/profiles/scans/presign", "web", body).await;
    assert_eq!(status, 200, "{signed}");
    let staged = signed["key"].as_str().unwrap().to_owned();
    assert!(staged.starts_with("incoming/scans/bob/"), "{staged}");
    let fields: Vec<(String, String)> = signed["fields"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let (status, text) = upload(signed["url"].as_str().unwrap(), &fields, "scan.pdf", pdf.clone()).await;
    assert!((200..300).contains(&status), "{status} {text}");
    let token = signed["upload_token"].as_str().unwrap();
    let (status, done) = call(svc, "/v1/uploads/complete", "web", json!({"upload_token": token})).await;
    assert_eq!(status, 200, "{done}");
    let final_key = staged.strip_prefix("incoming/").unwrap();
    assert_eq!(done["key"], final_key);
    assert_eq!(done["promoted_from"], staged.as_str());
    assert!(
        server
            .object("user-documents", final_key)
            .await
            .is_some_and(|o| o.bytes == pdf)
    );
    assert!(
        server.object("user-documents", &staged).await.is_none(),
        "the staging key is left"
    );
    let (status, again) = call(svc, "/v1/uploads/complete", "web", json!({"upload_token": token})).await;
    assert_eq!((status, again["key"].as_str()), (200, Some(final_key)), "{again}");

    // A wrong size (the staged object swapped with the store's own credentials): refused, and
    // moved to quarantine/.
    let body = json!({"method": "put", "vars": {"user": "bob"}, "filename": "scan.pdf", "content_type": "application/pdf", "size": pdf.len()});
    let (_, signed) = call(svc, "/v1/profiles/scans/presign", "web", body).await;
    let staged = signed["key"].as_str().unwrap().to_owned();
    let marker = signed["headers"][postgate::profile::plan::MARKER_FIELD]
        .as_str()
        .unwrap()
        .to_owned();
    let mut bigger = pdf.clone();
    bigger.extend_from_slice(&[b' '; 100]);
    assert_eq!(
        server.raw_put("user-documents", &staged, Some(&marker), bigger).await,
        200
    );
    let (status, problem) = call(
        svc,
        "/v1/uploads/complete",
        "web",
        json!({"upload_token": signed["upload_token"]}),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("object-size-mismatch")),
        "{problem}"
    );
    assert!(server.object("user-documents", &staged).await.is_none());
    assert!(
        server
            .object("user-documents", &format!("quarantine/{marker}/{staged}"))
            .await
            .is_some()
    );
}

/// A store that is down: 503 with a clear code, quickly (deadlines and retries), never a hang.
#[actix_web::test]
async fn a_store_that_is_down_is_a_503() {
    let server = S3Server::start().await;
    let dir = policies_copy();
    let mut store = server.store();
    // Nothing listens on port 9 of localhost.
    store.endpoint = postgate::sign::Endpoint::Custom("http://127.0.0.1:9".into());
    let registry = registry_signing(dir.path(), app_limits(), RateClock::manual(Default::default()), store);
    let state = crate::support::state::state(registry);
    let service = actix_test::init_service(App::new().app_data(state.clone()).configure(http::routes)).await;
    let started = Instant::now();
    let (status, problem) = call(&service, "/v1/profiles/media/multipart", "web", media(6 * MIB)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (503, Some("store-unavailable")),
        "{problem}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let body = json!({"method": "put", "vars": {"user": "alice"}, "filename": "a.png", "content_type": "image/png", "size": 10});
    let (_, signed) = call(&service, "/v1/profiles/media/presign", "web", body).await;
    let (status, problem) = call(
        &service,
        "/v1/uploads/complete",
        "web",
        json!({"upload_token": signed["upload_token"]}),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (503, Some("store-unavailable")),
        "{problem}"
    );
    let _ = Arc::clone(&state);
}

/// A store that answers garbage, closes mid-answer or stalls: 503, and neither the answer nor
/// the error the gateway logs holds the presigned URL, its query or a credential.
#[actix_web::test]
async fn a_broken_store_never_puts_its_url_in_an_answer() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    for behaviour in ["garbage", "cut", "stall"] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    match behaviour {
                        "garbage" => {
                            let _ = socket.write_all(b"SSH-2.0-not-http\r\n\r\n").await;
                        }
                        "cut" => {
                            let _ = socket
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n<ListPartsResult>")
                                .await;
                        }
                        _ => tokio::time::sleep(Duration::from_secs(30)).await,
                    }
                });
            }
        });
        let dir = policies_copy();
        let server_store = postgate::sign::Store::new(
            "default",
            "us-east-1",
            postgate::sign::Endpoint::Custom(format!("http://127.0.0.1:{port}")),
            postgate::sign::Addressing::Path,
            postgate::sign::Credentials {
                access_key_id: "AKIACANARYKEYID00000".into(),
                secret_access_key: postgate::secret::Secret::new("canary-secret-access-key"),
                session_token: Some(postgate::secret::Secret::new("CANARYSESSIONTOKEN")),
                expires_at: None,
            },
        );
        let registry = registry_signing(
            dir.path(),
            app_limits(),
            RateClock::manual(Default::default()),
            server_store,
        );
        let mut state = crate::support::state::app_state(registry);
        state.uploads.client = postgate::store::StoreClient::new(postgate::store::ClientConfig {
            connect_timeout: Duration::from_millis(500),
            timeout: Duration::from_millis(700),
            long_timeout: Duration::from_millis(700),
            attempts: 1,
        });
        let state = actix_web::web::Data::new(state);
        let service = actix_test::init_service(App::new().app_data(state.clone()).configure(http::routes)).await;
        let started = Instant::now();
        let (status, problem) = call(&service, "/v1/profiles/media/multipart", "web", media(6 * MIB)).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{behaviour}: {:?}",
            started.elapsed()
        );
        assert_eq!(
            (status, problem["code"].as_str()),
            (503, Some("store-unavailable")),
            "{behaviour}: {problem}"
        );
        let text = problem.to_string();
        for secret in [
            "AKIACANARY",
            "CANARYSESSION",
            "X-Amz-",
            "Signature",
            "127.0.0.1",
            "uploads=",
        ] {
            assert!(!text.contains(secret), "{behaviour}: the answer holds {secret}: {text}");
        }
    }
}

/// Signing 1,000 part URLs for one upload, through the API (the figure in BENCHMARKS.md).
#[actix_web::test]
async fn a_thousand_part_urls_in_one_call() {
    let server = S3Server::start().await;
    let dir = policies_copy();
    let state = crate::support::state::state(registry_signing(
        dir.path(),
        app_limits(),
        RateClock::manual(Default::default()),
        server.store(),
    ));
    let service = actix_test::init_service(App::new().app_data(state.clone()).configure(http::routes)).await;
    let (status, created) = call(&service, "/v1/profiles/media/multipart", "web", media(5000 * MIB)).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["part_count"], 1000);
    let numbers: Vec<u32> = (1..=1000).collect();
    let started = Instant::now();
    let (status, signed) = call(
        &service,
        "/v1/uploads/parts",
        "web",
        json!({"upload_token": created["upload_token"], "part_numbers": numbers}),
    )
    .await;
    eprintln!("1,000 part URLs in one call: {:?}", started.elapsed());
    assert_eq!(status, 200);
    let parts = signed["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 1000);
    assert!(parts.iter().all(|p| {
        p["size"] == 5 * MIB
            && p["url"]
                .as_str()
                .unwrap()
                .contains("X-Amz-SignedHeaders=content-length%3Bhost")
    }));
    let (status, problem) = call(
        &service,
        "/v1/uploads/parts",
        "web",
        json!({"upload_token": created["upload_token"], "part_numbers": [1001]}),
    )
    .await;
    assert_eq!((status, problem["code"].as_str()), (422, Some("part-invalid")));
}

/// A token that expired, an object swapped for one of another type, and a profile that stops
/// allowing the app while its upload is in flight.
#[actix_web::test]
async fn expiry_swaps_and_revocation_reach_uploads_in_flight() {
    let server = S3Server::start().await;
    let dir = policies_copy();
    let registry = registry_signing(
        dir.path(),
        app_limits(),
        RateClock::manual(Default::default()),
        server.store(),
    );
    let state = crate::support::state::state(registry.clone());
    let service = actix_test::init_service(App::new().app_data(state.clone()).configure(http::routes)).await;
    let svc = &service;

    // Expired: the same claims, sealed with an expiry in the past.
    let body = json!({"method": "put", "vars": {"user": "alice"}, "filename": "a.png", "content_type": "image/png", "size": 10});
    let (_, signed) = call(svc, "/v1/profiles/media/presign", "web", body).await;
    let keys = crate::support::state::token_keys("test-1");
    let mut claims = keys
        .open(
            signed["upload_token"].as_str().unwrap(),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
    claims.expires_at = time::OffsetDateTime::now_utc().unix_timestamp() - 1;
    let expired = keys.seal(&claims);
    let (status, problem) = call(svc, "/v1/uploads/complete", "web", json!({"upload_token": expired})).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("token-expired")),
        "{problem}"
    );
    // Sealed by a key that was rotated out.
    let retired = postgate::upload::TokenKeys::new(
        "old",
        vec![(
            "old".into(),
            postgate::secret::Secret::new("a-retired-token-key-0123456789abcdef"),
        )],
    )
    .unwrap()
    .seal(&claims);
    let (status, problem) = call(svc, "/v1/uploads/complete", "web", json!({"upload_token": retired})).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("token-invalid")),
        "{problem}"
    );
    assert!(problem["detail"].as_str().unwrap().contains("`old`"), "{problem}");

    // This upload's object at the signed key without the signed size (a store that enforces
    // nothing): refused, deleted.
    let key = signed["key"].as_str().unwrap();
    let marker = signed["headers"][postgate::profile::plan::MARKER_FIELD]
        .as_str()
        .unwrap();
    assert_eq!(
        server
            .raw_put("user-content", key, Some(marker), png(10 * 1024, 7))
            .await,
        200
    );
    let (status, problem) = call(
        svc,
        "/v1/uploads/complete",
        "web",
        json!({"upload_token": signed["upload_token"]}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        ["object-size-mismatch", "object-type-mismatch"].contains(&problem["code"].as_str().unwrap()),
        "{problem}"
    );
    assert!(server.object("user-content", key).await.is_none());

    // A promoted upload's key holding someone else's object (no marker): a repeated complete
    // finds nothing of its own, and removes nothing.
    let body = json!({"method": "put", "vars": {"user": "bob"}, "filename": "old.pdf", "content_type": "application/pdf", "size": 9});
    let (_, signed) = call(svc, "/v1/profiles/scans/presign", "web", body).await;
    let claims = keys
        .open(
            signed["upload_token"].as_str().unwrap(),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
    let final_key = claims.bounds.promote_to.clone().unwrap();
    assert_eq!(
        server
            .raw_put("user-documents", &final_key, None, b"%PDF-1.7\n".to_vec())
            .await,
        200
    );
    let (status, problem) = call(
        svc,
        "/v1/uploads/complete",
        "web",
        json!({"upload_token": signed["upload_token"]}),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("upload-not-found")),
        "{problem}"
    );
    assert!(
        server.object("user-documents", &final_key).await.is_some(),
        "nothing is deleted"
    );

    // Revocation: the profile stops allowing `web` while its multipart upload is in flight.
    let (_, created) = call(svc, "/v1/profiles/media/multipart", "web", media(6 * MIB)).await;
    let token = created["upload_token"].as_str().unwrap().to_owned();
    let text = std::fs::read_to_string(dir.path().join("media.yaml")).unwrap();
    std::fs::write(
        dir.path().join("media.yaml"),
        text.replace("apps: [web]", "apps: [mobile]"),
    )
    .unwrap();
    let report = registry.reload(postgate::metrics::Trigger::Admin);
    assert_eq!(report.result, postgate::metrics::ReloadResult::Success, "{report:?}");
    for route in ["/v1/uploads/parts", "/v1/uploads/complete"] {
        let (status, problem) = call(svc, route, "web", json!({"upload_token": token, "part_numbers": [1]})).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (403, Some("forbidden")),
            "{route}: {problem}"
        );
    }
}

/// Uppy's gateway URLs: the tag binds operation, token and expiry; a changed URL or another
/// method is refused with an S3 error document Uppy can show, and the right one answers S3 XML.
#[actix_web::test]
async fn uppy_gateway_urls_answer_s3_xml_and_refuse_changes() {
    let server = S3Server::start().await;
    let dir = policies_copy();
    let state = crate::support::state::state(registry_signing(
        dir.path(),
        app_limits(),
        RateClock::manual(Default::default()),
        server.store(),
    ));
    let service = actix_test::init_service(App::new().app_data(state.clone()).configure(http::routes)).await;
    let body = json!({"request": {"method": "POST", "key": "uppy-file-id"}, "upload": media(6 * MIB)});
    let (status, answer) = call(&service, "/v1/profiles/media/uppy", "web", body).await;
    assert_eq!(status, 200, "{answer}");
    let url = answer["url"].as_str().unwrap();
    let path = url
        .strip_prefix("http://gateway.test")
        .expect("the configured public URL");
    assert!(path.starts_with("/v1/uppy/s3/create?upload_token="), "{path}");
    let send = |method: &str, path: String| {
        let request = match method {
            "GET" => actix_test::TestRequest::get(),
            "DELETE" => actix_test::TestRequest::delete(),
            _ => actix_test::TestRequest::post(),
        };
        request.uri(&path).to_request()
    };
    // As given: the upload token is the upload ID.
    let response = actix_test::call_service(&service, send("POST", path.to_owned())).await;
    assert_eq!(response.status(), 200);
    let xml = String::from_utf8(actix_test::read_body(response).await.to_vec()).unwrap();
    let token = answer["upload_token"].as_str().unwrap();
    assert!(xml.contains(&format!("<UploadId>{token}</UploadId>")), "{xml}");
    // Another operation with the same tag, a changed expiry, another method: refused.
    let refused = [
        ("POST", path.replace("/create?", "/complete?"), 403, "url-invalid"),
        ("POST", path.replace("&expires=", "&expires=9"), 403, "url-invalid"),
        ("GET", path.to_owned(), 405, "method-not-allowed"),
    ];
    for (method, path, status, code) in refused {
        let response = actix_test::call_service(&service, send(method, path.clone())).await;
        assert_eq!(response.status(), status, "{method} {path}");
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(header("content-type").as_deref(), Some("application/xml"));
        assert_eq!(header("x-amz-error-code").as_deref(), Some(code));
        let xml = String::from_utf8(actix_test::read_body(response).await.to_vec()).unwrap();
        assert!(xml.contains(&format!("<Code>{code}</Code>")), "{xml}");
    }
    // A part: Uppy's uploadId (the token) and part number give a URL signing its length.
    let body = json!({"request": {"method": "PUT", "key": "k", "uploadId": token, "partNumber": 2}});
    let (status, part) = call(&service, "/v1/profiles/media/uppy", "web", body).await;
    assert_eq!(status, 200, "{part}");
    assert!(part["url"].as_str().unwrap().contains("partNumber=2&"), "{part}");
    // Another app's key cannot sign parts of this upload.
    let body = json!({"request": {"method": "PUT", "key": "k", "uploadId": token, "partNumber": 1}});
    let (status, problem) = call(&service, "/v1/profiles/media/uppy", "mobile", body).await;
    assert!(status == 403, "{status} {problem}");
}

/// CompleteMultipartUpload may fail after its 200: an `<Error>` with a retryable code is tried
/// again (not taken as a refusal that would abort the upload); a refusal of the parts is not.
#[tokio::test]
async fn a_200_with_a_retryable_error_is_retried() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let answers = [
        "<Error><Code>InternalError</Code><Message>try again</Message></Error>",
        "<CompleteMultipartUploadResult><ETag>&quot;abc-2&quot;</ETag></CompleteMultipartUploadResult>",
        "<Error><Code>InvalidPart</Code><Message>no such part</Message></Error>",
    ];
    tokio::spawn(async move {
        for body in answers {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 64 * 1024];
            let _ = socket.read(&mut request).await.unwrap();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
        }
    });
    let mut store = crate::support::state::aws_store();
    store.endpoint = postgate::sign::Endpoint::Custom(endpoint);
    store.addressing = postgate::sign::Addressing::Path;
    let client = postgate::store::StoreClient::new(postgate::store::ClientConfig {
        attempts: 3,
        ..Default::default()
    });
    let parts = [postgate::upload::ListedPart {
        part_number: 1,
        size: 5,
        etag: Some("p1".into()),
    }];
    let expect = postgate::store::Completion {
        object_size: 5,
        no_overwrite: false,
        headers: Vec::new(),
    };
    let etag = client
        .complete_multipart(&store, "b", "k", "u", &parts, expect.clone())
        .await
        .expect("the retry completes");
    assert_eq!(etag.as_deref(), Some("abc-2"));
    let refused = client.complete_multipart(&store, "b", "k", "u", &parts, expect).await;
    assert_eq!(refused.unwrap_err().code(), Some("InvalidPart"));
}
