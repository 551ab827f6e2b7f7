//! Heap allocations of one signature end to end (snapshot lookup → admit → presign → response
//! JSON), counted by dhat's allocator. Run: `cargo run --release --example allocations`.

use std::sync::Arc;

use postgate::auth::AppKeys;
use postgate::metrics::Metrics;
use postgate::profile::{Context, UploadRequest};
use postgate::registry::{AppsSource, Registry, Source};
use time::OffsetDateTime;
use uuid::Uuid;

#[path = "../tests/it/support/fixture.rs"]
mod fixture;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let source = Source {
        policies: concat!(env!("CARGO_MANIFEST_DIR"), "/policies").into(),
        stores: Arc::new(postgate::registry::unsigned_stores(&["default"])),
        apps: AppsSource::Fixed(AppKeys::new(), Default::default()),
    };
    let registry = Arc::new(Registry::start(source, false, Arc::new(Metrics::new()), None).unwrap());
    let store = fixture::example_store();
    let request: UploadRequest = fixture::avatar_upload_request();
    let sign = || {
        let snapshot = registry.current();
        let profile = snapshot.get("avatars").unwrap();
        let now = OffsetDateTime::now_utc();
        let ctx = Context {
            app: "web",
            now,
            uuid: Uuid::now_v7(),
        };
        postgate::sign::sign(
            profile,
            &store.signer(ctx.now).unwrap(),
            &request,
            &ctx,
            postgate::sign::FieldStyle::Botocore,
        )
        .unwrap()
        .to_json()
    };
    sign(); // warm the signing-key cache
    let rounds = 1000;
    let before = dhat::HeapStats::get();
    for _ in 0..rounds {
        std::hint::black_box(sign());
    }
    let after = dhat::HeapStats::get();
    println!(
        "one signature end to end: {} allocations, {} bytes allocated (mean of {rounds})",
        (after.total_blocks - before.total_blocks) / rounds,
        (after.total_bytes - before.total_bytes) / rounds
    );
}
