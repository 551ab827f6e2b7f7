//! Presign latency through the whole HTTP handler stack, in process (actix's test service: routing,
//! auth, body read, admit, sign, response; no sockets). Prints p50/p90/p99/max over N requests.
//! Run: `cargo run --release --example presign_latency [N]`.

use std::sync::Arc;
use std::time::Instant;

use actix_web::{App, test, web};
use postgate::auth::AppKeys;
use postgate::http::{self, AppState};
use postgate::metrics::Metrics;
use postgate::registry::{AppsSource, Registry, Source};

#[path = "../tests/it/support/fixture.rs"]
mod fixture;

const KEY: &str = "latency-key-0123456789";

// The allocator of the `postgate` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() {
    let count: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(5000);
    let mut keys = AppKeys::new();
    keys.add("web", KEY).unwrap();
    let store = fixture::example_store();
    let source = Source {
        policies: concat!(env!("CARGO_MANIFEST_DIR"), "/policies").into(),
        stores: Arc::new([("default".to_owned(), Arc::new(store))].into_iter().collect()),
        apps: AppsSource::Fixed(keys, Default::default()),
    };
    let registry = Arc::new(Registry::start(source, false, Arc::new(Metrics::new()), None).unwrap());
    let defaults = postgate::config::GatewayConfig::default();
    let state = web::Data::new(AppState {
        shared_limits: None,
        registry,
        max_body_bytes: defaults.max_body_bytes,
        body_timeout: defaults.body_timeout,
        dev_pages: None,
        // As in production: every answer carries an upload token.
        uploads: http::Uploads {
            tokens: Some(Arc::new(
                postgate::upload::TokenKeys::new(
                    "k1",
                    vec![(
                        "k1".into(),
                        postgate::secret::Secret::new("example-token-key-0123456789abcdef"),
                    )],
                )
                .unwrap(),
            )),
            client: postgate::store::StoreClient::new(Default::default()),
            public_url: None,
            notifier: postgate::events::Notifier::new(None, Arc::new(postgate::metrics::Metrics::new())),
            audit: None,
        },
    });
    let service = test::init_service(App::new().app_data(state).configure(http::routes)).await;
    let body = fixture::AVATAR_REQUEST;
    let mut samples = Vec::with_capacity(count);
    for i in 0..count + 500 {
        let request = test::TestRequest::post()
            .uri("/v1/profiles/avatars/presign")
            .insert_header(("authorization", format!("Bearer {KEY}")))
            .insert_header(("content-type", "application/json"))
            .set_payload(body)
            .to_request();
        let started = Instant::now();
        let response = test::call_service(&service, request).await;
        let body = test::read_body(response).await;
        let elapsed = started.elapsed();
        assert!(body.starts_with(b"{\"method\""));
        if i >= 500 {
            samples.push(elapsed.as_secs_f64() * 1e6);
        }
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{count} presign requests in process (after 500 warm-up): p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        at(0.50),
        at(0.90),
        at(0.99),
        samples[samples.len() - 1]
    );
}
