//! Revocation that revokes: a request whose headers came before a key was removed is judged by
//! the keys in force when its body has arrived; app keys and the profile set are published
//! independently, so a broken profile cannot hold back a revocation (nor a broken keys file a
//! profile change); a failure that persists is logged once, not at every periodic check.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use crate::support::process::{free_port, get, post, serve_command, start, wait_ready};
use crate::support::state::policies_copy;
use crate::{sample, wait_until};

const OLD_KEY: &str = "revocation-old-key-0123456789";
const NEW_KEY: &str = "revocation-new-key-0123456789";

fn hash(key: &str) -> String {
    postgate::auth::hash_key(&postgate::secret::Secret::new(key))
}

struct Gateway {
    base: String,
    admin: String,
    config: std::path::PathBuf,
    policies: tempfile::TempDir,
    port: u16,
    admin_port: u16,
    _dir: tempfile::TempDir,
}

impl Gateway {
    fn write_config(&self, keys: &str) {
        std::fs::write(
            &self.config,
            format!(
                "policies: {}\nlisten: 127.0.0.1:{}\nadmin_listen: 127.0.0.1:{}\nreload: {{ interval: 1s, watch: false }}\napps:\n  web:\n    keys: [{keys}]\n",
                self.policies.path().display(),
                self.port,
                self.admin_port
            ),
        )
        .unwrap();
    }

    fn presign(&self, key: &str) -> (u16, String) {
        post(
            &format!("{}/v1/profiles/invoices/presign", self.base),
            &[
                &format!("Authorization: Bearer {key}"),
                "Content-Type: application/json",
            ],
            r#"{"vars": {"supplier": "acme"}}"#,
        )
    }

    fn reload(&self) -> serde_json::Value {
        let (_, body) = post(&self.admin, &[], "");
        serde_json::from_str(&body).unwrap()
    }
}

fn gateway(stderr: Stdio) -> (Gateway, crate::support::process::Running) {
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway {
        base: String::new(),
        admin: String::new(),
        config: dir.path().join("postgate.yaml"),
        policies: policies_copy(),
        port: free_port(),
        admin_port: free_port(),
        _dir: dir,
    };
    let gateway = Gateway {
        base: format!("http://127.0.0.1:{}", gateway.port),
        admin: format!("http://127.0.0.1:{}/-/reload", gateway.admin_port),
        ..gateway
    };
    gateway.write_config(&format!("\"{}\"", hash(OLD_KEY)));
    let child = start(serve_command(&gateway.config).stderr(stderr).env("RUST_LOG", "info"));
    wait_ready(&gateway.base);
    (gateway, child)
}

#[test]
fn a_key_revoked_while_the_body_arrives_signs_nothing() {
    let (gateway, _child) = gateway(Stdio::null());
    let body = r#"{"vars": {"supplier": "acme"}}"#;
    let mut socket = TcpStream::connect(("127.0.0.1", gateway.port)).unwrap();
    write!(
        socket,
        "POST /v1/profiles/invoices/presign HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OLD_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // The key is revoked while the request waits for its body.
    gateway.write_config(&format!("\"{}\"", hash(NEW_KEY)));
    assert_eq!(gateway.reload()["result"], "success");
    assert_eq!(gateway.presign(OLD_KEY).0, 401);
    socket.write_all(body.as_bytes()).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = String::new();
    let _ = socket.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[test]
fn keys_and_profiles_publish_independently_and_a_failure_is_logged_once() {
    let (gateway, mut child) = gateway(Stdio::piped());
    let metrics = || get(&format!("{}/metrics", gateway.base)).unwrap().1;
    let failing = |part: &str| sample(&metrics(), "postgate_config_part_failing", &[("part", part)]);

    // A broken profile and a revoked key in one reload: the revocation takes effect.
    std::fs::write(gateway.policies.path().join("broken.yaml"), "bucket: [unclosed\n").unwrap();
    gateway.write_config(&format!("\"{}\"", hash(NEW_KEY)));
    let report = gateway.reload();
    assert_eq!(report["result"], "failure", "{report}");
    assert_eq!(report["failed_parts"], serde_json::json!(["profiles"]), "{report}");
    assert_eq!(gateway.presign(OLD_KEY).0, 401, "the revoked key still signs");
    assert_eq!(gateway.presign(NEW_KEY).0, 200);
    assert_eq!(failing("profiles"), Some(1.0));
    assert_eq!(failing("apps"), Some(0.0));

    // The periodic check (every 1 s) meets the same failure again and again: logged once.
    std::thread::sleep(Duration::from_millis(3500));

    // A broken keys file and a profile change in one reload: the profile change takes effect.
    std::fs::remove_file(gateway.policies.path().join("broken.yaml")).unwrap();
    let invoices = gateway.policies.path().join("invoices.yaml");
    let text = std::fs::read_to_string(&invoices).unwrap();
    std::fs::write(&invoices, text.replace("max: 10 MiB", "max: 2 MiB")).unwrap();
    gateway.write_config("\"sha256:not-a-hash\"");
    let report = gateway.reload();
    assert_eq!(report["failed_parts"], serde_json::json!(["apps"]), "{report}");
    let (status, body) = gateway.presign(NEW_KEY);
    assert_eq!(status, 200, "the keys as last served still work: {body}");
    let form: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(form["max_size"], 2 * 1024 * 1024, "the tightened profile is served");
    assert_eq!(failing("apps"), Some(1.0));
    assert_eq!(failing("profiles"), Some(0.0));

    // Fixed: one line says so.
    gateway.write_config(&format!("\"{}\"", hash(NEW_KEY)));
    gateway.reload();
    assert!(wait_until(5, || failing("apps") == Some(0.0)));
    child.stop();
    let mut log = String::new();
    child.0.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    let refused = log.matches("reload refused for the failed parts").count();
    eprintln!("{refused} refusal lines in the log");
    assert_eq!(refused, 2, "one line per failing state (profiles, then apps):\n{log}");
    assert!(log.contains("reload succeeds again"), "{log}");
}
