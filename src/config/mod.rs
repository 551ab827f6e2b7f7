//! The gateway config (`postgate.yaml`, overridable by `POSTGATE_*` environment variables) and
//! the stores it declares, with their credentials read from the environment or files.
//!
//! An edge module: it reads files and the environment. Secrets are wrapped in `Secret` the
//! moment they are read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Yaml};
use indexmap::IndexMap;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::AppKeys;
use crate::profile::enforcement::Enforcement;
use crate::ratelimit::{AppLimits, RateLimit};
use crate::secret::Secret;
use crate::sign::{Addressing, Credentials, Endpoint, Keys, Kind, Store};

/// The name of the store a profile uses when it names none.
pub const DEFAULT_STORE: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {0}")]
    Invalid(String),
    #[error("store `{store}`: {message}")]
    Store { store: String, message: String },
    #[error("no store named `{0}` is configured")]
    UnknownStore(String),
}

/// The prefix of the environment variables that override `postgate.yaml`.
pub const ENV_PREFIX: &str = "POSTGATE_";

/// The top-level settings of `postgate.yaml`, as `POSTGATE_<NAME>` names them (`CONFIG` names
/// the file). `tests::settings_are_the_config_fields` ties the list to `GatewayConfig`.
pub const SETTINGS: &[&str] = &[
    "policies",
    "stores",
    "listen",
    "admin_listen",
    "apps",
    "default_rate_limit",
    "rate_limit_backend",
    "cors",
    "reload",
    "log_format",
    "max_body_bytes",
    "body_timeout",
    "max_connections",
    "workers",
    "upload_tokens",
    "store_calls",
    "public_url",
    "events",
    "audit",
];

/// Whether a variable's name, without the prefix, names a setting (its first level).
fn names_a_setting(key: &str) -> bool {
    let first = key.split("__").next().unwrap_or_default();
    SETTINGS.iter().any(|setting| setting.eq_ignore_ascii_case(first))
}

/// The `POSTGATE_*` variables among `names` that name no setting (nor the config file).
pub fn ignored_env(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut ignored: Vec<String> = names
        .filter(|name| {
            name.strip_prefix(ENV_PREFIX)
                .is_some_and(|key| !key.eq_ignore_ascii_case("config") && !names_a_setting(key))
        })
        .collect();
    ignored.sort();
    ignored
}

/// `postgate.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The directory of upload profiles.
    #[serde(default = "default_policies")]
    pub policies: PathBuf,
    /// Named S3 endpoints. When none is declared, a `default` store is made from the standard
    /// AWS environment variables (`AWS_REGION`, `AWS_ENDPOINT_URL_S3`, credentials).
    #[serde(default)]
    pub stores: IndexMap<String, StoreConfig>,
    /// Where the API listens.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where the admin endpoint (`POST /-/reload`) listens; off when absent.
    #[serde(default)]
    pub admin_listen: Option<String>,
    /// The apps that may call the API, with their keys.
    #[serde(default)]
    pub apps: IndexMap<String, AppConfig>,
    /// The rate limit of every app without its own `rate_limit`; absent: unlimited.
    #[serde(default)]
    pub default_rate_limit: Option<RateLimitConfig>,
    /// Where rate limits are shared by replicas; absent: each process limits on its own.
    #[serde(default)]
    pub rate_limit_backend: Option<RateLimitBackendConfig>,
    #[serde(default)]
    pub cors: CorsConfig,
    #[serde(default)]
    pub reload: ReloadConfig,
    /// `text` (default) or `json` logs.
    #[serde(default)]
    pub log_format: LogFormat,
    /// The largest presign request body accepted, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// How long a request body may take after its headers; then 408 `body-timeout`, and the
    /// connection is closed. Default 10s.
    #[serde(default = "default_body_timeout", with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Open connections each worker holds at most; more wait in the listen queue. Default 4096.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// HTTP worker threads; default one per CPU core.
    #[serde(default)]
    pub workers: Option<usize>,
    /// The keys that seal upload tokens (`complete`, multipart). Absent: presign answers carry
    /// no token and the upload routes answer 503 `upload-tokens-unconfigured`.
    #[serde(default)]
    pub upload_tokens: Option<UploadTokensConfig>,
    /// Deadlines and retries of the gateway's own store calls (multipart, complete).
    #[serde(default)]
    pub store_calls: StoreCallsConfig,
    /// The gateway's public base URL (`https://uploads.example.com`), for the URLs it hands Uppy
    /// that point back at it; default: the scheme and host the request came to.
    #[serde(default)]
    pub public_url: Option<String>,
    /// The Redis queue of apps whose events are `delivery: queue`.
    #[serde(default)]
    pub events: Option<EventsConfig>,
    /// The audit log of grants and `complete` outcomes; off when absent.
    #[serde(default)]
    pub audit: Option<AuditConfig>,
    /// `POSTGATE_*` variables that name no setting: ignored, and reported as a warning.
    #[serde(skip)]
    pub ignored_env: Vec<String>,
}

/// `events`: the queue of `delivery: queue` apps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    pub redis: RedisConfig,
    /// The waits between attempts; dead-lettered after the last. Default 10s, 1m, 5m, 15m,
    /// 30m, 1h, 2h, 4h, 8h (ten attempts over about 16 hours).
    #[serde(default, with = "humantime_list")]
    pub retry: Option<Vec<Duration>>,
    /// An event taken by a replica that stopped is taken by another after this; default 1m.
    #[serde(default, with = "humantime_serde")]
    pub claim_after: Option<Duration>,
}

/// The default retry schedule.
pub const DEFAULT_EVENT_RETRY: &[u64] = &[10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800];

mod humantime_list {
    use std::time::Duration;

    use serde::Deserialize;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<Duration>>, D::Error> {
        let texts = Option::<Vec<String>>::deserialize(deserializer)?;
        texts
            .map(|texts| {
                texts
                    .iter()
                    .map(|t| humantime::parse_duration(t).map_err(|e| serde::de::Error::custom(format!("`{t}`: {e}"))))
                    .collect()
            })
            .transpose()
    }
}

/// `audit`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// `stdout`, or a file appended to.
    pub output: String,
    /// Refuse a grant (503 `audit-unavailable`) whose line cannot be written; default false.
    #[serde(default)]
    pub fail_closed: bool,
}

/// `apps.<app>.events`: where the app's upload events go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppEventsConfig {
    /// https, or http to a loopback host.
    pub url: String,
    /// A variable holding one or more `whsec_…` secrets (space, comma or newline separated).
    #[serde(default)]
    pub secrets_env: Option<String>,
    /// A file holding them.
    #[serde(default)]
    pub secrets_file: Option<PathBuf>,
    /// Default: all (`upload.completed`, `upload.refused`, `upload.aborted`).
    #[serde(default)]
    pub types: Option<Vec<String>>,
    /// Default: every profile.
    #[serde(default)]
    pub profiles: Option<Vec<String>>,
    #[serde(default)]
    pub delivery: crate::events::Delivery,
    /// One attempt; default 5s, at most 60s.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Attempts within one `complete` (sync): 1 to 10, default 3.
    #[serde(default)]
    pub attempts: Option<u32>,
}

/// `upload_tokens`: `current` seals; every listed key opens (keep an old key until its tokens
/// expire: `multipart.expires_in`, at most 7 days).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadTokensConfig {
    pub current: String,
    pub keys: IndexMap<String, TokenKeyConfig>,
}

/// One token key: a secret of at least 32 bytes, from a variable or a file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenKeyConfig {
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

/// `store_calls`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreCallsConfig {
    /// One attempt of one call (connect, request and answer). Default 10 s.
    #[serde(default = "default_store_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per call (retries on no answer, 5xx, `SlowDown`): 1 to 10. Default 3.
    #[serde(default = "default_store_attempts", deserialize_with = "attempts_in_range")]
    pub attempts: u32,
}

fn default_store_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_store_attempts() -> u32 {
    3
}

fn attempts_in_range<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let attempts = u32::deserialize(deserializer)?;
    if (1..=10).contains(&attempts) {
        Ok(attempts)
    } else {
        Err(serde::de::Error::custom(format!(
            "{attempts} attempts; use 1 to 10 (each waits up to `timeout`)"
        )))
    }
}

impl Default for StoreCallsConfig {
    fn default() -> StoreCallsConfig {
        StoreCallsConfig {
            timeout: default_store_timeout(),
            attempts: default_store_attempts(),
        }
    }
}

fn default_policies() -> PathBuf {
    PathBuf::from("policies")
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}

fn default_body_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_max_connections() -> usize {
    4096
}

fn default_max_body_bytes() -> usize {
    64 * 1024
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            policies: default_policies(),
            stores: IndexMap::new(),
            listen: default_listen(),
            admin_listen: None,
            apps: IndexMap::new(),
            default_rate_limit: None,
            rate_limit_backend: None,
            cors: CorsConfig::default(),
            reload: ReloadConfig::default(),
            log_format: LogFormat::default(),
            max_body_bytes: default_max_body_bytes(),
            body_timeout: default_body_timeout(),
            max_connections: default_max_connections(),
            workers: None,
            upload_tokens: None,
            store_calls: StoreCallsConfig::default(),
            public_url: None,
            events: None,
            audit: None,
            ignored_env: Vec::new(),
        }
    }
}

/// One app's keys and rate limit. `keys` holds hashes only (`postgate hash-key`); a file or
/// variable may hold hashes or raw keys, one per line (or comma-separated in a variable).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub keys_file: Option<PathBuf>,
    #[serde(default)]
    pub keys_env: Option<String>,
    /// This app's presign rate limit; absent: `default_rate_limit`.
    #[serde(default)]
    pub rate_limit: Option<AppRateLimit>,
    /// `key`, `token`, `either` or `both`; default `either` with `end_user_tokens`, else `key`.
    #[serde(default)]
    pub auth: Option<crate::identity::AuthMode>,
    /// End users' ID tokens this app accepts.
    #[serde(default)]
    pub end_user_tokens: Option<EndUserTokensConfig>,
    /// Origins browsers may call with this app's credentials (besides `cors.allowed_origins`).
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Where this app's upload events go; none when absent.
    #[serde(default)]
    pub events: Option<AppEventsConfig>,
}

/// An identity provider's ID tokens: who issues them, for whom, and where its keys are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndUserTokensConfig {
    /// The `iss` claim, exactly (`https://accounts.google.com`, `https://<tenant>.auth0.com/`).
    pub issuer: String,
    /// Accepted `aud` values (the app's client ID at the provider); at least one.
    pub audiences: Vec<String>,
    /// Accepted algorithms; default RS256, ES256 and EdDSA. Asymmetric ones only.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// The issuer's JWKS URL (https, or http on loopback).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// A JWKS file instead of a URL.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`; default 30 s, at most 5 min.
    #[serde(default, with = "humantime_serde")]
    pub leeway: Option<Duration>,
    /// Fetch the JWKS for an unknown `kid` at most this often; default 30 s.
    #[serde(default, with = "humantime_serde")]
    pub refetch_interval: Option<Duration>,
    /// Refresh the JWKS in the background when it is older than this; default 10 min.
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
}

/// An app's `rate_limit`: `unlimited` (whatever `default_rate_limit` says) or a limit.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppRateLimit {
    Unlimited,
    #[serde(untagged)]
    Limit(RateLimitConfig),
}

/// `{ per_second: 50, burst: 100 }`: a sustained rate and the burst allowed on top of it.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second, sustained (fractions allowed: 0.5 is one every two seconds).
    pub per_second: f64,
    /// Requests allowed at once after a quiet time; default one second's worth (at least 1).
    #[serde(default)]
    pub burst: Option<u32>,
}

/// A shared rate-limit backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitBackendConfig {
    pub redis: RedisConfig,
}

/// Redis or Valkey (`redis://`, `rediss://` for TLS; a password goes in the URL, which is a
/// secret: it comes from a variable or a file, never from this file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// The variable holding the URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// The file holding the URL (a mounted Secret).
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// Prefix of the keys; default `postgate:ratelimit:`.
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// How long a check waits for Redis before the local limiter answers; default 50ms.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

impl RedisConfig {
    /// The URL, read from its variable or file. Errors name the setting, never the value.
    pub fn url(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
        self.url_at("rate_limit_backend.redis", env)
    }

    /// `url` of the Redis settings at `at`.
    pub fn url_at(&self, at: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
        match (&self.url_env, &self.url_file) {
            (Some(var), None) => env(var)
                .filter(|v| !v.trim().is_empty())
                .map(|v| v.trim().to_owned())
                .ok_or_else(|| format!("{at}.url_env: the variable it names is not set")),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map(|v| v.trim().to_owned())
                .map_err(|e| format!("{at}.url_file: cannot read the file it names: {}", e.kind())),
            _ => Err(format!("{at}: give exactly one of `url_env` and `url_file`")),
        }
    }
}

/// Cross-origin access for browser apps that call the gateway directly.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins like `https://app.example.com`; empty: no cross-origin access.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// How long browsers may cache a preflight answer, in seconds.
    #[serde(default = "default_cors_max_age")]
    pub max_age: usize,
}

fn default_cors_max_age() -> usize {
    3600
}

impl Default for CorsConfig {
    fn default() -> CorsConfig {
        CorsConfig {
            allowed_origins: Vec::new(),
            max_age: default_cors_max_age(),
        }
    }
}

/// How profile changes are picked up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    /// Quiet time after the last filesystem event before reloading.
    #[serde(default = "default_debounce", with = "humantime_serde")]
    pub debounce: Duration,
    /// The longest a reload waits while events keep arriving.
    #[serde(default = "default_max_wait", with = "humantime_serde")]
    pub max_wait: Duration,
    /// How often the directory is re-read regardless of events (0 turns it off).
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Whether an empty directory may replace a non-empty profile set.
    #[serde(default)]
    pub allow_empty: bool,
    /// Whether to watch the directory for changes (off: reload only on SIGHUP, the admin
    /// endpoint and the periodic check).
    #[serde(default = "default_watch")]
    pub watch: bool,
}

fn default_watch() -> bool {
    true
}

fn default_debounce() -> Duration {
    Duration::from_millis(200)
}

fn default_max_wait() -> Duration {
    Duration::from_secs(1)
}

fn default_interval() -> Duration {
    Duration::from_secs(15)
}

impl Default for ReloadConfig {
    fn default() -> ReloadConfig {
        ReloadConfig {
            debounce: default_debounce(),
            max_wait: default_max_wait(),
            interval: default_interval(),
            allow_empty: false,
            watch: true,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// One store: an S3 endpoint, or Google Cloud Storage (`kind: gcs`).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `s3` (default: AWS S3 and S3-compatible stores), `gcs` (Google Cloud Storage's XML API,
    /// signed with Google's V4 by an HMAC key or a service account's key) or `azure` (Blob
    /// Storage: a create-only SAS per blob, every upload staged and checked by `complete`).
    #[serde(default)]
    pub kind: Kind,
    /// `kind: azure`: the storage account; default `AZURE_STORAGE_ACCOUNT`.
    #[serde(default)]
    pub account: Option<String>,
    /// `kind: azure`: where uploads wait for `complete` when their profile names no
    /// `verify.staging`; default `postgate-staging/`.
    #[serde(default)]
    pub staging: Option<String>,
    /// The region signatures are scoped to; default `AWS_REGION`, `AWS_DEFAULT_REGION`, or us-east-1.
    #[serde(default)]
    pub region: Option<String>,
    /// An S3-compatible endpoint like `http://127.0.0.1:9000`; default AWS S3 (for `kind: gcs`,
    /// `https://storage.googleapis.com`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `auto` (default), `path` or `virtual`. GCS is path-style unless `virtual`.
    #[serde(default)]
    pub addressing: Addressing,
    /// `kind: gcs` only: buckets served at their own hostname (a bucket-bound hostname behind
    /// a load balancer or CNAME), `bucket: https://uploads.example.com`.
    #[serde(default)]
    pub bucket_hostnames: std::collections::BTreeMap<String, String>,
    /// Whether the store takes POST uploads; `false` for stores without them (Cloudflare R2,
    /// Backblaze B2), which then get presigned PUT URLs. Default `true`.
    #[serde(default)]
    pub post: Option<bool>,
    #[serde(default)]
    pub credentials: CredentialsConfig,
    /// The JSON `postgate probe --json` wrote for this store: `check` and `GET /v1/profiles/{name}`
    /// then name the constraints a profile relies on that the store does not enforce. Read at
    /// start; the probe itself never runs unless asked.
    #[serde(default)]
    pub probe: Option<PathBuf>,
}

impl StoreConfig {
    /// An S3 store's config naming settings only another kind takes: which one, and whose.
    fn refuse_other_kinds_settings(&self) -> Result<(), String> {
        if self.account.is_some() || self.staging.is_some() {
            return Err("account, staging: only `kind: azure` stores take them".to_owned());
        }
        if !self.bucket_hostnames.is_empty() {
            return Err("bucket_hostnames: only `kind: gcs` stores take bucket-bound hostnames".to_owned());
        }
        if self.credentials.service_account_file.is_some() {
            return Err(
                "credentials.service_account_file: only `kind: gcs` stores sign with a service account".to_owned(),
            );
        }
        Ok(())
    }
}

/// Where a store's credentials come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialSource {
    /// Fixed keys from the `*_env` and `*_file` settings below (files are re-read when they
    /// change). The default for stores with an `endpoint` or with any of those settings.
    Static,
    /// The AWS SDK's provider chain: environment, shared config and credentials files
    /// (`AWS_PROFILE`, `credential_process`), web identity (EKS IRSA), container credentials
    /// (ECS, EKS Pod Identity), then EC2 instance metadata (IMDSv2). The default for AWS S3.
    Chain,
    /// Container credentials only (`AWS_CONTAINER_CREDENTIALS_FULL_URI` or `…_RELATIVE_URI`,
    /// with `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`): ECS tasks and EKS Pod Identity.
    Container,
    /// Web identity only (`AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`): EKS IRSA.
    WebIdentity,
    /// EC2 instance metadata only (IMDSv2).
    Imds,
    /// A profile of the shared config files (`profile`, default `AWS_PROFILE` or `default`),
    /// including `credential_process` and `role_arn` profiles.
    Profile,
}

/// Where a store's credentials come from: `source`, and for `static` the settings below (a
/// `*_file` setting wins over its `*_env` setting).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    /// `static`, `chain`, `container`, `web_identity`, `imds` or `profile`. Default: `static` for
    /// stores with an `endpoint` or a `*_env`/`*_file` setting, else `chain`.
    #[serde(default)]
    pub source: Option<CredentialSource>,
    /// The shared-config profile for `source: profile`.
    #[serde(default)]
    pub profile: Option<String>,
    /// Variable holding the access key id; default `AWS_ACCESS_KEY_ID`.
    pub access_key_id_env: Option<String>,
    /// Variable holding the secret access key; default `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key_env: Option<String>,
    /// Variable holding a session token; default `AWS_SESSION_TOKEN`.
    pub session_token_env: Option<String>,
    /// Variable holding when the credentials expire (RFC 3339); default `AWS_CREDENTIAL_EXPIRATION`.
    pub expiration_env: Option<String>,
    pub access_key_id_file: Option<PathBuf>,
    pub secret_access_key_file: Option<PathBuf>,
    pub session_token_file: Option<PathBuf>,
    /// `kind: gcs`: a service account's JSON key file (`client_email`, `private_key`), which signs
    /// with `GOOG4-RSA-SHA256`; default `GOOGLE_APPLICATION_CREDENTIALS` when no HMAC key is set.
    /// Without it a GCS store signs with an HMAC key (`GOOG4-HMAC-SHA256`) from the settings above.
    pub service_account_file: Option<PathBuf>,
}

impl CredentialsConfig {
    /// Whether any static setting is given.
    fn has_static_settings(&self) -> bool {
        self.access_key_id_env.is_some()
            || self.secret_access_key_env.is_some()
            || self.session_token_env.is_some()
            || self.expiration_env.is_some()
            || self.access_key_id_file.is_some()
            || self.secret_access_key_file.is_some()
            || self.session_token_file.is_some()
    }

    /// The files static credentials are read from (watched for rotation).
    pub fn files(&self) -> Vec<PathBuf> {
        [
            &self.access_key_id_file,
            &self.secret_access_key_file,
            &self.session_token_file,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    /// Reads static credentials with `env`: `Ok(None)` when the key id or secret is not set.
    /// Errors name the setting, never a value read.
    pub fn read_static(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Credentials>, String> {
        // Errors name the setting only: a secret pasted where a path or a variable name belongs
        // must not be printed back.
        let read = |setting: &str,
                    file: &Option<PathBuf>,
                    var: &Option<String>,
                    default_var: &str|
         -> Result<Option<String>, String> {
            if let Some(file) = file {
                return std::fs::read_to_string(file)
                    .map(|text| Some(text.trim().to_owned()).filter(|t| !t.is_empty()))
                    .map_err(|e| {
                        format!(
                            "credentials.{setting}_file: cannot read the file it names: {}",
                            e.kind()
                        )
                    });
            }
            Ok(env(var.as_deref().unwrap_or(default_var)).filter(|v| !v.is_empty()))
        };
        let access_key_id = read(
            "access_key_id",
            &self.access_key_id_file,
            &self.access_key_id_env,
            "AWS_ACCESS_KEY_ID",
        )?;
        let secret = read(
            "secret_access_key",
            &self.secret_access_key_file,
            &self.secret_access_key_env,
            "AWS_SECRET_ACCESS_KEY",
        )?;
        let token = read(
            "session_token",
            &self.session_token_file,
            &self.session_token_env,
            "AWS_SESSION_TOKEN",
        )?;
        let expiration_var = self.expiration_env.as_deref().unwrap_or("AWS_CREDENTIAL_EXPIRATION");
        let expiration_setting = if self.expiration_env.is_some() {
            "the variable credentials.expiration_env names"
        } else {
            "AWS_CREDENTIAL_EXPIRATION"
        };
        let expires_at = match env(expiration_var).filter(|v| !v.is_empty()) {
            None => None,
            Some(text) => Some(
                OffsetDateTime::parse(&text, &Rfc3339)
                    .map_err(|e| format!("{expiration_setting} is not an RFC 3339 time: {e}"))?,
            ),
        };
        let (Some(access_key_id), Some(secret)) = (access_key_id, secret) else {
            return Ok(None);
        };
        Ok(Some(Credentials {
            access_key_id,
            secret_access_key: Secret::new(secret),
            session_token: token.map(Secret::new),
            expires_at,
        }))
    }

    fn missing(&self) -> String {
        // The configured names are not printed: a secret may have been pasted there.
        let var = |v: &Option<String>, setting: &str, d: &str| match v {
            Some(_) => format!("the variable credentials.{setting} names"),
            None => d.to_owned(),
        };
        format!(
            "no credentials: set {} and {} (or the store's credentials.*_file settings, or `source: chain`)",
            var(&self.access_key_id_env, "access_key_id_env", "AWS_ACCESS_KEY_ID"),
            var(
                &self.secret_access_key_env,
                "secret_access_key_env",
                "AWS_SECRET_ACCESS_KEY"
            ),
        )
    }
}

/// How a store's credentials stay current after start.
#[derive(Debug, Clone)]
pub enum Refresh {
    /// Fixed for the life of the process (environment variables).
    Never,
    /// Static keys from files: re-read when they change (a Kubernetes Secret rotation).
    Files(CredentialsConfig),
    /// Fetched from an AWS credential provider before they expire.
    Provider {
        source: CredentialSource,
        profile: Option<String>,
        region: String,
    },
}

/// A config error without the offending string: a key or secret written in the wrong place
/// (`keys: "<raw key>"`) must not be printed back into the log.
fn redact(mut error: figment::Error) -> figment::Error {
    use figment::error::{Actual, Kind};
    let hide = |actual: &mut Actual| {
        if let Actual::Str(text) = actual {
            *actual = Actual::Other(format!("a string of {} characters (not shown)", text.chars().count()));
        }
    };
    match &mut error.kind {
        Kind::InvalidType(actual, _) | Kind::InvalidValue(actual, _) => hide(actual),
        _ => {}
    }
    error
}

impl GatewayConfig {
    /// Reads `path` (when given) and overlays `POSTGATE_*` variables, `__` separating levels:
    /// `POSTGATE_STORES__DEFAULT__REGION=eu-west-1`.
    ///
    /// A variable naming no setting (`POSTGATE_VERSION`, set by an image for its own use) is
    /// ignored and listed in `ignored_env`, which the command reports as a warning; a variable
    /// naming a setting is read strictly, so a typo inside one (`POSTGATE_STORES__S3__REGOIN`)
    /// is refused like the same typo in the file.
    pub fn load(path: Option<&Path>) -> Result<GatewayConfig, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            if !path.is_file() {
                return Err(ConfigError::Invalid(format!("{}: no such file", path.display())));
            }
            figment = figment.merge(Yaml::file(path));
        }
        let settings = Env::prefixed(ENV_PREFIX)
            .ignore(&["config"])
            .filter(|key| names_a_setting(key.as_str()))
            .split("__");
        figment = figment.merge(settings);
        let mut config: GatewayConfig = figment.extract().map_err(|error| {
            let messages: Vec<String> = error.into_iter().map(|e| redact(e).to_string()).collect();
            ConfigError::Invalid(messages.join("; "))
        })?;
        config.ignored_env = ignored_env(std::env::vars_os().map(|(name, _)| name.to_string_lossy().into_owned()));
        Ok(config)
    }

    /// The names of the stores profiles may use.
    pub fn store_names(&self) -> Vec<String> {
        if self.stores.is_empty() {
            vec![DEFAULT_STORE.to_owned()]
        } else {
            self.stores.keys().cloned().collect()
        }
    }

    /// Whether the store `name` takes POST uploads (`post`, default true; never on Azure).
    pub fn store_takes_post(&self, name: &str) -> bool {
        match self.stores.get(name) {
            Some(store) if store.kind == Kind::Azure => false,
            store => store.and_then(|s| s.post).unwrap_or(true),
        }
    }

    /// The store `name`'s kind and where it stages every upload (Azure), as the config says:
    /// for commands that compile profiles with stores that never sign.
    pub fn store_shape(&self, name: &str) -> (Kind, Option<String>) {
        match self.stores.get(name) {
            Some(store) if store.kind == Kind::Azure => (
                Kind::Azure,
                Some(
                    store
                        .staging
                        .clone()
                        .unwrap_or_else(|| crate::sign::azure::DEFAULT_STAGING.to_owned()),
                ),
            ),
            store => (store.map(|s| s.kind).unwrap_or_default(), None),
        }
    }

    /// What `stores.<name>.probe` says the store enforces; `None` without the setting.
    pub fn store_enforcement(&self, name: &str) -> Result<Option<Enforcement>, ConfigError> {
        let Some(path) = self.stores.get(name).and_then(|s| s.probe.as_ref()) else {
            return Ok(None);
        };
        let fail = |why: String| ConfigError::Store {
            store: name.to_owned(),
            message: format!("probe: {}: {why}", path.display()),
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| fail(format!("not the JSON `postgate probe --json` writes: {e}")))
    }

    /// Builds a store, reading its static credentials with `env` (the process environment in
    /// production), and says how its credentials stay current.
    pub fn resolve_store(
        &self,
        name: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Store, Refresh), ConfigError> {
        let implicit = StoreConfig::default();
        let config = match self.stores.get(name) {
            Some(config) => config,
            None if self.stores.is_empty() && name == DEFAULT_STORE => &implicit,
            None => return Err(ConfigError::UnknownStore(name.to_owned())),
        };
        let fail = |message: String| ConfigError::Store {
            store: name.to_owned(),
            message,
        };
        match config.kind {
            Kind::Gcs => self.resolve_gcs_store(name, config, env).map_err(fail),
            Kind::Azure => self.resolve_azure_store(name, config, env).map_err(fail),
            Kind::S3 => self.resolve_s3_store(name, config, env),
        }
    }

    /// A `kind: s3` store: AWS or an S3-compatible endpoint, with static keys or a provider.
    fn resolve_s3_store(
        &self,
        name: &str,
        config: &StoreConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Store, Refresh), ConfigError> {
        let fail = |message: String| ConfigError::Store {
            store: name.to_owned(),
            message,
        };
        config.refuse_other_kinds_settings().map_err(fail)?;
        let region = config
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let endpoint_text = config.endpoint.clone().or_else(|| {
            self.stores
                .is_empty()
                .then(|| env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL")))
                .flatten()
        });
        let endpoint = match endpoint_text {
            None => Endpoint::Aws,
            Some(url) => Endpoint::Custom(normalize_endpoint(&url).map_err(fail)?),
        };

        let creds = &config.credentials;
        let source = creds
            .source
            .unwrap_or(if endpoint != Endpoint::Aws || creds.has_static_settings() {
                CredentialSource::Static
            } else {
                CredentialSource::Chain
            });
        let take_post = config.post.unwrap_or(true);
        // Static keys in the environment come first in the chain too, and never change.
        let fixed = match source {
            CredentialSource::Static | CredentialSource::Chain => creds.read_static(env).map_err(fail)?,
            _ => None,
        };
        match (source, fixed) {
            (CredentialSource::Static, None) => Err(fail(creds.missing())),
            (CredentialSource::Static, Some(credentials)) => {
                let refresh = if creds.files().is_empty() {
                    Refresh::Never
                } else {
                    Refresh::Files(creds.clone())
                };
                let store = Store::new(name, &region, endpoint, config.addressing, credentials)
                    .with_post(take_post)
                    .with_enforcement(self.store_enforcement(name)?);
                Ok((store, refresh))
            }
            (CredentialSource::Chain, Some(credentials)) => {
                let store = Store::new(name, &region, endpoint, config.addressing, credentials)
                    .with_post(take_post)
                    .with_enforcement(self.store_enforcement(name)?);
                Ok((store, Refresh::Never))
            }
            (source, _) => {
                let store = Store::awaiting_credentials(name, &region, endpoint, config.addressing)
                    .with_post(take_post)
                    .with_enforcement(self.store_enforcement(name)?);
                let refresh = Refresh::Provider {
                    source,
                    profile: creds.profile.clone(),
                    region,
                };
                Ok((store, refresh))
            }
        }
    }
}

impl GatewayConfig {
    /// A `kind: gcs` store: Google's endpoint unless another is named, signing with a service
    /// account's key file or an HMAC key. Errors name settings, never values.
    fn resolve_gcs_store(
        &self,
        name: &str,
        config: &StoreConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Store, Refresh), String> {
        let creds = &config.credentials;
        if creds.source.is_some_and(|s| s != CredentialSource::Static) || config.region.is_some() {
            return Err("a GCS store takes no `region` and no `credentials.source` but `static`: it signs with an HMAC key or `credentials.service_account_file`".to_owned());
        }
        let endpoint = match &config.endpoint {
            Some(url) => normalize_endpoint(url)?,
            None => crate::sign::GCS_ENDPOINT.to_owned(),
        };
        let mut origins = std::collections::BTreeMap::new();
        for (bucket, url) in &config.bucket_hostnames {
            let origin = normalize_endpoint(url).map_err(|e| format!("bucket_hostnames.{bucket}: {e}"))?;
            if origin.split_once("://").is_some_and(|(_, rest)| rest.contains('/')) {
                return Err(format!(
                    "bucket_hostnames.{bucket}: give `scheme://host[:port]` without a path"
                ));
            }
            origins.insert(bucket.clone(), origin);
        }
        let store = Store::awaiting_credentials(name, "auto", Endpoint::Custom(endpoint), config.addressing)
            .with_kind(Kind::Gcs)
            .with_bucket_origins(origins)
            .with_post(config.post.unwrap_or(true))
            .with_enforcement(self.store_enforcement(name).map_err(|e| e.to_string())?);
        let account_file = creds.service_account_file.clone().or_else(|| {
            (!creds.has_static_settings())
                .then(|| env("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from))
                .flatten()
        });
        match account_file {
            Some(path) => {
                store.set_keys(read_service_account(&path)?);
                Ok((store, Refresh::Never))
            }
            None => {
                store.set_credentials(read_gcs_hmac(creds, env)?);
                Ok((store, Refresh::Never))
            }
        }
    }
}

impl GatewayConfig {
    /// A `kind: azure` store: the account's blob endpoint unless another is named (Azurite's
    /// `http://127.0.0.1:10000/devstoreaccount1`), signing SAS with the account key. Errors name
    /// settings, never values.
    fn resolve_azure_store(
        &self,
        name: &str,
        config: &StoreConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Store, Refresh), String> {
        let creds = &config.credentials;
        if creds.source.is_some_and(|s| s != CredentialSource::Static)
            || config.region.is_some()
            || config.addressing != Addressing::Auto
            || !config.bucket_hostnames.is_empty()
            || creds.service_account_file.is_some()
            || config.post == Some(true)
        {
            return Err("an Azure store takes `account`, `endpoint`, `staging` and the account key (`credentials.secret_access_key_env` or `_file`); no `region`, `addressing`, `bucket_hostnames`, `post` or other credentials".to_owned());
        }
        let account = config
            .account
            .clone()
            .or_else(|| env("AZURE_STORAGE_ACCOUNT"))
            .filter(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
            .ok_or("account: set the storage account (lowercase letters and digits), or AZURE_STORAGE_ACCOUNT")?;
        let endpoint = match &config.endpoint {
            Some(url) => normalize_endpoint(url)?,
            None => format!("https://{account}.blob.core.windows.net"),
        };
        let staging = config
            .staging
            .clone()
            .unwrap_or_else(|| crate::sign::azure::DEFAULT_STAGING.to_owned());
        if !staging.ends_with('/') || staging.starts_with('/') || staging.contains("${") {
            return Err(format!(
                "staging: `{staging}` must be a key prefix ending in `/`, like `incoming/`"
            ));
        }
        let key = match (&creds.secret_access_key_file, &creds.secret_access_key_env) {
            (Some(file), _) => std::fs::read_to_string(file).map_err(|e| {
                format!(
                    "credentials.secret_access_key_file: cannot read the file it names: {}",
                    e.kind()
                )
            })?,
            (None, var) => env(var.as_deref().unwrap_or("AZURE_STORAGE_KEY")).ok_or_else(|| match var {
                Some(_) => "credentials.secret_access_key_env: the variable it names is not set".to_owned(),
                None => {
                    "no account key: set AZURE_STORAGE_KEY (or credentials.secret_access_key_env or _file)".to_owned()
                }
            })?,
        };
        if crate::sign::azure::account_key(&key).is_none_or(|k| k.is_empty()) {
            return Err("the account key is not base64 (the key the portal shows)".to_owned());
        }
        let store = Store::new(
            name,
            "",
            Endpoint::Custom(endpoint),
            Addressing::Path,
            Credentials {
                access_key_id: account,
                secret_access_key: Secret::new(key.trim()),
                session_token: None,
                expires_at: None,
            },
        )
        .with_kind(Kind::Azure)
        .with_post(false)
        .with_staging(Some(staging))
        .with_enforcement(self.store_enforcement(name).map_err(|e| e.to_string())?);
        Ok((store, Refresh::Never))
    }
}

/// A GCS HMAC key: its id and secret from their `*_file` or `*_env` settings, by default
/// `GOOGLE_HMAC_ACCESS_ID` and `GOOGLE_HMAC_SECRET` (never the AWS variables: an AWS key or
/// session token must not end up in a GCS URL). HMAC keys have no session token or expiry.
fn read_gcs_hmac(creds: &CredentialsConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Credentials, String> {
    if creds.session_token_env.is_some() || creds.session_token_file.is_some() || creds.expiration_env.is_some() {
        return Err(
            "credentials.session_token_*, expiration_env: a GCS HMAC key has no session token or expiry".to_owned(),
        );
    }
    let read = |setting: &str, file: &Option<PathBuf>, var: &Option<String>, default: &str| -> Result<String, String> {
        let value = match file {
            Some(file) => std::fs::read_to_string(file).map_err(|e| {
                format!(
                    "credentials.{setting}_file: cannot read the file it names: {}",
                    e.kind()
                )
            })?,
            None => env(var.as_deref().unwrap_or(default)).unwrap_or_default(),
        };
        let value = value.trim().to_owned();
        match (value.is_empty(), var) {
            (false, _) => Ok(value),
            (true, Some(_)) => Err(format!("credentials.{setting}_env: the variable it names is not set")),
            (true, None) => Err(format!(
                "no credentials: set {default} (or credentials.{setting}_env or _file), or credentials.service_account_file"
            )),
        }
    };
    let access_key_id = read(
        "access_key_id",
        &creds.access_key_id_file,
        &creds.access_key_id_env,
        "GOOGLE_HMAC_ACCESS_ID",
    )?;
    let secret = read(
        "secret_access_key",
        &creds.secret_access_key_file,
        &creds.secret_access_key_env,
        "GOOGLE_HMAC_SECRET",
    )?;
    Ok(Credentials {
        access_key_id,
        secret_access_key: Secret::new(secret),
        session_token: None,
        expires_at: None,
    })
}

/// A service account's JSON key file: its `client_email` and RSA `private_key`. The error names
/// the file's problem, never its content.
fn read_service_account(path: &Path) -> Result<Keys, String> {
    #[derive(Deserialize)]
    struct Account {
        client_email: String,
        private_key: String,
    }
    let at = "credentials.service_account_file";
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{at}: cannot read the file it names: {}", e.kind()))?;
    let account: Account = serde_json::from_str(&text)
        .map_err(|_| format!("{at}: not a service account key (JSON with `client_email` and `private_key`)"))?;
    let key = crate::sign::sigv4::rsa_key_from_pem(&account.private_key).map_err(|e| format!("{at}: {e}"))?;
    Ok(Keys::service_account(&account.client_email, key))
}

/// An endpoint as signatures need it: `scheme://host[:port][/path]` with the host lowercased, the
/// scheme's default port dropped and no trailing `/` (the `Host` header a client sends is what
/// SigV4 signs). Credentials in the URL, a query or a fragment are refused.
fn normalize_endpoint(url: &str) -> Result<String, String> {
    let not_url = || format!("endpoint `{url}` is not an http(s) URL like `https://s3.example.com`");
    let (scheme, rest) = url.split_once("://").ok_or_else(not_url)?;
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return Err(not_url()),
    };
    if rest.contains(['?', '#']) {
        return Err(format!(
            "endpoint `{url}` has a query or fragment; give `scheme://host[:port]`"
        ));
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err("the endpoint carries credentials (`user@`); set them under `credentials`".to_owned());
    }
    if authority.is_empty() {
        return Err(not_url());
    }
    let mut host = authority.to_ascii_lowercase();
    if let Some(stripped) = host.strip_suffix(default_port) {
        host = stripped.to_owned();
    }
    Ok(format!("{scheme}://{host}{}", path.trim_end_matches('/')))
}

impl GatewayConfig {
    /// The upload token keys; `None` when `upload_tokens` is absent. Errors name the setting,
    /// never a secret.
    pub fn token_keys(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<crate::upload::TokenKeys>, Vec<String>> {
        let Some(config) = &self.upload_tokens else {
            return Ok(None);
        };
        let mut keys = Vec::new();
        let mut errors = Vec::new();
        for (id, key) in &config.keys {
            let secret = match (&key.secret_env, &key.secret_file) {
                (Some(var), None) => env(var)
                    .ok_or_else(|| format!("upload_tokens.keys.{id}.secret_env: the variable it names is not set")),
                (None, Some(file)) => std::fs::read_to_string(file)
                    .map(|text| text.trim().to_owned())
                    .map_err(|e| {
                        format!(
                            "upload_tokens.keys.{id}.secret_file: cannot read the file it names: {}",
                            e.kind()
                        )
                    }),
                _ => Err(format!(
                    "upload_tokens.keys.{id}: give one of `secret_env`, `secret_file`"
                )),
            };
            match secret {
                Ok(secret) => keys.push((id.clone(), crate::secret::Secret::new(secret))),
                Err(error) => errors.push(error),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        crate::upload::TokenKeys::new(&config.current, keys)
            .map(Some)
            .map_err(|e| vec![format!("upload_tokens: {e}")])
    }

    /// The apps and their keys: hashes from `keys`, hashes or raw keys from `keys_file` and
    /// `keys_env`. Every problem is reported.
    pub fn app_keys(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<AppKeys, Vec<String>> {
        let mut keys = AppKeys::new();
        let mut errors = Vec::new();
        for (app, config) in &self.apps {
            // App names reach keys (`${app}`) and metrics: the profile name rules hold for them.
            if let Err(e) = crate::profile::ProfileName::new(app) {
                errors.push(format!("apps: {}", e.replace("a profile name", "an app name")));
                continue;
            }
            keys.declare(app);
            for (i, hash) in config.keys.iter().enumerate() {
                if !hash.starts_with(crate::auth::HASH_PREFIX) {
                    errors.push(format!(
                        "apps.{app}.keys[{i}]: store the key's hash (`postgate hash-key`), not the key"
                    ));
                } else if let Err(e) = keys.add(app, hash) {
                    errors.push(format!("apps.{app}.keys[{i}]: {e}"));
                }
            }
            if let Some(file) = &config.keys_file {
                match std::fs::read_to_string(file) {
                    Ok(text) => {
                        for line in text
                            .lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        {
                            if let Err(e) = keys.add(app, line) {
                                errors.push(format!("apps.{app}.keys_file: {e}"));
                            }
                        }
                    }
                    Err(e) => errors.push(format!(
                        "apps.{app}.keys_file: cannot read the file it names: {}",
                        e.kind()
                    )),
                }
            }
            if let Some(var) = &config.keys_env {
                match env(var) {
                    Some(text) => {
                        for key in text.split([',', '\n']).map(str::trim).filter(|k| !k.is_empty()) {
                            if let Err(e) = keys.add(app, key) {
                                errors.push(format!("apps.{app}.keys_env: {e}"));
                            }
                        }
                    }
                    None => errors.push(format!("apps.{app}.keys_env: the variable it names is not set")),
                }
            }
            let token_only = config.auth == Some(crate::identity::AuthMode::Token);
            if keys.key_count(app) == 0 && !token_only && !errors.iter().any(|e| e.starts_with(&format!("apps.{app}.")))
            {
                errors.push(format!("apps.{app}: no keys; give `keys`, `keys_file` or `keys_env`"));
            }
        }
        if errors.is_empty() { Ok(keys) } else { Err(errors) }
    }

    /// Each app's identity settings: its `auth` mode, end-user token rules and CORS origins.
    /// Every problem is reported, naming the setting (never a value read from a file).
    pub fn token_apps(&self) -> Result<crate::identity::TokenApps, Vec<String>> {
        use crate::identity::{ACCEPTED_ALGORITHMS, AppIdentity, AuthMode, JwksSource, TokenRules};
        let mut apps = Vec::new();
        let mut errors = Vec::new();
        let mut pairs: Vec<(String, String, String)> = Vec::new();
        for (app, config) in &self.apps {
            let at = |field: &str| format!("apps.{app}.{field}");
            let tokens = match &config.end_user_tokens {
                None => None,
                Some(t) => {
                    let before = errors.len();
                    if t.issuer.trim().is_empty() {
                        errors.push(format!("{}: must not be empty", at("end_user_tokens.issuer")));
                    }
                    if t.audiences.is_empty() || t.audiences.iter().any(|a| a.is_empty()) {
                        errors.push(format!(
                            "{}: list at least one audience (the app's client ID at the identity provider)",
                            at("end_user_tokens.audiences")
                        ));
                    }
                    for audience in &t.audiences {
                        if let Some((other, ..)) = pairs.iter().find(|(_, i, a)| i == &t.issuer && a == audience) {
                            errors.push(format!(
                                "{}: `{audience}` of issuer `{}` is also accepted by app `{other}`; a token must pick one app",
                                at("end_user_tokens.audiences"),
                                t.issuer
                            ));
                        }
                        pairs.push((app.clone(), t.issuer.clone(), audience.clone()));
                    }
                    let algorithms = match &t.algorithms {
                        None => vec![
                            jsonwebtoken::Algorithm::RS256,
                            jsonwebtoken::Algorithm::ES256,
                            jsonwebtoken::Algorithm::EdDSA,
                        ],
                        Some(names) => names
                            .iter()
                            .filter_map(|name| {
                                match name.parse::<jsonwebtoken::Algorithm>().ok().filter(|a| ACCEPTED_ALGORITHMS.contains(a)) {
                                    Some(a) => Some(a),
                                    None => {
                                        errors.push(format!(
                                            "{}: `{name}` is not accepted; use asymmetric ones: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA",
                                            at("end_user_tokens.algorithms")
                                        ));
                                        None
                                    }
                                }
                            })
                            .collect(),
                    };
                    let jwks = match (&t.jwks_url, &t.jwks_file) {
                        (Some(url), None) => {
                            if let Err(why) = crate::identity::check_jwks_url(url) {
                                errors.push(format!("{}: {why}", at("end_user_tokens.jwks_url")));
                            }
                            Some(JwksSource::Url(url.clone()))
                        }
                        (None, Some(file)) => Some(JwksSource::File(file.clone())),
                        _ => {
                            errors.push(format!(
                                "{}: give exactly one of `jwks_url` and `jwks_file`",
                                at("end_user_tokens")
                            ));
                            None
                        }
                    };
                    let leeway = t.leeway.unwrap_or(Duration::from_secs(30));
                    if leeway > Duration::from_secs(300) {
                        errors.push(format!("{}: at most 5m", at("end_user_tokens.leeway")));
                    }
                    let refetch_interval = t.refetch_interval.unwrap_or(Duration::from_secs(30));
                    if refetch_interval < Duration::from_secs(1) {
                        errors.push(format!("{}: at least 1s", at("end_user_tokens.refetch_interval")));
                    }
                    match jwks {
                        Some(jwks) if errors.len() == before => Some(TokenRules {
                            issuer: t.issuer.clone(),
                            audiences: t.audiences.clone(),
                            algorithms,
                            leeway,
                            jwks,
                            refetch_interval,
                            max_age: t.max_age.unwrap_or(Duration::from_secs(600)).max(refetch_interval),
                        }),
                        _ => None,
                    }
                }
            };
            let mode = config.auth.unwrap_or(if config.end_user_tokens.is_some() {
                AuthMode::Either
            } else {
                AuthMode::Key
            });
            if matches!(mode, AuthMode::Token | AuthMode::Either | AuthMode::Both) && config.end_user_tokens.is_none() {
                errors.push(format!("{}: `{mode:?}` needs `end_user_tokens`", at("auth")).to_lowercase());
            }
            for origin in &config.cors_origins {
                if origin == "*" || normalize_endpoint(origin).ok().as_deref() != Some(origin.as_str()) {
                    errors.push(format!(
                        "{}: `{}` is not an origin like `https://app.example.com` (no `*`, path or trailing `/`)",
                        at("cors_origins"),
                        origin.escape_debug()
                    ));
                }
            }
            apps.push(AppIdentity {
                app: app.clone(),
                mode,
                tokens,
                cors_origins: config.cors_origins.clone(),
            });
        }
        if errors.is_empty() {
            Ok(crate::identity::TokenApps { apps })
        } else {
            Err(errors)
        }
    }

    /// The rate limit of each app: its own `rate_limit`, else `default_rate_limit`; apps with
    /// neither (or `rate_limit: unlimited`) are left out. Every problem is reported.
    pub fn app_limits(&self) -> Result<AppLimits, Vec<String>> {
        let mut limits = AppLimits::new();
        let mut errors = Vec::new();
        let default = match &self.default_rate_limit {
            None => None,
            Some(config) => match RateLimit::new(config.per_second, config.burst) {
                Ok(limit) => Some(limit),
                Err(e) => {
                    errors.push(format!("default_rate_limit.{e}"));
                    None
                }
            },
        };
        for (app, config) in &self.apps {
            let limit = match config.rate_limit {
                Some(AppRateLimit::Unlimited) => None,
                Some(AppRateLimit::Limit(config)) => match RateLimit::new(config.per_second, config.burst) {
                    Ok(limit) => Some(limit),
                    Err(e) => {
                        errors.push(format!("apps.{app}.rate_limit.{e}"));
                        None
                    }
                },
                None => default,
            };
            if let Some(limit) = limit {
                limits.set(app, limit);
            }
        }
        if errors.is_empty() { Ok(limits) } else { Err(errors) }
    }
}

impl GatewayConfig {
    /// Each app's event endpoint, secrets read. Every problem is reported, naming the setting
    /// (never a URL or a value read).
    pub fn app_events(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<crate::events::Endpoints, Vec<String>> {
        let mut endpoints = Vec::new();
        let mut errors = Vec::new();
        for (app, config) in &self.apps {
            let Some(events) = &config.events else { continue };
            let before = errors.len();
            let endpoint = self.app_endpoint(app, events, env, &mut errors);
            if errors.len() == before {
                endpoints.push(endpoint);
            }
        }
        if errors.is_empty() {
            Ok(crate::events::Endpoints::new(endpoints))
        } else {
            Err(errors)
        }
    }

    /// `app`'s endpoint; its problems go to `errors` (the endpoint is then not to be used).
    fn app_endpoint(
        &self,
        app: &str,
        events: &AppEventsConfig,
        env: &dyn Fn(&str) -> Option<String>,
        errors: &mut Vec<String>,
    ) -> crate::events::Endpoint {
        use crate::events::{EventType, WebhookSecret};
        use sha2::{Digest, Sha256};
        let at = |field: &str| format!("apps.{app}.events.{field}");
        if let Err(why) = crate::events::deliver::check_url(&events.url) {
            errors.push(format!("{}: {why}", at("url")));
        }
        let text = match (&events.secrets_env, &events.secrets_file) {
            (Some(var), None) => {
                env(var).ok_or_else(|| format!("{}: the variable it names is not set", at("secrets_env")))
            }
            (None, Some(file)) => std::fs::read_to_string(file)
                .map_err(|e| format!("{}: cannot read the file it names: {}", at("secrets_file"), e.kind())),
            _ => Err(format!(
                "{}: give exactly one of `secrets_env` and `secrets_file`",
                at("secrets_env")
            )),
        };
        let secrets_digest: [u8; 32] = Sha256::digest(text.as_deref().unwrap_or_default().as_bytes()).into();
        let secrets = text
            .and_then(|text| WebhookSecret::parse_list(&text).map_err(|e| format!("{}: {e}", at("secrets"))))
            .unwrap_or_else(|e| {
                errors.push(e);
                Vec::new()
            });
        let types: Vec<EventType> = match &events.types {
            None => EventType::ALL.to_vec(),
            Some(names) => names
                .iter()
                .filter_map(|name| {
                    let found = EventType::parse(name);
                    if found.is_none() {
                        errors.push(format!(
                            "{}: `{}` is not an event type; use upload.completed, upload.refused, upload.aborted",
                            at("types"),
                            name.escape_debug()
                        ));
                    }
                    found
                })
                .collect(),
        };
        let (timeout, attempts) = self.event_timing(events, &at, errors);
        let mut hasher = Sha256::new();
        hasher.update(app.as_bytes());
        hasher.update(events.url.as_bytes());
        hasher.update(format!(
            "{types:?}{:?}{:?}{timeout:?}{attempts}",
            events.profiles, events.delivery
        ));
        hasher.update(secrets_digest);
        crate::events::Endpoint {
            app: app.to_owned(),
            url: events.url.clone(),
            secrets,
            types,
            profiles: events.profiles.clone(),
            delivery: events.delivery,
            timeout,
            attempts,
            fingerprint: hasher.finalize().into(),
        }
    }

    /// An endpoint's `timeout` and `attempts`, checked against each other and the queue.
    fn event_timing(
        &self,
        events: &AppEventsConfig,
        at: &dyn Fn(&str) -> String,
        errors: &mut Vec<String>,
    ) -> (Duration, u32) {
        use crate::events::Delivery;
        let timeout = events.timeout.unwrap_or(Duration::from_secs(5));
        if timeout.is_zero() || timeout > Duration::from_secs(60) {
            errors.push(format!("{}: use more than 0s and at most 60s", at("timeout")));
        }
        let attempts = events.attempts.unwrap_or(3);
        if !(1..=10).contains(&attempts) {
            errors.push(format!("{}: use 1 to 10", at("attempts")));
        }
        match (events.delivery, self.queue_settings()) {
            (Delivery::Queue, None) => errors.push(format!("{}: `queue` needs `events.redis`", at("delivery"))),
            // An attempt still running must not be taken over by another replica.
            (Delivery::Queue, Some(queue)) if queue.claim_after <= timeout + queue.timeout => errors.push(format!(
                "{}: {} plus `events.redis.timeout` ({}) is not shorter than `events.claim_after` ({}); an event still being sent would be sent again by another replica",
                at("timeout"),
                humantime::format_duration(timeout),
                humantime::format_duration(queue.timeout),
                humantime::format_duration(queue.claim_after)
            )),
            (Delivery::Sync, _) if timeout * attempts > Duration::from_secs(60) => errors.push(format!(
                "{}: {attempts} attempts of up to {} exceed 60s, all inside one `complete` the uploading client waits for",
                at("attempts"),
                humantime::format_duration(timeout)
            )),
            _ => {}
        }
        (timeout, attempts)
    }

    /// The queue's settings, when `events` is configured.
    pub fn queue_settings(&self) -> Option<crate::events::queue::QueueSettings> {
        let events = self.events.as_ref()?;
        Some(crate::events::queue::QueueSettings {
            prefix: events
                .redis
                .key_prefix
                .clone()
                .unwrap_or_else(|| "postgate:events:".to_owned()),
            retry: events
                .retry
                .clone()
                .unwrap_or_else(|| DEFAULT_EVENT_RETRY.iter().map(|s| Duration::from_secs(*s)).collect()),
            claim_after: events.claim_after.unwrap_or(Duration::from_secs(60)),
            timeout: events.redis.timeout.unwrap_or(Duration::from_secs(2)),
        })
    }
}

/// Reads a variable of the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_the_config_fields() {
        // serde lists the fields it expects when it meets one it does not.
        let error = serde_yaml::from_str::<GatewayConfig>("not_a_setting: 1")
            .unwrap_err()
            .to_string();
        let expected = error.split("expected one of ").nth(1).expect("serde lists the fields");
        let fields: Vec<&str> = expected
            .split(", ")
            .map(|f| f.trim_matches(|c: char| c == '`' || c.is_whitespace()))
            .map(|f| f.split('`').next().unwrap_or_default())
            .collect();
        assert_eq!(fields, SETTINGS, "{error}");
    }

    #[test]
    fn variables_naming_no_setting_are_ignored_and_named() {
        let names = [
            "POSTGATE_VERSION",
            "POSTGATE_BIN",
            "POSTGATE_CONFIG",
            "POSTGATE_LISTEN",
            "POSTGATE_STORES__S3__REGION",
            "POSTGATE_stores__s3__region",
            "HOME",
        ];
        assert_eq!(
            ignored_env(names.iter().map(|n| n.to_string())),
            ["POSTGATE_BIN", "POSTGATE_VERSION"]
        );
        assert!(
            names_a_setting("STORES__S3__REGOIN"),
            "a typo inside a setting is read, and refused"
        );
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    fn config(yaml: &str) -> GatewayConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    /// Each bad `events` setting is refused naming the setting, and never quoting the URL or a
    /// secret; a good one resolves.
    #[test]
    fn app_events_are_checked_setting_by_setting() {
        const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let env = |name: &str| match name {
            "HOOK_SECRETS" => Some(format!("{SECRET}, {SECRET}")),
            "BAD_SECRETS" => Some("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned()),
            _ => None,
        };
        let app = |events: &str| format!("apps:\n  web:\n    keys_env: K\n    events:\n{events}");
        let redis = "events:\n  redis: { url_env: R }\n  claim_after: 10s\n";
        for (yaml, error) in [
            (
                app("      url: http://app.example.com/h?t=TOKEN123\n      secrets_env: HOOK_SECRETS\n"),
                "events.url: must be https",
            ),
            (
                app("      url: https://u:TOKEN123@app.example.com/h\n      secrets_env: HOOK_SECRETS\n"),
                "events.url: must not carry credentials",
            ),
            (
                app("      url: https://app.example.com/h\n"),
                "give exactly one of `secrets_env` and `secrets_file`",
            ),
            (
                app("      url: https://app.example.com/h\n      secrets_env: UNSET\n"),
                "events.secrets_env: the variable it names is not set",
            ),
            (
                app("      url: https://app.example.com/h\n      secrets_env: BAD_SECRETS\n"),
                "must start with `whsec_`",
            ),
            (
                app(
                    "      url: https://app.example.com/h\n      secrets_env: HOOK_SECRETS\n      types: [upload.done]\n",
                ),
                "`upload.done` is not an event type",
            ),
            (
                app("      url: https://app.example.com/h\n      secrets_env: HOOK_SECRETS\n      timeout: 2m\n"),
                "events.timeout: use more than 0s and at most 60s",
            ),
            (
                app("      url: https://app.example.com/h\n      secrets_env: HOOK_SECRETS\n      attempts: 0\n"),
                "events.attempts: use 1 to 10",
            ),
            (
                app("      url: https://app.example.com/h\n      secrets_env: HOOK_SECRETS\n      delivery: queue\n"),
                "`queue` needs `events.redis`",
            ),
            (
                app(
                    "      url: https://app.example.com/h\n      secrets_env: HOOK_SECRETS\n      timeout: 10s\n      attempts: 7\n",
                ),
                "events.attempts: 7 attempts of up to 10s exceed 60s",
            ),
            (
                app(
                    "      url: https://app.example.com/h\n      secrets_env: HOOK_SECRETS\n      delivery: queue\n      timeout: 10s\n",
                ) + redis,
                "is not shorter than `events.claim_after`",
            ),
        ] {
            let errors = config(&yaml).app_events(&env).unwrap_err().join("\n");
            assert!(errors.contains(error), "{yaml}\n{errors}");
            assert!(!errors.contains("TOKEN123") && !errors.contains("MfKQ9r8"), "{errors}");
        }
        let good = app(
            "      url: https://app.example.com/h\n      secrets_env: HOOK_SECRETS\n      delivery: queue\n      profiles: [media]\n",
        ) + redis;
        let endpoints = config(&good).app_events(&env).unwrap();
        let web = endpoints.get("web").unwrap();
        assert_eq!(
            (web.secrets.len(), web.attempts, web.timeout),
            (2, 3, Duration::from_secs(5))
        );
        assert!(
            web.wants(crate::events::EventType::Completed, "media")
                && !web.wants(crate::events::EventType::Completed, "avatars")
        );
        assert_eq!(endpoints.queued_apps().collect::<Vec<_>>(), ["web"]);
    }

    #[test]
    fn a_secret_in_the_wrong_place_is_not_printed_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("postgate.yaml");
        std::fs::write(&path, "apps:\n  web:\n    keys: \"canary-raw-key-0123456789\"\n").unwrap();
        let error = GatewayConfig::load(Some(&path)).unwrap_err().to_string();
        assert!(!error.contains("canary-raw-key"), "{error}");
        assert!(error.contains("a string of 25 characters (not shown)"), "{error}");
    }

    #[test]
    fn the_implicit_default_store_follows_the_aws_variables() {
        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "AKIA1"),
            ("AWS_SECRET_ACCESS_KEY", "s1"),
            ("AWS_SESSION_TOKEN", "t1"),
            ("AWS_REGION", "eu-central-1"),
            ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000/"),
            ("AWS_CREDENTIAL_EXPIRATION", "2026-11-21T12:00:00Z"),
        ]);
        let (store, refresh) = GatewayConfig::default().resolve_store("default", &env).unwrap();
        assert!(matches!(refresh, Refresh::Never));
        assert_eq!(store.region, "eu-central-1");
        assert_eq!(store.endpoint, Endpoint::Custom("http://127.0.0.1:9000".into()));
        let keys = store.credentials().unwrap();
        assert_eq!(keys.credentials.access_key_id, "AKIA1");
        assert_eq!(keys.credentials.session_token, Some(Secret::new("t1")));
        assert!(keys.credentials.expires_at.is_some());
        assert!(matches!(
            GatewayConfig::default().resolve_store("archive", &env),
            Err(ConfigError::UnknownStore(_))
        ));
    }

    #[test]
    fn aws_stores_default_to_the_provider_chain_and_others_to_static_keys() {
        // Without static keys, an AWS store waits for the chain; with them, it signs at once.
        let (store, refresh) = GatewayConfig::default().resolve_store("default", &env_of(&[])).unwrap();
        assert!(store.credentials().is_none());
        assert!(matches!(
            refresh,
            Refresh::Provider {
                source: CredentialSource::Chain,
                ..
            }
        ));
        let env = env_of(&[("AWS_ACCESS_KEY_ID", "AKIA1"), ("AWS_SECRET_ACCESS_KEY", "s1")]);
        let (store, refresh) = GatewayConfig::default().resolve_store("default", &env).unwrap();
        assert!(store.credentials().is_some());
        assert!(matches!(refresh, Refresh::Never));
        // An explicit source wins over keys in the environment.
        let (store, refresh) = config("stores:\n  default:\n    credentials: { source: container }\n")
            .resolve_store("default", &env)
            .unwrap();
        assert!(store.credentials().is_none());
        assert!(matches!(
            refresh,
            Refresh::Provider {
                source: CredentialSource::Container,
                ..
            }
        ));
    }

    #[test]
    fn endpoints_are_normalized_for_signing() {
        for (given, expected) in [
            ("http://127.0.0.1:9000/", "http://127.0.0.1:9000"),
            ("https://S3.Example.COM:443", "https://s3.example.com"),
            ("http://minio:80/base/", "http://minio/base"),
            ("https://minio:9000", "https://minio:9000"),
        ] {
            assert_eq!(normalize_endpoint(given).as_deref(), Ok(expected), "{given}");
        }
        for bad in [
            "ftp://x",
            "s3.example.com",
            "https://key:secret@s3.example.com",
            "https://s3?x=1",
            "https://#f",
            "https://",
        ] {
            assert!(normalize_endpoint(bad).is_err(), "{bad}");
        }
        let error = normalize_endpoint("https://key:secret@s3.example.com").unwrap_err();
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn named_stores_read_their_own_variables_and_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "from-file\n").unwrap();
        let yaml = format!(
            "stores:\n  archive:\n    region: us-west-2\n    addressing: path\n    credentials:\n      access_key_id_env: ARCHIVE_KEY\n      secret_access_key_file: {}\n",
            dir.path().join("secret").display()
        );
        let config = config(&yaml);
        assert_eq!(config.store_names(), ["archive"]);
        let (store, refresh) = config
            .resolve_store("archive", &env_of(&[("ARCHIVE_KEY", "AKIA2")]))
            .unwrap();
        assert!(matches!(refresh, Refresh::Files(_)), "key files are re-read");
        let keys = store.credentials().unwrap();
        assert_eq!(keys.credentials.secret_access_key, Secret::new("from-file"));
        assert_eq!(store.addressing, Addressing::Path);
        assert_eq!(store.endpoint, Endpoint::Aws);
        // The implicit default store exists only when no store is declared.
        assert!(config.resolve_store("default", &env_of(&[])).is_err());
    }

    #[test]
    fn missing_credentials_and_bad_endpoints_say_what_to_fix() {
        let error = config("stores:\n  default:\n    endpoint: http://127.0.0.1:9000\n")
            .resolve_store("default", &env_of(&[]))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "store `default`: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the store's credentials.*_file settings, or `source: chain`)"
        );
        let config = config("stores:\n  default:\n    endpoint: ftp://example\n");
        let error = config.resolve_store("default", &env_of(&[])).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("endpoint `ftp://example` is not an http(s) URL"),
            "{error}"
        );
    }

    #[test]
    fn app_names_follow_the_profile_name_rules_and_a_key_belongs_to_one_app() {
        let hash = crate::auth::hash_key(&Secret::new("shared-key-0123456789"));
        let errors = config(&format!(
            "apps:\n  \"../../evil\":\n    keys: [\"{hash}\"]\n  web:\n    keys: [\"{hash}\"]\n  mobile:\n    keys: [\"{hash}\"]\n"
        ))
        .app_keys(&|_| None)
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "apps: `../../evil` is not an app name: use 1 to 63 of a-z, 0-9, `_`, `-`, starting with a letter or digit",
                "apps.mobile.keys[0]: the same key is listed under app `web`; a key belongs to one app",
            ]
        );
    }

    #[test]
    fn app_keys_come_from_hashes_files_and_variables() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keys"), "# rotation\nfile-key-0123456789\n").unwrap();
        let hash = crate::auth::hash_key(&Secret::new("hashed-key-0123456789"));
        let yaml = format!(
            "apps:\n  web:\n    keys: [\"{hash}\"]\n  mobile:\n    keys_file: {}\n  ingest:\n    keys_env: INGEST_KEYS\n",
            dir.path().join("keys").display()
        );
        let keys = config(&yaml)
            .app_keys(&env_of(&[("INGEST_KEYS", "env-key-0123456789, env-key-9876543210")]))
            .unwrap();
        assert_eq!(keys.authenticate("hashed-key-0123456789"), Some("web"));
        assert_eq!(keys.authenticate("file-key-0123456789"), Some("mobile"));
        assert_eq!(keys.authenticate("env-key-9876543210"), Some("ingest"));

        let errors = config(
            "apps:\n  web:\n    keys: [\"plain-key-0123456789\"]\n  mobile: {}\n  ingest:\n    keys_env: NOPE\n",
        )
        .app_keys(&env_of(&[]))
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "apps.web.keys[0]: store the key's hash (`postgate hash-key`), not the key",
                "apps.mobile: no keys; give `keys`, `keys_file` or `keys_env`",
                "apps.ingest.keys_env: the variable it names is not set",
            ]
        );
    }

    #[test]
    fn rate_limits_per_app_with_a_default() {
        let yaml = "default_rate_limit: { per_second: 10 }\napps:\n  web:\n    keys_env: K\n    rate_limit: { per_second: 50, burst: 100 }\n  mobile:\n    keys_env: K\n  ingest:\n    keys_env: K\n    rate_limit: unlimited\n";
        let limits = config(yaml).app_limits().unwrap();
        assert_eq!(limits.get("web"), Some(RateLimit::new(50.0, Some(100)).unwrap()));
        assert_eq!(limits.get("mobile"), Some(RateLimit::new(10.0, Some(10)).unwrap()));
        assert_eq!(limits.get("ingest"), None);
        // Without a default, apps without their own limit are unlimited.
        let limits = config("apps:\n  web:\n    keys_env: K\n").app_limits().unwrap();
        assert_eq!(limits, AppLimits::new());

        let errors = config("default_rate_limit: { per_second: 0 }\napps:\n  web:\n    keys_env: K\n    rate_limit: { per_second: 5, burst: 0 }\n")
            .app_limits()
            .unwrap_err();
        assert_eq!(
            errors,
            [
                "default_rate_limit.per_second: 0 is outside 0.001..=1000000",
                "apps.web.rate_limit.burst: must be at least 1",
            ]
        );
        assert!(
            serde_yaml::from_str::<GatewayConfig>("apps:\n  web:\n    rate_limit: { per_second: 1, brust: 2 }\n")
                .is_err()
        );
        assert!(serde_yaml::from_str::<GatewayConfig>("apps:\n  web:\n    rate_limit: none\n").is_err());
    }

    #[test]
    fn rate_limits_come_from_the_file_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("postgate.yaml");
        std::fs::write(&path, "apps:\n  web:\n    keys_env: K\n    rate_limit: { per_second: 2.5, burst: 4 }\n  mobile:\n    keys_env: K\n    rate_limit: unlimited\n").unwrap();
        let limits = GatewayConfig::load(Some(&path)).unwrap().app_limits().unwrap();
        assert_eq!(limits.get("web"), Some(RateLimit::new(2.5, Some(4)).unwrap()));
        assert_eq!(limits.get("mobile"), None);
    }
}
