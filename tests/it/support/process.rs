//! Processes and ports: `postgate` run as a child process, requests over real sockets.

use crate::wait_until;
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A child process killed on drop.
pub struct Running(pub Child);

impl Running {
    /// Stops the server as an orchestrator does (SIGTERM, then at most 10 s), so it writes its
    /// last log lines (a SIGKILL loses up to `postgate::logs::FLUSH_INTERVAL` of them).
    pub fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn postgate() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_postgate"));
    command
        .env_remove("POSTGATE_CONFIG")
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
        .env("RUST_LOG", "warn");
    command
}

/// `postgate serve --config <config>`, its output discarded; add variables, then `start`.
pub fn serve_command(config: &Path) -> Command {
    let mut command = postgate();
    command
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Starts `command`, killed when the result is dropped.
pub fn start(command: &mut Command) -> Running {
    Running(command.spawn().unwrap())
}

pub fn get(url: &str) -> Option<(u16, String)> {
    let output = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", url])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n')?;
    Some((status.parse().ok()?, body.to_owned()))
}

pub fn post(url: &str, headers: &[&str], body: &str) -> (u16, String) {
    request("POST", url, headers, Some(body))
}

/// Any request through curl: the status and the body.
pub fn request(method: &str, url: &str, headers: &[&str], body: Option<&str>) -> (u16, String) {
    let mut command = Command::new("curl");
    command.args(["-s", "-w", "\n%{http_code}", "-X", method, url]);
    if let Some(body) = body {
        command.args(["--data-binary", body]);
    }
    for header in headers {
        command.args(["-H", header]);
    }
    let text = String::from_utf8_lossy(&command.output().unwrap().stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_owned())
}

/// A request's head (up to the blank line), as a loopback test server reads it.
pub fn read_head(socket: &mut impl Read) -> Vec<u8> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    request
}

pub fn wait_ready(base: &str) {
    assert!(
        wait_until(30, || get(&format!("{base}/readyz")).is_some_and(|(s, _)| s == 200)),
        "{base} did not become ready"
    );
}

/// Whether `redis-server` is installed; without it `test` is skipped, saying so, unless
/// `CI_REQUIRE_REDIS` (CI) makes that a failure.
pub fn redis_installed(test: &str) -> bool {
    if Command::new("redis-server").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var("CI_REQUIRE_REDIS").is_err(),
        "CI_REQUIRE_REDIS is set but redis-server is not installed"
    );
    eprintln!("SKIPPED: redis-server is not installed (apt-get install redis-server); {test} did not run");
    false
}

/// A `redis-server` on loopback `port`: in memory only, or with every write appended and synced
/// to `persist` (so a killed server comes back with what it had).
pub fn redis_server(port: u16, persist: Option<&Path>) -> Running {
    let mut command = Command::new("redis-server");
    command.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""]);
    match persist {
        Some(dir) => command
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(dir),
        None => command.args(["--appendonly", "no"]),
    };
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let running = Running(child);
    assert!(
        wait_until(10, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "redis-server did not listen"
    );
    running
}
