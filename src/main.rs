//! The `postgate` command line: check, explain, schema, sign.

mod gateway;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use postgate::config::{GatewayConfig, process_env};
use postgate::explain::explain_text;
use postgate::profile::{ChecksumRequest, Method, UploadRequest};
use postgate::registry::{self, Snapshot};
use postgate::sign::FieldStyle;

#[derive(Parser)]
#[command(
    name = "postgate",
    version,
    about = "Policy-as-config upload gateway for S3 presigned POST forms"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// The gateway config file; `postgate.yaml` is read when present.
    #[arg(long, global = true, env = "POSTGATE_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate and compile every profile; print all diagnostics; exit non-zero on error.
    Check {
        /// The policies directory (default: the config's `policies`, else `policies`).
        dir: Option<PathBuf>,
        /// Treat warnings as errors.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Print a compiled profile: its settings and its condition list with placeholders shown.
    Explain {
        profile: String,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print the JSON Schema of a profile file.
    Schema,
    /// Sign a form for a profile and print it as JSON.
    Sign(SignArgs),
    /// Run the gateway: the HTTP API, hot-reloaded profiles, metrics.
    Serve,
    /// Run the gateway with an embedded S3-compatible store and dev app keys, for local work.
    #[cfg(feature = "dev-store")]
    Dev(DevArgs),
    /// Queued upload events: list an app's dead letters, or replay them (needs `events.redis`).
    #[command(subcommand)]
    Events(EventsCommand),
    /// Find out what a store enforces: sign real uploads under `postgate-probe/` in a bucket, try
    /// what each signed constraint must stop, audit the bucket's CORS and lifecycle rules, and
    /// list the served profiles relying on what the store does not enforce (exit status 1).
    Probe(ProbeArgs),
    /// Print the hash of an app key (read from stdin) for the config's `apps.<app>.keys`.
    HashKey {
        /// Make a new random key and print it with its hash.
        #[arg(long)]
        generate: bool,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Print an app's dead letters as JSON, oldest first.
    List {
        app: String,
        /// The most to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Put an app's dead letters (or the one at `--entry`) back into its queue.
    Replay {
        app: String,
        /// One dead letter's `entry` (as `list` prints it).
        #[arg(long)]
        entry: Option<String>,
    },
}

#[derive(Args)]
struct ProbeArgs {
    /// The configured store to probe (default: `default`).
    #[arg(long, default_value = "default")]
    store: String,
    /// The bucket to probe (default: the bucket of the store's served profiles, when they share one).
    #[arg(long)]
    bucket: Option<String>,
    /// Report on this served profile only (its bucket is the default bucket).
    #[arg(long)]
    profile: Option<String>,
    /// Print the report as JSON (the file `stores.<name>.probe` reads).
    #[arg(long)]
    json: bool,
}

#[cfg(feature = "dev-store")]
#[derive(Args)]
struct DevArgs {
    /// Where the dev store keeps buckets and objects.
    #[arg(long, default_value = ".postgate-dev")]
    data: PathBuf,
    /// Where the gateway listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Where the dev store listens.
    #[arg(long, default_value = "127.0.0.1:9000")]
    store_listen: String,
}

#[derive(Args)]
struct SignArgs {
    profile: String,
    /// A var value, `name=value`; repeat for several.
    #[arg(long = "var", value_parser = parse_pair)]
    vars: Vec<(String, String)>,
    #[arg(long)]
    filename: Option<String>,
    #[arg(long)]
    content_type: Option<String>,
    /// The exact size of the file in bytes.
    #[arg(long)]
    size: Option<u64>,
    /// A metadata value, `name=value`; repeat for several.
    #[arg(long = "meta", value_parser = parse_pair)]
    metadata: Vec<(String, String)>,
    /// The app `${app}` resolves to.
    #[arg(long, default_value = "cli")]
    app: String,
    /// `post` (a form) or `put` (a presigned URL); default POST where the store and profile allow it.
    #[arg(long, value_parser = parse_method)]
    method: Option<Method>,
    /// The file's checksum, `algorithm=base64` (`sha256=n4bQ…`); the store verifies it.
    #[arg(long, value_parser = parse_checksum)]
    checksum: Option<ChecksumRequest>,
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{text}` is not `name=value`"))
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    postgate::identity::install_crypto();
    // The servers log; the one-shot commands print.
    let logs = (matches!(cli.command, Command::Serve) || cfg!(feature = "dev-store") && is_dev(&cli.command))
        .then(|| postgate::logs::init(json_logs(&cli)));
    let result = run(cli);
    // What is still queued is written before any error below.
    drop(logs);
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("postgate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config_path = cli.global.config.clone().or_else(|| {
        let default = PathBuf::from("postgate.yaml");
        default.is_file().then_some(default)
    });
    let config = GatewayConfig::load(config_path.as_deref())?;
    warn_ignored_env(&cli.command, &config);
    match cli.command {
        Command::Serve => gateway::serve(config, config_path),
        Command::Events(command) => events_command(&config, command),
        Command::Probe(args) => probe_command(&config, args),
        #[cfg(feature = "dev-store")]
        Command::Dev(args) => gateway::dev(config, args.data, &args.listen, &args.store_listen),
        Command::HashKey { generate } => hash_key_command(generate),
        Command::Schema => {
            print!("{}", postgate::profile_schema());
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { dir, deny_warnings } => check_command(&config, dir, deny_warnings),
        Command::Explain { profile, dir } => {
            let snapshot = load(&dir.unwrap_or_else(|| config.policies.clone()), &config)?;
            let served = snapshot.get(&profile).map(|s| s.signing_store().kind.note());
            let profile = find(&snapshot, &profile)?;
            print!("{}", explain_text(profile));
            if let Some(Some(note)) = served {
                println!("  store kind   {note}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sign(args) => {
            let snapshot = load(&args.dir.clone().unwrap_or_else(|| config.policies.clone()), &config)?;
            let profile = find(&snapshot, &args.profile)?;
            let (store, refresh) = config.resolve_store(profile.store(), &process_env)?;
            postgate::credentials::fetch_now(&store, &refresh)
                .map_err(|e| anyhow::anyhow!("store `{}`: cannot fetch credentials: {e}", store.name))?;
            let request = UploadRequest {
                vars: args.vars.into_iter().collect(),
                filename: args.filename,
                content_type: args.content_type,
                size: args.size,
                metadata: args.metadata.into_iter().collect(),
                method: args.method,
                checksum: args.checksum,
            };
            let grant = postgate::lifecycle::Grant::now(&args.app, None);
            let signed =
                match postgate::lifecycle::grant_on(None, &store, profile, &request, &grant, FieldStyle::default()) {
                    Ok(granted) => granted.signed,
                    Err(failure) if failure.refusals.is_empty() => bail!("{}", failure.detail),
                    Err(failure) => {
                        for refusal in &failure.refusals {
                            eprintln!("{refusal}");
                        }
                        bail!("profile `{}` refused the request", args.profile);
                    }
                };
            // The gateway's compact JSON, re-indented for a terminal (key order is kept).
            let form: serde_json::Value = serde_json::from_str(&signed.to_json())?;
            println!("{}", serde_json::to_string_pretty(&form)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(feature = "dev-store")]
fn is_dev(command: &Command) -> bool {
    matches!(command, Command::Dev(_))
}

#[cfg(not(feature = "dev-store"))]
fn is_dev(_: &Command) -> bool {
    false
}

/// Whether the config asks for JSON log lines (`log_format: json`).
fn json_logs(cli: &Cli) -> bool {
    cli.global
        .config
        .clone()
        .or_else(|| Some(PathBuf::from("postgate.yaml")).filter(|p| p.is_file()))
        .and_then(|path| GatewayConfig::load(Some(&path)).ok())
        .or_else(|| GatewayConfig::load(None).ok())
        .is_some_and(|config| config.log_format == postgate::config::LogFormat::Json)
}

/// Names the `POSTGATE_*` variables that name no setting: in the log of a server, on stderr of a
/// one-shot command.
fn warn_ignored_env(command: &Command, config: &GatewayConfig) {
    if config.ignored_env.is_empty() {
        return;
    }
    let names = config.ignored_env.join(", ");
    let why = "name no setting of postgate.yaml and are ignored";
    if matches!(command, Command::Serve) || cfg!(feature = "dev-store") && is_dev(command) {
        tracing::warn!(variables = %names, "environment variables {why}");
    } else {
        eprintln!("postgate: warning: {names} {why}");
    }
}

fn load(dir: &Path, config: &GatewayConfig) -> anyhow::Result<Snapshot> {
    registry::load(dir, &unsigned_stores(config)?).map_err(|diags| {
        let text: Vec<String> = diags.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{} has errors:\n{}", dir.display(), text.join("\n"))
    })
}

/// The configured stores without credentials, for commands that compile but never sign.
/// The configured stores without credentials (they never sign), with their probe files.
fn unsigned_stores(config: &GatewayConfig) -> anyhow::Result<std::sync::Arc<registry::Stores>> {
    let mut stores = registry::Stores::new();
    for name in config.store_names() {
        let (kind, staging) = config.store_shape(&name);
        let store = registry::unsigned_store(&name, config.store_takes_post(&name))
            .with_kind(kind)
            .with_staging(staging)
            .with_enforcement(config.store_enforcement(&name)?);
        stores.insert(name, std::sync::Arc::new(store));
    }
    Ok(std::sync::Arc::new(stores))
}

fn parse_checksum(text: &str) -> Result<ChecksumRequest, String> {
    let (algorithm, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not `algorithm=base64`"))?;
    let algorithm = serde_json::from_value(serde_json::Value::String(algorithm.to_ascii_lowercase()))
        .map_err(|_| format!("`{algorithm}` is not one of crc32, crc32c, crc64nvme, sha1, sha256"))?;
    Ok(ChecksumRequest {
        algorithm,
        value: value.to_owned(),
    })
}

fn parse_method(text: &str) -> Result<Method, String> {
    match text.to_ascii_lowercase().as_str() {
        "post" => Ok(Method::Post),
        "put" => Ok(Method::Put),
        _ => Err(format!("`{text}` is not a method; use `post` or `put`")),
    }
}

fn find<'s>(snapshot: &'s Snapshot, name: &str) -> anyhow::Result<&'s postgate::profile::Profile> {
    snapshot.get(name).map(|p| p.as_ref()).with_context(|| {
        let names: Vec<&str> = snapshot.profiles.keys().map(String::as_str).collect();
        format!("no profile `{name}`; profiles: {}", names.join(", "))
    })
}

/// `postgate events list|replay`: straight to the queue in Redis (no gateway needed).
/// `postgate hash-key`: the hash of a key read from stdin, or a new key and its hash.
fn hash_key_command(generate: bool) -> anyhow::Result<ExitCode> {
    let key = if generate {
        let key = postgate::auth::generate_key();
        println!("key:  {}", key.expose());
        key
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        let key = postgate::secret::Secret::new(line.trim_end_matches(['\r', '\n']));
        if key.expose().len() < postgate::auth::MIN_KEY_LEN {
            bail!(
                "a key must be at least {} characters; try `postgate hash-key --generate`",
                postgate::auth::MIN_KEY_LEN
            );
        }
        key
    };
    println!(
        "{}{}",
        if generate { "hash: " } else { "" },
        postgate::auth::hash_key(&key)
    );
    Ok(ExitCode::SUCCESS)
}

/// `postgate check`: every diagnostic; with a store's probe file, the constraints each profile
/// relies on that the store does not enforce, as warnings.
fn check_command(config: &GatewayConfig, dir: Option<PathBuf>, deny_warnings: bool) -> anyhow::Result<ExitCode> {
    let dir = dir.unwrap_or_else(|| config.policies.clone());
    let snapshot = match registry::load(&dir, &unsigned_stores(config)?) {
        Ok(snapshot) => snapshot,
        Err(diags) => {
            for diag in &diags {
                eprintln!("{diag}");
            }
            let errors = diags.iter().filter(|d| d.is_error()).count();
            eprintln!(
                "{}: {}; nothing loaded",
                dir.display(),
                postgate::counted(errors, "error")
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut warnings: Vec<String> = snapshot.warnings.iter().map(ToString::to_string).collect();
    for served in snapshot.profiles.values() {
        let Some(found) = served.signing_store().enforcement.as_deref() else {
            continue;
        };
        for gap in postgate::profile::enforcement::gaps(served, found) {
            warnings.push(format!(
                "warning: {}: {} relies on {}, which store `{}` does not enforce ({}, by `postgate probe`): {}",
                served.name().as_str(),
                gap.method.name(),
                gap.constraint.name(),
                served.store(),
                gap.verdict.name(),
                gap.advice
            ));
        }
    }
    for warning in &warnings {
        eprintln!("{warning}");
    }
    let count = postgate::counted(snapshot.profiles.len(), "profile");
    let warned = postgate::counted(warnings.len(), "warning");
    if deny_warnings && !warnings.is_empty() {
        eprintln!("{}: {count}, {warned} (denied)", dir.display());
        return Ok(ExitCode::FAILURE);
    }
    println!("{}: {count} ok, {warned}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// `postgate probe`: the served profiles of the store (and bucket), its credentials, one run.
fn probe_command(config: &GatewayConfig, args: ProbeArgs) -> anyhow::Result<ExitCode> {
    if !config.store_names().contains(&args.store) {
        bail!("no store `{}` is configured", args.store);
    }
    let snapshot = registry::load(&config.policies, &unsigned_stores(config)?).map_err(|diags| {
        anyhow::anyhow!(
            "the profiles do not compile ({}): run `postgate check`",
            postgate::counted(diags.iter().filter(|d| d.is_error()).count(), "error")
        )
    })?;
    let mut profiles: Vec<&postgate::profile::Profile> = snapshot
        .profiles
        .values()
        .map(|served| &***served)
        .filter(|p| p.store() == args.store && args.profile.as_ref().is_none_or(|name| p.name().as_str() == name))
        .collect();
    if let Some(name) = &args.profile
        && profiles.is_empty()
    {
        bail!("no served profile `{name}` signs for store `{}`", args.store);
    }
    let mut buckets: Vec<&str> = profiles.iter().map(|p| p.bucket()).collect();
    buckets.sort_unstable();
    buckets.dedup();
    let bucket = match (&args.bucket, buckets.as_slice()) {
        (Some(bucket), _) => bucket.clone(),
        (None, [one]) => (*one).to_owned(),
        (None, _) => bail!(
            "say which bucket with --bucket: the store's profiles use {}",
            if buckets.is_empty() {
                "none".to_owned()
            } else {
                buckets.join(", ")
            }
        ),
    };
    profiles.retain(|p| p.bucket() == bucket);
    let (store, refresh) = config.resolve_store(&args.store, &process_env)?;
    let store = std::sync::Arc::new(store);
    let metrics = std::sync::Arc::new(postgate::metrics::Metrics::new());
    postgate::credentials::spawn(
        vec![(store.clone(), refresh)],
        metrics,
        std::time::Duration::from_secs(15),
    );
    let mut origins: Vec<String> = config
        .apps
        .values()
        .flat_map(|a| a.cors_origins.iter().cloned())
        .collect();
    origins.sort();
    origins.dedup();
    let scope = postgate::probe::Scope {
        bucket,
        profiles,
        origins,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = postgate::store::StoreClient::new(postgate::store::ClientConfig::default());
    let report = runtime
        .block_on(postgate::probe::run(&client, &store, &scope))
        .map_err(|error| anyhow::anyhow!("the probe stopped: {error}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(if report.has_gaps() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn events_command(config: &GatewayConfig, command: EventsCommand) -> anyhow::Result<ExitCode> {
    let (Some(events), Some(settings)) = (&config.events, config.queue_settings()) else {
        bail!("no `events.redis` is configured: only queued events have dead letters");
    };
    let url = events
        .redis
        .url_at("events.redis", &postgate::config::process_env)
        .map_err(anyhow::Error::msg)?;
    let queue =
        postgate::events::queue::Queue::start(&url, settings).map_err(|e| anyhow::anyhow!("events.redis: {e}"))?;
    let runtime = queue.runtime().clone();
    match command {
        EventsCommand::List { app, limit } => {
            let letters = runtime
                .block_on(queue.dead_letters(&app, limit))
                .map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::json!({ "app": app, "dead_letters": letters }));
        }
        EventsCommand::Replay { app, entry } => {
            let replayed = runtime
                .block_on(queue.replay(&app, entry.as_deref()))
                .map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::json!({ "app": app, "replayed": replayed }));
        }
    }
    Ok(ExitCode::SUCCESS)
}
