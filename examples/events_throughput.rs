//! Upload event delivery figures (`bench/events.sh` runs it, release build, loopback):
//! - the cost of building and signing one event (no IO);
//! - sync: one attempt after another (the latency an event adds to `complete`), then 32 at once
//!   (events per second);
//! - queue (with `EVENTS_BENCH_REDIS`): events stored per second by 64 callers at once, then
//!   delivered per second by one process's worker.
//!
//! The receiver is an actix-web route in this process answering `{"ok":true}`; CPU time is the
//! whole process's (gateway side and receiver), per event.
//! Run: `cargo run --release --example events_throughput -- [EVENTS]`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use postgate::events::queue::{Queue, QueueSettings};
use postgate::events::{Delivery, Endpoint, Endpoints, Event, EventType, Notifier, UploadFacts, WebhookSecret};
use postgate::metrics::Metrics;

/// User plus system CPU seconds of this process so far (`/proc/self/stat`, 100 ticks a second).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn facts(i: usize) -> UploadFacts {
    UploadFacts {
        upload_id: format!("0193a1c2-0000-7000-8000-{i:012}"),
        profile: "media".into(),
        app: "web".into(),
        store: "default".into(),
        bucket: "user-content".into(),
        key: format!("media/alice/0193a1c2-0000-7000-8000-{i:012}/clip.png"),
        size: Some(48_213),
        content_type: Some("image/png".into()),
        metadata: [("uploaded-by".to_owned(), "alice".to_owned())].into_iter().collect(),
        etag: Some("9b2cf535f27731c974343645a3985328".into()),
        method: "put",
        verified: vec!["marker", "size", "content_type", "metadata", "sniff"],
        ..UploadFacts::default()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let events: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let received = Arc::new(AtomicU64::new(0));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    {
        let received = received.clone();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                HttpServer::new(move || {
                    let received = received.clone();
                    App::new().route(
                        "/hooks",
                        web::post().to(move |_body: web::Bytes| {
                            received.fetch_add(1, Ordering::Relaxed);
                            async {
                                HttpResponse::Ok()
                                    .content_type("application/json")
                                    .body(r#"{"ok":true}"#)
                            }
                        }),
                    )
                })
                .workers(1)
                .bind(("127.0.0.1", port))
                .unwrap()
                .run()
                .await
                .unwrap()
            })
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    let secrets = WebhookSecret::parse_list(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_cG9zdGdhdGUtYmVuY2gtc2Vjb25kLXNlY3JldA==",
    )
    .unwrap();
    let endpoint = |delivery| Endpoint {
        app: "web".into(),
        url: format!("http://127.0.0.1:{port}/hooks"),
        secrets: secrets.clone(),
        types: EventType::ALL.to_vec(),
        profiles: None,
        delivery,
        timeout: Duration::from_secs(5),
        attempts: 1,
        fingerprint: [0; 32],
    };

    println!("| figure | value |\n|---|---|");
    // Build and sign, no IO.
    let started = Instant::now();
    for i in 0..events {
        let event = Event::new(EventType::Completed, &facts(i), time::OffsetDateTime::now_utc());
        std::hint::black_box(postgate::events::signature_header(
            &secrets,
            &event.id,
            1_765_000_000,
            &event.body,
        ));
    }
    println!(
        "| build + sign one event (2 secrets), µs | {:.2} |",
        started.elapsed().as_secs_f64() * 1e6 / events as f64
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let notifier = Notifier::new(None, Arc::new(Metrics::new()));
    let sync = endpoint(Delivery::Sync);
    let prepared: Vec<Event> = (0..events)
        .map(|i| Event::new(EventType::Completed, &facts(i), time::OffsetDateTime::now_utc()))
        .collect();
    runtime.block_on(async {
        // Warm the connection pool.
        for event in prepared.iter().take(100) {
            notifier.attempt(&sync, event).await;
        }
        let sequential = events.min(5_000);
        let mut samples = Vec::with_capacity(sequential);
        for event in prepared.iter().take(sequential) {
            let started = Instant::now();
            notifier.attempt(&sync, event).await;
            samples.push(started.elapsed().as_secs_f64() * 1e3);
        }
        samples.sort_by(f64::total_cmp);
        println!(
            "| sync attempt, one at a time: p50 / p99 ms | {:.3} / {:.3} |",
            percentile(&samples, 0.5),
            percentile(&samples, 0.99)
        );
        let (cpu, started) = (cpu_seconds(), Instant::now());
        let chunks: Vec<&[Event]> = prepared.chunks(events.div_ceil(32)).collect();
        let tasks = chunks.into_iter().map(|chunk| {
            let (notifier, sync) = (notifier.clone(), sync.clone());
            async move {
                for event in chunk {
                    notifier.attempt(&sync, event).await;
                }
            }
        });
        futures_util::future::join_all(tasks).await;
        let elapsed = started.elapsed().as_secs_f64();
        println!("| sync, 32 at once: events/s | {:.0} |", events as f64 / elapsed);
        println!(
            "| sync, CPU per event (sender + receiver), µs | {:.1} |",
            (cpu_seconds() - cpu) * 1e6 / events as f64
        );
    });

    let Ok(url) = std::env::var("EVENTS_BENCH_REDIS") else {
        println!("\n(queue figures skipped: set EVENTS_BENCH_REDIS)");
        return;
    };
    let queue = Queue::start(
        &url,
        QueueSettings {
            prefix: format!("postgate:bench:{}:", std::process::id()),
            retry: vec![Duration::from_secs(1)],
            claim_after: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
        },
    )
    .unwrap();
    let notifier = Notifier::new(Some(queue.clone()), Arc::new(Metrics::new()));
    let queued = endpoint(Delivery::Queue);
    runtime.block_on(async {
        let (cpu, started) = (cpu_seconds(), Instant::now());
        let chunks: Vec<&[Event]> = prepared.chunks(events.div_ceil(64)).collect();
        let tasks = chunks.into_iter().map(|chunk| {
            let queue = queue.clone();
            async move {
                for event in chunk {
                    queue.enqueue(event).await.unwrap();
                }
            }
        });
        futures_util::future::join_all(tasks).await;
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "| queue, stored by 64 callers: events/s | {:.0} |",
            events as f64 / elapsed
        );
        println!(
            "| queue, CPU per event stored, µs | {:.1} |",
            (cpu_seconds() - cpu) * 1e6 / events as f64
        );
    });
    let before = received.load(Ordering::Relaxed);
    let (cpu, started) = (cpu_seconds(), Instant::now());
    let endpoints = Arc::new(Endpoints::new(vec![queued]));
    postgate::events::worker::spawn(queue.clone(), notifier, move || endpoints.clone());
    while received.load(Ordering::Relaxed) < before + events as u64 && started.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let delivered = received.load(Ordering::Relaxed) - before;
    println!(
        "| queue, delivered by one worker: events/s | {:.0} |",
        delivered as f64 / elapsed
    );
    println!(
        "| queue, CPU per event delivered (worker + receiver), µs | {:.1} |",
        (cpu_seconds() - cpu) * 1e6 / delivered.max(1) as f64
    );
    let stats = runtime.block_on(queue.stats("web")).unwrap();
    println!("| queue depth after (events) | {} |", stats.depth);
}
