//! Prometheus metrics: every name is a constant here, and labels stay bounded — profile names
//! come only from the loaded set (anything else is `_unknown`), outcomes and triggers are fixed
//! words. Never keys, user ids or client-supplied strings.

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub const PRESIGN_REQUESTS: &str = "postgate_presign_requests_total";
pub const PRESIGN_DURATION: &str = "postgate_presign_duration_seconds";
pub const EXPIRY_CLAMPED: &str = "postgate_presign_expiry_clamped_total";
pub const RELOADS: &str = "postgate_config_reloads_total";
pub const LAST_RELOAD_SUCCESSFUL: &str = "postgate_config_last_reload_successful";
pub const LAST_RELOAD_SUCCESS_TIMESTAMP: &str = "postgate_config_last_reload_success_timestamp_seconds";
pub const GENERATION: &str = "postgate_config_generation";
pub const CONFIG_HASH: &str = "postgate_config_hash";
pub const PROFILES_LOADED: &str = "postgate_profiles_loaded";
pub const BUILD_INFO: &str = "postgate_build_info";
pub const COMPLETES: &str = "postgate_upload_completes_total";
pub const VERIFIED_BYTES: &str = "postgate_upload_verified_bytes_total";
pub const MULTIPART_REQUESTS: &str = "postgate_multipart_requests_total";
pub const CREDENTIALS_EXPIRY: &str = "postgate_store_credentials_expiry_timestamp_seconds";
pub const CREDENTIALS_VALID: &str = "postgate_store_credentials_valid";
pub const CREDENTIALS_REFRESHES: &str = "postgate_store_credentials_refreshes_total";
pub const JWKS_FETCHES: &str = "postgate_jwks_fetches_total";
pub const END_USER_TOKENS: &str = "postgate_end_user_tokens_total";
pub const RATE_LIMIT_BACKEND_UP: &str = "postgate_rate_limit_backend_up";
pub const RATE_LIMIT_FALLBACKS: &str = "postgate_rate_limit_backend_fallbacks_total";
pub const CONFIG_PART_FAILING: &str = "postgate_config_part_failing";
pub const LOG_LINES_DROPPED: &str = "postgate_log_lines_dropped_total";
pub const EVENTS: &str = "postgate_events_total";
pub const EVENT_ATTEMPTS: &str = "postgate_event_delivery_attempts_total";
pub const EVENT_DURATION: &str = "postgate_event_delivery_duration_seconds";
pub const EVENT_QUEUE_DEPTH: &str = "postgate_event_queue_depth";
pub const EVENT_QUEUE_OLDEST: &str = "postgate_event_queue_oldest_age_seconds";
pub const EVENT_DEAD_LETTERS: &str = "postgate_event_dead_letters";
pub const AUDIT_LINES: &str = "postgate_audit_lines_total";

/// The `result` of `postgate_events_total`.
pub const EVENT_RESULTS: &[&str] = &[
    "delivered",
    "refused",
    "undelivered",
    "queued",
    "queue_failed",
    "retried",
    "dead_lettered",
    "replayed",
];
/// The `outcome` of `postgate_event_delivery_attempts_total`.
pub const ATTEMPT_OUTCOMES: &[&str] = &["2xx", "4xx", "5xx", "redirect", "timeout", "unreachable"];
/// The upper bounds of `postgate_event_delivery_duration_seconds`' buckets.
pub const EVENT_DURATION_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The parts of a reload that publish independently.
pub const CONFIG_PARTS: &[&str] = &["profiles", "apps"];

/// The `profile` label for names that are not loaded.
pub const UNKNOWN_PROFILE: &str = "_unknown";

/// The upper bounds of `postgate_presign_duration_seconds`' buckets. Signing takes
/// microseconds; the buckets resolve that and the slow tail.
pub const PRESIGN_DURATION_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1,
];

/// How one presign request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Signed,
    Refused,
    UnknownProfile,
    Unauthenticated,
    Forbidden,
    BadRequest,
    RateLimited,
    Error,
}

impl Outcome {
    /// Every outcome: the `outcome` label takes no other value.
    pub const ALL: &[Outcome] = &[
        Outcome::Signed,
        Outcome::Refused,
        Outcome::UnknownProfile,
        Outcome::Unauthenticated,
        Outcome::Forbidden,
        Outcome::BadRequest,
        Outcome::RateLimited,
        Outcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Signed => "signed",
            Outcome::Refused => "refused",
            Outcome::UnknownProfile => "unknown_profile",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Forbidden => "forbidden",
            Outcome::BadRequest => "bad_request",
            Outcome::RateLimited => "rate_limited",
            Outcome::Error => "error",
        }
    }
}

/// How one `complete` ended: verified, or the rule the object broke, or why it could not be
/// checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompleteOutcome {
    Verified,
    Size,
    ContentType,
    Metadata,
    Checksum,
    Sniffed,
    Parts,
    NotFound,
    /// An object at the key that is not this upload's (left untouched).
    NotThisUpload,
    Exists,
    Rejected,
    StoreUnavailable,
    Error,
}

impl CompleteOutcome {
    /// Every outcome: the label takes no other value.
    pub const ALL: &[CompleteOutcome] = &[
        CompleteOutcome::Verified,
        CompleteOutcome::Size,
        CompleteOutcome::ContentType,
        CompleteOutcome::Metadata,
        CompleteOutcome::Checksum,
        CompleteOutcome::Sniffed,
        CompleteOutcome::Parts,
        CompleteOutcome::NotFound,
        CompleteOutcome::NotThisUpload,
        CompleteOutcome::Exists,
        CompleteOutcome::Rejected,
        CompleteOutcome::StoreUnavailable,
        CompleteOutcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CompleteOutcome::Verified => "verified",
            CompleteOutcome::Size => "size",
            CompleteOutcome::ContentType => "content_type",
            CompleteOutcome::Metadata => "metadata",
            CompleteOutcome::Checksum => "checksum",
            CompleteOutcome::Sniffed => "sniffed",
            CompleteOutcome::Parts => "parts",
            CompleteOutcome::NotFound => "not_found",
            CompleteOutcome::NotThisUpload => "not_this_upload",
            CompleteOutcome::Exists => "exists",
            CompleteOutcome::Rejected => "rejected",
            CompleteOutcome::StoreUnavailable => "store_unavailable",
            CompleteOutcome::Error => "error",
        }
    }
}

/// A multipart call other than complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultipartOperation {
    Create,
    SignParts,
    ListParts,
    Abort,
}

impl MultipartOperation {
    pub const ALL: &[MultipartOperation] = &[
        MultipartOperation::Create,
        MultipartOperation::SignParts,
        MultipartOperation::ListParts,
        MultipartOperation::Abort,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MultipartOperation::Create => "create",
            MultipartOperation::SignParts => "sign_parts",
            MultipartOperation::ListParts => "list_parts",
            MultipartOperation::Abort => "abort",
        }
    }
}

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Startup,
    Watch,
    Signal,
    Admin,
    Periodic,
}

impl Trigger {
    /// Every trigger: the `trigger` label takes no other value.
    pub const ALL: &[Trigger] = &[
        Trigger::Startup,
        Trigger::Watch,
        Trigger::Signal,
        Trigger::Admin,
        Trigger::Periodic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Watch => "watch",
            Trigger::Signal => "signal",
            Trigger::Admin => "admin",
            Trigger::Periodic => "periodic",
        }
    }
}

/// How a reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// A new generation is served.
    Success,
    /// The content is what is already served; nothing changed.
    Unchanged,
    /// Refused; the last good snapshot is still served.
    Failure,
}

impl ReloadResult {
    /// Every result: the `result` label takes no other value.
    pub const ALL: &[ReloadResult] = &[ReloadResult::Success, ReloadResult::Unchanged, ReloadResult::Failure];

    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Success => "success",
            ReloadResult::Unchanged => "unchanged",
            ReloadResult::Failure => "failure",
        }
    }
}

/// The gateway's metrics, in their own registry.
pub struct Metrics {
    registry: Registry,
    /// Every metric family the gateway registers, by name (`families`).
    names: Vec<String>,
    presign_requests: IntCounterVec,
    presign_duration: HistogramVec,
    expiry_clamped: IntCounterVec,
    reloads: IntCounterVec,
    last_reload_successful: IntGauge,
    last_reload_success_timestamp: Gauge,
    generation: IntGauge,
    config_hash: Gauge,
    profiles_loaded: IntGauge,
    completes: IntCounterVec,
    verified_bytes: IntCounterVec,
    multipart_requests: IntCounterVec,
    credentials_expiry: GaugeVec,
    credentials_valid: IntGaugeVec,
    credentials_refreshes: IntCounterVec,
    jwks_fetches: IntCounterVec,
    end_user_tokens: IntCounterVec,
    rate_limit_backend_up: IntGauge,
    rate_limit_fallbacks: prometheus::IntCounter,
    part_failing: IntGaugeVec,
    log_lines_dropped: prometheus::IntCounter,
    log_drops_seen: std::sync::atomic::AtomicU64,
    events: EventMetrics,
}

/// The families of upload events and the audit log.
struct EventMetrics {
    events: IntCounterVec,
    attempts: IntCounterVec,
    duration: HistogramVec,
    depth: IntGaugeVec,
    oldest: GaugeVec,
    dead: IntGaugeVec,
    audit: IntCounterVec,
}

impl EventMetrics {
    fn new() -> EventMetrics {
        let counter =
            |name, help, labels: &[&str]| IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
        let gauge = |name, help| IntGaugeVec::new(Opts::new(name, help), &["app"]).expect("valid metric");
        EventMetrics {
            events: counter(
                EVENTS,
                "Upload events by app, type and result (delivered, refused, undelivered, queued, queue_failed, retried, dead_lettered, replayed).",
                &["app", "type", "result"],
            ),
            attempts: counter(
                EVENT_ATTEMPTS,
                "Event delivery attempts by app and outcome (2xx, 4xx, 5xx, redirect, timeout, unreachable).",
                &["app", "outcome"],
            ),
            duration: HistogramVec::new(
                HistogramOpts::new(EVENT_DURATION, "Time of one event delivery attempt, by app.")
                    .buckets(EVENT_DURATION_BUCKETS.to_vec()),
                &["app"],
            )
            .expect("valid metric"),
            depth: gauge(
                EVENT_QUEUE_DEPTH,
                "Queued events not yet delivered or dead-lettered, by app.",
            ),
            oldest: GaugeVec::new(
                Opts::new(
                    EVENT_QUEUE_OLDEST,
                    "Age of the oldest undelivered queued event (0: none), by app.",
                ),
                &["app"],
            )
            .expect("valid metric"),
            dead: gauge(EVENT_DEAD_LETTERS, "Events in the app's dead-letter stream."),
            audit: counter(AUDIT_LINES, "Audit log lines by result (written, failed).", &["result"]),
        }
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.events.clone()),
            Box::new(self.attempts.clone()),
            Box::new(self.duration.clone()),
            Box::new(self.depth.clone()),
            Box::new(self.oldest.clone()),
            Box::new(self.dead.clone()),
            Box::new(self.audit.clone()),
        ]
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let presign_requests = IntCounterVec::new(
            Opts::new(PRESIGN_REQUESTS, "Presign requests by profile and outcome."),
            &["profile", "outcome"],
        )
        .expect("valid metric");
        let presign_duration = HistogramVec::new(
            HistogramOpts::new(PRESIGN_DURATION, "Time to answer a presign request, by profile.")
                .buckets(PRESIGN_DURATION_BUCKETS.to_vec()),
            &["profile"],
        )
        .expect("valid metric");
        let expiry_clamped = IntCounterVec::new(
            Opts::new(EXPIRY_CLAMPED, "Forms whose expiry was cut to the credentials' expiry."),
            &["profile"],
        )
        .expect("valid metric");
        let reloads = IntCounterVec::new(
            Opts::new(RELOADS, "Profile set reloads by trigger and result."),
            &["trigger", "result"],
        )
        .expect("valid metric");
        let last_reload_successful = IntGauge::new(
            LAST_RELOAD_SUCCESSFUL,
            "Whether the last reload attempt succeeded (1) or failed (0).",
        )
        .expect("valid metric");
        let last_reload_success_timestamp = Gauge::new(
            LAST_RELOAD_SUCCESS_TIMESTAMP,
            "Unix time of the last successful reload.",
        )
        .expect("valid metric");
        let generation =
            IntGauge::new(GENERATION, "Generation of the profile set being served.").expect("valid metric");
        let config_hash = Gauge::new(
            CONFIG_HASH,
            "First 48 bits of the SHA-256 of the served profile set; equal on replicas serving the same set.",
        )
        .expect("valid metric");
        let profiles_loaded = IntGauge::new(PROFILES_LOADED, "Profiles in the served set.").expect("valid metric");
        let build_info =
            IntGaugeVec::new(Opts::new(BUILD_INFO, "postgate's version."), &["version"]).expect("valid metric");
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let completes = IntCounterVec::new(
            Opts::new(
                COMPLETES,
                "Upload completions by profile and outcome (verified, or the rule broken).",
            ),
            &["profile", "outcome"],
        )
        .expect("valid metric");
        let verified_bytes = IntCounterVec::new(
            Opts::new(VERIFIED_BYTES, "Bytes of uploads verified by complete, by profile."),
            &["profile"],
        )
        .expect("valid metric");
        let multipart_requests = IntCounterVec::new(
            Opts::new(
                MULTIPART_REQUESTS,
                "Multipart calls other than complete, by profile, operation and outcome.",
            ),
            &["profile", "operation", "outcome"],
        )
        .expect("valid metric");

        let credentials_expiry = GaugeVec::new(
            Opts::new(
                CREDENTIALS_EXPIRY,
                "Unix time the credentials of a store expire; absent for credentials that do not expire.",
            ),
            &["store"],
        )
        .expect("valid metric");
        let credentials_valid = IntGaugeVec::new(
            Opts::new(
                CREDENTIALS_VALID,
                "Whether a store has credentials to sign with (1) or not (0: presign answers 503).",
            ),
            &["store"],
        )
        .expect("valid metric");
        let credentials_refreshes = IntCounterVec::new(
            Opts::new(
                CREDENTIALS_REFRESHES,
                "Credential fetches by store and result (ok, failed).",
            ),
            &["store", "result"],
        )
        .expect("valid metric");
        let jwks_fetches = IntCounterVec::new(
            Opts::new(JWKS_FETCHES, "JWKS fetches by app and result (ok, failed)."),
            &["app", "result"],
        )
        .expect("valid metric");
        let end_user_tokens = IntCounterVec::new(
            Opts::new(
                END_USER_TOKENS,
                "End-user tokens checked, by app and result (valid, malformed, algorithm, issuer, audience, unknown_key, signature, expired, not_yet_valid, claim_invalid, jwks_unavailable).",
            ),
            &["app", "result"],
        )
        .expect("valid metric");
        let rate_limit_backend_up = IntGauge::new(
            RATE_LIMIT_BACKEND_UP,
            "Whether the shared rate-limit backend answers (1) or the local limiter stands in (0).",
        )
        .expect("valid metric");
        let rate_limit_fallbacks = prometheus::IntCounter::new(
            RATE_LIMIT_FALLBACKS,
            "Rate-limit checks the local limiter answered because the shared backend failed.",
        )
        .expect("valid metric");
        let log_lines_dropped = prometheus::IntCounter::new(
            LOG_LINES_DROPPED,
            "Log lines dropped because the log reader fell behind (the writer's queue was full).",
        )
        .expect("valid metric");

        let part_failing = IntGaugeVec::new(
            Opts::new(
                CONFIG_PART_FAILING,
                "Whether the last reload of a part (profiles, apps) failed (1); it then serves as before.",
            ),
            &["part"],
        )
        .expect("valid metric");
        for part in CONFIG_PARTS {
            part_failing.with_label_values(&[part]).set(0);
        }

        let events = EventMetrics::new();
        let mut names: Vec<String> = Vec::new();
        for collector in [
            Box::new(presign_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(presign_duration.clone()),
            Box::new(expiry_clamped.clone()),
            Box::new(reloads.clone()),
            Box::new(last_reload_successful.clone()),
            Box::new(last_reload_success_timestamp.clone()),
            Box::new(generation.clone()),
            Box::new(config_hash.clone()),
            Box::new(profiles_loaded.clone()),
            Box::new(build_info),
            Box::new(completes.clone()),
            Box::new(verified_bytes.clone()),
            Box::new(multipart_requests.clone()),
            Box::new(credentials_expiry.clone()),
            Box::new(credentials_valid.clone()),
            Box::new(credentials_refreshes.clone()),
            Box::new(jwks_fetches.clone()),
            Box::new(end_user_tokens.clone()),
            Box::new(rate_limit_backend_up.clone()),
            Box::new(rate_limit_fallbacks.clone()),
            Box::new(part_failing.clone()),
            Box::new(log_lines_dropped.clone()),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ]
        .into_iter()
        .chain(events.collectors())
        {
            names.extend(collector.desc().iter().map(|desc| desc.fq_name.clone()));
            registry.register(collector).expect("metric names are unique");
        }
        Metrics {
            registry,
            names,
            presign_requests,
            presign_duration,
            expiry_clamped,
            reloads,
            last_reload_successful,
            last_reload_success_timestamp,
            generation,
            config_hash,
            profiles_loaded,
            completes,
            verified_bytes,
            multipart_requests,
            credentials_expiry,
            credentials_valid,
            credentials_refreshes,
            jwks_fetches,
            end_user_tokens,
            rate_limit_backend_up,
            rate_limit_fallbacks,
            part_failing,
            log_lines_dropped,
            log_drops_seen: std::sync::atomic::AtomicU64::new(0),
            events,
        }
    }

    /// The name of every metric family the gateway registers, its own (`postgate_*`) and the
    /// process collector's, whether or not it has a sample yet.
    pub fn families(&self) -> &[String] {
        &self.names
    }

    /// Marks which parts the last reload failed to load.
    pub fn failing_parts(&self, failed: &[&str]) {
        for part in CONFIG_PARTS {
            self.part_failing
                .with_label_values(&[part])
                .set(i64::from(failed.contains(part)));
        }
    }

    /// Records a credential fetch for `store`: its result, and the expiry of the credentials
    /// now signing (`None`: they do not expire; `valid` false: there are none).
    pub fn credentials(&self, store: &str, ok: bool, valid: bool, expires_at_unix: Option<f64>) {
        let result = if ok { "ok" } else { "failed" };
        self.credentials_refreshes.with_label_values(&[store, result]).inc();
        self.credentials_valid.with_label_values(&[store]).set(i64::from(valid));
        match expires_at_unix {
            Some(at) => self.credentials_expiry.with_label_values(&[store]).set(at),
            None => {
                let _ = self.credentials_expiry.remove_label_values(&[store]);
            }
        }
    }

    /// Marks whether `store` can sign (without a fetch: the credentials it had ran out).
    pub fn credentials_valid(&self, store: &str, valid: bool) {
        self.credentials_valid.with_label_values(&[store]).set(i64::from(valid));
    }

    /// Counts a JWKS fetch for `app` (a configured app name).
    pub fn jwks_fetch(&self, app: &str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.jwks_fetches.with_label_values(&[app, result]).inc();
    }

    /// Counts an end-user token for `app` (a configured app name): `valid` or a problem code.
    pub fn end_user_token(&self, app: &str, result: &'static str) {
        self.end_user_tokens.with_label_values(&[app, result]).inc();
    }

    /// Whether the shared rate-limit backend answers.
    pub fn rate_limit_backend(&self, up: bool) {
        self.rate_limit_backend_up.set(i64::from(up));
    }

    /// Counts a check the local limiter answered in the backend's place.
    pub fn rate_limit_fallback(&self) {
        self.rate_limit_fallbacks.inc();
    }

    /// Counts one `complete`; `profile` is a loaded profile's name or `UNKNOWN_PROFILE`.
    pub fn complete(&self, profile: &str, outcome: CompleteOutcome, verified_bytes: u64) {
        self.completes.with_label_values(&[profile, outcome.as_str()]).inc();
        if verified_bytes > 0 {
            self.verified_bytes.with_label_values(&[profile]).inc_by(verified_bytes);
        }
    }

    /// Counts one multipart call; `outcome` is a presign `Outcome`.
    pub fn multipart(&self, profile: &str, operation: MultipartOperation, outcome: Outcome) {
        self.multipart_requests
            .with_label_values(&[profile, operation.as_str(), outcome.as_str()])
            .inc();
    }

    /// Counts one presign request. `profile` must be a loaded profile's name or `UNKNOWN_PROFILE`.
    pub fn presign(&self, profile: &str, outcome: Outcome, seconds: f64) {
        self.presign_requests
            .with_label_values(&[profile, outcome.as_str()])
            .inc();
        self.presign_duration.with_label_values(&[profile]).observe(seconds);
    }

    pub fn expiry_clamped(&self, profile: &str) {
        self.expiry_clamped.with_label_values(&[profile]).inc();
    }

    /// Counts one upload event's result (`EVENT_RESULTS`); `app` is a configured app, an
    /// unknown event type is counted as `_unknown`.
    pub fn event(&self, app: &str, event_type: &str, result: &'static str) {
        let known = ["upload.completed", "upload.refused", "upload.aborted"];
        let event_type = if known.contains(&event_type) {
            event_type
        } else {
            "_unknown"
        };
        self.events.events.with_label_values(&[app, event_type, result]).inc();
    }

    /// Counts dead letters an operator replayed (their types are not read: `_unknown`).
    pub fn events_replayed(&self, app: &str, count: u64) {
        self.events
            .events
            .with_label_values(&[app, "_unknown", "replayed"])
            .inc_by(count);
    }

    /// Counts one delivery attempt (`ATTEMPT_OUTCOMES`) and its time.
    pub fn event_attempt(&self, app: &str, outcome: &str, seconds: f64) {
        self.events.attempts.with_label_values(&[app, outcome]).inc();
        self.events.duration.with_label_values(&[app]).observe(seconds);
    }

    /// The state of `app`'s queue.
    pub fn event_queue(&self, app: &str, depth: u64, oldest_age_seconds: f64, dead_letters: u64) {
        self.events.depth.with_label_values(&[app]).set(depth as i64);
        self.events.oldest.with_label_values(&[app]).set(oldest_age_seconds);
        self.events.dead.with_label_values(&[app]).set(dead_letters as i64);
    }

    /// Counts one audit line, written or not.
    pub fn audit_line(&self, written: bool) {
        let result = if written { "written" } else { "failed" };
        self.events.audit.with_label_values(&[result]).inc();
    }

    /// Records a reload attempt; `served` describes the snapshot served afterwards.
    pub fn reload(&self, trigger: Trigger, result: ReloadResult, served: &ServedSet, now_unix: f64) {
        self.reloads
            .with_label_values(&[trigger.as_str(), result.as_str()])
            .inc();
        let ok = result != ReloadResult::Failure;
        self.last_reload_successful.set(i64::from(ok));
        if ok {
            self.last_reload_success_timestamp.set(now_unix);
        }
        self.generation.set(served.generation as i64);
        self.profiles_loaded.set(served.profiles as i64);
        self.config_hash.set(served.hash_prefix as f64);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        // The writer counts its drops; each scrape adds what is new since the last (fetch_max:
        // two scrapes at once never add the same drops twice).
        let dropped = crate::logs::dropped_lines();
        let seen = self
            .log_drops_seen
            .fetch_max(dropped, std::sync::atomic::Ordering::Relaxed);
        self.log_lines_dropped.inc_by(dropped.saturating_sub(seen));
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = encoder.encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// What the metrics say about the served set.
#[derive(Debug, Clone, Copy)]
pub struct ServedSet {
    pub generation: u64,
    pub profiles: usize,
    /// The first 48 bits of the content hash (exact in an f64).
    pub hash_prefix: u64,
}
