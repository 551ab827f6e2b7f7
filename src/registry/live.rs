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
    /// Like `Fixed`, with end-user token rules and event endpoints (dev mode).
    FixedWithTokens(AppKeys, AppLimits, crate::identity::TokenApps, crate::events::Endpoints),
    /// The `apps` and `default_rate_limit` sections of this config file (plus `POSTGATE_*`
    /// overrides), re-read on every reload so keys rotate and limits change without a restart.
    ConfigFile(Option<PathBuf>),
}

/// The apps part of a snapshot: keys, rate limits, identities, event endpoints.
type LoadedApps = (AppKeys, AppLimits, crate::identity::TokenApps, crate::events::Endpoints);

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
    /// The parts that failed (`profiles`, `apps`); the others were published when they changed.
    pub failed_parts: Vec<&'static str>,
}

/// What one reload read: the snapshot to publish (if anything changed), the diagnostics, and the
/// parts that failed.
struct Next {
    snapshot: Option<Snapshot>,
    diagnostics: Vec<Diagnostic>,
    failed_parts: Vec<&'static str>,
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
    /// The last failure logged (its parts and diagnostics), so a failure that persists is logged
    /// once, not at every periodic check.
    last_failure: Mutex<Option<String>>,
}

/// The profile part of `served`, for a reload whose profiles failed.
fn profiles_as_served(served: &Snapshot) -> Snapshot {
    Snapshot {
        profiles: served.profiles.clone(),
        warnings: served.warnings.clone(),
        content_hash: served.profiles_hash.clone(),
        profiles_hash: served.profiles_hash.clone(),
        digests: served.digests.clone(),
        stores: served.stores.clone(),
        ..Snapshot::default()
    }
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
            last_failure: Mutex::new(None),
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

    /// Re-reads everything and publishes what is valid and different. The profile set and the
    /// apps (keys, rate limits, token rules) are published independently: a broken profile file
    /// does not stop a key revocation, and a broken keys file does not stop a profile change.
    pub fn reload(&self, trigger: Trigger) -> ReloadReport {
        let _guard = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let served = self.current.load_full();
        let next = self.next_snapshot(&served, trigger);
        let failed = !next.failed_parts.is_empty();
        let published = match next.snapshot {
            Some(snapshot) => {
                let snapshot = Arc::new(snapshot);
                if let Some(on_publish) = &self.on_publish {
                    on_publish(&snapshot);
                }
                self.current.store(snapshot.clone());
                tracing::info!(
                    trigger = trigger.as_str(),
                    generation = snapshot.generation,
                    profiles = snapshot.profiles.len(),
                    hash = &snapshot.content_hash[..12],
                    kept_from_before = next.failed_parts.join(",").as_str(),
                    "profile set published"
                );
                for warning in &snapshot.warnings {
                    tracing::warn!(%warning, "profile warning");
                }
                true
            }
            None => false,
        };
        self.log_failure_state(trigger, &served, &next.failed_parts, &next.diagnostics);
        let now = self.current.load();
        let report = ReloadReport {
            result: if failed {
                ReloadResult::Failure
            } else if published {
                ReloadResult::Success
            } else {
                ReloadResult::Unchanged
            },
            generation: now.generation,
            profiles: now.profiles.len(),
            diagnostics: if failed { next.diagnostics } else { now.warnings.clone() },
            failed_parts: next.failed_parts,
        };
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
        self.metrics.failing_parts(&report.failed_parts);
        report
    }

    /// Logs a failing state when it starts or changes, and its end; a failure that stays the
    /// same at every periodic check is logged once.
    fn log_failure_state(&self, trigger: Trigger, served: &Snapshot, parts: &[&str], diagnostics: &[Diagnostic]) {
        let mut last = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
        if parts.is_empty() {
            if last.take().is_some() {
                tracing::info!(trigger = trigger.as_str(), "reload succeeds again");
            }
            return;
        }
        let signature = format!(
            "{}\n{}",
            parts.join(","),
            diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
        if last.as_deref() == Some(signature.as_str()) {
            tracing::debug!(trigger = trigger.as_str(), "reload still refused, as logged before");
            return;
        }
        *last = Some(signature);
        tracing::error!(
            trigger = trigger.as_str(),
            failed = parts.join(",").as_str(),
            serving_generation = served.generation,
            errors = diagnostics.iter().filter(|d| d.is_error()).count(),
            "reload refused for the failed parts; they stay as last served, the rest is published"
        );
        for diagnostic in diagnostics {
            tracing::error!(%diagnostic, "reload diagnostic");
        }
    }

    /// What to publish: the profiles and the apps, each new if it loads and as served if not.
    fn next_snapshot(&self, served: &Snapshot, trigger: Trigger) -> Next {
        let apps = self.load_apps();
        let previous = (served.generation > 0).then_some(served);
        let profiles = load_reusing(&self.source.policies, &self.source.stores, previous)
            .and_then(|next| self.refuse_emptying(served, next, trigger));
        let mut diagnostics = Vec::new();
        let mut failed_parts = Vec::new();
        let starting = served.generation == 0;
        let (mut next, (apps, limits, tokens, events)) = match (profiles, apps) {
            (Ok(next), Ok(apps)) => (next, apps),
            (Err(profile_errors), Ok(apps)) if !starting => {
                failed_parts.push("profiles");
                diagnostics.extend(profile_errors);
                (profiles_as_served(served), apps)
            }
            (Ok(next), Err(app_errors)) if !starting => {
                failed_parts.push("apps");
                diagnostics.extend(app_errors);
                let apps = (
                    (*served.apps).clone(),
                    served.app_limits.clone(),
                    served.identities.config.clone(),
                    (*served.events).clone(),
                );
                (next, apps)
            }
            (profiles, apps) => {
                if let Err(errors) = profiles {
                    failed_parts.push("profiles");
                    diagnostics.extend(errors);
                }
                if let Err(errors) = apps {
                    failed_parts.push("apps");
                    diagnostics.extend(errors);
                }
                return Next {
                    snapshot: None,
                    diagnostics,
                    failed_parts,
                };
            }
        };
        let mut hasher = Sha256::new();
        hasher.update(next.profiles_hash.as_bytes());
        hasher.update(apps.fingerprint());
        hasher.update(limits.fingerprint());
        hasher.update(tokens.fingerprint());
        hasher.update(events.fingerprint());
        next.content_hash = hex::encode(hasher.finalize());
        if !starting && next.content_hash == served.content_hash {
            return Next {
                snapshot: None,
                diagnostics,
                failed_parts,
            };
        }
        if next.profiles.is_empty() && trigger == Trigger::Startup {
            tracing::warn!(dir = %self.source.policies.display(), "no profiles to serve");
        }
        next.generation = served.generation + 1;
        next.apps = Arc::new(apps);
        next.limiters = Arc::new(Limiters::build(&limits, &served.limiters, &self.clock));
        next.app_limits = limits;
        next.identities = Arc::new(crate::identity::Identities::build(&tokens, &served.identities));
        next.events = Arc::new(events);
        Next {
            snapshot: Some(next),
            diagnostics,
            failed_parts,
        }
    }

    /// Refuses a set that empties a served one (unless `reload.allow_empty`).
    fn refuse_emptying(
        &self,
        served: &Snapshot,
        mut next: Snapshot,
        _trigger: Trigger,
    ) -> Result<Snapshot, Vec<Diagnostic>> {
        next.profiles_hash = next.content_hash.clone();
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
        Ok(next)
    }

    fn load_apps(&self) -> Result<LoadedApps, Vec<Diagnostic>> {
        match &self.source.apps {
            AppsSource::Fixed(keys, limits) => {
                Ok((keys.clone(), limits.clone(), Default::default(), Default::default()))
            }
            AppsSource::FixedWithTokens(keys, limits, tokens, events) => {
                Ok((keys.clone(), limits.clone(), tokens.clone(), events.clone()))
            }
            AppsSource::ConfigFile(path) => {
                let shown = path
                    .as_ref()
                    .map_or("environment".to_owned(), |p| p.display().to_string());
                let config = GatewayConfig::load(path.as_deref())
                    .map_err(|e| vec![Diagnostic::error("", e.to_string()).in_file(&shown)])?;
                let keys = config.app_keys(&process_env);
                let limits = config.app_limits();
                let tokens = config.token_apps();
                let events = config.app_events(&process_env);
                match (keys, limits, tokens, events) {
                    (Ok(keys), Ok(limits), Ok(tokens), Ok(events)) => Ok((keys, limits, tokens, events)),
                    (keys, limits, tokens, events) => Err(keys
                        .err()
                        .into_iter()
                        .chain(limits.err())
                        .chain(tokens.err())
                        .chain(events.err())
                        .flatten()
                        .map(|e| Diagnostic::error("", e).in_file(&shown))
                        .collect()),
                }
            }
        }
    }
}
