//! The served snapshot and its reloads: build the next snapshot off to the side, then publish it
//! with one atomic swap — or keep serving the last good one and report why.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use super::{Snapshot, load_reusing};
use crate::auth::AppKeys;
use crate::config::{GatewayConfig, process_env};
use crate::metrics::{Metrics, ReloadResult, ServedSet, Trigger};
use crate::profile::Diagnostic;
use crate::ratelimit::{AppLimits, Limiters, RateClock};

/// Where app keys and rate limits come from on each reload.
#[derive(Debug, Clone)]
pub enum AppsSource {
    /// Fixed for the process's life (dev mode, tests).
    Fixed(AppKeys, AppLimits),
    /// Like `Fixed`, with end-user token rules (tests).
    FixedWithTokens(AppKeys, AppLimits, crate::identity::TokenApps),
    /// The `apps` and `default_rate_limit` sections of this config file (plus `POSTGATE_*`
    /// overrides), re-read on every reload so keys rotate and limits change without a restart.
    ConfigFile(Option<PathBuf>),
}

/// What a registry loads.
#[derive(Debug, Clone)]
pub struct Source {
    pub policies: PathBuf,
    /// The stores profiles may use.
    pub stores: Arc<super::Stores>,
    pub apps: AppsSource,
}

/// The outcome of one reload attempt.
#[derive(Debug, Clone)]
pub struct ReloadReport {
    pub result: ReloadResult,
    /// The generation served after the attempt.
    pub generation: u64,
    pub profiles: usize,
    /// Errors (on failure) and warnings.
    pub diagnostics: Vec<Diagnostic>,
}

type OnPublish = Box<dyn Fn(&Snapshot) + Send + Sync>;

/// Owns the served snapshot. Requests take `current()` once and use it to the end.
pub struct Registry {
    current: ArcSwap<Snapshot>,
    source: Source,
    allow_empty: bool,
    metrics: Arc<Metrics>,
    /// One reload at a time, whatever triggered it.
    reloading: Mutex<()>,
    on_publish: Option<OnPublish>,
    /// The time rate limiters read.
    clock: RateClock,
}

impl Registry {
    /// Loads the first snapshot; fails with every diagnostic if it is invalid.
    pub fn start(
        source: Source,
        allow_empty: bool,
        metrics: Arc<Metrics>,
        on_publish: Option<OnPublish>,
    ) -> Result<Registry, Vec<Diagnostic>> {
        Registry::start_with_clock(source, allow_empty, metrics, on_publish, RateClock::monotonic())
    }

    /// `start`, with rate limiters reading `clock` (tests give a manual one).
    pub fn start_with_clock(
        source: Source,
        allow_empty: bool,
        metrics: Arc<Metrics>,
        on_publish: Option<OnPublish>,
        clock: RateClock,
    ) -> Result<Registry, Vec<Diagnostic>> {
        let registry = Registry {
            current: ArcSwap::from_pointee(Snapshot::default()),
            source,
            allow_empty,
            metrics,
            reloading: Mutex::new(()),
            on_publish,
            clock,
        };
        let report = registry.reload(Trigger::Startup);
        if report.result == ReloadResult::Failure {
            return Err(report.diagnostics);
        }
        Ok(registry)
    }

    /// The snapshot being served.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The metrics, shared (for background work).
    pub fn metrics_arc(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Re-reads everything and publishes it if it is valid and different.
    pub fn reload(&self, trigger: Trigger) -> ReloadReport {
        let _guard = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let served = self.current.load_full();
        let report = match self.next_snapshot(&served, trigger) {
            Ok(None) => ReloadReport {
                result: ReloadResult::Unchanged,
                generation: served.generation,
                profiles: served.profiles.len(),
                diagnostics: served.warnings.clone(),
            },
            Ok(Some(next)) => {
                let next = Arc::new(next);
                if let Some(on_publish) = &self.on_publish {
                    on_publish(&next);
                }
                self.current.store(next.clone());
                tracing::info!(
                    trigger = trigger.as_str(),
                    generation = next.generation,
                    profiles = next.profiles.len(),
                    hash = &next.content_hash[..12],
                    "profile set published"
                );
                for warning in &next.warnings {
                    tracing::warn!(%warning, "profile warning");
                }
                ReloadReport {
                    result: ReloadResult::Success,
                    generation: next.generation,
                    profiles: next.profiles.len(),
                    diagnostics: next.warnings.clone(),
                }
            }
            Err(diagnostics) => {
                tracing::error!(
                    trigger = trigger.as_str(),
                    serving_generation = served.generation,
                    errors = diagnostics.iter().filter(|d| d.is_error()).count(),
                    "reload refused; the last good profile set stays served"
                );
                for diagnostic in &diagnostics {
                    tracing::error!(%diagnostic, "profile diagnostic");
                }
                ReloadReport {
                    result: ReloadResult::Failure,
                    generation: served.generation,
                    profiles: served.profiles.len(),
                    diagnostics,
                }
            }
        };
        let now = self.current.load();
        let hash_prefix = u64::from_str_radix(now.content_hash.get(..12).unwrap_or("0"), 16).unwrap_or(0);
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.metrics.reload(
            trigger,
            report.result,
            &ServedSet {
                generation: now.generation,
                profiles: now.profiles.len(),
                hash_prefix,
            },
            unix,
        );
        report
    }

    /// The next snapshot, `None` when the content equals what is served.
    fn next_snapshot(&self, served: &Snapshot, trigger: Trigger) -> Result<Option<Snapshot>, Vec<Diagnostic>> {
        let (apps, limits, tokens) = self.load_apps()?;
        let previous = (served.generation > 0).then_some(served);
        let mut next = load_reusing(&self.source.policies, &self.source.stores, previous)?;
        let mut hasher = Sha256::new();
        hasher.update(next.content_hash.as_bytes());
        hasher.update(apps.fingerprint());
        hasher.update(limits.fingerprint());
        hasher.update(tokens.fingerprint());
        next.content_hash = hex::encode(hasher.finalize());
        if served.generation > 0 && next.content_hash == served.content_hash {
            return Ok(None);
        }
        if next.profiles.is_empty() && !served.profiles.is_empty() && !self.allow_empty {
            return Err(vec![
                Diagnostic::error(
                    "",
                    format!(
                        "the directory has no profiles; refusing to replace the {} served (set `reload.allow_empty: true` to allow it)",
                        served.profiles.len()
                    ),
                )
                .in_file(self.source.policies.display().to_string()),
            ]);
        }
        if next.profiles.is_empty() && trigger == Trigger::Startup {
            tracing::warn!(dir = %self.source.policies.display(), "no profiles to serve");
        }
        next.generation = served.generation + 1;
        next.apps = Arc::new(apps);
        next.limiters = Arc::new(Limiters::build(&limits, &served.limiters, &self.clock));
        next.identities = Arc::new(crate::identity::Identities::build(&tokens, &served.identities));
        Ok(Some(next))
    }

    fn load_apps(&self) -> Result<(AppKeys, AppLimits, crate::identity::TokenApps), Vec<Diagnostic>> {
        match &self.source.apps {
            AppsSource::Fixed(keys, limits) => Ok((keys.clone(), limits.clone(), Default::default())),
            AppsSource::FixedWithTokens(keys, limits, tokens) => Ok((keys.clone(), limits.clone(), tokens.clone())),
            AppsSource::ConfigFile(path) => {
                let shown = path
                    .as_ref()
                    .map_or("environment".to_owned(), |p| p.display().to_string());
                let config = GatewayConfig::load(path.as_deref())
                    .map_err(|e| vec![Diagnostic::error("", e.to_string()).in_file(&shown)])?;
                let keys = config.app_keys(&process_env);
                let limits = config.app_limits();
                let tokens = config.token_apps();
                match (keys, limits, tokens) {
                    (Ok(keys), Ok(limits), Ok(tokens)) => Ok((keys, limits, tokens)),
                    (keys, limits, tokens) => Err(keys
                        .err()
                        .into_iter()
                        .chain(limits.err())
                        .chain(tokens.err())
                        .flatten()
                        .map(|e| Diagnostic::error("", e).in_file(&shown))
                        .collect()),
                }
            }
        }
    }
}
