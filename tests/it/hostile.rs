//! Hostile input at the edges: a corpus of var values and filenames through the API (each refused
//! or confined to the profile's prefix), and hostile HTTP at the socket level against `postgate
//! serve` (huge headers, slow and silent clients, endless bodies, garbage bytes) — each answered
//! with the 4xx it calls for (a closed connection only where the client keeps sending past a
//! limit), never a 5xx, and the gateway keeps answering.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{App, test as actix_test};
use postgate::http;
use serde_json::{Value, json};

use crate::support::process::{Running, free_port, get, postgate, wait_ready};
use crate::support::state::{key, policies_copy, registry, state};

/// Var values and filenames an attacker would try, each alone.
fn corpus() -> Vec<String> {
    let mut values: Vec<String> = [
        "..",
        ".",
        "../",
        "../..",
        "..\\..",
        "/",
        "\\",
        "a/b",
        "a\\b",
        "/etc/passwd",
        "..%2F",
        "%2F",
        "%2e%2e",
        "%2e%2e%2f",
        "%00",
        "${filename}",
        "${user}",
        "${uuid}",
        "$",
        "${",
        "{",
        "}",
        "\0",
        "a\0b",
        "file.png\0.exe",
        "\u{202E}gnp.exe",
        "a\u{200F}b",
        "\u{2066}x",
        "\u{061C}",
        "\n",
        "a\nb",
        "\r\n",
        "\t",
        " ",
        "",
        "é",
        "e\u{301}",
        "Å",
        "A\u{30A}",
        "ﬁ",
        "／",
        "∕",
        "⁄",
        "．．",
        "u4",
        "u42",
        "u4/../u42",
        "CON",
        "nul.txt",
        "~",
        "~root",
        "*",
        "?",
        "#",
        "&",
        "'",
        "\"",
        "<script>",
        "`id`",
        "$(id)",
        "\u{FEFF}",
        "😀",
        "\u{7F}",
        "\u{85}",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    values.push("a".repeat(2048));
    values.push("é".repeat(1024));
    values.push(format!("{}.png", "x".repeat(300)));
    values.push(format!("{}/..", "a".repeat(100)));
    values
}

/// The fixed rules every signed key obeys, whatever the profile's patterns allow.
fn confined(key: &str, prefix: &str) -> Result<(), String> {
    if !key.starts_with(prefix) {
        return Err(format!("does not start with {prefix}"));
    }
    if key.len() > 1024 {
        return Err("longer than 1024 bytes".into());
    }
    for segment in key.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(format!("has the segment {segment:?}"));
        }
    }
    if key.chars().any(|c| {
        c.is_control()
            || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    }) {
        return Err("has a control or bidirectional character".into());
    }
    Ok(())
}

#[actix_web::test]
async fn hostile_vars_and_filenames_are_refused_or_confined() {
    let dir = policies_copy();
    // A profile whose var pattern admits anything, so that only the fixed rules stand.
    std::fs::write(
        dir.path().join("loose.yaml"),
        "bucket: user-content\nkey: \"loose/${user}/${uuid}/${filename}\"\nvars:\n  user: { pattern: \"(?s).+\" }\nsize: { max: 1MiB }\napps: [web]\n",
    )
    .unwrap();
    let state = state(registry(dir.path()));
    let service = actix_test::init_service(App::new().app_data(state.clone()).configure(http::routes)).await;

    let corpus = corpus();
    let (mut tried, mut refused, mut signed) = (0, 0, 0);
    let mut failures = Vec::new();
    for profile in ["loose", "avatars"] {
        for value in &corpus {
            let as_var = json!({"vars": {"user": value}, "metadata": {"purpose": "avatar"}});
            let as_filename = json!({"vars": {"user": "u4"}, "filename": value, "metadata": {"purpose": "avatar"}});
            for (what, body) in [("var", as_var), ("filename", as_filename)] {
                tried += 1;
                let req = actix_test::TestRequest::post()
                    .uri(&format!("/v1/profiles/{profile}/presign"))
                    .insert_header((header::AUTHORIZATION, format!("Bearer {}", key("web"))))
                    .insert_header((header::CONTENT_TYPE, "application/json"))
                    .set_payload(body.to_string())
                    .to_request();
                let response = actix_test::call_service(&service, req).await;
                let status = response.status().as_u16();
                let answer: Value = serde_json::from_slice(&actix_test::read_body(response).await).unwrap();
                match status {
                    422 => refused += 1,
                    200 => {
                        signed += 1;
                        let key = answer["key"].as_str().unwrap();
                        let prefix = match (profile, what) {
                            (_, "var") => format!("{profile}/"),
                            _ => format!("{profile}/u4/"),
                        };
                        if let Err(why) = confined(key, &prefix) {
                            failures.push(format!("{profile} {what} {value:?}: key {key:?} {why}"));
                        }
                        if what == "filename" && key.split('/').count() != 4 {
                            failures.push(format!("{profile} filename {value:?}: key {key:?} is not 4 segments"));
                        }
                        // The form's key is covered exactly or by a starts-with ending in `/`.
                        assert_eq!(answer["fields"]["key"].as_str(), Some(key));
                    }
                    other => failures.push(format!("{profile} {what} {value:?}: status {other} {answer}")),
                }
            }
        }
    }
    println!(
        "hostile corpus: {tried} requests ({} values), {refused} refused, {signed} signed and confined",
        corpus.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(refused + signed, tried);
    // Both outcomes happen: the loose profile signs harmless odd values, the fixed rules refuse the rest.
    assert!(refused > 0 && signed > 0);
}

/// What one raw exchange observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// An `HTTP/1.1` status line with this code was read (whatever followed it, a close included).
    Status(u16),
    /// The connection was closed (an end of stream or a reset) before any answer.
    Closed,
    /// Nothing arrived for the whole read timeout, the connection still open.
    Silent,
    /// Bytes arrived that do not start with an `HTTP/1.1` status line.
    Garbled,
}

/// One raw exchange: what the server answers to `request`, and the answer's first line (for
/// the report).
fn raw(port: u16, request: &[u8], read_for: Duration) -> (Outcome, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(read_for)).unwrap();
    // The server may answer and close before the whole request is written; the answer is read
    // below either way.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let mut timed_out = false;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                timed_out = true;
                break;
            }
            // A reset: the connection is closed.
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let first_line = text.lines().next().unwrap_or_default().to_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    let outcome = match status {
        Some(code) => Outcome::Status(code),
        None if !answer.is_empty() => Outcome::Garbled,
        None if timed_out => Outcome::Silent,
        None => Outcome::Closed,
    };
    (outcome, first_line)
}

#[test]
fn hostile_http_gets_the_4xx_it_calls_for_never_a_5xx() {
    let dir = policies_copy();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = postgate()
        .args(["serve"])
        .env("POSTGATE_POLICIES", dir.path())
        .env("POSTGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("POSTGATE_APPS__WEB__KEYS_ENV", "HOSTILE_WEB_KEYS")
        .env("HOSTILE_WEB_KEYS", key("web"))
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut gateway = Running(child);
    wait_ready(&base);
    let presign = |extra_headers: &str, body: &[u8]| -> Vec<u8> {
        let mut request = format!(
            "POST /v1/profiles/avatars/presign HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n{extra_headers}\r\n",
            key("web")
        )
        .into_bytes();
        request.extend_from_slice(body);
        request
    };

    // Silent clients hold a connection; the gateway keeps answering others meanwhile.
    let silent: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // What each case accepts. A closed connection without an answer is accepted only where the
    // client keeps sending past a limit the server enforces while reading (its 128 KiB head
    // buffer, the 64 KiB body limit): the server stops reading there, and hanging up is a right
    // answer (RFC 9110 lets a 413 close the connection). Where the server can tell from what it
    // has read, it must say so with a status.
    use Outcome::{Closed, Status};
    let cases: Vec<(&str, Vec<u8>, &[Outcome])> = vec![
        (
            "huge header value",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(256 * 1024)
            )
            .into_bytes(),
            // actix-http answers a head over its 128 KiB buffer with 431.
            &[Status(431), Closed],
        ),
        (
            "10,000 headers",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
                "X-A: b\r\n".repeat(10_000)
            )
            .into_bytes(),
            // More than actix-http's 96 headers is a 431 once the 97th is parsed (80 KB in all,
            // under the head buffer).
            &[Status(431)],
        ),
        (
            "not HTTP at all",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n".to_vec(),
            &[Status(400)],
        ),
        (
            "a request line of 100 KB",
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000)).into_bytes(),
            // The head fits the buffer; the URI parser refuses more than 65,534 bytes: a 400.
            &[Status(400)],
        ),
        (
            "a declared body of 1 GB",
            presign("Content-Type: application/json\r\nContent-Length: 1000000000\r\n", b"{"),
            // Refused from the declared length, before the body is read.
            &[Status(413)],
        ),
        (
            "an endless chunked body",
            {
                let mut r = presign("Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n", b"");
                for _ in 0..100 {
                    r.extend_from_slice(format!("1000\r\n{}\r\n", " ".repeat(4096)).as_bytes());
                }
                r
            },
            // 400 KB sent past the 64 KiB limit.
            &[Status(413), Closed],
        ),
        (
            "a body that is not JSON",
            presign(
                "Content-Type: application/json\r\nContent-Length: 4\r\n",
                b"\xff\xfe\x00{",
            ),
            &[Status(400)],
        ),
        (
            "JSON nested 100,000 deep",
            {
                let body = "[".repeat(100_000);
                presign(
                    &format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()),
                    body.as_bytes(),
                )
            },
            // 100,000 bytes declared, over the 64 KiB limit: refused before the body is read.
            &[Status(413)],
        ),
        (
            "a form instead of JSON",
            presign(
                "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 0\r\n",
                b"",
            ),
            &[Status(415)],
        ),
        (
            "a header that is not UTF-8",
            b"GET /v1/profiles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n".to_vec(),
            &[Status(401)],
        ),
        (
            "a path that is not UTF-8",
            b"GET /v1/profiles/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            // httparse takes the bytes; the URI parser refuses them: a 400 before any route.
            &[Status(400)],
        ),
        (
            "conflicting lengths",
            presign(
                "Content-Type: application/json\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n",
                b"{}",
            ),
            // actix-http refuses both lengths together (request smuggling).
            &[Status(400)],
        ),
    ];
    let mut report = Vec::new();
    for (name, request, accept) in &cases {
        let (outcome, first_line) = raw(port, request, Duration::from_secs(10));
        report.push(format!("{name}: {outcome:?} {first_line:?}"));
        assert!(
            accept.contains(&outcome),
            "{name}: observed {outcome:?} (first line {first_line:?}); accepted: {accept:?}"
        );
        assert_eq!(
            get(&format!("{base}/healthz")).map(|(s, _)| s),
            Some(200),
            "after {name}"
        );
    }

    // A slow client (headers trickling in, never finished) is answered 408 by the request
    // timeout (actix-http's, 5 s), well within the 30 s this waits.
    let started = Instant::now();
    let (outcome, first_line) = raw(
        port,
        b"POST /v1/profiles/avatars/presign HTTP/1.1\r\nHost: x\r\n",
        Duration::from_secs(30),
    );
    report.push(format!(
        "headers never finished: {outcome:?} {first_line:?} after {:?}",
        started.elapsed()
    ));
    assert_eq!(
        outcome,
        Outcome::Status(408),
        "headers never finished: observed {outcome:?} (first line {first_line:?}); accepted: [Status(408)]"
    );
    assert_eq!(get(&format!("{base}/healthz")).map(|(s, _)| s), Some(200));
    drop(silent);

    // The process is still the same one, and it said nothing about panics or 5xx.
    assert!(gateway.0.try_wait().unwrap().is_none(), "the gateway exited");
    println!("{}", report.join("\n"));
    let _ = gateway.0.kill();
    let mut stderr = String::new();
    gateway.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
}
