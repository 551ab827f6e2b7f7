//! Rate limits shared by replicas: the same GCRA as `ratelimit`, computed on Redis or Valkey by
//! one Lua script that reads the server's clock (`TIME`), so replicas' clocks do not matter and
//! no module is needed (managed offerings load none).
//!
//! An edge: all Redis IO runs on one thread with its own runtime, which owns the connection;
//! requests hand it a check and wait at most `timeout`. When Redis fails, is slow or is not
//! reachable yet, the check falls back to the process's own limiter (fail open: a dead Redis
//! must not stop uploads), counts the fallback, and logs once per change of state.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::ratelimit::{Limiters, OverLimit, RateLimit};

/// GCRA on the server: KEYS[1] holds the theoretical arrival time (µs since the epoch, by the
/// server's clock); ARGV[1] is the period (µs per request), ARGV[2] the burst. Answers
/// `{1, 0}` when admitted, `{0, wait_µs}` when not. The key expires when its state would be
/// back to a full burst.
pub const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat + period - period * burst
if allow_at > now then
  return {0, allow_at - now}
end
local new_tat = tat + period
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
";

/// How often a missing connection is tried again.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

struct Job {
    key: String,
    period_us: u64,
    burst: u32,
    reply: oneshot::Sender<Result<(i64, i64), String>>,
}

type Slot = Arc<tokio::sync::Mutex<Option<redis::aio::ConnectionManager>>>;

/// Connects and fills `slot`; a failure is logged with its cause (the error names no URL).
async fn connect(client: redis::Client, config: redis::aio::ConnectionManagerConfig, slot: Slot) {
    match redis::aio::ConnectionManager::new_with_config(client, config).await {
        Ok(connection) => {
            tracing::info!("connected to the shared rate-limit backend");
            *slot.lock().await = Some(connection);
        }
        Err(error) => tracing::warn!(kind = ?error.kind(), %error, "cannot connect to the shared rate-limit backend"),
    }
}

/// The shared limiter: a handle to the Redis thread.
pub struct SharedLimits {
    jobs: mpsc::Sender<Job>,
    prefix: String,
    timeout: Duration,
    up: AtomicBool,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never printed.
        f.debug_struct("SharedLimits")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SharedLimits {
    /// Starts the Redis thread for `url` (`redis://`, `rediss://`, `valkey://`). Errors name what
    /// is wrong with the URL, never the URL.
    pub fn start(url: &str, prefix: &str, timeout: Duration, metrics: Arc<Metrics>) -> Result<SharedLimits, String> {
        let client = redis::Client::open(url).map_err(|e| format!("the Redis URL is not valid ({:?})", e.kind()))?;
        let (jobs, mut receiver) = mpsc::channel::<Job>(8192);
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        std::thread::Builder::new()
            .name("shared-limits".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!(%error, "cannot start the shared rate-limit thread; local limits apply");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let script = Arc::new(redis::Script::new(GCRA_SCRIPT));
                    let manager: Slot = Arc::default();
                    let mut last_attempt: Option<Instant> = Some(Instant::now());
                    {
                        let (client, config, manager) = (client.clone(), config.clone(), manager.clone());
                        tokio::spawn(connect(client, config, manager));
                    }
                    while let Some(job) = receiver.recv().await {
                        let current = manager.lock().await.clone();
                        match current {
                            Some(mut connection) => {
                                let script = script.clone();
                                tokio::spawn(async move {
                                    let answer = script
                                        .key(&job.key)
                                        .arg(job.period_us)
                                        .arg(job.burst)
                                        .invoke_async::<(i64, i64)>(&mut connection)
                                        .await
                                        .map_err(|e| e.to_string());
                                    let _ = job.reply.send(answer);
                                });
                            }
                            None => {
                                let _ = job.reply.send(Err("not connected yet".into()));
                                if last_attempt.is_none_or(|at| at.elapsed() >= RECONNECT_EVERY) {
                                    last_attempt = Some(Instant::now());
                                    let (client, config, manager) = (client.clone(), config.clone(), manager.clone());
                                    tokio::spawn(connect(client, config, manager));
                                }
                            }
                        }
                    }
                });
            })
            .map_err(|e| format!("cannot start the shared rate-limit thread: {e}"))?;
        metrics.rate_limit_backend(true);
        Ok(SharedLimits {
            jobs,
            prefix: prefix.to_owned(),
            timeout,
            up: AtomicBool::new(true),
            metrics,
        })
    }

    /// The Redis key of `app`'s state under `limit`: a changed limit starts afresh, as the
    /// process's own limiter does.
    pub fn key(&self, app: &str, limit: RateLimit) -> String {
        format!("{}{app}:{}:{}", self.prefix, limit.per_second(), limit.burst())
    }

    /// Counts one request of `app` on Redis; the process's limiter answers when Redis cannot.
    pub async fn check(&self, app: &str, local: &Limiters) -> Result<(), OverLimit> {
        let Some(limit) = local.limit_of(app) else {
            return Ok(());
        };
        let period_us = ((1_000_000.0 / limit.per_second()).round() as u64).max(1);
        let (reply, answer) = oneshot::channel();
        let job = Job {
            key: self.key(app, limit),
            period_us,
            burst: limit.burst(),
            reply,
        };
        let outcome = match self.jobs.try_send(job) {
            Err(_) => Err("the queue to Redis is full".to_owned()),
            Ok(()) => match tokio::time::timeout(self.timeout, answer).await {
                Err(_) => Err(format!("no answer within {:?}", self.timeout)),
                Ok(Err(_)) => Err("the Redis thread ended".to_owned()),
                Ok(Ok(result)) => result,
            },
        };
        match outcome {
            Ok((allowed, wait_us)) => {
                self.mark(true, None);
                if allowed == 1 {
                    Ok(())
                } else {
                    Err(OverLimit {
                        limit,
                        wait: Duration::from_micros(wait_us.max(0) as u64),
                    })
                }
            }
            Err(reason) => {
                self.mark(false, Some(&reason));
                self.metrics.rate_limit_fallback();
                local.check(app)
            }
        }
    }

    /// Records the backend's state; logs only when it changes.
    fn mark(&self, up: bool, reason: Option<&str>) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            self.metrics.rate_limit_backend(up);
            if up {
                tracing::info!("the shared rate-limit backend answers again; limits are shared");
            } else {
                tracing::error!(
                    reason = reason.unwrap_or_default(),
                    "the shared rate-limit backend fails; each replica applies its own limits until it is back"
                );
            }
        }
    }
}
