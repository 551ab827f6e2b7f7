//! What the integration tests share, in one place: paths and known-answer suites (here),
//! processes and ports (`process`), state builders (`state`), the S3 servers the tests start and
//! uploads to them (`s3`), and the example store and request (`fixture`, which benches and
//! examples include by path). Theme files hold tests and their own suites; a helper two themes
//! use lives here.

pub mod fixture;
pub mod process;
pub mod s3;
pub mod state;

use std::path::PathBuf;

/// A path inside the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// `../shared/vectors`: the published known-answer suites, kept beside the repository. A test
/// that needs them fails, saying where they go, rather than passing without them.
pub fn shared_vectors() -> PathBuf {
    let path = repo_path("../shared/vectors");
    assert!(
        path.is_dir(),
        "{} is missing: the known-answer suites (AWS's SigV4 suite, botocore, Google Cloud Storage) \
         live in `shared/vectors` beside the repository checkout",
        path.display()
    );
    path
}

/// The value of one sample of a Prometheus text exposition, by metric name and labels.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

/// Polls `condition` until it holds or `seconds` pass.
pub fn wait_until(seconds: u64, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while std::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    condition()
}
