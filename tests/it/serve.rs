//! The `postgate` binary as a process: `serve` refusing a bad start, reloading on SIGHUP and on
//! the admin endpoint, rotating app keys; `dev` with its printed curl pair and its store.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::process::*;
use crate::support::s3::file_bytes;
use crate::support::state::policies_copy;
use crate::{repo_path, sample, wait_until};
#[test]
fn serve_refuses_to_start_on_an_invalid_set() {
    let dir = policies_copy();
    std::fs::write(
        dir.path().join("avatars.yaml"),
        "bucket: user-content\nkey: \"a/${nobody}\"\n",
    )
    .unwrap();
    let output = postgate()
        .args(["serve"])
        .env("POSTGATE_POLICIES", dir.path())
        .env("POSTGATE_LISTEN", format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("avatars.yaml: key: `${nobody}` is neither built in"),
        "{stderr}"
    );
    assert!(stderr.contains("avatars.yaml: size: missing"), "{stderr}");
    assert!(stderr.contains("refusing to start"), "{stderr}");
}

#[test]
fn serve_reloads_on_sighup_and_admin_and_rotates_keys() {
    let dir = policies_copy();
    let config_dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let old_key = "rotation-old-key-0123456789";
    let new_key = "rotation-new-key-0123456789";
    let hash = |key: &str| postgate::auth::hash_key(&postgate::secret::Secret::new(key));
    let config_path = config_dir.path().join("postgate.yaml");
    let write_config = |keys: &[&str]| {
        let keys: Vec<String> = keys.iter().map(|k| format!("\"{}\"", hash(k))).collect();
        let text = format!(
            "policies: {}\nlisten: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin_port}\nreload: {{ interval: 0s, watch: false }}\napps:\n  web:\n    keys: [{}]\n",
            dir.path().display(),
            keys.join(", ")
        );
        std::fs::write(&config_path, text).unwrap();
    };
    write_config(&[old_key]);
    let child = postgate()
        .args(["serve", "--config"])
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base);

    let presign = |key: &str| {
        post(
            &format!("{base}/v1/profiles/invoices/presign"),
            &[
                &format!("Authorization: Bearer {key}"),
                "Content-Type: application/json",
            ],
            r#"{"vars": {"supplier": "acme"}}"#,
        )
        .0
    };
    assert_eq!(presign(old_key), 200);
    assert_eq!(presign(new_key), 401);
    let metrics = || get(&format!("{base}/metrics")).unwrap().1;

    // SIGHUP reloads (and does not end the process).
    let original = std::fs::read_to_string(dir.path().join("invoices.yaml")).unwrap();
    std::fs::write(
        dir.path().join("invoices.yaml"),
        original.replace("max: 10 MiB", "max: 20 MiB"),
    )
    .unwrap();
    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    assert!(wait_until(10, || {
        sample(
            &metrics(),
            "postgate_config_reloads_total",
            &[("trigger", "signal"), ("result", "success")],
        ) == Some(1.0)
    }));
    assert!(child.0.try_wait().unwrap().is_none(), "SIGHUP ended the process");

    // Key rotation: both keys during the rotation, then only the new one — no restart.
    write_config(&[old_key, new_key]);
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    assert!(wait_until(10, || presign(new_key) == 200));
    assert_eq!(presign(old_key), 200);
    write_config(&[new_key]);
    let admin = format!("http://127.0.0.1:{admin_port}/-/reload");
    let (status, body) = post(&admin, &[], "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(presign(old_key), 401);
    assert_eq!(presign(new_key), 200);

    // The admin endpoint answers with the diagnostics of a refused reload.
    std::fs::write(
        dir.path().join("invoices.yaml"),
        original.replace("max: 10 MiB", "max: 6 GiB"),
    )
    .unwrap();
    let (status, body) = post(&admin, &[], "");
    assert_eq!(status, 422, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["result"], "failure");
    assert!(
        report["diagnostics"][0]
            .as_str()
            .unwrap()
            .contains("invoices.yaml: size.max: 6 GiB is above 5 GiB, the most a single POST or PUT upload carries"),
        "{body}"
    );
    assert_eq!(presign(new_key), 200, "the last good set is still served");
    assert_eq!(
        sample(&metrics(), "postgate_config_last_reload_successful", &[]),
        Some(0.0)
    );
    // The admin listener is not the API listener.
    assert_eq!(get(&format!("{base}/-/reload")).unwrap().0, 404);
    // With `reload.watch: false`, the edits above reloaded nothing by themselves: a watcher
    // would have within `reload.max_wait` (1 s) of the last one.
    std::thread::sleep(Duration::from_millis(1500));
    let text = metrics();
    assert_eq!(
        sample(&text, "postgate_config_reloads_total", &[("trigger", "watch")]),
        None,
        "{text}"
    );
}

#[tokio::test]
async fn dev_mode_prints_a_curl_pair_that_uploads() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let (port, store_port) = (free_port(), free_port());
    let child = postgate()
        .args([
            "dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--store-listen",
            &format!("127.0.0.1:{store_port}"),
        ])
        .arg("--data")
        .arg(data.path())
        .current_dir(repo_path(""))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base);

    // Run the printed pair as printed (from a directory holding a Cargo.toml to upload).
    let stdout = child.0.stdout.take().unwrap();
    let lines = read_banner(stdout);
    let commands: Vec<&String> = lines.iter().filter(|l| l.trim_start().starts_with("curl ")).collect();
    assert_eq!(commands.len(), 4, "{lines:?}");
    std::fs::copy(repo_path("Cargo.toml"), work.path().join("Cargo.toml")).unwrap();
    for command in &commands {
        let output = Command::new("sh")
            .arg("-c")
            .arg(command.trim())
            .current_dir(work.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stored = find_file(&data.path().join("user-content/avatars/alice"), "hello.png");
    assert_eq!(
        std::fs::read(stored).unwrap(),
        std::fs::read(repo_path("Cargo.toml")).unwrap()
    );
    let invoices = data.path().join("finance-inbox/invoices/acme");
    let put: Vec<_> = std::fs::read_dir(&invoices).unwrap().flatten().collect();
    assert_eq!(put.len(), 1, "one object from the PUT pair");
    assert_eq!(
        std::fs::read(put[0].path()).unwrap(),
        std::fs::read(repo_path("Cargo.toml")).unwrap()
    );

    // The dev store substitutes ${filename} as S3 does, and answers CORS.
    let (status, body) = post(
        &format!("{base}/v1/profiles/avatars/presign"),
        &[
            "Authorization: Bearer dev-key-web-local",
            "Content-Type: application/json",
        ],
        r#"{"vars": {"user": "bob"}, "metadata": {"purpose": "banner"}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let form: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(form["key"].as_str().unwrap().ends_with("/${filename}"));
    let mut multipart = reqwest::multipart::Form::new();
    for (name, value) in form["fields"].as_object().unwrap() {
        multipart = multipart.text(name.clone(), value.as_str().unwrap().to_owned());
    }
    multipart = multipart.text("Content-Type", "image/png").part(
        "file",
        reqwest::multipart::Part::bytes(file_bytes(300)).file_name("photo.png"),
    );
    // The dev store answers CORS for the gateway's own pages only: a page elsewhere that the
    // developer visits cannot read it.
    let response = reqwest::Client::new()
        .post(form["url"].as_str().unwrap())
        .header("Origin", base.as_str())
        .multipart(multipart)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["access-control-allow-origin"], base.as_str());
    for url in [
        form["url"].as_str().unwrap().to_owned(),
        format!("{base}/v1/profiles/avatars/presign"),
    ] {
        let foreign = reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, &url)
            .header("Origin", "http://localhost:5173")
            .header("Access-Control-Request-Method", "POST")
            .send()
            .await
            .unwrap();
        assert!(foreign.headers().get("access-control-allow-origin").is_none(), "{url}");
    }
    // As S3 answers a form: a quoted ETag and an absolute Location, as headers and in the body.
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34,
        "{etag}"
    );
    assert!(
        location.starts_with(&format!("http://127.0.0.1:{store_port}/user-content/avatars/bob/")),
        "{location}"
    );
    assert!(
        response.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("ETag")
    );
    let text = response.text().await.unwrap();
    assert!(text.contains(&format!("<Location>{location}</Location>")), "{text}");
    assert!(
        text.contains(&format!("<ETag>{}</ETag>", etag.replace('"', "&quot;"))),
        "{text}"
    );
    let stored = find_file(&data.path().join("user-content/avatars/bob"), "photo.png");
    assert_eq!(std::fs::read(stored).unwrap(), file_bytes(300));
    // A failed policy condition is 403 AccessDenied, as S3 answers it (s3s says 400).
    let mut multipart = reqwest::multipart::Form::new();
    for (name, value) in form["fields"].as_object().unwrap() {
        multipart = multipart.text(name.clone(), value.as_str().unwrap().to_owned());
    }
    multipart = multipart.text("Content-Type", "text/html").part(
        "file",
        reqwest::multipart::Part::bytes(file_bytes(300)).file_name("page.png"),
    );
    let response = reqwest::Client::new()
        .post(form["url"].as_str().unwrap())
        .multipart(multipart)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("<Code>AccessDenied</Code><Message>Invalid according to Policy"),
        "{text}"
    );

    // A presigned PUT with an `x-amz-*` header it did not sign is refused, as S3 refuses it
    // (s3s alone would take it); the same PUT as signed uploads.
    let (status, body) = post(
        &format!("{base}/v1/profiles/documents/presign"),
        &[
            "Authorization: Bearer dev-key-web-local",
            "Content-Type: application/json",
        ],
        r#"{"method": "put", "vars": {"user": "bob"}, "filename": "a.pdf", "content_type": "application/pdf", "size": 2000, "metadata": {"kind": "invoice"}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let put: serde_json::Value = serde_json::from_str(&body).unwrap();
    let send = |extra: Option<(&str, &str)>| {
        let mut request = reqwest::Client::new()
            .put(put["url"].as_str().unwrap())
            .body(file_bytes(2000));
        for (name, value) in put["headers"].as_object().unwrap() {
            request = request.header(name, value.as_str().unwrap());
        }
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        request.send()
    };
    let response = send(Some(("x-amz-copy-source", "user-content/elsewhere")))
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("<HeadersNotSigned>x-amz-copy-source</HeadersNotSigned>")
    );
    assert!(
        !data.path().join("user-documents/documents/bob").exists(),
        "nothing is written"
    );
    let response = send(None).await.unwrap();
    assert_eq!(response.status(), 200);
    let stored = data.path().join("user-documents").join(put["key"].as_str().unwrap());
    assert_eq!(std::fs::read(stored).unwrap(), file_bytes(2000));
}

/// The banner `postgate dev` prints, up to its last line.
fn read_banner(stdout: std::process::ChildStdout) -> Vec<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        let done = line.starts_with("That object lands under");
        lines.push(line);
        if done {
            break;
        }
    }
    lines
}

/// The one file named `name` somewhere under `dir`.
fn find_file(dir: &Path, name: &str) -> std::path::PathBuf {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
    {
        let candidate = entry.path().join(name);
        if candidate.is_file() {
            found.push(candidate);
        }
    }
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}
