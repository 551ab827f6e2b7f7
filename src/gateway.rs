//! Wiring for `postgate serve` and `postgate dev` (part of the binary): stores, the registry,
//! the reload thread, SIGHUP, and the HTTP servers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;
use postgate::config::{GatewayConfig, process_env};
use postgate::http::{self, AppState};
use postgate::metrics::{Metrics, Trigger};
use postgate::profile::Diagnostic;
use postgate::registry::watch::{self, Reloader, WatchSettings};
use postgate::registry::{AppsSource, Registry, Source, Stores};
use postgate::secret::Secret;
use postgate::store::{ClientConfig, StoreClient};
use postgate::upload::TokenKeys;
use uuid::Uuid;

/// How long a starting gateway waits for credentials it fetches (it starts anyway, not ready).
const FIRST_CREDENTIALS_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Where a store's credentials come from, for the start-up log.
fn refresh_kind(refresh: &postgate::config::Refresh) -> String {
    use postgate::config::Refresh;
    match refresh {
        Refresh::Never => "static".into(),
        Refresh::Files(_) => "static, files re-read on change".into(),
        Refresh::Provider { source, .. } => format!("{source:?} provider, refreshed"),
    }
}

/// What `postgate dev` prints at start: where things are, the app keys, commands to try.
#[cfg(feature = "dev-store")]
fn print_dev_banner(
    registry: &Registry,
    policies: &std::path::Path,
    listen: &str,
    store: &postgate::dev::DevStore,
    names: &[String],
) {
    let gateway = format!("http://{listen}");
    println!();
    println!("postgate dev");
    println!(
        "  gateway   {gateway}   (profiles from {}, hot-reloaded)",
        policies.display()
    );
    println!(
        "  S3 store  {}   (data in {})",
        store.endpoint,
        store.data_dir.display()
    );
    println!(
        "  app keys  {}",
        names
            .iter()
            .map(|a| format!("{a}={}", dev_key(a)))
            .collect::<Vec<_>>()
            .join("  ")
    );
    if registry.current().get("avatars").is_some() {
        println!();
        println!("Sign a form, then upload a file with it:");
        println!();
        println!(
            "  curl -sf -X POST '{gateway}/v1/profiles/avatars/presign?format=curl' -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' -d '{{\"vars\":{{\"user\":\"alice\"}},\"filename\":\"hello.png\",\"content_type\":\"image/png\",\"metadata\":{{\"purpose\":\"avatar\"}}}}' -o form.curl",
            dev_key("web")
        );
        println!("  curl -sS -K form.curl -F 'file=@Cargo.toml'");
        println!();
        println!(
            "The object lands under {}/user-content/avatars/alice/. Drop `?format=curl` to see the JSON form.",
            store.data_dir.display()
        );
    }
    if registry.current().get("invoices").is_some() {
        println!();
        println!("Or sign a presigned PUT (the exact size is signed), then send the file as the body:");
        println!();
        println!(
            "  curl -sf -X POST '{gateway}/v1/profiles/invoices/presign?format=curl' -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' -d \"{{\\\"method\\\":\\\"put\\\",\\\"vars\\\":{{\\\"supplier\\\":\\\"acme\\\"}},\\\"size\\\":$(wc -c < Cargo.toml)}}\" -o put.curl",
            dev_key("web")
        );
        println!("  curl -sS -K put.curl -T Cargo.toml");
        println!();
        println!(
            "That object lands under {}/finance-inbox/invoices/acme/.",
            store.data_dir.display()
        );
    }
    println!();
}

/// A fresh secret for `postgate dev`'s own event receiver.
#[cfg(feature = "dev-store")]
fn dev_events_secret() -> postgate::events::WebhookSecret {
    use base64::Engine as _;
    let bytes: Vec<u8> = Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(Uuid::new_v4().as_bytes())
        .copied()
        .collect();
    let text = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes));
    postgate::events::WebhookSecret::parse(&text).expect("32 random bytes make a secret")
}

/// `postgate dev`'s endpoint for `app`: its own receiver, within `complete`.
#[cfg(feature = "dev-store")]
fn dev_endpoint(app: &str, listen: &str, secret: &postgate::events::WebhookSecret) -> postgate::events::Endpoint {
    postgate::events::Endpoint {
        app: app.to_owned(),
        url: format!("http://{listen}{}", http::DEV_EVENTS_PATH),
        secrets: vec![secret.clone()],
        types: postgate::events::EventType::ALL.to_vec(),
        profiles: None,
        delivery: postgate::events::Delivery::Sync,
        timeout: std::time::Duration::from_secs(5),
        attempts: 2,
        fingerprint: [0; 32],
    }
}

/// `postgate serve`.
pub fn serve(config: GatewayConfig, config_path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let mut stores = Stores::new();
    let mut refreshes = Vec::new();
    for name in config.store_names() {
        let (store, refresh) = config.resolve_store(&name, &process_env)?;
        tracing::info!(store = %name, region = %store.region, endpoint = ?store.endpoint, post = store.post, credentials = ?refresh_kind(&refresh), "store configured");
        let store = Arc::new(store);
        refreshes.push((store.clone(), refresh));
        stores.insert(name, store);
    }
    let metrics = Arc::new(Metrics::new());
    postgate::credentials::spawn(refreshes, metrics.clone(), FIRST_CREDENTIALS_WAIT);
    let source = Source {
        policies: config.policies.clone(),
        stores: Arc::new(stores),
        apps: AppsSource::ConfigFile(config_path.clone()),
    };
    let registry = start_registry(source, &config, metrics, None)?;
    if registry.current().apps.is_empty() {
        tracing::warn!("no apps are configured: every request will be answered 401; see `apps` in the README");
    }
    let mut watched = vec![config.policies.clone()];
    if let Some(dir) = config_path.as_ref().and_then(|p| p.parent()) {
        watched.push(if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir.to_owned()
        });
    }
    let reloader = watch::spawn(
        registry.clone(),
        watched_dirs(&config, watched),
        watch_settings(&config),
    );
    run_servers(registry, config, reloader, None)
}

/// `postgate dev`: the gateway plus an embedded store, dev credentials and dev app keys.
#[cfg(feature = "dev-store")]
pub fn dev(config: GatewayConfig, data: PathBuf, listen: &str, store_listen: &str) -> anyhow::Result<ExitCode> {
    use postgate::auth::AppKeys;
    use postgate::dev;
    use postgate::secret::Secret;
    use postgate::sign::{Addressing, Credentials, Endpoint, Store};

    // The browser origins of `postgate dev`: its own pages, and those the config names.
    let mut origins = own_origins(listen);
    origins.extend(config.cors.allowed_origins.iter().filter(|o| *o != "*").cloned());
    origins.extend(config.apps.values().flat_map(|a| a.cors_origins.iter().cloned()));
    let store = dev::start(&data, store_listen, origins.clone())?;
    let credentials = Credentials {
        access_key_id: dev::ACCESS_KEY.to_owned(),
        secret_access_key: Secret::new(dev::SECRET_KEY),
        session_token: None,
        expires_at: None,
    };
    // Every configured store name signs for the one local store.
    let mut stores = Stores::new();
    for name in config.store_names() {
        let signer = Store::new(
            &name,
            "us-east-1",
            Endpoint::Custom(store.endpoint.clone()),
            Addressing::Path,
            credentials.clone(),
        )
        .with_post(config.store_takes_post(&name));
        stores.insert(name, Arc::new(signer));
    }
    let stores = Arc::new(stores);

    // One dev key per app the profiles name, plus `dev` for profiles open to every app.
    let names = postgate::registry::load(&config.policies, &stores)
        .map(|snapshot| {
            let mut names: Vec<String> = snapshot
                .profiles
                .values()
                .flat_map(|p| p.apps().unwrap_or_default().to_vec())
                .collect();
            names.push("dev".to_owned());
            names.sort();
            names.dedup();
            names
        })
        .unwrap_or_else(|_| vec!["dev".to_owned()]);
    let mut keys = AppKeys::new();
    for app in &names {
        keys.add(app, &dev_key(app)).map_err(anyhow::Error::msg)?;
    }

    // Dev keys are local and unlimited: `postgate dev` applies no rate limits. End-user token
    // rules come from the config, so a browser app's sign-in can be tried locally.
    let tokens = config
        .token_apps()
        .map_err(|errors| anyhow::anyhow!("{}", errors.join("; ")))?;
    let mut events = config
        .app_events(&process_env)
        .map_err(|errors| anyhow::anyhow!("{}", errors.join("; ")))?;
    // The page's app sends its events to the gateway's own receiver, unless the config says
    // where they go, so the page shows what an app's answer looks like.
    let page_app = if names.iter().any(|a| a == "web") { "web" } else { "dev" };
    let events_secret = dev_events_secret();
    if events.get(page_app).is_none() {
        events = events.with(dev_endpoint(page_app, listen, &events_secret));
    }
    let source = Source {
        policies: config.policies.clone(),
        stores,
        apps: AppsSource::FixedWithTokens(keys, postgate::ratelimit::AppLimits::new(), tokens, events),
    };
    let data_dir = store.data_dir.clone();
    let on_publish = Box::new(move |snapshot: &postgate::registry::Snapshot| dev::ensure_buckets(&data_dir, snapshot));
    let registry = start_registry(source, &config, Arc::new(Metrics::new()), Some(on_publish))?;
    let watched = watched_dirs(&config, vec![config.policies.clone()]);
    let reloader = watch::spawn(registry.clone(), watched, watch_settings(&config));

    print_dev_banner(&registry, &config.policies, listen, &store, &names);

    let mut config = config;
    config.listen = listen.to_owned();
    config.cors.allowed_origins = origins;
    let pages = http::DevPages {
        key: dev_key(page_app),
        app: page_app.to_owned(),
        events_secret: Some(events_secret),
    };
    run_servers(registry, config, reloader, Some(pages))
}

/// `http://<listen>`, and its `localhost` / `127.0.0.1` twin.
#[cfg(feature = "dev-store")]
fn own_origins(listen: &str) -> Vec<String> {
    let mut origins = vec![format!("http://{listen}")];
    if let Some((host, port)) = listen.rsplit_once(':') {
        for alias in ["127.0.0.1", "localhost"] {
            if host == "127.0.0.1" || host == "localhost" || host == "0.0.0.0" {
                origins.push(format!("http://{alias}:{port}"));
            }
        }
    }
    origins.sort();
    origins.dedup();
    origins
}

/// The dev key of an app.
#[cfg(feature = "dev-store")]
pub fn dev_key(app: &str) -> String {
    format!("dev-key-{app}-local")
}

/// `dirs`, or none when `reload.watch` is off (reloads then come from SIGHUP, the admin endpoint
/// and the periodic check only).
fn watched_dirs(config: &GatewayConfig, dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    if config.reload.watch {
        dirs
    } else {
        tracing::info!("reload.watch is off: no directory is watched");
        Vec::new()
    }
}

fn watch_settings(config: &GatewayConfig) -> WatchSettings {
    WatchSettings {
        debounce: config.reload.debounce,
        max_wait: config.reload.max_wait,
        interval: config.reload.interval,
    }
}

type OnPublish = Box<dyn Fn(&postgate::registry::Snapshot) + Send + Sync>;

fn start_registry(
    source: Source,
    config: &GatewayConfig,
    metrics: Arc<Metrics>,
    on_publish: Option<OnPublish>,
) -> anyhow::Result<Arc<Registry>> {
    let dir = source.policies.display().to_string();
    match Registry::start(source, config.reload.allow_empty, metrics, on_publish) {
        Ok(registry) => Ok(Arc::new(registry)),
        Err(diagnostics) => {
            for diagnostic in &diagnostics {
                eprintln!("{diagnostic}");
            }
            let errors = diagnostics.iter().filter(|d| Diagnostic::is_error(d)).count();
            bail!("{dir}: {}; refusing to start", postgate::counted(errors, "error"))
        }
    }
}

fn run_servers(
    registry: Arc<Registry>,
    config: GatewayConfig,
    reloader: Reloader,
    dev_pages: Option<http::DevPages>,
) -> anyhow::Result<ExitCode> {
    let tokens = match config.token_keys(&process_env) {
        Ok(Some(keys)) => Some(keys),
        // `postgate dev`: a fresh key per run (tokens die with the process, as its data may not).
        Ok(None) if dev_pages.is_some() => {
            let secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
            Some(TokenKeys::new("dev", vec![("dev".into(), Secret::new(secret))]).expect("a valid dev key"))
        }
        Ok(None) => {
            tracing::warn!(
                "upload_tokens is not configured: presign answers carry no upload token, and multipart and complete answer 503"
            );
            None
        }
        Err(errors) => {
            for error in &errors {
                eprintln!("{error}");
            }
            bail!(
                "upload_tokens: {}; refusing to start",
                postgate::counted(errors.len(), "error")
            )
        }
    };
    let client = StoreClient::new(ClientConfig {
        timeout: config.store_calls.timeout,
        attempts: config.store_calls.attempts,
        ..ClientConfig::default()
    });
    let shared_limits = match &config.rate_limit_backend {
        None => None,
        Some(backend) => {
            let redis = &backend.redis;
            let url = redis.url(&process_env).map_err(anyhow::Error::msg)?;
            let prefix = redis.key_prefix.as_deref().unwrap_or("postgate:ratelimit:");
            let timeout = redis.timeout.unwrap_or(std::time::Duration::from_millis(50));
            let shared = postgate::shared_limits::SharedLimits::start(&url, prefix, timeout, registry.metrics_arc())
                .map_err(|e| anyhow::anyhow!("rate_limit_backend.redis: {e}"))?;
            tracing::info!(%prefix, ?timeout, "rate limits are shared through Redis");
            Some(Arc::new(shared))
        }
    };
    let (notifier, audit) = events_and_audit(&config, &registry)?;
    let state = AppState {
        shared_limits,
        registry,
        max_body_bytes: config.max_body_bytes,
        body_timeout: config.body_timeout,
        dev_pages,
        uploads: http::Uploads {
            tokens: tokens.map(Arc::new),
            client,
            public_url: config.public_url.clone(),
            notifier,
            audit,
        },
    };
    let listen = config.listen.clone();
    let admin_listen = config.admin_listen.clone();
    actix_web::rt::System::new().block_on(async move {
        // SIGHUP's default action ends the process and actix does not handle it: reload instead.
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let audit = state.uploads.audit.clone();
        actix_web::rt::spawn(async move {
            while hangup.recv().await.is_some() {
                reloader.request(Trigger::Signal);
                // After a log rotation: the audit file is opened again at its path.
                if let Some(audit) = &audit {
                    audit.reopen();
                }
            }
        });
        tracing::info!(%listen, admin = ?admin_listen, "postgate listening");
        let listen = http::Listen {
            api: &listen,
            admin: admin_listen.as_deref(),
            workers: config.workers,
            max_connections: config.max_connections,
        };
        http::serve(state, config.cors.clone(), listen).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The event notifier (with the queue and its delivery loop when `events` is configured) and
/// the audit log.
fn events_and_audit(
    config: &GatewayConfig,
    registry: &Arc<Registry>,
) -> anyhow::Result<(postgate::events::Notifier, Option<Arc<postgate::audit::Audit>>)> {
    let metrics = registry.metrics_arc();
    let queue = match (&config.events, config.queue_settings()) {
        (Some(events), Some(settings)) => {
            let url = events
                .redis
                .url_at("events.redis", &process_env)
                .map_err(anyhow::Error::msg)?;
            let queue = postgate::events::queue::Queue::start(&url, settings)
                .map_err(|e| anyhow::anyhow!("events.redis: {e}"))?;
            tracing::info!(prefix = %queue.settings().prefix, "upload events are queued through Redis");
            Some(queue)
        }
        _ => None,
    };
    let notifier = postgate::events::Notifier::new(queue.clone(), metrics.clone());
    if let Some(queue) = queue {
        let registry = registry.clone();
        postgate::events::worker::spawn(queue, notifier.clone(), move || registry.current().events.clone());
    }
    let audit = match &config.audit {
        Some(audit) => {
            let log =
                postgate::audit::Audit::open(&audit.output, audit.fail_closed, metrics).map_err(anyhow::Error::msg)?;
            tracing::info!(
                output = if audit.output == "stdout" { "stdout" } else { "file" },
                fail_closed = audit.fail_closed,
                "audit log on"
            );
            Some(Arc::new(log))
        }
        None => None,
    };
    Ok((notifier, audit))
}
