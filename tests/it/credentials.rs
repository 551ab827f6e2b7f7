//! Role credentials that rotate: `postgate serve` with `source: container` against a loopback
//! endpoint speaking the ECS / EKS Pod Identity protocol (a bearer token read from
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, JSON credentials with an expiry). The endpoint hands
//! out a new key every 2 s; every form postgate signs is checked with an independent HMAC against
//! the secret of the key it names. Then the endpoint goes away (503, not ready) and comes back.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::process::{free_port, get, post, read_head, serve_command, start};
use crate::{repo_path, sample, wait_until};

const AUTH_TOKEN: &str = "pod-identity-token-0123456789";
/// How long each key lives: 36 s, so 6 s of it are usable (postgate stops 30 s before expiry).
const LIFETIME: i64 = 36;

/// One issued set: secret, session token, expiry.
type Issued = HashMap<String, (String, String, OffsetDateTime)>;

struct CredentialsEndpoint {
    port: u16,
    up: Arc<AtomicBool>,
    issued: Arc<Mutex<Issued>>,
    calls: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
}

impl CredentialsEndpoint {
    /// Serves on a fresh port until the process ends; while `up` is false the port is closed.
    fn start() -> CredentialsEndpoint {
        let port = free_port();
        let up = Arc::new(AtomicBool::new(true));
        let issued = Arc::new(Mutex::new(Issued::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let (up2, issued2, calls2, refused2) = (up.clone(), issued.clone(), calls.clone(), refused.clone());
        std::thread::spawn(move || {
            loop {
                while !up2.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
                listener.set_nonblocking(true).unwrap();
                while up2.load(Ordering::SeqCst) {
                    let Ok((mut socket, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    socket.set_nonblocking(false).unwrap();
                    socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let request = read_head(&mut socket);
                    calls2.fetch_add(1, Ordering::SeqCst);
                    let text = String::from_utf8_lossy(&request).to_lowercase();
                    let authorized = text.contains(&format!("\r\nauthorization: {}\r\n", AUTH_TOKEN.to_lowercase()))
                        && text.starts_with("get /v2/credentials ");
                    let (status, body) = if authorized {
                        // A new key every 2 s.
                        let generation = started.elapsed().as_secs() / 2;
                        let id = format!("ASIATESTROTATING{generation:04}");
                        let secret = format!("rotating-secret-{generation}-{}", "x".repeat(20));
                        let token = format!("session-token-{generation}");
                        let expires_at = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()
                            + time::Duration::seconds(LIFETIME);
                        issued2
                            .lock()
                            .unwrap()
                            .insert(id.clone(), (secret.clone(), token.clone(), expires_at));
                        let body = serde_json::json!({
                            "AccessKeyId": id,
                            "SecretAccessKey": secret,
                            "Token": token,
                            "Expiration": expires_at.format(&Rfc3339).unwrap(),
                        });
                        ("200 OK", body.to_string())
                    } else {
                        refused2.fetch_add(1, Ordering::SeqCst);
                        ("401 Unauthorized", r#"{"Code":"AccessDenied"}"#.to_owned())
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes());
                }
            }
        });
        CredentialsEndpoint {
            port,
            up,
            issued,
            calls,
            refused,
        }
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Checks a signed form against the issued credentials, independently of postgate's signer:
/// the key it names was issued, its session token is that key's, it expires no later than the
/// key, and its signature is the HMAC chain of that key's secret over the policy.
fn verify_form(form: &serde_json::Value, issued: &Issued) -> String {
    let fields = &form["fields"];
    let credential = fields["x-amz-credential"].as_str().unwrap();
    let mut scope = credential.split('/');
    let (id, date, region) = (scope.next().unwrap(), scope.next().unwrap(), scope.next().unwrap());
    let (secret, token, expires_at) = issued
        .get(id)
        .unwrap_or_else(|| panic!("the form names a key the endpoint never issued: {id}"));
    assert_eq!(fields["x-amz-security-token"].as_str(), Some(token.as_str()));
    let form_expiry = OffsetDateTime::parse(form["expires_at"].as_str().unwrap(), &Rfc3339).unwrap();
    assert!(form_expiry <= *expires_at, "the form outlives its credentials");
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region, "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let policy = fields["policy"].as_str().unwrap();
    let expected = hex::encode(hmac(&key, policy.as_bytes()));
    assert_eq!(
        fields["x-amz-signature"].as_str(),
        Some(expected.as_str()),
        "signature of {id}"
    );
    id.to_owned()
}

#[test]
fn container_credentials_rotate_without_a_restart_and_their_loss_is_a_503() {
    let endpoint = CredentialsEndpoint::start();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("eks-pod-identity-token");
    std::fs::write(&token_file, AUTH_TOKEN).unwrap();
    let port = free_port();
    let app_key = "container-credentials-key-0123";
    let config = dir.path().join("postgate.yaml");
    std::fs::write(
        &config,
        format!(
            "policies: {}\nlisten: 127.0.0.1:{port}\nstores:\n  default:\n    region: eu-west-1\n    credentials: {{ source: container }}\napps:\n  web:\n    keys: [\"{}\"]\n",
            repo_path("policies").display(),
            postgate::auth::hash_key(&postgate::secret::Secret::new(app_key)),
        ),
    )
    .unwrap();
    let started = Instant::now();
    let _child = start(
        serve_command(&config)
            .env(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("http://127.0.0.1:{}/v2/credentials", endpoint.port),
            )
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_file),
    );
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        wait_until(30, || get(&format!("{base}/readyz")).is_some_and(|(s, _)| s == 200)),
        "not ready with container credentials"
    );
    eprintln!("ready with fetched credentials after {:?}", started.elapsed());
    let presign = || {
        post(
            &format!("{base}/v1/profiles/avatars/presign"),
            &[
                &format!("Authorization: Bearer {app_key}"),
                "Content-Type: application/json",
            ],
            r#"{"vars": {"user": "alice"}, "content_type": "image/png", "metadata": {"purpose": "avatar"}}"#,
        )
    };

    // 12 s of signing while the key changes every 2 s: every form verifies, and postgate moves
    // on to new keys by itself.
    let mut keys_used = Vec::new();
    let mut forms = 0;
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        let (status, body) = presign();
        assert_eq!(status, 200, "{body}");
        let form: serde_json::Value = serde_json::from_str(&body).unwrap();
        let id = verify_form(&form, &endpoint.issued.lock().unwrap());
        if keys_used.last() != Some(&id) {
            keys_used.push(id);
        }
        forms += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "{forms} forms verified; keys used in turn: {keys_used:?}; {} endpoint calls",
        endpoint.calls.load(Ordering::SeqCst)
    );
    assert!(
        keys_used.len() >= 3,
        "postgate did not follow the rotation: {keys_used:?}"
    );
    assert_eq!(
        endpoint.refused.load(Ordering::SeqCst),
        0,
        "the auth token was not sent"
    );
    let metrics = get(&format!("{base}/metrics")).unwrap().1;
    let expiry = sample(
        &metrics,
        "postgate_store_credentials_expiry_timestamp_seconds",
        &[("store", "default")],
    )
    .expect("the expiry metric");
    assert!(expiry > OffsetDateTime::now_utc().unix_timestamp() as f64);

    // The endpoint goes away: postgate signs with what it has until 30 s before it expires, then
    // answers 503 (never a dead form) and stops being ready.
    endpoint.up.store(false, Ordering::SeqCst);
    let down = Instant::now();
    assert!(
        wait_until(LIFETIME as u64, || presign().0 == 503),
        "still signing long after the credentials ran out"
    );
    eprintln!("503 {:?} after the endpoint went away", down.elapsed());
    let (status, body) = presign();
    assert_eq!(status, 503, "{body}");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["code"], "credentials-unavailable", "{body}");
    let (status, body) = get(&format!("{base}/readyz")).unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no valid credentials"), "{body}");
    assert!(
        !body.contains("/v2/credentials"),
        "the provider's error reached a client: {body}"
    );
    // The refresh task marks the gauge when it wakes at the deadline (within a second; the wait
    // allows for a loaded test machine).
    let valid = || {
        let metrics = get(&format!("{base}/metrics")).unwrap().1;
        sample(&metrics, "postgate_store_credentials_valid", &[("store", "default")])
    };
    assert!(wait_until(5, || valid() == Some(0.0)), "{:?}", valid());
    let metrics = get(&format!("{base}/metrics")).unwrap().1;
    assert!(
        sample(
            &metrics,
            "postgate_store_credentials_refreshes_total",
            &[("store", "default"), ("result", "failed")]
        )
        .is_some_and(|n| n >= 1.0)
    );

    // It comes back: signing resumes without a restart.
    endpoint.up.store(true, Ordering::SeqCst);
    let back = Instant::now();
    assert!(wait_until(20, || presign().0 == 200), "signing did not resume");
    eprintln!("signing again {:?} after the endpoint came back", back.elapsed());
    let (_, body) = presign();
    let form: serde_json::Value = serde_json::from_str(&body).unwrap();
    verify_form(&form, &endpoint.issued.lock().unwrap());
    assert_eq!(get(&format!("{base}/readyz")).unwrap().0, 200);
}

#[test]
fn static_key_files_are_re_read_when_a_secret_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let (id_file, secret_file) = (dir.path().join("access_key_id"), dir.path().join("secret_access_key"));
    std::fs::write(&id_file, "AKIAFILEKEYONE\n").unwrap();
    std::fs::write(&secret_file, "file-secret-one-0123456789\n").unwrap();
    let port = free_port();
    let app_key = "file-credentials-key-0123456";
    let config = dir.path().join("postgate.yaml");
    std::fs::write(
        &config,
        format!(
            "policies: {}\nlisten: 127.0.0.1:{port}\nstores:\n  default:\n    endpoint: http://127.0.0.1:9\n    credentials:\n      access_key_id_file: {}\n      secret_access_key_file: {}\napps:\n  web:\n    keys: [\"{}\"]\n",
            repo_path("policies").display(),
            id_file.display(),
            secret_file.display(),
            postgate::auth::hash_key(&postgate::secret::Secret::new(app_key)),
        ),
    )
    .unwrap();
    let _child = start(&mut serve_command(&config));
    let base = format!("http://127.0.0.1:{port}");
    crate::support::process::wait_ready(&base);
    let key_id = || {
        let (status, body) = post(
            &format!("{base}/v1/profiles/invoices/presign"),
            &[
                &format!("Authorization: Bearer {app_key}"),
                "Content-Type: application/json",
            ],
            r#"{"vars": {"supplier": "acme"}}"#,
        );
        assert_eq!(status, 200, "{body}");
        let form: serde_json::Value = serde_json::from_str(&body).unwrap();
        form["fields"]["x-amz-credential"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(key_id(), "AKIAFILEKEYONE");
    // A Kubernetes Secret update: both files change; the next poll (every 10 s) takes them.
    std::fs::write(&id_file, "AKIAFILEKEYTWO\n").unwrap();
    std::fs::write(&secret_file, "file-secret-two-0123456789\n").unwrap();
    let rotated = Instant::now();
    assert!(
        wait_until(15, || key_id() == "AKIAFILEKEYTWO"),
        "the rotated key files were not read"
    );
    eprintln!("rotated key files signing after {:?}", rotated.elapsed());
}
