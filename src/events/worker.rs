//! The queue's delivery, on the queue's runtime: a loop per app whose events are queued takes
//! entries (due retries, entries a stopped replica left, new ones), attempts each with the
//! app's endpoint as the snapshot has it now (so rotated secrets sign queued events too) and
//! settles it; a supervisor starts and ends those loops and publishes the queues' depth, age
//! and dead letters.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::queue::{Entry, Queue};
use super::{Attempt, Delivery, Endpoint, Endpoints, Event, EventType, Notifier};

/// The pause of an idle loop (the latency a queued event waits at most when all is quiet).
const IDLE: Duration = Duration::from_millis(200);
/// The pause after Redis failed.
const AFTER_FAILURE: Duration = Duration::from_secs(1);
/// How often the queue gauges are refreshed.
const STATS_EVERY: Duration = Duration::from_secs(5);

/// The served endpoints, as the registry has them now.
type Served = Arc<dyn Fn() -> Arc<Endpoints> + Send + Sync>;

/// Starts the delivery on the queue's runtime: one loop per queued app (a slow endpoint delays
/// only its own app), started when an app's events become queued and ended when they no
/// longer are. `endpoints` answers the served endpoints.
pub fn spawn(queue: Arc<Queue>, notifier: Notifier, endpoints: impl Fn() -> Arc<Endpoints> + Send + Sync + 'static) {
    let runtime = queue.runtime().clone();
    runtime.spawn(supervise(queue, notifier, Arc::new(endpoints)));
}

async fn supervise(queue: Arc<Queue>, notifier: Notifier, endpoints: Served) {
    let running: Arc<std::sync::Mutex<BTreeSet<String>>> = Arc::default();
    let mut stats_at = Instant::now() - STATS_EVERY;
    loop {
        let served = endpoints();
        for app in served.queued_apps() {
            if running.lock().unwrap_or_else(|e| e.into_inner()).insert(app.to_owned()) {
                let (queue, notifier, endpoints, running) =
                    (queue.clone(), notifier.clone(), endpoints.clone(), running.clone());
                tokio::spawn(app_loop(queue, notifier, endpoints, app.to_owned(), running));
            }
        }
        if stats_at.elapsed() >= STATS_EVERY {
            stats_at = Instant::now();
            for app in served.queued_apps() {
                if let Ok(stats) = queue.stats(app).await {
                    notifier
                        .metrics()
                        .event_queue(app, stats.depth, stats.oldest_age_seconds, stats.dead_letters);
                }
            }
        }
        tokio::time::sleep(IDLE).await;
    }
}

/// Drains `app`'s queue while its events are queued.
async fn app_loop(
    queue: Arc<Queue>,
    notifier: Notifier,
    endpoints: Served,
    app: String,
    running: Arc<std::sync::Mutex<BTreeSet<String>>>,
) {
    let mut joined = false;
    let mut failing = false;
    loop {
        let served = endpoints();
        let Some(endpoint) = served.get(&app).filter(|e| e.delivery == Delivery::Queue).cloned() else {
            running.lock().unwrap_or_else(|e| e.into_inner()).remove(&app);
            return;
        };
        let round = async {
            if !joined {
                queue.join(&app).await?;
                joined = true;
            }
            drain(&queue, &notifier, &endpoint, &app).await
        };
        match round.await {
            Ok(taken) => {
                if failing {
                    tracing::info!(app = %app, "the event queue works again");
                }
                failing = false;
                if taken == 0 {
                    tokio::time::sleep(IDLE).await;
                }
            }
            Err(cause) => {
                if !failing {
                    tracing::warn!(app = %app, %cause, "the event queue is failing; retrying every second");
                }
                failing = true;
                // A restarted Redis without persistence lost its groups: join again.
                joined = false;
                tokio::time::sleep(AFTER_FAILURE).await;
            }
        }
    }
}

/// One round for `app`: take, attempt all at once, settle each. Answers how many were taken.
async fn drain(queue: &Arc<Queue>, notifier: &Notifier, endpoint: &Arc<Endpoint>, app: &str) -> Result<usize, String> {
    let entries = queue.take(app).await?;
    let taken = entries.len();
    let attempts = entries.into_iter().map(|entry| async move {
        let event = Event {
            id: entry.id.clone(),
            event_type: EventType::parse(&entry.event_type).unwrap_or(EventType::Completed),
            app: app.to_owned(),
            body: entry.body.clone().into_bytes(),
        };
        let attempt = notifier.attempt(endpoint, &event).await;
        settle(queue, notifier, app, &entry, attempt).await
    });
    for result in futures_util::future::join_all(attempts).await {
        result?;
    }
    Ok(taken)
}

async fn settle(
    queue: &Arc<Queue>,
    notifier: &Notifier,
    app: &str,
    entry: &Entry,
    attempt: Attempt,
) -> Result<(), String> {
    let metrics = notifier.metrics();
    let cause = match attempt {
        Attempt::Accepted { .. } => {
            queue.done(app, entry).await?;
            metrics.event(app, &entry.event_type, "delivered");
            tracing::info!(app, event = %entry.id, r#type = %entry.event_type, attempt = entry.attempt + 1, "upload event delivered from the queue");
            return Ok(());
        }
        // Queued events are already carried out: a refusal cannot undo the upload, so it is a
        // failed attempt like any other, retried and then dead-lettered for the operator.
        Attempt::Refused { status } => format!("the endpoint answered {status}"),
        Attempt::Failed { cause, .. } => cause,
    };
    let dead = queue.failed(app, entry, &cause).await?;
    let result = if dead { "dead_lettered" } else { "retried" };
    metrics.event(app, &entry.event_type, result);
    tracing::warn!(app, event = %entry.id, r#type = %entry.event_type, attempt = entry.attempt + 1, %cause, result, "upload event attempt failed");
    Ok(())
}
