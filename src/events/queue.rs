//! The event queue on Redis or Valkey: one stream per app (`<prefix>{<app>}:stream`; one hash
//! tag per app, for Redis Cluster) drained by the consumer group `deliver`, so replicas share
//! the work; failed attempts wait in a sorted
//! set (`:retry`, scored by when they are due, by the server's clock) and go back into the
//! stream when due; after the last wait an event goes to the app's dead-letter stream
//! (`:dead`), from which an operator replays it. `:pending` scores every undelivered event by
//! when it was queued (depth and oldest age). Each move is one Lua script, so an event is
//! always in exactly one place; an event taken by a replica that stopped is claimed by another
//! after `claim_after` (at least once).
//!
//! An edge: Redis IO runs on a runtime of its own thread, so a slow Redis never holds an HTTP
//! worker's runtime; callers await the spawned work. Errors name causes, never the URL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::Event;

/// The most dead letters one replay moves (one Lua call holds Redis): call again for more.
pub const REPLAY_BATCH: usize = 1000;

/// The consumer group every replica joins.
pub const GROUP: &str = "deliver";

/// A consumer idle this long with nothing in hand is a replica that stopped: its name is removed.
const FORGET_CONSUMERS_AFTER: Duration = Duration::from_secs(24 * 3600);

/// How many entries one read takes.
const BATCH: usize = 32;

/// Adds an event unless it is already waiting (a retried `complete`): KEYS stream, pending;
/// ARGV id, type, body. Answers 1 if added, 0 if it was waiting.
const ENQUEUE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZADD', KEYS[2], 'NX', now, ARGV[1]) == 0 then return 0 end
redis.call('XADD', KEYS[1], '*', 'id', ARGV[1], 'type', ARGV[2], 'body', ARGV[3], 'attempt', '0', 'queued_at', tostring(now))
return 1
";

/// Delivered: KEYS stream, pending; ARGV entry, event id. Each settling script starts with the
/// acknowledgement: an entry another consumer took over and settled first is left alone.
const DONE: &str = r"
if redis.call('XACK', KEYS[1], 'deliver', ARGV[1]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
";

/// Failed, tried again later: KEYS stream, retry; ARGV entry, wait ms, member (JSON).
const RETRY: &str = r"
if redis.call('XACK', KEYS[1], 'deliver', ARGV[1]) == 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
";

/// Failed for the last time: KEYS stream, dead, pending; ARGV entry, id, type, body, attempts,
/// queued_at, last error.
const DEAD: &str = r"
if redis.call('XACK', KEYS[1], 'deliver', ARGV[1]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', 'id', ARGV[2], 'type', ARGV[3], 'body', ARGV[4], 'attempts', ARGV[5], 'queued_at', ARGV[6], 'last_error', ARGV[7])
redis.call('XDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[2])
return 1
";

/// Due retries back into the stream: KEYS retry, stream; ARGV most. Answers how many moved.
const DUE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local e = cjson.decode(member)
  redis.call('XADD', KEYS[2], '*', 'id', e.id, 'type', e.type, 'body', e.body, 'attempt', tostring(e.attempt), 'queued_at', tostring(e.queued_at))
  redis.call('ZREM', KEYS[1], member)
end
return #due
";

/// Dead letters back into the stream, from the first attempt: KEYS dead, stream, pending; ARGV
/// one entry ID, or '' for the oldest `REPLAY_BATCH`. Answers how many.
const REPLAY: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local entries
if ARGV[1] == '' then
  entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1000)
else
  entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
end
for _, entry in ipairs(entries) do
  local f = {}
  for i = 1, #entry[2], 2 do f[entry[2][i]] = entry[2][i + 1] end
  redis.call('XADD', KEYS[2], '*', 'id', f.id, 'type', f.type, 'body', f.body, 'attempt', '0', 'queued_at', tostring(now))
  redis.call('ZADD', KEYS[3], 'NX', now, f.id)
  redis.call('XDEL', KEYS[1], entry[1])
end
return #entries
";

/// The queue's settings.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub prefix: String,
    /// The waits between attempts; an event is dead-lettered after the last.
    pub retry: Vec<Duration>,
    /// An entry taken but not settled for this long is taken over by another consumer.
    pub claim_after: Duration,
    /// One Redis call.
    pub timeout: Duration,
}

/// One event read from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The stream entry's ID.
    pub entry: String,
    pub id: String,
    pub event_type: String,
    pub body: String,
    /// Failed attempts so far.
    pub attempt: u32,
    /// When first queued, server ms.
    pub queued_at: i64,
}

/// A dead letter, as the admin route and `postgate events` show it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeadLetter {
    /// The dead-letter stream's entry ID (replay one by it).
    pub entry: String,
    /// The event's `webhook-id`.
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub attempts: u32,
    pub queued_at: i64,
    pub last_error: String,
    pub body: serde_json::Value,
}

/// Depth, oldest age and dead letters of one app's queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct QueueStats {
    pub depth: u64,
    pub oldest_age_seconds: f64,
    pub dead_letters: u64,
}

/// ZCARD, the oldest pending (member, score), XLEN of the dead letters, TIME.
type StatsReply = (u64, Vec<(String, f64)>, u64, (i64, i64));

type Slot = Arc<tokio::sync::Mutex<Option<redis::aio::ConnectionManager>>>;

/// The queue: its own runtime's handle, the connection, the settings, this process's consumer
/// name.
pub struct Queue {
    runtime: tokio::runtime::Handle,
    client: redis::Client,
    slot: Slot,
    settings: QueueSettings,
    consumer: String,
    scripts: Arc<Scripts>,
}

struct Scripts {
    enqueue: redis::Script,
    done: redis::Script,
    retry: redis::Script,
    dead: redis::Script,
    due: redis::Script,
    replay: redis::Script,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never printed.
        f.debug_struct("Queue")
            .field("prefix", &self.settings.prefix)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

/// The keys of one app's queue.
struct Keys {
    stream: String,
    retry: String,
    dead: String,
    pending: String,
}

impl Queue {
    /// Starts the queue's runtime for `url`; connects on first use. Errors name what is wrong
    /// with the URL, never the URL.
    pub fn start(url: &str, settings: QueueSettings) -> Result<Arc<Queue>, String> {
        let client = redis::Client::open(url).map_err(|e| format!("the Redis URL is not valid ({:?})", e.kind()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("events")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the events runtime: {e}"))?;
        // The queue lives as long as the process; its runtime too.
        let runtime = Box::leak(Box::new(runtime)).handle().clone();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let consumer = format!(
            "{}-{}-{}",
            host.trim(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Ok(Arc::new(Queue {
            runtime,
            client,
            slot: Arc::default(),
            settings,
            consumer,
            scripts: Arc::new(Scripts {
                enqueue: redis::Script::new(ENQUEUE),
                done: redis::Script::new(DONE),
                retry: redis::Script::new(RETRY),
                dead: redis::Script::new(DEAD),
                due: redis::Script::new(DUE),
                replay: redis::Script::new(REPLAY),
            }),
        }))
    }

    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// One app's keys share a hash tag (`{app}`), so on a Redis Cluster the scripts, which
    /// touch several of them, run on one node.
    fn keys(&self, app: &str) -> Keys {
        let base = format!("{}{{{app}}}", self.settings.prefix);
        Keys {
            stream: format!("{base}:stream"),
            retry: format!("{base}:retry"),
            dead: format!("{base}:dead"),
            pending: format!("{base}:pending"),
        }
    }

    /// Runs `work` with a connection on the queue's runtime, within the call timeout.
    async fn with<T, F, Fut>(self: &Arc<Self>, work: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(redis::aio::ConnectionManager, Arc<Queue>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = redis::RedisResult<T>> + Send,
    {
        let queue = self.clone();
        let timeout = self.settings.timeout;
        let task = self.runtime.spawn(async move {
            let call = async {
                let connection = queue.connection().await?;
                work(connection, queue.clone()).await.map_err(|e| describe(&e))
            };
            tokio::time::timeout(timeout, call)
                .await
                .map_err(|_| format!("Redis did not answer within {}", humantime::format_duration(timeout)))?
        });
        task.await.map_err(|e| format!("the events runtime failed: {e}"))?
    }

    async fn connection(&self) -> Result<redis::aio::ConnectionManager, String> {
        let mut slot = self.slot.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.settings.timeout))
            .set_response_timeout(Some(self.settings.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = redis::aio::ConnectionManager::new_with_config(self.client.clone(), config)
            .await
            .map_err(|e| describe(&e))?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Stores `event` in its app's stream (durable as the server's persistence is).
    pub async fn enqueue(self: &Arc<Self>, event: &Event) -> Result<(), String> {
        let keys = self.keys(&event.app);
        let body = String::from_utf8_lossy(&event.body).into_owned();
        let (id, kind) = (event.id.clone(), event.event_type.as_str());
        self.with(move |mut c, q| async move {
            q.scripts
                .enqueue
                .key(&keys.stream)
                .key(&keys.pending)
                .arg(id)
                .arg(kind)
                .arg(body)
                .invoke_async::<i64>(&mut c)
                .await
                .map(drop)
        })
        .await
    }

    /// Joins `app`'s consumer group (made with the stream if missing; from the stream's start,
    /// so events queued before any replica read are delivered).
    pub async fn join(self: &Arc<Self>, app: &str) -> Result<(), String> {
        let stream = self.keys(app).stream;
        self.with(move |mut c, _| async move {
            let made: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&stream)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut c)
                .await;
            match made {
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                other => other?,
            }
            // Every start joins under a new name: names of stopped replicas with nothing left
            // in hand go.
            let consumers: Vec<redis::Value> = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(&stream)
                .arg(GROUP)
                .query_async(&mut c)
                .await?;
            for consumer in consumers.iter().map(fields_of) {
                let idle_ms: u64 = field(&consumer, "idle").parse().unwrap_or(0);
                if field(&consumer, "pending") == "0" && idle_ms > FORGET_CONSUMERS_AFTER.as_millis() as u64 {
                    redis::cmd("XGROUP")
                        .arg("DELCONSUMER")
                        .arg(&stream)
                        .arg(GROUP)
                        .arg(field(&consumer, "name"))
                        .query_async::<i64>(&mut c)
                        .await?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Moves due retries back into the stream, then takes entries: first those another consumer
    /// left unsettled for `claim_after`, then new ones.
    pub async fn take(self: &Arc<Self>, app: &str) -> Result<Vec<Entry>, String> {
        let keys = self.keys(app);
        let claim_ms = self.settings.claim_after.as_millis() as u64;
        self.with(move |mut c, q| async move {
            q.scripts
                .due
                .key(&keys.retry)
                .key(&keys.stream)
                .arg(BATCH)
                .invoke_async::<i64>(&mut c)
                .await?;
            let claimed: redis::Value = redis::cmd("XAUTOCLAIM")
                .arg(&keys.stream)
                .arg(GROUP)
                .arg(&q.consumer)
                .arg(claim_ms)
                .arg("0-0")
                .arg("COUNT")
                .arg(BATCH)
                .query_async(&mut c)
                .await?;
            let mut entries = match &claimed {
                redis::Value::Array(parts) if parts.len() >= 2 => entries_of(&parts[1]),
                _ => Vec::new(),
            };
            let read: redis::Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(&q.consumer)
                .arg("COUNT")
                .arg(BATCH)
                .arg("STREAMS")
                .arg(&keys.stream)
                .arg(">")
                .query_async(&mut c)
                .await?;
            if let redis::Value::Array(streams) = &read {
                for stream in streams {
                    if let redis::Value::Array(pair) = stream
                        && pair.len() == 2
                    {
                        entries.extend(entries_of(&pair[1]));
                    }
                }
            }
            Ok(entries)
        })
        .await
    }

    /// The entry was delivered.
    pub async fn done(self: &Arc<Self>, app: &str, entry: &Entry) -> Result<(), String> {
        let keys = self.keys(app);
        let (entry_id, id) = (entry.entry.clone(), entry.id.clone());
        self.with(move |mut c, q| async move {
            q.scripts
                .done
                .key(&keys.stream)
                .key(&keys.pending)
                .arg(entry_id)
                .arg(id)
                .invoke_async::<i64>(&mut c)
                .await
                .map(drop)
        })
        .await
    }

    /// The entry's attempt failed: due again after the next wait of the schedule, or dead when
    /// the schedule is spent. Answers whether it was dead-lettered.
    pub async fn failed(self: &Arc<Self>, app: &str, entry: &Entry, cause: &str) -> Result<bool, String> {
        let keys = self.keys(app);
        let entry = entry.clone();
        let wait = self.settings.retry.get(entry.attempt as usize).copied();
        let cause = cause.to_owned();
        self.with(move |mut c, q| async move {
            match wait {
                Some(wait) => {
                    let member = serde_json::json!({
                        "id": entry.id, "type": entry.event_type, "body": entry.body,
                        "attempt": entry.attempt + 1, "queued_at": entry.queued_at,
                    })
                    .to_string();
                    q.scripts
                        .retry
                        .key(&keys.stream)
                        .key(&keys.retry)
                        .arg(&entry.entry)
                        .arg(wait.as_millis() as u64)
                        .arg(member)
                        .invoke_async::<i64>(&mut c)
                        .await?;
                    Ok(false)
                }
                None => {
                    q.scripts
                        .dead
                        .key(&keys.stream)
                        .key(&keys.dead)
                        .key(&keys.pending)
                        .arg(&entry.entry)
                        .arg(&entry.id)
                        .arg(&entry.event_type)
                        .arg(&entry.body)
                        .arg(entry.attempt + 1)
                        .arg(entry.queued_at)
                        .arg(cause)
                        .invoke_async::<i64>(&mut c)
                        .await?;
                    Ok(true)
                }
            }
        })
        .await
    }

    /// Up to `limit` of `app`'s dead letters, oldest first.
    pub async fn dead_letters(self: &Arc<Self>, app: &str, limit: usize) -> Result<Vec<DeadLetter>, String> {
        let dead = self.keys(app).dead;
        self.with(move |mut c, _| async move {
            let value: redis::Value = redis::cmd("XRANGE")
                .arg(&dead)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(limit)
                .query_async(&mut c)
                .await?;
            Ok(items_of(&value)
                .into_iter()
                .map(|(entry, f)| DeadLetter {
                    entry,
                    id: field(&f, "id"),
                    event_type: field(&f, "type"),
                    attempts: field(&f, "attempts").parse().unwrap_or(0),
                    queued_at: field(&f, "queued_at").parse().unwrap_or(0),
                    last_error: field(&f, "last_error"),
                    body: serde_json::from_str(&field(&f, "body")).unwrap_or(serde_json::Value::Null),
                })
                .collect())
        })
        .await
    }

    /// Puts `app`'s dead letters (or the one at `entry`) back into its stream, from the first
    /// attempt. Answers how many.
    pub async fn replay(self: &Arc<Self>, app: &str, entry: Option<&str>) -> Result<u64, String> {
        let keys = self.keys(app);
        let entry = entry.unwrap_or_default().to_owned();
        self.with(move |mut c, q| async move {
            q.scripts
                .replay
                .key(&keys.dead)
                .key(&keys.stream)
                .key(&keys.pending)
                .arg(entry)
                .invoke_async::<u64>(&mut c)
                .await
        })
        .await
    }

    /// Depth, oldest age (by the server's clock) and dead letters of `app`'s queue.
    pub async fn stats(self: &Arc<Self>, app: &str) -> Result<QueueStats, String> {
        let keys = self.keys(app);
        self.with(move |mut c, _| async move {
            let (depth, oldest, dead, time): StatsReply = redis::pipe()
                .cmd("ZCARD")
                .arg(&keys.pending)
                .cmd("ZRANGE")
                .arg(&keys.pending)
                .arg(0)
                .arg(0)
                .arg("WITHSCORES")
                .cmd("XLEN")
                .arg(&keys.dead)
                .cmd("TIME")
                .query_async(&mut c)
                .await?;
            let now_ms = time.0 as f64 * 1000.0 + (time.1 / 1000) as f64;
            let oldest_age_seconds = oldest.first().map_or(0.0, |(_, at)| ((now_ms - at) / 1000.0).max(0.0));
            Ok(QueueStats {
                depth,
                oldest_age_seconds,
                dead_letters: dead,
            })
        })
        .await
    }
}

/// A Redis error in a few words: its kind and code, never the URL.
fn describe(error: &redis::RedisError) -> String {
    match error.code() {
        Some(code) => format!("Redis refused the call ({code})"),
        None => format!("Redis is not reachable ({:?})", error.kind()),
    }
}

fn text(value: &redis::Value) -> String {
    match value {
        redis::Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(i) => i.to_string(),
        _ => String::new(),
    }
}

/// `[name, value, name, value, …]` (RESP2) or a map (RESP3) as fields.
fn fields_of(value: &redis::Value) -> HashMap<String, String> {
    match value {
        redis::Value::Array(flat) => flat
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (text(&c[0]), text(&c[1])))
            .collect(),
        redis::Value::Map(pairs) => pairs.iter().map(|(k, v)| (text(k), text(v))).collect(),
        _ => HashMap::new(),
    }
}

/// `[[id, [field, value, …]], …]` as (id, fields); entries whose fields are gone are skipped.
fn items_of(value: &redis::Value) -> Vec<(String, HashMap<String, String>)> {
    let redis::Value::Array(items) = value else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let redis::Value::Array(pair) = item else { return None };
            let (id, fields @ redis::Value::Array(_)) = (pair.first()?, pair.get(1)?) else {
                return None;
            };
            Some((text(id), fields_of(fields)))
        })
        .collect()
}

fn field(fields: &HashMap<String, String>, name: &str) -> String {
    fields.get(name).cloned().unwrap_or_default()
}

fn entries_of(value: &redis::Value) -> Vec<Entry> {
    items_of(value)
        .into_iter()
        .map(|(entry, f)| Entry {
            entry,
            id: field(&f, "id"),
            event_type: field(&f, "type"),
            body: field(&f, "body"),
            attempt: field(&f, "attempt").parse().unwrap_or(0),
            queued_at: field(&f, "queued_at").parse().unwrap_or(0),
        })
        .collect()
}
