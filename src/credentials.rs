//! Keeping stores' credentials current (an edge: it reads files, the environment and the AWS
//! credential endpoints, and owns the clock of its schedule).
//!
//! One background thread runs one task per store whose credentials can change
//! (`config::Refresh`): static keys from files are re-read every `FILE_POLL` and swapped in when
//! they change; provider credentials (the AWS SDK's `aws-config` providers) are fetched again
//! halfway through their usable life, never on a request. A failed fetch leaves the current
//! credentials in place until they run out (`sign::MIN_CREDENTIAL_LIFETIME` before their expiry),
//! and is retried after 1, 2, 4 s, up to `MAX_RETRY`. Every state change is logged once.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use aws_config::Region;
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::provider::ProvideCredentials;
use time::OffsetDateTime;

use crate::config::{CredentialSource, Refresh};
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::sign::{Credentials, MIN_CREDENTIAL_LIFETIME, Store};

/// How often static key files are re-read.
pub const FILE_POLL: Duration = Duration::from_secs(10);
/// The longest wait between attempts while fetches fail.
pub const MAX_RETRY: Duration = Duration::from_secs(5);
/// The longest wait between fetches of credentials that do not expire.
pub const NO_EXPIRY_REFETCH: Duration = Duration::from_secs(300);
/// The longest wait between fetches of credentials that expire.
pub const MAX_REFETCH: Duration = Duration::from_secs(900);
/// How long one fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(20);

/// When to fetch again credentials that expire at `expires_at`, seen at `now`: halfway to the
/// end of their usable life (`MIN_CREDENTIAL_LIFETIME` before the expiry), at least 1 s away.
pub fn next_refresh(now: OffsetDateTime, expires_at: Option<OffsetDateTime>) -> Duration {
    let Some(expires_at) = expires_at else {
        return NO_EXPIRY_REFETCH;
    };
    let usable = (expires_at - MIN_CREDENTIAL_LIFETIME - now).max(time::Duration::ZERO);
    Duration::try_from(usable / 2)
        .unwrap_or_default()
        .clamp(Duration::from_secs(1), MAX_REFETCH)
}

/// The wait before attempt `failures + 1` after `failures` failed ones in a row.
pub fn retry_after(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(8)).min(MAX_RETRY)
}

/// Starts the refresh thread for `stores` and waits up to `first_wait` for each store's first
/// fetch, so a starting gateway is ready when its credentials are. Stores that never change get
/// their metrics set and no task.
pub fn spawn(stores: Vec<(Arc<Store>, Refresh)>, metrics: Arc<Metrics>, first_wait: Duration) {
    let mut changing = Vec::new();
    for (store, refresh) in stores {
        let expiry = store.credentials().and_then(|k| k.credentials.expires_at);
        match refresh {
            // Fixed credentials that never expire need no task; ones that do are watched, so
            // their end shows in the metrics and the alerts.
            Refresh::Never if expiry.is_none() => metrics.credentials(&store.name, true, true, None),
            refresh => changing.push((store, refresh)),
        }
    }
    if changing.is_empty() {
        return;
    }
    let (first_done, first) = mpsc::channel::<()>();
    let count = changing.len();
    let spawned = std::thread::Builder::new().name("credentials".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "cannot start the credentials thread; credentials will not refresh");
                return;
            }
        };
        runtime.block_on(async move {
            let mut tasks = Vec::new();
            for (store, refresh) in changing {
                let metrics = metrics.clone();
                let first_done = first_done.clone();
                tasks.push(tokio::spawn(keep_current(store, refresh, metrics, first_done)));
            }
            for task in tasks {
                let _ = task.await;
            }
        });
    });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the credentials thread; credentials will not refresh");
        return;
    }
    let deadline = std::time::Instant::now() + first_wait;
    for _ in 0..count {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if first.recv_timeout(left).is_err() {
            tracing::warn!(waited = ?first_wait, "credentials are still being fetched; presign answers 503 until they are");
            break;
        }
    }
}

/// Fetches `store`'s credentials once, now (for `postgate sign`).
pub fn fetch_now(store: &Store, refresh: &Refresh) -> Result<(), String> {
    let Refresh::Provider {
        source,
        profile,
        region,
    } = refresh
    else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let credentials = runtime.block_on(async {
        let provider = provider(*source, profile.as_deref(), region).await;
        fetch(provider.as_ref())
            .await
            .map_err(|e| format!("{}: {e}", tried(*source)))
    })?;
    store.set_credentials(credentials);
    Ok(())
}

/// One store's loop: fetch, publish, sleep, forever.
async fn keep_current(store: Arc<Store>, refresh: Refresh, metrics: Arc<Metrics>, first_done: mpsc::Sender<()>) {
    let provider = match &refresh {
        Refresh::Provider {
            source,
            profile,
            region,
        } => Some(provider(*source, profile.as_deref(), region).await),
        _ => None,
    };
    let mut failures = 0u32;
    let mut failing = false;
    let mut first = Some(first_done);
    loop {
        let fetched = match (&refresh, &provider) {
            (Refresh::Never, _) => store
                .credentials()
                .map(|keys| keys.credentials.clone())
                .ok_or_else(|| "no credentials".to_owned()),
            (Refresh::Files(config), _) => read_files_twice(config),
            (Refresh::Provider { source, .. }, Some(provider)) => fetch(provider.as_ref())
                .await
                .map_err(|e| format!("{}: {e}", tried(*source))),
            _ => return,
        };
        let now = OffsetDateTime::now_utc();
        // A provider may hand back what it last had (IMDS does when it fails): credentials too
        // close to their end are a failure, whoever says otherwise.
        let fetched = fetched.and_then(|credentials| match credentials.expires_at {
            Some(at) if at - MIN_CREDENTIAL_LIFETIME <= now => Err(format!(
                "the credentials fetched expire at {}",
                crate::sign::format_rfc3339(at)
            )),
            _ => Ok(credentials),
        });
        let wait = match fetched {
            Ok(credentials) => {
                let expires_at = credentials.expires_at;
                let current = store.credentials();
                let changed = current
                    .as_ref()
                    .is_none_or(|keys| !same(&keys.credentials, &credentials));
                if changed {
                    tracing::info!(
                        store = %store.name,
                        access_key_id = %credentials.access_key_id,
                        expires_at = expires_at.map(crate::sign::format_rfc3339).as_deref().unwrap_or("never"),
                        "store credentials updated"
                    );
                    store.set_credentials(credentials);
                }
                if failing {
                    tracing::info!(store = %store.name, "store credentials are fetched again");
                }
                failing = false;
                failures = 0;
                metrics.credentials(&store.name, true, true, expires_at.map(unix));
                match refresh {
                    Refresh::Files(_) => FILE_POLL,
                    // Wake when they run out, to say so.
                    Refresh::Never => expires_at.map_or(NO_EXPIRY_REFETCH, |at| {
                        Duration::try_from(at - MIN_CREDENTIAL_LIFETIME - now).unwrap_or_default()
                            + Duration::from_millis(100)
                    }),
                    _ => next_refresh(now, expires_at),
                }
            }
            Err(reason) => {
                let usable = store.signer(now).is_ok();
                if !failing {
                    tracing::error!(store = %store.name, %reason, still_signing = usable, "cannot fetch store credentials");
                }
                failing = true;
                store.set_credentials_problem(reason);
                let expiry = store.credentials().and_then(|k| k.credentials.expires_at);
                metrics.credentials(&store.name, false, usable, expiry.map(unix));
                failures = failures.saturating_add(1);
                let mut wait = retry_after(failures - 1);
                if let Some(expiry) = expiry.filter(|_| usable) {
                    // Wake when the current credentials run out, to say so.
                    let left = Duration::try_from(expiry - MIN_CREDENTIAL_LIFETIME - now).unwrap_or_default();
                    wait = wait.min(left + Duration::from_millis(100));
                }
                wait
            }
        };
        if let Some(first_done) = first.take() {
            let _ = first_done.send(());
        }
        tokio::time::sleep(wait).await;
        if store.signer(OffsetDateTime::now_utc()).is_err() {
            metrics.credentials_valid(&store.name, false);
        }
    }
}

/// Static key files, read twice: a Secret swapped between the reads of the key id and the
/// secret would pair one key's id with another's secret, so only two equal reads count.
fn read_files_twice(config: &crate::config::CredentialsConfig) -> Result<Credentials, String> {
    let read = || match config.read_static(&crate::config::process_env) {
        Ok(Some(credentials)) => Ok(credentials),
        Ok(None) => Err("the key files are empty".to_owned()),
        Err(error) => Err(error),
    };
    let first = read()?;
    let second = read()?;
    if same(&first, &second) {
        Ok(first)
    } else {
        Err("the key files changed while they were read; reading them again".into())
    }
}

/// What a source tried, for its errors.
fn tried(source: CredentialSource) -> &'static str {
    match source {
        CredentialSource::Chain | CredentialSource::Static => {
            "no credentials from the AWS provider chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE and the shared config files, AWS_WEB_IDENTITY_TOKEN_FILE, AWS_CONTAINER_CREDENTIALS_FULL_URI, instance metadata)"
        }
        CredentialSource::Container => {
            "no container credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI or AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)"
        }
        CredentialSource::WebIdentity => "no web identity credentials (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN)",
        CredentialSource::Imds => "no instance metadata credentials",
        CredentialSource::Profile => "no credentials from the shared config profile",
    }
}

fn same(a: &Credentials, b: &Credentials) -> bool {
    a.access_key_id == b.access_key_id
        && a.secret_access_key == b.secret_access_key
        && a.session_token == b.session_token
        && a.expires_at == b.expires_at
}

fn unix(at: OffsetDateTime) -> f64 {
    at.unix_timestamp() as f64
}

/// The AWS provider for `source`, over the same rustls (ring) stack as the store client.
async fn provider(source: CredentialSource, profile: Option<&str>, region: &str) -> Box<dyn ProvideCredentials> {
    use aws_smithy_http_client::{Builder, tls};
    let http = Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    let config = ProviderConfig::default()
        .with_http_client(http)
        .with_region(Some(Region::new(region.to_owned())));
    match source {
        CredentialSource::Container => Box::new(
            aws_config::ecs::EcsCredentialsProvider::builder()
                .configure(&config)
                .build(),
        ),
        CredentialSource::WebIdentity => Box::new(
            aws_config::web_identity_token::WebIdentityTokenCredentialsProvider::builder()
                .configure(&config)
                .build(),
        ),
        CredentialSource::Imds => Box::new(
            aws_config::imds::credentials::ImdsCredentialsProvider::builder()
                .configure(&config)
                .build(),
        ),
        CredentialSource::Profile => {
            let mut builder = aws_config::profile::ProfileFileCredentialsProvider::builder().configure(&config);
            if let Some(name) = profile {
                builder = builder.profile_name(name);
            }
            Box::new(builder.build())
        }
        CredentialSource::Chain | CredentialSource::Static => {
            let mut builder = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                .configure(config)
                .region(Region::new(region.to_owned()));
            if let Some(name) = profile {
                builder = builder.profile_name(name);
            }
            Box::new(builder.build().await)
        }
    }
}

/// One fetch, bounded in time; errors say what failed, with the provider's own chain of causes.
async fn fetch(provider: &dyn ProvideCredentials) -> Result<Credentials, String> {
    let credentials = match tokio::time::timeout(FETCH_TIMEOUT, provider.provide_credentials()).await {
        Err(_) => return Err(format!("no answer within {FETCH_TIMEOUT:?}")),
        Ok(Err(error)) => return Err(describe(&error)),
        Ok(Ok(credentials)) => credentials,
    };
    Ok(Credentials {
        access_key_id: credentials.access_key_id().to_owned(),
        secret_access_key: Secret::new(credentials.secret_access_key()),
        session_token: credentials.session_token().map(Secret::new),
        expires_at: credentials.expiry().map(|at: SystemTime| OffsetDateTime::from(at)),
    })
}

fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn refreshes_halfway_through_the_usable_life() {
        let now = datetime!(2026-12-01 12:00:00 UTC);
        // Half of 15 min of usable life; an hour's half is past the ceiling.
        assert_eq!(
            next_refresh(now, Some(now + time::Duration::seconds(930))),
            Duration::from_secs(450)
        );
        assert_eq!(next_refresh(now, Some(now + time::Duration::hours(1))), MAX_REFETCH);
        assert_eq!(
            next_refresh(now, Some(now + time::Duration::seconds(40))),
            Duration::from_secs(5)
        );
        assert_eq!(
            next_refresh(now, Some(now + time::Duration::seconds(10))),
            Duration::from_secs(1)
        );
        assert_eq!(next_refresh(now, None), NO_EXPIRY_REFETCH);
    }

    #[test]
    fn retries_back_off_to_a_ceiling() {
        let waits: Vec<u64> = (0..5).map(|n| retry_after(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
    }
}
