//! State builders: app keys, a copy of `policies/`, registries and the HTTP `AppState`.

use super::repo_path;
use actix_web::web;
use postgate::auth::AppKeys;
use postgate::http::{self, AppState};
use postgate::metrics::Metrics;
use postgate::ratelimit::{AppLimits, RateClock, RateLimit};
use postgate::registry::{AppsSource, Registry, Source};
use postgate::sign::Store;
use std::path::Path;
use std::sync::Arc;

pub const KEYS: &[(&str, &str)] = &[
    ("web", "test-key-web-0123456789"),
    ("mobile", "test-key-mobile-0123456789"),
    ("ingest", "test-key-ingest-0123456789"),
    ("other", "test-key-other-0123456789"),
    ("throttled", "test-key-throttled-0123456789"),
];

pub fn key(app: &str) -> &'static str {
    KEYS.iter().find(|(a, _)| *a == app).unwrap().1
}

pub fn app_keys() -> AppKeys {
    let mut keys = AppKeys::new();
    for (app, key) in KEYS {
        keys.add(app, key).unwrap();
    }
    keys
}

/// Copies `policies/` into a fresh directory.
pub fn policies_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo_path("policies")).unwrap().flatten() {
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

/// `throttled` may sign one form, then one every two seconds; the other apps are unlimited.
pub fn app_limits() -> AppLimits {
    let mut limits = AppLimits::new();
    limits.set("throttled", RateLimit::new(0.5, Some(1)).unwrap());
    limits
}

/// A registry of `dir` with the test apps, whose rate limiters read a clock that stands still.
pub fn registry(dir: &Path) -> Arc<Registry> {
    registry_with(dir, app_limits(), RateClock::manual(Default::default()))
}

pub fn registry_with(dir: &Path, limits: AppLimits, clock: RateClock) -> Arc<Registry> {
    registry_signing(dir, limits, clock, aws_store())
}

/// A registry of `dir` whose one store, `default`, is `store`.
pub fn registry_signing(dir: &Path, limits: AppLimits, clock: RateClock, store: Store) -> Arc<Registry> {
    let source = Source {
        policies: dir.to_owned(),
        stores: Arc::new([("default".to_owned(), Arc::new(store))].into_iter().collect()),
        apps: AppsSource::Fixed(app_keys(), limits),
    };
    Arc::new(Registry::start_with_clock(source, false, Arc::new(Metrics::new()), None, clock).unwrap())
}

pub fn aws_store() -> Store {
    super::fixture::example_store()
}

pub fn state(registry: Arc<Registry>) -> web::Data<AppState> {
    web::Data::new(app_state(registry))
}

/// The gateway's state with the config's defaults, the test upload keys and no dev pages.
pub fn app_state(registry: Arc<Registry>) -> AppState {
    let defaults = postgate::config::GatewayConfig::default();
    AppState {
        shared_limits: None,
        registry,
        max_body_bytes: defaults.max_body_bytes,
        body_timeout: defaults.body_timeout,
        dev_pages: None,
        uploads: uploads(),
    }
}

/// The upload routes' keys (`test-1`, sealing) and a store client that gives up fast.
pub fn uploads() -> http::Uploads {
    http::Uploads {
        tokens: Some(Arc::new(token_keys("test-1"))),
        client: postgate::store::StoreClient::new(postgate::store::ClientConfig {
            connect_timeout: std::time::Duration::from_millis(500),
            timeout: std::time::Duration::from_secs(5),
            long_timeout: std::time::Duration::from_secs(30),
            attempts: 2,
        }),
        public_url: Some("http://gateway.test".into()),
        notifier: postgate::events::Notifier::new(None, Arc::new(postgate::metrics::Metrics::new())),
        audit: None,
    }
}

/// Token keys `test-1` and `test-2`, `current` sealing.
pub fn token_keys(current: &str) -> postgate::upload::TokenKeys {
    postgate::upload::TokenKeys::new(
        current,
        vec![
            (
                "test-1".into(),
                postgate::secret::Secret::new("test-token-key-1-0123456789abcdef"),
            ),
            (
                "test-2".into(),
                postgate::secret::Secret::new("test-token-key-2-0123456789abcdef"),
            ),
        ],
    )
    .unwrap()
}
