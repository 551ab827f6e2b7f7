//! The gateway config (`postgate.yaml`, overridable by `POSTGATE_*` environment variables) and
//! the stores it declares, with their credentials read from the environment or files.
//!
//! An edge module: it reads files and the environment. Secrets are wrapped in `Secret` the
//! moment they are read.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Yaml};
use indexmap::IndexMap;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::secret::Secret;
use crate::sign::{Addressing, Credentials, Endpoint, Store};

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

/// `postgate.yaml`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The directory of upload profiles.
    #[serde(default = "default_policies")]
    pub policies: PathBuf,
    /// Named S3 endpoints. When none is declared, a `default` store is made from the standard
    /// AWS environment variables (`AWS_REGION`, `AWS_ENDPOINT_URL_S3`, credentials).
    #[serde(default)]
    pub stores: IndexMap<String, StoreConfig>,
}

fn default_policies() -> PathBuf {
    PathBuf::from("policies")
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            policies: default_policies(),
            stores: IndexMap::new(),
        }
    }
}

/// One S3 endpoint.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The region signatures are scoped to; default `AWS_REGION`, `AWS_DEFAULT_REGION`, or us-east-1.
    #[serde(default)]
    pub region: Option<String>,
    /// An S3-compatible endpoint like `http://127.0.0.1:9000`; default AWS S3.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `auto` (default), `path` or `virtual`.
    #[serde(default)]
    pub addressing: Addressing,
    #[serde(default)]
    pub credentials: CredentialsConfig,
}

/// Where a store's credentials come from. A `*_file` setting wins over its `*_env` setting.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
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
}

impl GatewayConfig {
    /// Reads `path` (when given) and overlays `POSTGATE_*` variables, `__` separating levels:
    /// `POSTGATE_STORES__DEFAULT__REGION=eu-west-1`.
    pub fn load(path: Option<&Path>) -> Result<GatewayConfig, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            if !path.is_file() {
                return Err(ConfigError::Invalid(format!("{}: no such file", path.display())));
            }
            figment = figment.merge(Yaml::file(path));
        }
        figment = figment.merge(Env::prefixed("POSTGATE_").ignore(&["config"]).split("__"));
        figment.extract().map_err(|error| {
            let messages: Vec<String> = error.into_iter().map(|e| e.to_string()).collect();
            ConfigError::Invalid(messages.join("; "))
        })
    }

    /// The names of the stores profiles may use.
    pub fn store_names(&self) -> Vec<String> {
        if self.stores.is_empty() {
            vec![DEFAULT_STORE.to_owned()]
        } else {
            self.stores.keys().cloned().collect()
        }
    }

    /// Builds a store, reading its credentials with `env` (the process environment in production).
    pub fn resolve_store(&self, name: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Store, ConfigError> {
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
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                Endpoint::Custom(url.trim_end_matches('/').to_owned())
            }
            Some(url) => return Err(fail(format!("endpoint `{url}` is not an http(s) URL"))),
        };

        let creds = &config.credentials;
        let read =
            |file: &Option<PathBuf>, var: &Option<String>, default_var: &str| -> Result<Option<String>, ConfigError> {
                if let Some(file) = file {
                    return std::fs::read_to_string(file)
                        .map(|text| Some(text.trim().to_owned()))
                        .map_err(|e| fail(format!("cannot read {}: {e}", file.display())));
                }
                Ok(env(var.as_deref().unwrap_or(default_var)).filter(|v| !v.is_empty()))
            };
        let access_key_id = read(&creds.access_key_id_file, &creds.access_key_id_env, "AWS_ACCESS_KEY_ID")?;
        let secret = read(
            &creds.secret_access_key_file,
            &creds.secret_access_key_env,
            "AWS_SECRET_ACCESS_KEY",
        )?;
        let token = read(&creds.session_token_file, &creds.session_token_env, "AWS_SESSION_TOKEN")?;
        let expiration_var = creds.expiration_env.as_deref().unwrap_or("AWS_CREDENTIAL_EXPIRATION");
        let expires_at = match env(expiration_var).filter(|v| !v.is_empty()) {
            None => None,
            Some(text) => Some(
                OffsetDateTime::parse(&text, &Rfc3339)
                    .map_err(|e| fail(format!("{expiration_var} is not an RFC 3339 time: {e}")))?,
            ),
        };
        let (Some(access_key_id), Some(secret)) = (access_key_id, secret) else {
            let var = |v: &Option<String>, d: &str| v.clone().unwrap_or_else(|| d.to_owned());
            return Err(fail(format!(
                "no credentials: set {} and {} (or the store's credentials.*_file settings)",
                var(&creds.access_key_id_env, "AWS_ACCESS_KEY_ID"),
                var(&creds.secret_access_key_env, "AWS_SECRET_ACCESS_KEY"),
            )));
        };
        let credentials = Credentials {
            access_key_id,
            secret_access_key: Secret::new(secret),
            session_token: token.map(Secret::new),
            expires_at,
        };
        Ok(Store::new(name, &region, endpoint, config.addressing, credentials))
    }
}

/// Reads a variable of the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
