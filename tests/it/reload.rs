//! Hot reload on a real directory with the real watcher: valid → invalid → valid, Kubernetes
//! ConfigMap updates, editor saves, unchanged touches, the periodic check — with signatures
//! running throughout and none failing.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use postgate::metrics::Trigger;
use postgate::profile::Context;
use postgate::registry::Registry;
use postgate::registry::watch::{self, Reloader, WatchSettings};
use postgate::sign::{Addressing, Credentials, Endpoint, FieldStyle, Store, sign};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::support::s3::avatar_request;
use crate::support::state::{policies_copy, registry};
use crate::{sample, wait_until};

const FAST: WatchSettings = WatchSettings {
    debounce: Duration::from_millis(50),
    max_wait: Duration::from_millis(400),
    interval: Duration::ZERO,
};

/// Signs `avatars` forms in a loop, each on the snapshot current at its start.
struct SigningLoad {
    stop: Arc<AtomicBool>,
    signed: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl SigningLoad {
    fn start(registry: Arc<Registry>) -> SigningLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let signed = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (s, ok, bad) = (stop.clone(), signed.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            let credentials = Credentials {
                access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                secret_access_key: postgate::secret::Secret::new("secret"),
                session_token: None,
                expires_at: None,
            };
            let store = Store::new("default", "us-east-1", Endpoint::Aws, Addressing::Auto, credentials);
            let request = avatar_request("alice");
            while !s.load(Ordering::Relaxed) {
                let snapshot = registry.current();
                let now = OffsetDateTime::now_utc();
                let ctx = Context {
                    app: "web",
                    now,
                    uuid: Uuid::now_v7(),
                };
                match snapshot
                    .get("avatars")
                    .map(|p| sign(p, &store.signer(ctx.now).unwrap(), &request, &ctx, FieldStyle::Botocore))
                {
                    Some(Ok(signed)) => {
                        assert!(!signed.to_json().is_empty());
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        SigningLoad {
            stop,
            signed,
            failed,
            thread: Some(thread),
        }
    }

    /// Stops the load; returns (signed, failed).
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        (self.signed.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }
}

struct Harness {
    dir: tempfile::TempDir,
    registry: Arc<Registry>,
    reloader: Reloader,
    load: SigningLoad,
}

impl Harness {
    fn start(settings: WatchSettings, watch_dir: bool) -> Harness {
        let dir = policies_copy();
        let registry = registry(dir.path());
        let watched = if watch_dir {
            vec![dir.path().to_owned()]
        } else {
            Vec::new()
        };
        let reloader = watch::spawn(registry.clone(), watched, settings);
        let load = SigningLoad::start(registry.clone());
        Harness {
            dir,
            registry,
            reloader,
            load,
        }
    }

    fn generation(&self) -> u64 {
        self.registry.current().generation
    }

    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        sample(&self.registry.metrics().render(), name, labels).unwrap_or(0.0)
    }

    fn reloads(&self, trigger: &str, result: &str) -> f64 {
        self.metric(
            "postgate_config_reloads_total",
            &[("trigger", trigger), ("result", result)],
        )
    }

    fn avatars_description(&self) -> String {
        self.registry
            .current()
            .get("avatars")
            .and_then(|p| p.description().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Waits for the reload thread to go quiet, then stops everything; asserts no signature failed.
    fn finish(self) -> u64 {
        std::thread::sleep(Duration::from_millis(300));
        self.reloader.stop();
        let (signed, failed) = self.load.finish();
        assert_eq!(failed, 0, "signatures failed during reloads");
        assert!(signed > 50, "only {signed} signatures ran");
        signed
    }
}

fn avatars_text(description: &str) -> String {
    let original = fs::read_to_string(crate::repo_path("policies/avatars.yaml")).unwrap();
    original.replace("description: Profile pictures", &format!("description: {description}"))
}

fn write(dir: &Path, name: &str, text: &str) {
    fs::write(dir.join(name), text).unwrap();
}

#[test]
fn valid_invalid_valid() {
    let h = Harness::start(FAST, true);
    assert_eq!(h.generation(), 1);

    // A profile the compiler refuses: the last good set stays served.
    write(
        h.dir.path(),
        "avatars.yaml",
        &avatars_text("v2").replace("max: 5MiB", "max: 6GiB"),
    );
    assert!(wait_until(5, || h.reloads("watch", "failure") >= 1.0));
    assert_eq!(h.generation(), 1);
    assert_eq!(h.avatars_description(), "Profile pictures");
    assert_eq!(h.metric("postgate_config_last_reload_successful", &[]), 0.0);
    assert_eq!(h.metric("postgate_config_generation", &[]), 1.0);

    // Broken YAML in a new file: still refused, still generation 1.
    write(h.dir.path(), "broken.yaml", "bucket: [unclosed\n");
    assert!(wait_until(5, || h.reloads("watch", "failure") >= 2.0));
    assert_eq!(h.generation(), 1);

    // Fixed: the new content is served as generation 2.
    fs::remove_file(h.dir.path().join("broken.yaml")).unwrap();
    write(h.dir.path(), "avatars.yaml", &avatars_text("v2"));
    assert!(wait_until(5, || h.generation() == 2));
    assert_eq!(h.avatars_description(), "v2");
    assert!(wait_until(2, || h
        .metric("postgate_config_last_reload_successful", &[])
        == 1.0));
    assert_eq!(h.metric("postgate_config_generation", &[]), 2.0);
    assert_eq!(h.metric("postgate_profiles_loaded", &[]), 8.0);

    // An emptied directory does not replace a non-empty set.
    let failures = h.reloads("watch", "failure");
    for entry in fs::read_dir(h.dir.path()).unwrap().flatten() {
        fs::remove_file(entry.path()).unwrap();
    }
    assert!(wait_until(5, || h.reloads("watch", "failure") > failures));
    assert_eq!(h.generation(), 2);
    assert_eq!(h.registry.current().profiles.len(), 8);
    let report = h.registry.reload(Trigger::Admin);
    assert!(
        report.diagnostics[0]
            .to_string()
            .contains("refusing to replace the 8 served"),
        "{report:?}"
    );
    h.finish();
}

#[test]
fn kubernetes_configmap_updates_are_each_served_once() {
    let h = Harness::start(FAST, false);
    let dir = h.dir.path();
    // Turn the copy into a ConfigMap volume: files live in a timestamped directory behind `..data`.
    let names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let publish = |version: usize| {
        let stamp = format!("..2026_11_21_00_00_{version:02}.000000001");
        fs::create_dir(dir.join(&stamp)).unwrap();
        for name in &names {
            let text = if name == "avatars.yaml" {
                avatars_text(&format!("v{version}"))
            } else {
                fs::read_to_string(crate::repo_path("policies").join(name)).unwrap()
            };
            fs::write(dir.join(&stamp).join(name), text).unwrap();
        }
        let _ = fs::remove_file(dir.join("..data_tmp"));
        std::os::unix::fs::symlink(&stamp, dir.join("..data_tmp")).unwrap();
        fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        stamp
    };
    let first = publish(0);
    for name in &names {
        fs::remove_file(dir.join(name)).unwrap();
        std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
    }
    // Watch the volume from here on, as the gateway would from its start.
    h.reloader.stop();
    let reloader = watch::spawn(h.registry.clone(), vec![dir.to_owned()], FAST);
    h.registry.reload(Trigger::Admin);
    let start = h.generation();
    assert_eq!(h.avatars_description(), "v0");

    let mut previous = first;
    let updates = 25;
    for version in 1..=updates {
        let stamp = publish(version);
        fs::remove_dir_all(dir.join(&previous)).unwrap();
        previous = stamp;
        let expected = format!("v{version}");
        assert!(
            wait_until(5, || h.avatars_description() == expected),
            "update {version} was not served"
        );
        assert_eq!(
            h.generation(),
            start + version as u64,
            "update {version} loaded more than once"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        h.generation(),
        start + updates as u64,
        "a late event loaded a set twice"
    );
    assert_eq!(h.registry.current().profiles.len(), names.len());
    reloader.stop();
    h.finish();
}

#[test]
fn editor_style_save_is_picked_up() {
    let h = Harness::start(FAST, true);
    let dir = h.dir.path();
    // Rename away, write the new file, delete the backup (vim's `backupcopy=no`).
    fs::rename(dir.join("avatars.yaml"), dir.join("avatars.yaml~")).unwrap();
    write(dir, "avatars.yaml", &avatars_text("saved"));
    fs::remove_file(dir.join("avatars.yaml~")).unwrap();
    assert!(wait_until(5, || h.avatars_description() == "saved"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(h.generation(), 2);
    h.finish();
}

#[test]
fn unchanged_content_does_not_bump_the_generation() {
    let h = Harness::start(FAST, true);
    let path = h.dir.path().join("avatars.yaml");
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text).unwrap();
    assert!(wait_until(5, || h.reloads("watch", "unchanged") >= 1.0));
    assert_eq!(h.generation(), 1);
    assert_eq!(h.metric("postgate_config_last_reload_successful", &[]), 1.0);
    h.finish();
}

#[test]
fn the_periodic_check_reloads_without_events() {
    let settings = WatchSettings {
        interval: Duration::from_millis(150),
        ..FAST
    };
    let h = Harness::start(settings, false);
    write(h.dir.path(), "avatars.yaml", &avatars_text("polled"));
    assert!(wait_until(5, || h.avatars_description() == "polled"));
    assert!(h.reloads("periodic", "success") >= 1.0);
    assert_eq!(h.generation(), 2);
    h.finish();
}

#[test]
fn a_requested_reload_is_counted_under_its_trigger() {
    let h = Harness::start(FAST, false);
    write(h.dir.path(), "avatars.yaml", &avatars_text("hup"));
    h.reloader.request(Trigger::Signal);
    assert!(wait_until(5, || h.avatars_description() == "hup"));
    assert_eq!(h.reloads("signal", "success"), 1.0);
    h.finish();
}
