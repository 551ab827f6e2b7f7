//! Requests whose body never comes: 50 with a valid key, complete headers and
//! `Content-Length: 100`, then nothing; 50 without a key, chunked, with one chunk and no end.
//! Each is answered (408 `body-timeout`, or 401 at once) and its connection closed by the server
//! within `body_timeout`; the process holds no more sockets afterwards than before.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::process::{free_port, serve_command, start, wait_ready};

const APP_KEY: &str = "slow-body-app-key-0123456789";

/// The sockets a process holds open, from /proc.
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")))
                .count()
        })
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// What the server did with a held connection: the status line it sent (if any), and whether it
/// then closed the connection.
fn outcome(mut socket: TcpStream, wait: Duration) -> (Option<u16>, bool) {
    socket.set_read_timeout(Some(wait)).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match socket.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    (status, closed)
}

#[test]
fn unfinished_bodies_are_answered_and_closed_within_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("postgate.yaml");
    std::fs::write(
        &config,
        format!(
            "policies: {}\nlisten: 127.0.0.1:{port}\nbody_timeout: 2s\napps:\n  web:\n    keys: [\"{}\"]\n",
            crate::repo_path("policies").display(),
            postgate::auth::hash_key(&postgate::secret::Secret::new(APP_KEY)),
        ),
    )
    .unwrap();
    let child = start(&mut serve_command(&config));
    let pid = child.0.id();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base);
    std::thread::sleep(Duration::from_millis(200));
    let (sockets_before, rss_before) = (open_sockets(pid), rss_kib(pid));

    let connect = |head: &str, body: &[u8]| {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
        socket.write_all(head.as_bytes()).unwrap();
        socket.write_all(body).unwrap();
        socket
    };
    let started = Instant::now();
    let keyed: Vec<TcpStream> = (0..50)
        .map(|_| {
            connect(
                &format!(
                    "POST /v1/profiles/invoices/presign HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {APP_KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                ),
                b"",
            )
        })
        .collect();
    let keyless: Vec<TcpStream> = (0..50)
        .map(|_| {
            connect(
                "POST /v1/profiles/invoices/presign HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"5\r\n{\"var\r\n",
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let held = open_sockets(pid);

    // Without a key: 401 at once, and closed (not drained) within the 1 s linger.
    for socket in keyless {
        assert_eq!(outcome(socket, Duration::from_secs(3)), (Some(401), true));
    }
    // With a key: 408 when the 2 s deadline passes, and closed.
    for socket in keyed {
        assert_eq!(outcome(socket, Duration::from_secs(5)), (Some(408), true));
    }
    let answered = started.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let (sockets_after, rss_after) = (open_sockets(pid), rss_kib(pid));
    eprintln!(
        "sockets: {sockets_before} before, {held} with 100 held, {sockets_after} after (all answered within {answered:?}); RSS {rss_before} KiB → {rss_after} KiB"
    );
    assert!(
        held >= sockets_before + 90,
        "the held connections were not open: {held}"
    );
    assert!(answered < Duration::from_secs(4), "{answered:?}");
    assert!(
        sockets_after <= sockets_before + 2,
        "{sockets_after} sockets still open after the deadline ({sockets_before} before)"
    );
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}
