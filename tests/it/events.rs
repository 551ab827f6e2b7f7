//! Upload events, received by the reference Standard Webhooks verifiers nobody here wrote — the
//! `standardwebhooks` packages from PyPI and npm (`tests/webhooks/`) — against a real S3 server
//! (s3s-fs) and, for the queue, a real `redis-server` and `postgate serve` processes.
//!
//! Skips (saying so) without the verifiers (`bash tests/webhooks/install.sh`) or redis-server,
//! unless `CI_REQUIRE_WEBHOOKS=1` / `CI_REQUIRE_REDIS=1` (CI) make that a failure.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use postgate::events::{Delivery, Endpoint, Endpoints, EventType, WebhookSecret, event_id, signature_header};
use postgate::lifecycle::{self, Code, Grant};
use postgate::metrics::Metrics;
use postgate::profile::{Method, UploadRequest};
use postgate::ratelimit::RateClock;
use postgate::registry::{AppsSource, Registry, Source};
use postgate::sign::{FieldStyle, Signed};
use serde_json::Value;
use time::OffsetDateTime;

use crate::support::process::{
    Running, free_port, get, postgate, redis_installed, redis_server, request as http_request, wait_ready,
};
use crate::support::s3::{S3Server, put_upload};
use crate::support::state::{app_keys, app_limits, policies_copy};
use crate::{repo_path, sample, wait_until};

/// Two secrets, as during a rotation: the gateway signs with both, each receiver knows one.
const SECRET_A: &str = "whsec_cG9zdGdhdGUtdGVzdC1zZWNyZXQtYS0wMTIzNDU2Nzg5";
const SECRET_B: &str = "whsec_cG9zdGdhdGUtdGVzdC1zZWNyZXQtYi0wMTIzNDU2Nzg5";
/// A secret the gateway does not sign with.
const SECRET_WRONG: &str = "whsec_cG9zdGdhdGUtdGVzdC1zZWNyZXQtei0wMTIzNDU2Nzg5";

/// A reference verifier's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Python,
    Node,
}

/// The Python of the venv `tests/webhooks/install.sh` made, and whether the npm package is in.
fn verifiers() -> Option<PathBuf> {
    let python = std::env::var_os("WEBHOOK_PYTHON").map(PathBuf::from).or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(cache.join("postgate-webhooks/venv/bin/python"))
    });
    let ready = python.as_ref().is_some_and(|p| p.is_file())
        && repo_path("tests/webhooks/node_modules/standardwebhooks").is_dir();
    if ready {
        return python;
    }
    assert!(
        std::env::var("CI_REQUIRE_WEBHOOKS").is_err(),
        "CI_REQUIRE_WEBHOOKS is set but the reference verifiers are not installed (bash tests/webhooks/install.sh)"
    );
    eprintln!(
        "SKIPPED: the reference Standard Webhooks verifiers are not installed; run `bash tests/webhooks/install.sh` (the events tests did not run)"
    );
    None
}

fn command(python: &Path, lang: Lang) -> Command {
    match lang {
        Lang::Python => {
            let mut command = Command::new(python);
            command.arg(repo_path("tests/webhooks/receiver.py"));
            command
        }
        Lang::Node => {
            let mut command = Command::new("node");
            command.arg(repo_path("tests/webhooks/receiver.mjs"));
            command
        }
    }
}

/// A reference receiver on `port`, recording what it verified to `record`.
struct Receiver {
    _running: Running,
    record: PathBuf,
    url: String,
}

impl Receiver {
    fn start(python: &Path, lang: Lang, secret: &str, port: u16, record: &Path) -> Receiver {
        let mut child = command(python, lang)
            .args(["serve", "--port", &port.to_string(), "--secret", secret, "--record"])
            .arg(record)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the receiver starts");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        assert!(line.starts_with("listening"), "{line}");
        Receiver {
            _running: Running(child),
            record: record.to_owned(),
            url: format!("http://127.0.0.1:{port}/hooks"),
        }
    }

    /// `ok`, `refuse` (422) or `fail` (503) from now on.
    fn answer(&self, mode: &str) {
        std::fs::write(self.record.with_extension("jsonl.answer"), mode).unwrap();
    }

    /// The deliveries verified so far (never a rejected one: the test fails on those).
    fn deliveries(&self) -> Vec<Value> {
        deliveries(&self.record)
    }
}

fn deliveries(record: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(record).unwrap_or_default();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for line in &lines {
        assert!(
            line.get("rejected").is_none(),
            "a reference verifier rejected a delivery: {line}"
        );
    }
    lines
}

fn body(delivery: &Value) -> Value {
    serde_json::from_str(delivery["body"].as_str().unwrap()).unwrap()
}

/// `verify` of `lang` over `file` with `secret`: whether every line came out as `expect`.
fn verify(python: &Path, lang: Lang, secret: &str, file: &Path, tamper: bool, expect: &str) -> bool {
    let mut command = command(python, lang);
    command
        .args(["verify", "--secret", secret, "--expect", expect, "--file"])
        .arg(file);
    if tamper {
        command.arg("--tamper");
    }
    let output = command.output().unwrap();
    eprintln!(
        "{lang:?} verify ({expect}, tamper {tamper}): {}",
        String::from_utf8_lossy(&output.stdout).trim()
    );
    output.status.success()
}

fn endpoint(url: &str, delivery: Delivery) -> Endpoint {
    Endpoint {
        app: "web".into(),
        url: url.to_owned(),
        secrets: WebhookSecret::parse_list(&format!("{SECRET_A} {SECRET_B}")).unwrap(),
        types: EventType::ALL.to_vec(),
        profiles: None,
        delivery,
        timeout: Duration::from_secs(2),
        attempts: 2,
        fingerprint: [0; 32],
    }
}

/// The example profiles signing for `server`, app `web` sending its events to `url`.
struct Setup {
    _dir: tempfile::TempDir,
    registry: Arc<Registry>,
    uploads: lifecycle::Uploads,
}

impl Setup {
    fn new(server: &S3Server, url: &str) -> Setup {
        let dir = policies_copy();
        let endpoints = Endpoints::new(vec![endpoint(url, Delivery::Sync)]);
        let source = Source {
            policies: dir.path().to_owned(),
            stores: Arc::new([("default".to_owned(), Arc::new(server.store()))].into_iter().collect()),
            apps: AppsSource::FixedWithTokens(app_keys(), app_limits(), Default::default(), endpoints),
        };
        let metrics = Arc::new(Metrics::new());
        let registry = Registry::start_with_clock(
            source,
            false,
            metrics.clone(),
            None,
            RateClock::manual(Default::default()),
        )
        .unwrap();
        let mut uploads = crate::support::state::uploads();
        uploads.notifier = postgate::events::Notifier::new(None, metrics);
        Setup {
            _dir: dir,
            registry: Arc::new(registry),
            uploads,
        }
    }

    /// A `media` PUT of `bytes` (declared `image/png`) for alice, uploaded; its token's claims.
    async fn put_media(&self, name: &str, bytes: Vec<u8>) -> postgate::upload::Claims {
        let snapshot = self.registry.current();
        let request = UploadRequest {
            vars: [("user".to_owned(), "alice".to_owned())].into_iter().collect(),
            filename: Some(name.into()),
            content_type: Some("image/png".into()),
            size: Some(bytes.len() as u64),
            method: Some(Method::Put),
            ..UploadRequest::default()
        };
        let granted = lifecycle::grant(
            self.uploads.tokens.as_deref(),
            snapshot.get("media").unwrap(),
            &request,
            &Grant::now("web", None),
            FieldStyle::default(),
        )
        .unwrap();
        let Signed::Put(put) = &granted.signed else {
            panic!("a PUT")
        };
        let headers: Vec<(String, String)> = put
            .client_headers()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        let (status, text) = put_upload(&put.url, &headers, bytes).await;
        assert_eq!(status, 200, "{text}");
        self.uploads
            .tokens()
            .unwrap()
            .open(granted.upload_token.as_deref().unwrap(), OffsetDateTime::now_utc())
            .unwrap()
    }

    async fn complete(&self, claims: &postgate::upload::Claims) -> Result<lifecycle::Completed, lifecycle::Failure> {
        lifecycle::complete(&self.uploads, &self.registry.current(), claims, None, Some("127.0.0.1")).await
    }
}

fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89".to_vec();
    bytes.resize(len, 7);
    bytes
}

/// Each reference receiver holds one of the two secrets and accepts the gateway's deliveries;
/// the app's answer comes back through `complete`; the other language's verifier accepts the
/// recorded deliveries with the other secret, and both refuse a changed body and an old
/// timestamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reference_verifiers_accept_every_delivery_and_refuse_tampering() {
    let Some(python) = verifiers() else { return };
    let server = S3Server::start().await;
    let work = tempfile::tempdir().unwrap();
    for (lang, secret, other_lang, other_secret) in [
        (Lang::Python, SECRET_A, Lang::Node, SECRET_B),
        (Lang::Node, SECRET_B, Lang::Python, SECRET_A),
    ] {
        let record = work.path().join(format!("{lang:?}.jsonl"));
        let receiver = Receiver::start(&python, lang, secret, free_port(), &record);
        let setup = Setup::new(&server, &receiver.url);
        let claims = setup.put_media("a.png", png(4096)).await;
        let completed = setup.complete(&claims).await.unwrap();

        let event = completed.event.clone().expect("the app took the event");
        assert_eq!(event.id, event_id(&claims.bounds.marker, "upload.completed"));
        assert_eq!(event.delivery, "delivered");
        let answer = completed.app_answer.clone().expect("the app's answer comes back");
        assert_eq!(answer["received"], event.id.as_str());
        assert!(answer["verified_by"].as_str().unwrap().starts_with("standardwebhooks"));

        let delivered = receiver.deliveries();
        assert_eq!(delivered.len(), 1);
        let sent = body(&delivered[0]);
        assert_eq!(sent["type"], "upload.completed");
        let data = &sent["data"];
        assert_eq!(data["upload_id"], claims.bounds.marker.as_str());
        assert_eq!(
            (data["app"].as_str(), data["profile"].as_str()),
            (Some("web"), Some("media"))
        );
        assert_eq!(data["key"], completed.key.as_str());
        assert_eq!(data["promoted_from"], claims.bounds.key.as_str());
        assert_eq!(
            (data["size"].as_u64(), data["content_type"].as_str()),
            (Some(4096), Some("image/png"))
        );
        assert_eq!(data["metadata"]["uploaded-by"], "alice");
        assert!(data["etag"].is_string());
        assert!(data["verified"].as_array().unwrap().iter().any(|v| v == "sniff"));
        assert!(
            server.object("user-content", &completed.key).await.is_some(),
            "promoted"
        );

        // The other secret, the other library: the same deliveries verify.
        assert!(verify(&python, other_lang, other_secret, &record, false, "ok"));
        // A changed body: refused by both.
        assert!(verify(&python, lang, secret, &record, true, "refused"));
        assert!(verify(&python, other_lang, other_secret, &record, true, "refused"));
        // The gateway's signature with a timestamp ten minutes old: refused by both, though the
        // same delivery stamped now verifies.
        for (age, expect) in [(600, "refused"), (0, "ok")] {
            let at = OffsetDateTime::now_utc().unix_timestamp() - age;
            let text = delivered[0]["body"].as_str().unwrap();
            let secrets = WebhookSecret::parse_list(&format!("{SECRET_A} {SECRET_B}")).unwrap();
            let line = serde_json::json!({
                "id": event.id, "timestamp": at.to_string(),
                "signature": signature_header(&secrets, &event.id, at, text.as_bytes()), "body": text,
            });
            let file = work.path().join(format!("{lang:?}-{age}.jsonl"));
            std::fs::write(&file, format!("{line}\n")).unwrap();
            assert!(verify(&python, lang, secret, &file, false, expect), "age {age}");
            assert!(
                verify(&python, other_lang, other_secret, &file, false, expect),
                "age {age}"
            );
        }
    }
}

/// `sync`: an endpoint that cannot be reached makes `complete` a 503 with nothing promoted; once
/// it is back, the retried `complete` delivers the same event and promotes. A 4xx from the app
/// refuses the upload (removed); a refusal at `complete` and an abort are announced too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_delivery_holds_the_upload_until_the_app_has_heard() {
    let Some(python) = verifiers() else { return };
    check_sync(&python, &S3Server::start().await).await;
}

/// The same against Garage (skipped, saying so, when it is not running, unless
/// `CI_REQUIRE_GARAGE` is set, as in CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garage_sync_delivery_holds_the_upload_until_the_app_has_heard() {
    let _turn = crate::support::s3::garage_turn().await;
    let Some(python) = verifiers() else { return };
    if let Some(server) = S3Server::garage() {
        check_sync(&python, &server).await;
    }
}

/// The same against SeaweedFS, skipped or required as on Garage.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seaweedfs_sync_delivery_holds_the_upload_until_the_app_has_heard() {
    let _turn = crate::support::s3::garage_turn().await;
    let Some(python) = verifiers() else { return };
    if let Some(server) = S3Server::seaweedfs() {
        check_sync(&python, &server).await;
    }
}

async fn check_sync(python: &Path, server: &S3Server) {
    let python = python.to_owned();
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let setup = Setup::new(server, &format!("http://127.0.0.1:{port}/hooks"));

    // Down: 503 `event-undelivered`; the object stays where it was uploaded, nothing promoted.
    let claims = setup.put_media("down.png", png(2048)).await;
    let failure = setup.complete(&claims).await.unwrap_err();
    assert_eq!(failure.code, Code::EventUndelivered, "{failure}");
    let staged = claims.bounds.key.clone();
    let final_key = claims.bounds.promote_to.clone().unwrap();
    assert!(
        server.object("user-content", &staged).await.is_some(),
        "left at the staging key"
    );
    assert!(
        server.object("user-content", &final_key).await.is_none(),
        "nothing promoted"
    );

    // A receiver holding none of the secrets answers 401: a misconfigured endpoint, not a
    // refusal — 503 again, and the upload stays.
    {
        let _wrong = Receiver::start(
            &python,
            Lang::Python,
            SECRET_WRONG,
            port,
            &work.path().join("wrong.jsonl"),
        );
        let failure = setup.complete(&claims).await.unwrap_err();
        assert_eq!(failure.code, Code::EventUndelivered, "{failure}");
        assert!(failure.detail.contains("401"), "{failure}");
        assert!(
            server.object("user-content", &staged).await.is_some(),
            "a 401 removes nothing"
        );
    }

    // Back: the retried complete delivers the same event ID, then promotes.
    let record = work.path().join("sync.jsonl");
    let receiver = Receiver::start(&python, Lang::Python, SECRET_A, port, &record);
    let completed = setup.complete(&claims).await.unwrap();
    let id = event_id(&claims.bounds.marker, "upload.completed");
    assert_eq!(completed.event.unwrap().id, id);
    assert_eq!(receiver.deliveries()[0]["id"], id.as_str());
    assert!(server.object("user-content", &final_key).await.is_some(), "promoted");
    assert!(
        server.object("user-content", &staged).await.is_none(),
        "staging removed"
    );

    // The app says no (422): the upload is refused and removed, nothing promoted.
    receiver.answer("refuse");
    let claims = setup.put_media("no.png", png(2048)).await;
    let failure = setup.complete(&claims).await.unwrap_err();
    assert_eq!(failure.code, Code::EventRefused, "{failure}");
    assert!(failure.detail.contains("deleted"), "{failure}");
    assert!(
        server.object("user-content", &claims.bounds.key).await.is_none(),
        "removed"
    );
    assert!(
        server
            .object("user-content", claims.bounds.promote_to.as_deref().unwrap())
            .await
            .is_none()
    );

    // Bytes that are not the declared type: refused at complete, and the app is told why and
    // where the object went.
    receiver.answer("ok");
    let mut html = b"<!DOCTYPE html><html>".to_vec();
    html.resize(2048, b' ');
    let claims = setup.put_media("fake.png", html).await;
    let failure = setup.complete(&claims).await.unwrap_err();
    assert_eq!(failure.code, Code::ContentSniffMismatch, "{failure}");
    let refused = receiver
        .deliveries()
        .iter()
        .map(body)
        .find(|b| b["type"] == "upload.refused")
        .expect("upload.refused");
    assert_eq!(refused["data"]["refusal"]["code"], "content-sniff-mismatch");
    assert_eq!(refused["data"]["refusal"]["removed"], "deleted");
    assert_eq!(refused["data"]["upload_id"], claims.bounds.marker.as_str());
    assert!(
        server.object("user-content", &claims.bounds.key).await.is_none(),
        "removed"
    );

    // A multipart upload aborted through the gateway: `upload.aborted`.
    let snapshot = setup.registry.current();
    let request = UploadRequest {
        vars: [("user".to_owned(), "alice".to_owned())].into_iter().collect(),
        filename: Some("big.png".into()),
        content_type: Some("image/png".into()),
        size: Some(6 * 1024 * 1024),
        ..UploadRequest::default()
    };
    let started = lifecycle::start_multipart(
        &setup.uploads,
        &snapshot,
        snapshot.get("media").unwrap(),
        &request,
        &Grant::now("web", None),
    )
    .await
    .unwrap();
    let claims = setup
        .uploads
        .tokens()
        .unwrap()
        .open(&started.upload_token, OffsetDateTime::now_utc())
        .unwrap();
    lifecycle::abort(&setup.uploads, &snapshot, &claims).await.unwrap();
    let aborted = receiver
        .deliveries()
        .iter()
        .map(body)
        .find(|b| b["type"] == "upload.aborted")
        .expect("upload.aborted");
    assert_eq!(aborted["data"]["key"], started.key.as_str());
}

const APP_KEY: &str = "events-test-app-key-0123456789";

/// A `postgate serve` of the example profiles on `server`, app `web` queueing its events to
/// `url` in the Redis at `redis_port`; answers its API and admin base URLs.
fn queue_gateway(
    config_dir: &Path,
    policies: &Path,
    server: &S3Server,
    url: &str,
    redis_port: u16,
) -> (Running, String, String) {
    let (port, admin) = (free_port(), free_port());
    let config = config_dir.join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "policies: {policies}\nlisten: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin}\nstores:\n  default:\n    endpoint: {endpoint}\n    region: us-east-1\n    credentials:\n      access_key_id_env: EVENTS_S3_KEY\n      secret_access_key_env: EVENTS_S3_SECRET\napps:\n  web:\n    keys: [\"{hash}\"]\n    events:\n      url: {url}\n      secrets_env: EVENTS_SECRETS\n      delivery: queue\n      timeout: 2s\nevents:\n  redis:\n    url_env: EVENTS_REDIS_URL\n  retry: [300ms, 600ms, 1200ms, 2400ms]\n  claim_after: 5s\nupload_tokens:\n  current: t1\n  keys:\n    t1: {{ secret_env: EVENTS_TOKEN_KEY }}\nstore_calls: {{ timeout: 2s, attempts: 2 }}\n",
            policies = policies.display(),
            endpoint = server.endpoint,
            hash = postgate::auth::hash_key(&postgate::secret::Secret::new(APP_KEY)),
        ),
    )
    .unwrap();
    let (access, secret) = server.credentials();
    let child = postgate()
        .args(["serve", "--config"])
        .arg(&config)
        .env("EVENTS_S3_KEY", access)
        .env("EVENTS_S3_SECRET", secret)
        .env("EVENTS_SECRETS", format!("{SECRET_A},{SECRET_B}"))
        .env("EVENTS_REDIS_URL", format!("redis://127.0.0.1:{redis_port}/"))
        .env("EVENTS_TOKEN_KEY", "events-test-token-key-0123456789abcdef")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let running = Running(child);
    wait_ready(&base);
    (running, base, format!("http://127.0.0.1:{admin}"))
}

/// Presigns a `media` PUT through the gateway, uploads it, completes it: the answer's JSON.
async fn upload_through(base: &str, name: &str) -> (u16, Value) {
    let client = reqwest::Client::new();
    let bytes = png(1024);
    let signed: Value = client
        .post(format!("{base}/v1/profiles/media/presign"))
        .bearer_auth(APP_KEY)
        .header("content-type", "application/json")
        .body(serde_json::json!({"method": "put", "vars": {"user": "alice"}, "filename": name, "content_type": "image/png", "size": bytes.len()}).to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|text| serde_json::from_str(&text).unwrap())
        .unwrap();
    let mut put = client.put(signed["url"].as_str().expect("a signed PUT")).body(bytes);
    for (name, value) in signed["headers"].as_object().unwrap() {
        put = put.header(name, value.as_str().unwrap());
    }
    assert_eq!(put.send().await.unwrap().status(), 200);
    let answer = client
        .post(format!("{base}/v1/uploads/complete"))
        .bearer_auth(APP_KEY)
        .header("content-type", "application/json")
        .body(serde_json::json!({"upload_token": signed["upload_token"]}).to_string())
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, serde_json::from_str(&answer.text().await.unwrap()).unwrap())
}

/// SIGKILL: no clean shutdown.
fn kill(running: &mut Running) {
    let _ = running.0.kill();
    let _ = running.0.wait();
}

fn ids_since(record: &Path, from: usize) -> BTreeSet<String> {
    deliveries(record)[from..]
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `queue`: events queued while the endpoint fails, the gateway killed, Redis killed and
/// restarted — a new gateway delivers every one (counted by ID). Then an endpoint that refuses
/// every attempt: the event is dead-lettered after the last, listed by the admin route and
/// `postgate events`, and replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_events_survive_an_outage_a_killed_gateway_and_a_redis_restart() {
    let Some(python) = verifiers() else { return };
    if !redis_installed("the event queue test") {
        return;
    }
    let server = S3Server::start().await;
    let work = tempfile::tempdir().unwrap();
    let (redis_dir, redis_port) = (work.path().join("redis"), free_port());
    std::fs::create_dir(&redis_dir).unwrap();
    let mut redis = redis_server(redis_port, Some(&redis_dir));
    let record = work.path().join("queue.jsonl");
    let receiver = Receiver::start(&python, Lang::Python, SECRET_A, free_port(), &record);
    receiver.answer("fail");
    let policies = policies_copy();
    let (mut gateway, base, _) = queue_gateway(work.path(), policies.path(), &server, &receiver.url, redis_port);

    let mut expected = BTreeSet::new();
    for i in 0..5 {
        let (status, answer) = upload_through(&base, &format!("q{i}.png")).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["event"]["delivery"], "queued", "{answer}");
        assert!(answer.get("app_answer").is_none());
        expected.insert(answer["event"]["id"].as_str().unwrap().to_owned());
    }
    // The endpoint fails a while (every event tried at least once), then the gateway is killed
    // and Redis too (SIGKILL both: nothing is shut down cleanly).
    assert!(
        wait_until(10, || deliveries(&record).len() >= 5),
        "attempts reach the endpoint"
    );
    kill(&mut gateway);
    kill(&mut redis);
    let mut redis = redis_server(redis_port, Some(&redis_dir));
    receiver.answer("ok");
    let seen = deliveries(&record).len();
    let (_gateway, base, admin) = queue_gateway(work.path(), policies.path(), &server, &receiver.url, redis_port);
    assert!(
        wait_until(30, || ids_since(&record, seen) == expected),
        "every queued event is delivered after the recovery: {:?} of {expected:?}",
        ids_since(&record, seen)
    );

    // Refused at every attempt: dead-lettered after the schedule (4 waits, 5 attempts).
    receiver.answer("refuse");
    let (status, answer) = upload_through(&base, "dead.png").await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["event"]["id"].as_str().unwrap().to_owned();
    let dead = || {
        let (_, text) = get(&format!("{admin}/-/events/web/dead")).unwrap();
        serde_json::from_str::<Value>(&text).unwrap()["dead_letters"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        wait_until(30, || !dead().is_empty()),
        "a dead letter after the last attempt"
    );
    let letters = dead();
    assert_eq!((letters.len(), letters[0]["id"].as_str()), (1, Some(id.as_str())));
    assert_eq!(letters[0]["attempts"], 5);
    assert!(letters[0]["last_error"].as_str().unwrap().contains("422"));
    let listed = postgate()
        .args(["events", "list", "web", "--config"])
        .arg(work.path().join("gateway.yaml"))
        .env("EVENTS_REDIS_URL", format!("redis://127.0.0.1:{redis_port}/"))
        .env("EVENTS_SECRETS", format!("{SECRET_A},{SECRET_B}"))
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id));
    let metrics = get(&format!("{base}/metrics")).unwrap().1;
    assert!(
        sample(
            &metrics,
            "postgate_events_total",
            &[
                ("app", "web"),
                ("type", "upload.completed"),
                ("result", "dead_lettered")
            ]
        ) >= Some(1.0)
    );

    // Replayed once the app takes it again.
    receiver.answer("ok");
    let seen = deliveries(&record).len();
    let (status, text) = http_request("POST", &format!("{admin}/-/events/web/replay"), &[], Some(""));
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"replayed\":1"), "{text}");
    assert!(
        wait_until(15, || ids_since(&record, seen).contains(&id)),
        "the replayed event is delivered"
    );
    assert!(dead().is_empty());
    redis.stop();
}

/// Replicas share a queue: entries one replica took and never settled (it died mid-delivery)
/// are taken over by another after `claim_after` and delivered; nothing stays behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_a_dead_replica_took_are_delivered_by_another() {
    let Some(python) = verifiers() else { return };
    if !redis_installed("the event claim test") {
        return;
    }
    use postgate::events::queue::{Queue, QueueSettings};
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let _redis = redis_server(port, None);
    let receiver = Receiver::start(
        &python,
        Lang::Node,
        SECRET_B,
        free_port(),
        &work.path().join("claim.jsonl"),
    );
    let settings = QueueSettings {
        prefix: "postgate:test:".into(),
        retry: vec![Duration::from_millis(100)],
        claim_after: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
    };
    let url = format!("redis://127.0.0.1:{port}/");
    let dead = Queue::start(&url, settings.clone()).unwrap();
    dead.join("web").await.unwrap();
    let mut ids = BTreeSet::new();
    for i in 0..3 {
        let facts = postgate::events::UploadFacts {
            upload_id: format!("marker-{i}"),
            app: "web".into(),
            profile: "media".into(),
            method: "put",
            ..Default::default()
        };
        let event = postgate::events::Event::new(EventType::Completed, &facts, OffsetDateTime::now_utc());
        ids.insert(event.id.clone());
        dead.enqueue(&event).await.unwrap();
    }
    assert_eq!(
        dead.take("web").await.unwrap().len(),
        3,
        "the first replica takes all three"
    );
    drop(dead);

    let started = std::time::Instant::now();
    let live = Queue::start(&url, settings).unwrap();
    let endpoints = Arc::new(Endpoints::new(vec![endpoint(&receiver.url, Delivery::Queue)]));
    let notifier = postgate::events::Notifier::new(Some(live.clone()), Arc::new(Metrics::new()));
    postgate::events::worker::spawn(live.clone(), notifier, move || endpoints.clone());
    let delivered = || {
        receiver
            .deliveries()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect::<BTreeSet<_>>()
    };
    assert!(
        wait_until(15, || delivered() == ids),
        "taken over and delivered: {:?}",
        delivered()
    );
    assert!(started.elapsed() >= Duration::from_secs(1), "not before `claim_after`");
    // The receiver records before it answers: the worker settles a moment later.
    let mut stats = live.stats("web").await.unwrap();
    for _ in 0..100 {
        if stats.depth == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        stats = live.stats("web").await.unwrap();
    }
    assert_eq!((stats.depth, stats.dead_letters), (0, 0));
}
