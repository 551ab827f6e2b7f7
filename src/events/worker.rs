//! The queue's delivery loop, one per process on the queue's runtime: for every app whose
//! events are queued, take entries (due retries, entries a stopped replica left, new ones),
//! attempt each with the app's endpoint as the snapshot has it now (so rotated secrets sign
//! queued events too), settle it, and publish the queues' depth, age and dead letters.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::queue::{Entry, Queue};
use super::{Attempt, Endpoints, Event, EventType, Notifier};

/// The pause of an idle loop (the latency a queued event waits at most when all is quiet).
const IDLE: Duration = Duration::from_millis(200);
/// The pause after Redis failed.
const AFTER_FAILURE: Duration = Duration::from_secs(1);
/// How often the queue gauges are refreshed.
const STATS_EVERY: Duration = Duration::from_secs(5);

/// Starts the loop on the queue's runtime. `endpoints` answers the served endpoints.
pub fn spawn(queue: Arc<Queue>, notifier: Notifier, endpoints: impl Fn() -> Arc<Endpoints> + Send + Sync + 'static) {
    let runtime = queue.runtime().clone();
    runtime.spawn(run(queue, notifier, endpoints));
}

async fn run(queue: Arc<Queue>, notifier: Notifier, endpoints: impl Fn() -> Arc<Endpoints> + Send + Sync + 'static) {
    let mut joined = BTreeSet::new();
    let mut stats_at = Instant::now() - STATS_EVERY;
    let mut failing = false;
    loop {
        let served = endpoints();
        let apps: Vec<String> = served.queued_apps().map(str::to_owned).collect();
        let mut worked = false;
        let mut failed = None;
        for app in &apps {
            match drain(&queue, &notifier, &served, app, &mut joined).await {
                Ok(n) => worked |= n > 0,
                Err(cause) => failed = Some(cause),
            }
        }
        if stats_at.elapsed() >= STATS_EVERY {
            stats_at = Instant::now();
            for app in &apps {
                if let Ok(stats) = queue.stats(app).await {
                    notifier
                        .metrics()
                        .event_queue(app, stats.depth, stats.oldest_age_seconds, stats.dead_letters);
                }
            }
        }
        match failed {
            Some(cause) => {
                if !failing {
                    tracing::warn!(%cause, "the event queue is failing; retrying every second");
                }
                failing = true;
                // A restarted Redis without persistence lost its groups: join again.
                joined.clear();
                tokio::time::sleep(AFTER_FAILURE).await;
            }
            None => {
                if failing {
                    tracing::info!("the event queue works again");
                }
                failing = false;
                if !worked {
                    tokio::time::sleep(IDLE).await;
                }
            }
        }
    }
}

/// One round for `app`: take, attempt all at once, settle each. Answers how many were taken.
async fn drain(
    queue: &Arc<Queue>,
    notifier: &Notifier,
    served: &Endpoints,
    app: &str,
    joined: &mut BTreeSet<String>,
) -> Result<usize, String> {
    if !joined.contains(app) {
        queue.join(app).await?;
        joined.insert(app.to_owned());
    }
    let entries = match queue.take(app).await {
        Ok(entries) => entries,
        Err(cause) if cause.contains("NOGROUP") => {
            joined.remove(app);
            return Err(cause);
        }
        Err(cause) => return Err(cause),
    };
    let Some(endpoint) = served.get(app) else {
        return Ok(0);
    };
    let taken = entries.len();
    let attempts = entries.into_iter().map(|entry| {
        let endpoint = endpoint.clone();
        async move {
            let event = Event {
                id: entry.id.clone(),
                event_type: EventType::parse(&entry.event_type).unwrap_or(EventType::Completed),
                app: app.to_owned(),
                body: entry.body.clone().into_bytes(),
            };
            let attempt = notifier.attempt(&endpoint, &event).await;
            settle(queue, notifier, app, &entry, attempt).await
        }
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
