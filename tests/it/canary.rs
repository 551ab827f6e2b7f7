//! Canary secrets: `postgate serve` runs as a process with marked values for the store's secret
//! key, its session token and the app keys (raw, from a file and a variable), JSON logs at trace
//! level, and every kind of answer — forms, each error, listings, metrics, a refused and an
//! accepted SIGHUP reload — then the CLI runs with the same environment. No canary may show up
//! anywhere but where S3 needs it: the session token in a form's `x-amz-security-token` field
//! (and inside its base64 policy), or a PUT URL's `X-Amz-Security-Token`. The JSON log has one
//! line per presign request with its fields, and never a form's policy or a signature.

use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::process::{Running, free_port, get, post, postgate, request, wait_ready};
use crate::support::state::policies_copy;
use crate::{sample, wait_until};

const SECRET_ACCESS_KEY: &str = "canary-secret-access-key-3f9a1c7e5b2d4086";
const SESSION_TOKEN: &str = "canary-session-token-8e41b7d2c9a05f36";
/// Raw app keys: `web`'s and `batch`'s in key files, `mobile`'s in a variable.
const WEB_KEY: &str = "canary-app-key-web-0a6f3e8d4c71";
const MOBILE_KEY: &str = "canary-app-key-mobile-5d7c2e9a1b";
const BATCH_KEY: &str = "canary-app-key-batch-64e0c3b9f2";
/// The key that seals upload tokens (from a variable).
const TOKEN_KEY: &str = "canary-upload-token-key-9c3e71a0b5d2f846";
/// A key no app has, as a client might send by mistake: not to be echoed either.
const WRONG_KEY: &str = "canary-wrong-key-7b2e9f1d3a58";

/// Every canary that may appear in no output at all.
fn never_shown() -> Vec<String> {
    let mut canaries: Vec<String> = [SECRET_ACCESS_KEY, WEB_KEY, MOBILE_KEY, BATCH_KEY, WRONG_KEY, TOKEN_KEY]
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    // Encodings of the secret key, and the app keys' hashes (the gateway keeps those, never
    // shows them).
    canaries.push(BASE64.encode(SECRET_ACCESS_KEY));
    canaries.push(hex::encode(SECRET_ACCESS_KEY));
    canaries.push(BASE64.encode(TOKEN_KEY));
    for key in [WEB_KEY, MOBILE_KEY, BATCH_KEY] {
        canaries.push(hex::encode(Sha256::digest(key.as_bytes())));
    }
    canaries
}

/// Asserts that `text` (named `what`) holds no canary at all, the session token included.
fn assert_clean(what: &str, text: &str) {
    for canary in never_shown().iter().map(String::as_str).chain([SESSION_TOKEN]) {
        if let Some(line) = text.lines().find(|l| l.contains(canary)) {
            panic!("{what} shows the canary `{canary}`:\n{line}");
        }
    }
}

/// Asserts that a successful form shows the session token exactly once, as its
/// `x-amz-security-token` field, and signs it (inside the base64 policy), and no other canary.
fn assert_form(what: &str, text: &str) {
    for canary in never_shown() {
        assert!(!text.contains(&canary), "{what} shows the canary `{canary}`:\n{text}");
    }
    assert_eq!(text.matches(SESSION_TOKEN).count(), 1, "{what}:\n{text}");
    let form: Value = serde_json::from_str(text).unwrap();
    let fields = form["fields"].as_object().unwrap();
    assert_eq!(fields["x-amz-security-token"], SESSION_TOKEN, "{what}");
    let policy = String::from_utf8(BASE64.decode(fields["policy"].as_str().unwrap()).unwrap()).unwrap();
    assert!(
        policy.contains(&format!("{{\"x-amz-security-token\": \"{SESSION_TOKEN}\"}}")),
        "{policy}"
    );
    for canary in never_shown() {
        assert!(!policy.contains(&canary), "{what}'s policy shows `{canary}`");
    }
}

fn run_cli(config: &std::path::Path, args: &[&str]) -> Output {
    canary_env(&mut postgate())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn canary_env(command: &mut Command) -> &mut Command {
    command
        .env("AWS_ACCESS_KEY_ID", "AKIAPOSTGATECANARY01")
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("AWS_SESSION_TOKEN", SESSION_TOKEN)
        .env("AWS_REGION", "eu-west-1")
        .env("CANARY_MOBILE_KEYS", format!("sha256:{}, {MOBILE_KEY}", "0".repeat(64)))
        .env("CANARY_TOKEN_KEY", TOKEN_KEY)
        .env("RUST_LOG", "trace")
}

#[test]
fn canaries_never_show_and_presign_logs_one_json_line_without_the_signature() {
    let dir = policies_copy();
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(work.path().join("web.keys"), format!("# web\n{WEB_KEY}\n")).unwrap();
    std::fs::write(work.path().join("batch.keys"), format!("{BATCH_KEY}\n")).unwrap();
    let config = work.path().join("postgate.yaml");
    std::fs::write(
        &config,
        format!(
            "policies: {policies}\nlisten: 127.0.0.1:{port}\nlog_format: json\nreload: {{ interval: 0s, watch: false }}\napps:\n  web:\n    keys_file: {work}/web.keys\n  mobile:\n    keys_env: CANARY_MOBILE_KEYS\n  batch:\n    keys_file: {work}/batch.keys\n    rate_limit: {{ per_second: 0.001, burst: 1 }}\nupload_tokens:\n  current: c1\n  keys:\n    c1: {{ secret_env: CANARY_TOKEN_KEY }}\nstore_calls: {{ timeout: 1s, attempts: 1 }}\n",
            policies = dir.path().display(),
            work = work.path().display(),
        ),
    )
    .unwrap();
    let stdout_path = work.path().join("stdout");
    let stderr_path = work.path().join("stderr");
    // The store answers garbage (not HTTP): the gateway's own presigned calls fail with the HTTP
    // client's error, which must not carry their URL (key id, session token, signature) into an
    // answer or a log line.
    let garbage = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let store_url = format!("http://{}", garbage.local_addr().unwrap());
    std::thread::spawn(move || {
        for socket in garbage.incoming() {
            let Ok(mut socket) = socket else { continue };
            let mut head = [0u8; 4096];
            let _ = std::io::Read::read(&mut socket, &mut head);
            let _ = std::io::Write::write_all(&mut socket, b"SSH-2.0-not-a-store\r\n\r\n");
        }
    });
    let child = canary_env(&mut postgate())
        .env("AWS_ENDPOINT_URL_S3", &store_url)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::from(std::fs::File::create(&stdout_path).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&stderr_path).unwrap()))
        .spawn()
        .unwrap();
    let mut server = Running(child);
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base);

    let json = "Content-Type: application/json";
    let bearer = |key: &str| format!("Authorization: Bearer {key}");
    let presign_url = |profile: &str| format!("{base}/v1/profiles/{profile}/presign");
    let avatar = r#"{"vars": {"user": "alice"}, "filename": "me.png", "content_type": "image/png", "size": 1234, "metadata": {"purpose": "avatar"}}"#;
    let mut presigns = 0;
    let mut forms = Vec::new();
    let mut answers = Vec::new();

    // Forms, as JSON and as a curl config, for apps keyed by file and by variable.
    for (key, profile, body) in [
        (WEB_KEY, "avatars", avatar),
        (MOBILE_KEY, "invoices", r#"{"vars": {"supplier": "acme"}}"#),
        (BATCH_KEY, "invoices", r#"{"vars": {"supplier": "batch"}}"#),
    ] {
        let (status, text) = post(&presign_url(profile), &[&bearer(key), json], body);
        presigns += 1;
        assert_eq!(status, 200, "{text}");
        assert_form(profile, &text);
        forms.push(serde_json::from_str::<Value>(&text).unwrap());
    }
    let (status, curl) = post(
        &format!("{}?format=curl", presign_url("avatars")),
        &[&bearer(WEB_KEY), json],
        avatar,
    );
    presigns += 1;
    assert_eq!(status, 200, "{curl}");
    assert_eq!(curl.matches(SESSION_TOKEN).count(), 1, "{curl}");
    assert!(curl.contains(&format!("form-string = \"x-amz-security-token={SESSION_TOKEN}\"\n")));
    for canary in never_shown() {
        assert!(!curl.contains(&canary), "the curl form shows `{canary}`");
    }

    // A PUT URL carries the session token once, as its signed `X-Amz-Security-Token`.
    let (status, text) = post(
        &presign_url("invoices"),
        &[&bearer(MOBILE_KEY), json],
        r#"{"method": "put", "vars": {"supplier": "acme"}, "size": 10}"#,
    );
    presigns += 1;
    assert_eq!(status, 200, "{text}");
    for canary in never_shown() {
        assert!(!text.contains(&canary), "the PUT answer shows `{canary}`:\n{text}");
    }
    assert_eq!(text.matches(SESSION_TOKEN).count(), 1, "{text}");
    let put: Value = serde_json::from_str(&text).unwrap();
    let url = put["url"].as_str().unwrap();
    assert!(
        url.contains(&format!("&X-Amz-Security-Token={SESSION_TOKEN}&")),
        "{url}"
    );
    let put_signature = url.rsplit("X-Amz-Signature=").next().unwrap().to_owned();
    // Its upload token, completed (the store is out of reach here: whatever the answer, it
    // shows no canary), and changed (refused).
    let token = put["upload_token"].as_str().unwrap().to_owned();
    let complete_url = format!("{base}/v1/uploads/complete");
    let (_, text) = post(
        &complete_url,
        &[&bearer(MOBILE_KEY), json],
        &format!("{{\"upload_token\": \"{token}\"}}"),
    );
    answers.push(("complete".to_owned(), text));
    let tampered = format!("{{\"upload_token\": \"{token}x\"}}");
    let untampered = format!("{{\"upload_token\": \"{token}\"}}");
    let mobile = bearer(MOBILE_KEY);

    // Every kind of error.
    let large = format!("{{\"vars\": {{\"user\": \"{}\"}}}}", "a".repeat(70 * 1024));
    let web = bearer(WEB_KEY);
    let wrong = bearer(WRONG_KEY);
    let batch = bearer(BATCH_KEY);
    let basic = format!("Authorization: Basic {}", BASE64.encode(format!("web:{WEB_KEY}")));
    let errors: Vec<(u16, &str, String, Vec<&str>, &str)> = vec![
        (401, "POST", presign_url("avatars"), vec![json], avatar),
        (401, "POST", presign_url("avatars"), vec![&wrong, json], avatar),
        (401, "POST", presign_url("avatars"), vec![&basic, json], avatar),
        (404, "POST", presign_url("nope"), vec![&web, json], avatar),
        (403, "POST", presign_url("datasets"), vec![&web, json], avatar),
        (400, "POST", presign_url("avatars"), vec![&web, json], "{\"vars\": {"),
        (
            400,
            "POST",
            presign_url("avatars"),
            vec![&web, json],
            r#"{"size": "big"}"#,
        ),
        (
            400,
            "POST",
            format!("{}?format=xml", presign_url("avatars")),
            vec![&web, json],
            avatar,
        ),
        (
            422,
            "POST",
            presign_url("avatars"),
            vec![&web, json],
            r#"{"vars": {"user": "../x"}, "size": 999999999, "metadata": {"purpose": "nope", "extra": "x"}}"#,
        ),
        (413, "POST", presign_url("avatars"), vec![&web, json], &large),
        (
            415,
            "POST",
            presign_url("avatars"),
            vec![&web, "Content-Type: text/plain"],
            avatar,
        ),
        (429, "POST", presign_url("invoices"), vec![&batch, json], "{}"),
    ];
    for (expected, method, url, headers, body) in &errors {
        let (status, text) = request(method, url, headers, Some(body));
        presigns += 1;
        assert_eq!(status, *expected, "{url}: {text}");
        let problem: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(problem["status"], *expected);
        answers.push((format!("{expected} from {url}"), text));
    }
    // `complete` with a changed token, and with another app's.
    for (expected, headers, body) in [
        (401, vec![mobile.as_str(), json], &tampered),
        (403, vec![&web, json], &untampered),
    ] {
        let (status, text) = request("POST", &complete_url, &headers, Some(body));
        assert_eq!(status, expected, "complete: {text}");
        answers.push((format!("{expected} from complete"), text));
    }
    for (expected, method, url, headers) in [
        (405, "GET", presign_url("avatars"), vec![web.as_str()]),
        (405, "DELETE", format!("{base}/v1/profiles/avatars"), vec![&web]),
        (404, "GET", format!("{base}/v2/anything"), vec![&web]),
        (200, "GET", format!("{base}/v1/profiles"), vec![&web]),
        (200, "GET", format!("{base}/v1/profiles"), vec![&bearer(MOBILE_KEY)]),
        (200, "GET", format!("{base}/v1/profiles/avatars"), vec![&web]),
        (
            200,
            "GET",
            format!("{base}/v1/profiles/invoices"),
            vec![&bearer(BATCH_KEY)],
        ),
        (404, "GET", format!("{base}/v1/profiles/nope"), vec![&web]),
        (403, "GET", format!("{base}/v1/profiles/datasets"), vec![&web]),
        (401, "GET", format!("{base}/v1/profiles"), vec![&wrong]),
        (200, "GET", format!("{base}/openapi.json"), vec![]),
        (200, "GET", format!("{base}/healthz"), vec![]),
        (200, "GET", format!("{base}/readyz"), vec![]),
    ] {
        let (status, text) = request(method, &url, &headers, None);
        assert_eq!(status, expected, "{method} {url}: {text}");
        answers.push((format!("{method} {url}"), text));
    }

    // SIGHUP with a broken profile (refused: the diagnostics are logged), then a good one.
    let metrics = || get(&format!("{base}/metrics")).unwrap().1;
    let reloads = |result: &str| {
        sample(
            &metrics(),
            "postgate_config_reloads_total",
            &[("trigger", "signal"), ("result", result)],
        )
    };
    let invoices = dir.path().join("invoices.yaml");
    let original = std::fs::read_to_string(&invoices).unwrap();
    std::fs::write(&invoices, original.replace("max: 10 MiB", "max: 6 GiB")).unwrap();
    let hangup = || {
        let pid = server.0.id().to_string();
        assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    };
    hangup();
    assert!(wait_until(10, || reloads("failure") == Some(1.0)));
    std::fs::write(&invoices, original.replace("max: 10 MiB", "max: 20 MiB")).unwrap();
    hangup();
    assert!(wait_until(10, || reloads("success") == Some(1.0)));
    let (status, text) = post(
        &presign_url("invoices"),
        &[&bearer(MOBILE_KEY), json],
        r#"{"vars": {"supplier": "acme"}}"#,
    );
    presigns += 1;
    assert_eq!(status, 200, "{text}");
    assert_form("invoices after the reload", &text);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["generation"], 2);
    forms.push(serde_json::from_str::<Value>(&text).unwrap());
    answers.push(("/metrics".to_owned(), metrics()));

    // Stop the server, then read everything it wrote.
    server.stop();
    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert_clean("the server's stdout", &stdout);
    assert_clean("the server's log", &stderr);
    for (what, text) in &answers {
        assert_clean(what, text);
    }

    // The log: JSON lines only, the refused reload's diagnostics among them, and one `presign`
    // line per presign request, with its fields.
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["fields"]["diagnostic"]
            .as_str()
            .is_some_and(|d| d.contains("invoices.yaml: size.max: 6 GiB"))),
        "the refused reload's diagnostic is not logged"
    );
    assert!(
        lines.iter().any(|l| l["level"] == "TRACE"),
        "RUST_LOG=trace was not in force"
    );
    let presign_lines: Vec<&Value> = lines.iter().filter(|l| l["fields"]["message"] == "presign").collect();
    assert_eq!(presign_lines.len(), presigns, "one log line per presign request");
    for line in &presign_lines {
        let fields = line["fields"].as_object().unwrap();
        for name in [
            "app",
            "profile",
            "outcome",
            "status",
            "generation",
            "latency_us",
            "signature",
        ] {
            assert!(fields.contains_key(name), "`{name}` is missing from {line}");
        }
        assert!(fields["status"].is_u64() && fields["generation"].is_u64() && fields["latency_us"].is_u64());
    }
    let outcomes: Vec<&str> = presign_lines
        .iter()
        .map(|l| l["fields"]["outcome"].as_str().unwrap())
        .collect();
    for outcome in [
        "signed",
        "refused",
        "unknown_profile",
        "unauthenticated",
        "forbidden",
        "bad_request",
        "rate_limited",
    ] {
        assert!(outcomes.contains(&outcome), "no `{outcome}` line: {outcomes:?}");
    }
    // The PUT's line carries its signature's fingerprint, never the signature.
    let fingerprint = hex::encode(&Sha256::digest(put_signature.as_bytes())[..6]);
    assert!(
        presign_lines
            .iter()
            .any(|l| l["fields"]["signature"] == fingerprint.as_str()),
        "no presign line with the PUT's fingerprint {fingerprint}"
    );
    assert!(!stderr.contains(&put_signature), "the log shows a PUT URL's signature");

    // Each form's line carries its signature's fingerprint; no line carries a form's policy or
    // signature.
    for form in &forms {
        let fields = &form["fields"];
        let policy = fields["policy"].as_str().unwrap();
        let signature = fields["x-amz-signature"].as_str().unwrap();
        let fingerprint = hex::encode(&Sha256::digest(signature.as_bytes())[..6]);
        let line = presign_lines
            .iter()
            .find(|l| l["fields"]["signature"] == fingerprint.as_str())
            .unwrap_or_else(|| panic!("no presign line with the fingerprint {fingerprint}"));
        assert_eq!(line["fields"]["outcome"], "signed");
        assert_eq!(line["fields"]["status"], 200);
        assert_eq!(line["fields"]["profile"], form["profile"]);
        assert_eq!(line["fields"]["generation"], form["generation"]);
        assert!(!stderr.contains(policy), "the log shows a form's policy");
        assert!(!stderr.contains(signature), "the log shows a form's signature");
        assert!(!stderr.contains(&policy[..40]), "the log shows part of a form's policy");
    }

    // The CLI with the same environment: check, explain, sign, a refused sign.
    let outputs = [
        ("check", run_cli(&config, &["check"])),
        ("explain", run_cli(&config, &["explain", "avatars"])),
        (
            "a refused sign",
            run_cli(&config, &["sign", "avatars", "--var", "user=../x"]),
        ),
    ];
    for (what, output) in &outputs {
        assert_clean(&format!("{what}'s stdout"), &String::from_utf8_lossy(&output.stdout));
        assert_clean(&format!("{what}'s stderr"), &String::from_utf8_lossy(&output.stderr));
    }
    assert!(outputs[0].1.status.success() && outputs[1].1.status.success());
    assert!(!outputs[2].1.status.success());
    let sign = run_cli(
        &config,
        &[
            "sign",
            "avatars",
            "--var",
            "user=alice",
            "--meta",
            "purpose=avatar",
            "--app",
            "web",
        ],
    );
    assert!(sign.status.success(), "{}", String::from_utf8_lossy(&sign.stderr));
    assert_form("postgate sign", &String::from_utf8_lossy(&sign.stdout));
    assert_clean("sign's stderr", &String::from_utf8_lossy(&sign.stderr));
}

/// `{:?}` of every public type that holds a secret: credentials, the signing key they derive,
/// forms and URLs signed with a session token, upload-token keys, the shared limiter (its URL
/// has a password). Logging any of them with `?value` must show none of the canaries.
#[test]
fn debug_of_every_secret_holder_is_redacted() {
    use postgate::sign::{Addressing, Credentials, Endpoint, Store};
    let credentials = Credentials {
        access_key_id: "AKIACANARY".into(),
        secret_access_key: postgate::secret::Secret::new(SECRET_ACCESS_KEY),
        session_token: Some(postgate::secret::Secret::new(SESSION_TOKEN)),
        expires_at: None,
    };
    let store = Store::new(
        "default",
        "eu-west-1",
        Endpoint::Aws,
        Addressing::Auto,
        credentials.clone(),
    );
    let now = time::OffsetDateTime::now_utc();
    let signer = store.signer(now).unwrap();
    let snapshot = crate::support::s3::load_policies();
    let ctx = postgate::profile::Context {
        app: "web",
        now,
        uuid: uuid::Uuid::now_v7(),
    };
    let invoices = snapshot.get("invoices").unwrap();
    let sign = |request: &postgate::profile::UploadRequest| {
        postgate::sign::sign(invoices, &signer, request, &ctx, postgate::sign::FieldStyle::Botocore).unwrap()
    };
    let mut request = postgate::profile::UploadRequest::default();
    request.vars.insert("supplier".into(), "acme".into());
    let post = sign(&request);
    request.method = Some(postgate::profile::Method::Put);
    request.size = Some(10);
    let put = sign(&request);
    let tokens =
        postgate::upload::TokenKeys::new("k1", vec![("k1".into(), postgate::secret::Secret::new(TOKEN_KEY))]).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let shared = runtime.block_on(async {
        postgate::shared_limits::SharedLimits::start(
            &format!("redis://:{SECRET_ACCESS_KEY}@127.0.0.1:1/"),
            "p:",
            std::time::Duration::from_millis(10),
            std::sync::Arc::new(postgate::metrics::Metrics::new()),
        )
        .unwrap()
    });
    use base64::Engine as _;
    let whsec = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(SECRET_ACCESS_KEY)
    );
    let endpoint = postgate::events::Endpoint {
        app: "web".into(),
        url: format!("https://app.example.com/hooks?token={SESSION_TOKEN}"),
        secrets: postgate::events::WebhookSecret::parse_list(&whsec).unwrap(),
        types: postgate::events::EventType::ALL.to_vec(),
        profiles: None,
        delivery: postgate::events::Delivery::Queue,
        timeout: std::time::Duration::from_secs(1),
        attempts: 1,
        fingerprint: [0; 32],
    };
    let queue = postgate::events::queue::Queue::start(
        &format!("redis://:{SECRET_ACCESS_KEY}@127.0.0.1:1/"),
        postgate::events::queue::QueueSettings {
            prefix: "p:".into(),
            retry: vec![],
            claim_after: std::time::Duration::from_secs(1),
            timeout: std::time::Duration::from_millis(10),
        },
    )
    .unwrap();
    let day_key = hex::encode(postgate::sign::sigv4::signing_key(
        SECRET_ACCESS_KEY,
        &postgate::sign::format_rfc3339(now)[..10].replace('-', ""),
        "eu-west-1",
        "s3",
    ));
    for (what, text) in [
        ("Credentials", format!("{credentials:?}")),
        ("Store", format!("{store:?}")),
        ("Keys", format!("{:?}", store.credentials().unwrap())),
        ("Signed POST", format!("{post:?}")),
        ("Signed PUT", format!("{put:?}")),
        ("TokenKeys", format!("{tokens:?}")),
        ("SharedLimits", format!("{shared:?}")),
        ("Endpoint", format!("{endpoint:?}")),
        (
            "Endpoints",
            format!("{:?}", postgate::events::Endpoints::new(vec![endpoint.clone()])),
        ),
        ("Queue", format!("{queue:?}")),
    ] {
        assert_clean(what, &text);
        assert!(!text.contains(&whsec[6..]), "{what} shows a webhook secret");
        assert!(!text.contains(&day_key), "{what} shows the day's signing key");
        assert!(
            !text.contains("X-Amz-Signature=") || text.contains("X-Amz-Signature=<redacted>"),
            "{what}: {text}"
        );
    }
}

/// A secret pasted where a variable name or a file path belongs is not printed back by the
/// errors that name the setting.
#[test]
fn secrets_pasted_into_name_settings_are_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("postgate.yaml");
    for (what, yaml) in [
        ("keys_env", format!("apps:\n  web:\n    keys_env: \"{WEB_KEY}\"\n")),
        (
            "keys_file",
            format!("apps:\n  web:\n    keys_file: \"/nonexistent/{WEB_KEY}\"\n"),
        ),
        (
            "secret_access_key_env",
            format!(
                "stores:\n  default:\n    endpoint: http://127.0.0.1:9\n    credentials:\n      access_key_id_env: NOT_SET_ANYWHERE\n      secret_access_key_env: \"{SECRET_ACCESS_KEY}\"\n"
            ),
        ),
        (
            "secret_access_key_file",
            format!(
                "stores:\n  default:\n    endpoint: http://127.0.0.1:9\n    credentials:\n      access_key_id_env: NOT_SET_ANYWHERE\n      secret_access_key_file: \"/nonexistent/{SECRET_ACCESS_KEY}\"\n"
            ),
        ),
        (
            "upload_tokens secret_env",
            format!("upload_tokens:\n  current: k1\n  keys:\n    k1: {{ secret_env: \"{TOKEN_KEY}\" }}\n"),
        ),
    ] {
        std::fs::write(&config, &yaml).unwrap();
        let output = crate::support::process::postgate()
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .args(["serve", "--config"])
            .arg(&config)
            .env(
                "POSTGATE_LISTEN",
                format!("127.0.0.1:{}", crate::support::process::free_port()),
            )
            .output()
            .unwrap();
        assert_ne!(output.status.code(), Some(0), "{what}: started");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_clean(what, &text);
    }
}
