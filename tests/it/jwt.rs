//! End users' ID tokens against `postgate serve`: keys generated for the run (openssl), a JWKS
//! served on loopback, tokens minted here. Valid RS256, ES256 and EdDSA tokens sign with
//! `${user}` from `sub`; each way a token can be wrong has its own code; a key added at the
//! issuer is picked up; a flood of made-up `kid`s costs the issuer one fetch per interval; a
//! remembered verification ends with the token's expiry and with its key.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::support::process::read_head;
use crate::support::process::{free_port, get, post, serve_command, start, wait_ready};
use crate::support::state::policies_copy;

const AUDIENCE: &str = "postgate-test-client";
const REFETCH_SECS: u64 = 2;

/// A JWKS on loopback whose document can be replaced; counts its fetches.
struct JwksServer {
    url: String,
    document: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    fn start(document: String) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let document = Arc::new(Mutex::new(document));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (doc, count) = (document.clone(), fetches.clone());
        std::thread::spawn(move || {
            for socket in listener.incoming() {
                let Ok(mut socket) = socket else { continue };
                read_head(&mut socket);
                count.fetch_add(1, Ordering::SeqCst);
                let body = doc.lock().unwrap().clone();
                let _ = socket.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        });
        JwksServer { url, document, fetches }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// A signing key made by openssl for this run.
struct TestKey {
    kid: &'static str,
    alg: Algorithm,
    private: EncodingKey,
    public_pem: Vec<u8>,
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl").args(args).output().expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn openssl_stdin(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?}");
    out.stdout
}

fn generate(dir: &Path, kid: &'static str, alg: Algorithm) -> TestKey {
    let path = dir.join(format!("{kid}.pem"));
    let path_text = path.to_str().unwrap();
    match alg {
        Algorithm::RS256 => openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            path_text,
        ]),
        Algorithm::ES256 => openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            path_text,
        ]),
        Algorithm::EdDSA => openssl(&["genpkey", "-algorithm", "ED25519", "-out", path_text]),
        other => panic!("no test key for {other:?}"),
    };
    let pem = std::fs::read(&path).unwrap();
    let private = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_ed_pem(&pem),
    }
    .unwrap();
    let public_pem = openssl(&["pkey", "-in", path_text, "-pubout"]);
    TestKey {
        kid,
        alg,
        private,
        public_pem,
    }
}

fn jwks(keys: &[&TestKey]) -> String {
    let keys: Vec<Jwk> = keys
        .iter()
        .map(|key| {
            if key.alg == Algorithm::EdDSA {
                // jsonwebtoken does not derive Ed25519 JWKs: the raw key is the DER's last 32 bytes.
                let der = openssl_stdin(&["pkey", "-pubin", "-pubout", "-outform", "DER"], &key.public_pem);
                let x = URL_SAFE_NO_PAD.encode(&der[der.len() - 32..]);
                return serde_json::from_value(
                    json!({"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA", "kid": key.kid}),
                )
                .unwrap();
            }
            let mut jwk = Jwk::from_encoding_key(&key.private, key.alg).unwrap();
            jwk.common.key_id = Some(key.kid.to_owned());
            jwk
        })
        .collect();
    serde_json::to_string(&JwkSet { keys }).unwrap()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn mint(key: &TestKey, claims: &serde_json::Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key.private).unwrap()
}

#[test]
fn end_user_tokens_bind_the_user_and_every_bad_token_has_its_code() {
    postgate::identity::install_crypto();
    let keys_dir = tempfile::tempdir().unwrap();
    let rsa = generate(keys_dir.path(), "rsa-1", Algorithm::RS256);
    let ec = generate(keys_dir.path(), "ec-1", Algorithm::ES256);
    let ed = generate(keys_dir.path(), "ed-1", Algorithm::EdDSA);
    let rotated = generate(keys_dir.path(), "rsa-2", Algorithm::RS256);
    let outsider = generate(keys_dir.path(), "ghost", Algorithm::RS256);
    let server = JwksServer::start(jwks(&[&rsa, &ec, &ed]));
    let issuer = server.url.trim_end_matches("/jwks.json").to_owned();

    let dir = policies_copy();
    std::fs::write(
        dir.path().join("mine.yaml"),
        "bucket: user-content\nkey: \"mine/${user}/${uuid}.bin\"\nvars:\n  user:\n    claim: sub\n    pattern: \"[a-z0-9-]{1,64}\"\nsize: { max: 1MiB }\napps: [browser, backend]\n",
    )
    .unwrap();
    let port = free_port();
    let backend_key = "backend-app-key-0123456789";
    let config = keys_dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "policies: {policies}\nlisten: 127.0.0.1:{port}\napps:\n  browser:\n    auth: token\n    cors_origins: [\"https://app.example.com\"]\n    end_user_tokens:\n      issuer: \"{issuer}\"\n      audiences: [\"{AUDIENCE}\"]\n      jwks_url: \"{url}\"\n      leeway: 5s\n      refetch_interval: {REFETCH_SECS}s\n  backend:\n    auth: both\n    keys: [\"{hash}\"]\n    end_user_tokens:\n      issuer: \"{issuer}\"\n      audiences: [\"backend-client\"]\n      jwks_url: \"{url}\"\n      refetch_interval: {REFETCH_SECS}s\n",
            policies = dir.path().display(),
            url = server.url,
            hash = postgate::auth::hash_key(&postgate::secret::Secret::new(backend_key)),
        ),
    )
    .unwrap();
    let _child = start(&mut serve_command(&config));
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base);

    let claims = |sub: &str| json!({"iss": issuer, "aud": AUDIENCE, "sub": sub, "exp": now() + 300, "iat": now()});
    let presign_with = |headers: &[&str], body: &str| {
        let mut all = vec!["Content-Type: application/json"];
        all.extend_from_slice(headers);
        post(&format!("{base}/v1/profiles/mine/presign"), &all, body)
    };
    let presign = |token: &str| {
        presign_with(
            &[&format!("Authorization: Bearer {token}")],
            r#"{"method": "put", "size": 10}"#,
        )
    };
    let code = |(status, body): (u16, String)| -> (u16, String) {
        let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        (status, value["code"].as_str().unwrap_or(&body).to_owned())
    };

    // Valid tokens of each algorithm: `${user}` is the token's `sub`.
    for (key, sub) in [(&rsa, "alice"), (&ec, "bob"), (&ed, "carol")] {
        let (status, body) = presign(&mint(key, &claims(sub)));
        assert_eq!(status, 200, "{:?}: {body}", key.alg);
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            answer["key"].as_str().unwrap().starts_with(&format!("mine/{sub}/")),
            "{body}"
        );
    }

    // Every way a token can be wrong, with its own code.
    let valid = mint(&rsa, &claims("alice"));
    let mut parts = valid.split('.');
    let (header, _, signature) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    let tampered_payload = URL_SAFE_NO_PAD.encode(claims("mallory").to_string());
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"rsa-1"}"#);
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some("rsa-1".into());
    let hs256_with_public_key =
        jsonwebtoken::encode(&hs_header, &claims("alice"), &EncodingKey::from_secret(&rsa.public_pem)).unwrap();
    let mut at_header = Header::new(Algorithm::RS256);
    at_header.kid = Some("rsa-1".into());
    at_header.typ = Some("at+jwt".into());
    let access_token = jsonwebtoken::encode(&at_header, &claims("alice"), &rsa.private).unwrap();
    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims("alice");
        edit(&mut c);
        mint(&rsa, &c)
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", with(&|c| c["exp"] = json!(now() - 60)), "id-token-expired"),
        (
            "not yet valid",
            with(&|c| c["nbf"] = json!(now() + 600)),
            "id-token-not-yet-valid",
        ),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("https://evil.example.com")),
            "id-token-issuer",
        ),
        (
            "wrong audience",
            with(&|c| c["aud"] = json!("someone-else")),
            "id-token-audience",
        ),
        (
            "alg none",
            format!("{none_header}.{}.", URL_SAFE_NO_PAD.encode(claims("alice").to_string())),
            "id-token-algorithm",
        ),
        (
            "HS256 with the public key as secret",
            hs256_with_public_key,
            "id-token-algorithm",
        ),
        ("unknown kid", mint(&outsider, &claims("alice")), "id-token-unknown-key"),
        (
            "tampered payload",
            format!("{header}.{tampered_payload}.{signature}"),
            "id-token-signature",
        ),
        (
            "no exp",
            with(&|c| c.as_object_mut().unwrap().remove("exp").map(|_| ()).unwrap()),
            "id-token-claim-invalid",
        ),
        (
            "not a JWT",
            "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln".into(),
            "id-token-malformed",
        ),
        (
            "issued in the future",
            with(&|c| c["iat"] = json!(now() + 600)),
            "id-token-not-yet-valid",
        ),
        (
            "iat not a number",
            with(&|c| c["iat"] = json!("yesterday")),
            "id-token-claim-invalid",
        ),
        (
            "another client's token (azp)",
            with(&|c| c["azp"] = json!("other-client")),
            "id-token-audience",
        ),
        ("an access token (typ at+jwt)", access_token, "id-token-claim-invalid"),
    ];
    for (name, token, expected) in &cases {
        assert_eq!(code(presign(token)), (401, (*expected).to_owned()), "{name}");
    }
    // A var bound to a claim cannot come from the request; a `sub` failing its pattern is refused.
    let bound = presign_with(
        &[&format!("Authorization: Bearer {valid}")],
        r#"{"method": "put", "size": 10, "vars": {"user": "bob"}}"#,
    );
    assert_eq!(bound.0, 422, "{}", bound.1);
    assert!(bound.1.contains("\"var-bound\""), "{}", bound.1);
    let (status, body) = presign(&mint(&rsa, &claims("Not A Slug!")));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("\"var-invalid\""), "{body}");
    let (status, body) = presign(&with(&|c| {
        c.as_object_mut().unwrap().remove("sub");
    }));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("\"claim-missing\""), "{body}");

    // `auth: both`: the app key alone is not enough; with the user's token it is.
    let backend_claims = json!({"iss": issuer, "aud": "backend-client", "sub": "dave", "exp": now() + 300});
    let key_only = presign_with(
        &[&format!("Authorization: Bearer {backend_key}")],
        r#"{"method": "put", "size": 10}"#,
    );
    assert_eq!(code(key_only), (401, "id-token-required".to_owned()));
    let (status, body) = presign_with(
        &[
            &format!("Authorization: Bearer {backend_key}"),
            &format!("End-User-Token: {}", mint(&rsa, &backend_claims)),
        ],
        r#"{"method": "put", "size": 10}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("mine/dave/"), "{body}");
    // An origin another app lists is not this app's.
    let foreign = presign_with(
        &[
            &format!("Authorization: Bearer {backend_key}"),
            &format!("End-User-Token: {}", mint(&rsa, &backend_claims)),
            "Origin: https://app.example.com",
        ],
        r#"{"method": "put", "size": 10}"#,
    );
    assert_eq!(code(foreign), (403, "origin-not-allowed".to_owned()));
    // The backend's users' tokens are not accepted without its key.
    let alone = presign(&mint(&rsa, &backend_claims));
    assert_eq!(code(alone), (401, "app-key-required".to_owned()));
    // A browser origin the app lists is accepted; CORS answers for it.
    let (status, body) = presign_with(
        &[
            &format!("Authorization: Bearer {valid}"),
            "Origin: https://app.example.com",
        ],
        r#"{"method": "put", "size": 10}"#,
    );
    assert_eq!(status, 200, "{body}");

    // Key rotation at the issuer: a token of a key published after start is accepted once the
    // refetch interval allows a fetch.
    *server.document.lock().unwrap() = jwks(&[&rsa, &ec, &ed, &rotated]);
    std::thread::sleep(Duration::from_secs(REFETCH_SECS));
    let (status, body) = presign(&mint(&rotated, &claims("erin")));
    assert_eq!(status, 200, "the rotated key was not picked up: {body}");

    // 1,000 requests with random `kid`s: at most one JWKS fetch per interval.
    std::thread::sleep(Duration::from_secs(REFETCH_SECS));
    let before = server.fetches();
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let statuses: Vec<u16> = runtime.block_on(async {
        let client = reqwest::Client::new();
        let url = format!("{base}/v1/profiles/mine/presign");
        let mut all = Vec::new();
        for batch in 0..20 {
            let requests = (0..50).map(|i| {
                // What a flood looks like: made-up `kid`s, and no need for a real signature.
                let header = json!({"alg": "RS256", "kid": format!("bogus-{batch}-{i}-{}", uuid::Uuid::new_v4())});
                let token = format!(
                    "{}.{}.{signature}",
                    URL_SAFE_NO_PAD.encode(header.to_string()),
                    URL_SAFE_NO_PAD.encode(claims("alice").to_string())
                );
                client
                    .post(&url)
                    .header("Authorization", format!("Bearer {token}"))
                    .header("Content-Type", "application/json")
                    .body(r#"{"method": "put", "size": 10}"#)
                    .send()
            });
            for response in futures_util::future::join_all(requests).await {
                all.push(response.unwrap().status().as_u16());
            }
        }
        all
    });
    let elapsed = started.elapsed();
    let fetched = server.fetches() - before;
    let allowed = (elapsed.as_secs_f64() / REFETCH_SECS as f64).ceil() as usize + 1;
    eprintln!("1000 random kids in {elapsed:?}: {fetched} JWKS fetches (allowed {allowed})");
    assert!(statuses.iter().all(|&s| s == 401), "{statuses:?}");
    assert!(fetched <= allowed, "{fetched} fetches in {elapsed:?}");
    let metrics = get(&format!("{base}/metrics")).unwrap().1;
    assert!(metrics.contains("postgate_end_user_tokens_total{app=\"browser\",result=\"unknown_key\"}"));

    // A verified token is remembered, but never past its expiry: valid through exp + the 5 s
    // leeway, so about 1 s from now; accepted twice (the second from memory), refused after.
    let ending = mint(
        &rsa,
        &json!({"iss": issuer, "aud": AUDIENCE, "sub": "frank", "exp": now() - 4}),
    );
    assert_eq!(presign(&ending).0, 200);
    assert_eq!(presign(&ending).0, 200);
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(code(presign(&ending)), (401, "id-token-expired".to_owned()));
    // Nor past its key: once a refetch replaces the key that verified it (the issuer put a new
    // key under the same `kid`), the remembered token is checked again, and refused.
    assert_eq!(presign(&valid).0, 200);
    let replacement = generate(keys_dir.path(), "rsa-1", Algorithm::RS256);
    *server.document.lock().unwrap() = jwks(&[&replacement, &ec, &ed, &rotated]);
    std::thread::sleep(Duration::from_secs(REFETCH_SECS));
    assert_eq!(
        code(presign(&mint(&outsider, &claims("alice")))),
        (401, "id-token-unknown-key".to_owned())
    );
    assert_eq!(code(presign(&valid)), (401, "id-token-signature".to_owned()));
    assert_eq!(presign(&mint(&replacement, &claims("alice"))).0, 200);
    assert_eq!(presign(&mint(&ec, &claims("bob"))).0, 200);
}

/// Tokens that will not verify still spend their app's budget before any signature is checked
/// (a flood of garbage buys no unlimited verifications), and an upload token granted to one end
/// user is refused for another (`token-user-mismatch`) on every token route.
#[test]
fn garbage_tokens_spend_the_budget_and_upload_tokens_bind_the_user() {
    postgate::identity::install_crypto();
    let keys_dir = tempfile::tempdir().unwrap();
    let rsa = generate(keys_dir.path(), "rsa-1", Algorithm::RS256);
    let outsider = generate(keys_dir.path(), "ghost", Algorithm::RS256);
    let server = JwksServer::start(jwks(&[&rsa]));
    let issuer = server.url.trim_end_matches("/jwks.json").to_owned();
    let dir = policies_copy();
    std::fs::write(
        dir.path().join("mine.yaml"),
        "bucket: user-content\nkey: \"mine/${user}/${uuid}.bin\"\nvars:\n  user:\n    claim: sub\n    pattern: \"[a-z0-9-]{1,64}\"\nsize: { max: 1MiB }\napps: [browser]\n",
    )
    .unwrap();
    let port = free_port();
    let config = keys_dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "policies: {policies}\nlisten: 127.0.0.1:{port}\nupload_tokens:\n  current: t1\n  keys:\n    t1: {{ secret_env: JWT_TEST_TOKEN_KEY }}\napps:\n  browser:\n    auth: token\n    rate_limit: {{ per_second: 0.01, burst: 6 }}\n    end_user_tokens:\n      issuer: \"{issuer}\"\n      audiences: [\"{AUDIENCE}\"]\n      jwks_url: \"{url}\"\n",
            policies = dir.path().display(),
            url = server.url,
        ),
    )
    .unwrap();
    let mut command = serve_command(&config);
    command.env("JWT_TEST_TOKEN_KEY", "jwt-test-token-key-0123456789abcdef");
    let _child = start(&mut command);
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base);
    let claims = |sub: &str| json!({"iss": issuer, "aud": AUDIENCE, "sub": sub, "exp": now() + 300, "iat": now()});
    let call = |path: &str, token: &str, body: &str| {
        let (status, body) = post(
            &format!("{base}{path}"),
            &[
                "Content-Type: application/json",
                &format!("Authorization: Bearer {token}"),
            ],
            body,
        );
        let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        (status, value)
    };

    // Alice is granted an upload; Bob's token cannot complete it, Alice's can try.
    let alice = mint(&rsa, &claims("alice"));
    let (status, granted) = call("/v1/profiles/mine/presign", &alice, r#"{"method": "put", "size": 10}"#);
    assert_eq!(status, 200, "{granted}");
    let upload = json!({"upload_token": granted["upload_token"]}).to_string();
    let (status, problem) = call("/v1/uploads/complete", &mint(&rsa, &claims("bob")), &upload);
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("token-user-mismatch")),
        "{problem}"
    );
    let (_, problem) = call("/v1/uploads/complete", &alice, &upload);
    assert_ne!(problem["code"], "token-user-mismatch", "{problem}");

    // The burst of 6 is spent (3 calls above); tokens signed by an unknown key name the app by
    // issuer and audience, so they are counted before their signature is looked at: 429, not
    // an unlimited run of 401s.
    let garbage = mint(&outsider, &claims("mallory"));
    let statuses: Vec<u16> = (0..6)
        .map(|_| {
            call(
                "/v1/profiles/mine/presign",
                &garbage,
                r#"{"method": "put", "size": 10}"#,
            )
            .0
        })
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 3, "{statuses:?}");
    let (status, problem) = call("/v1/profiles/mine/presign", &alice, r#"{"method": "put", "size": 10}"#);
    assert_eq!(
        (status, problem["code"].as_str()),
        (429, Some("rate-limited")),
        "{problem}"
    );
}
