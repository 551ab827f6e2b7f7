//! Sending an event: one signed POST per attempt (redirects not followed, the answer read up to
//! `MAX_ANSWER_BYTES`), `sync` attempts within `complete`, or the event handed to the queue.
//! Logs name the app, the event ID and the cause; never the URL (it may carry a token) or a
//! signature.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::queue::Queue;
use super::{Delivery, Endpoint, Event, webhook};
use crate::metrics::Metrics;

/// The most of an endpoint's answer read; a larger answer is not passed on.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The one status by which an app refuses an upload (422 Unprocessable Content).
pub const REFUSAL_STATUS: u16 = 422;

/// The wait before the second sync attempt; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// One attempt's result.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// 2xx; the answer, when it was JSON within `MAX_ANSWER_BYTES`.
    Accepted { answer: Option<serde_json::Value> },
    /// `REFUSAL_STATUS`: the app says no.
    Refused { status: u16 },
    /// Worth another attempt: no answer, a timeout, a 5xx, a redirect, any other 4xx.
    Failed { outcome: &'static str, cause: String },
}

/// What became of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    /// No endpoint wants it.
    NotWanted,
    /// The endpoint answered 2xx (sync).
    Delivered { answer: Option<serde_json::Value> },
    /// The endpoint answered `REFUSAL_STATUS` (sync): the app refuses the upload.
    Refused { status: u16 },
    /// Every sync attempt failed; the last cause.
    Undelivered { cause: String },
    /// Stored in the app's stream (queue).
    Queued,
    /// The queue could not store it.
    QueueUnavailable { cause: String },
}

/// Sends events: the HTTP client, the queue (when configured) and the metrics.
#[derive(Clone)]
pub struct Notifier {
    client: reqwest::Client,
    queue: Option<Arc<Queue>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("queue", &self.queue.is_some())
            .finish()
    }
}

impl Notifier {
    pub fn new(queue: Option<Arc<Queue>>, metrics: Arc<Metrics>) -> Notifier {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("postgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the webhook client builds");
        Notifier { client, queue, metrics }
    }

    pub fn queue(&self) -> Option<&Arc<Queue>> {
        self.queue.as_ref()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Sends `event` as `endpoint` says: delivered now (sync) or queued.
    pub async fn send(&self, endpoint: &Endpoint, event: &Event) -> Sent {
        let sent = match endpoint.delivery {
            Delivery::Sync => self.deliver_sync(endpoint, event).await,
            Delivery::Queue => match &self.queue {
                Some(queue) => match queue.enqueue(event).await {
                    Ok(()) => Sent::Queued,
                    Err(cause) => Sent::QueueUnavailable { cause },
                },
                None => Sent::QueueUnavailable {
                    cause: "no `events.redis` is configured".into(),
                },
            },
        };
        let result = match &sent {
            Sent::NotWanted => return sent,
            Sent::Delivered { .. } => "delivered",
            Sent::Refused { .. } => "refused",
            Sent::Undelivered { .. } => "undelivered",
            Sent::Queued => "queued",
            Sent::QueueUnavailable { .. } => "queue_failed",
        };
        self.metrics.event(&event.app, event.event_type.as_str(), result);
        match &sent {
            Sent::Undelivered { cause } | Sent::QueueUnavailable { cause } => {
                tracing::warn!(app = %event.app, event = %event.id, r#type = event.event_type.as_str(), result, %cause, "upload event not sent")
            }
            _ => {
                tracing::info!(app = %event.app, event = %event.id, r#type = event.event_type.as_str(), result, "upload event")
            }
        }
        sent
    }

    /// Up to `endpoint.attempts` attempts, backing off between them.
    async fn deliver_sync(&self, endpoint: &Endpoint, event: &Event) -> Sent {
        let mut backoff = FIRST_BACKOFF;
        let mut last = String::new();
        for attempt in 0..endpoint.attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            match self.attempt(endpoint, event).await {
                Attempt::Accepted { answer } => return Sent::Delivered { answer },
                Attempt::Refused { status } => return Sent::Refused { status },
                Attempt::Failed { cause, .. } => last = cause,
            }
        }
        Sent::Undelivered { cause: last }
    }

    /// One signed POST of `event` to `endpoint`, timestamped and signed now.
    pub async fn attempt(&self, endpoint: &Endpoint, event: &Event) -> Attempt {
        let started = Instant::now();
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = webhook::signature_header(&endpoint.secrets, &event.id, timestamp, &event.body);
        let request = self
            .client
            .post(&endpoint.url)
            .timeout(endpoint.timeout)
            .header("content-type", "application/json")
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(event.body.clone());
        let attempt = match request.send().await {
            Err(error) => Attempt::Failed {
                outcome: if error.is_timeout() { "timeout" } else { "unreachable" },
                cause: crate::transport::describe(error),
            },
            Ok(response) => judge(response).await,
        };
        let outcome = match &attempt {
            Attempt::Accepted { .. } => "2xx",
            Attempt::Refused { .. } => "4xx",
            Attempt::Failed { outcome, .. } => outcome,
        };
        self.metrics
            .event_attempt(&endpoint.app, outcome, started.elapsed().as_secs_f64());
        attempt
    }
}

/// An answer's verdict; a 2xx answer's JSON read up to `MAX_ANSWER_BYTES`.
async fn judge(mut response: reqwest::Response) -> Attempt {
    let status = response.status().as_u16();
    match status {
        200..=299 => {
            let mut body = Vec::new();
            let mut whole = true;
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_ANSWER_BYTES => body.extend_from_slice(&chunk),
                    Ok(Some(_)) | Err(_) => {
                        whole = false;
                        break;
                    }
                    Ok(None) => break,
                }
            }
            let answer = whole.then(|| serde_json::from_slice(&body).ok()).flatten();
            if !whole {
                tracing::warn!(
                    "an event endpoint's answer was over {MAX_ANSWER_BYTES} bytes or broke off; it is not passed on"
                );
            }
            Attempt::Accepted { answer }
        }
        REFUSAL_STATUS => Attempt::Refused { status },
        // Any other 4xx says the endpoint is misconfigured (a wrong secret, path or method) or
        // busy, not that the app refuses: deleting uploads for it would be irreversible.
        400..=499 => Attempt::Failed {
            outcome: "4xx",
            cause: format!("the endpoint answered {status} (only {REFUSAL_STATUS} refuses an upload)"),
        },
        300..=399 => Attempt::Failed {
            outcome: "redirect",
            cause: format!("the endpoint answered {status}; redirects are not followed"),
        },
        _ => Attempt::Failed {
            outcome: "5xx",
            cause: format!("the endpoint answered {status}"),
        },
    }
}

/// An endpoint URL: https, or http to a loopback host; no credentials in it. The error never
/// quotes the URL (a query may hold a token).
pub fn check_url(url: &str) -> Result<(), String> {
    use crate::transport::UrlProblem;
    crate::transport::check_own_url(url).map_err(|problem| match problem {
        UrlProblem::NotAUrl(e) => format!("not a URL ({e})"),
        UrlProblem::Credentials => "must not carry credentials".into(),
        UrlProblem::NotHttps => "must be https (http only to a loopback host)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn endpoints_are_https_or_loopback_http() {
        for ok in [
            "https://app.example.com/hooks",
            "http://127.0.0.1:9000/h",
            "http://localhost/h",
            "http://[::1]/h",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://app.example.com/h",
            "ftp://x/",
            "https://u:p@app.example.com/",
            "nope",
        ] {
            let error = check_url(bad).unwrap_err();
            assert!(!error.contains(bad), "{error}");
        }
    }
}
