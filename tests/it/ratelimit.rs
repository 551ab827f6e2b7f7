//! Per-app rate limits: a flooding app does not take a steady app's share, 429s say when to
//! retry and are counted, and limits follow reloads without resetting unchanged apps. Time is a
//! manual clock, so nothing here depends on how fast the machine is.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{App, test as actix_test};
use governor::clock::FakeRelativeClock;
use postgate::http;
use postgate::metrics::Trigger;
use postgate::ratelimit::{AppLimits, RateClock, RateLimit};
use postgate::registry::{AppsSource, Registry, Source};
use serde_json::Value;

use crate::sample;
use crate::support::state::{key, policies_copy, registry_with, state};

#[actix_web::test]
async fn a_flooding_app_leaves_a_steady_app_its_whole_share() {
    const TICK: Duration = Duration::from_millis(50);
    const TICKS: u32 = 400;
    const FLOOD_PER_TICK: u32 = 25; // 500 requests a second against a limit of 10
    const STEADY_EVERY: u32 = 5; // 4 requests a second against a limit of 5
    let (flood_rate, flood_burst) = (10.0, 20);

    let dir = policies_copy();
    let time = FakeRelativeClock::default();
    let mut limits = AppLimits::new();
    limits.set("mobile", RateLimit::new(flood_rate, Some(flood_burst)).unwrap());
    limits.set("web", RateLimit::new(5.0, Some(1)).unwrap());
    let state = state(registry_with(dir.path(), limits, RateClock::manual(time.clone())));
    let service = actix_test::init_service(App::new().app_data(state.clone()).configure(http::routes)).await;
    let presign = |app: &str| {
        actix_test::TestRequest::post()
            .uri("/v1/profiles/invoices/presign")
            .insert_header((header::AUTHORIZATION, format!("Bearer {}", key(app))))
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .set_payload(r#"{"vars": {"supplier": "acme"}}"#)
            .to_request()
    };

    let (mut flood_ok, mut flood_limited, mut steady_ok, mut steady_sent) = (0u32, 0u32, 0u32, 0u32);
    for tick in 0..TICKS {
        if tick > 0 {
            time.advance(TICK);
        }
        for _ in 0..FLOOD_PER_TICK {
            let response = actix_test::call_service(&service, presign("mobile")).await;
            match response.status().as_u16() {
                200 => flood_ok += 1,
                429 => {
                    let retry_after = response.headers().get(header::RETRY_AFTER).unwrap().to_str().unwrap();
                    assert_eq!(retry_after, "1", "a 100 ms wait rounds up to one second");
                    let body: Value = serde_json::from_slice(&actix_test::read_body(response).await).unwrap();
                    assert_eq!(body["code"], "rate-limited");
                    flood_limited += 1;
                }
                status => panic!("flood: unexpected {status}"),
            }
        }
        if tick % STEADY_EVERY == 0 {
            steady_sent += 1;
            let response = actix_test::call_service(&service, presign("web")).await;
            assert_eq!(response.status(), 200, "the steady app was refused at tick {tick}");
            steady_ok += 1;
        }
    }

    assert_eq!(steady_ok, steady_sent);
    assert_eq!(steady_sent, TICKS / STEADY_EVERY);
    // GCRA: the burst at once, then one request per period of the time that passed.
    let elapsed = TICK * (TICKS - 1);
    let expected = flood_burst + (elapsed.as_secs_f64() * flood_rate).floor() as u32;
    assert_eq!(flood_ok, expected);
    assert_eq!(flood_ok + flood_limited, TICKS * FLOOD_PER_TICK);

    let metrics = state.registry.metrics().render();
    let count = |outcome: &str| {
        sample(
            &metrics,
            "postgate_presign_requests_total",
            &[("profile", "invoices"), ("outcome", outcome)],
        )
    };
    assert_eq!(count("rate_limited"), Some(f64::from(flood_limited)));
    assert_eq!(count("signed"), Some(f64::from(flood_ok + steady_ok)));
}

#[actix_web::test]
async fn the_limit_comes_before_the_profile_and_the_body() {
    let dir = policies_copy();
    let state = state(crate::support::state::registry(dir.path()));
    let service = actix_test::init_service(App::new().app_data(state.clone()).configure(http::routes)).await;
    let request = |path: &str, body: &str| {
        actix_test::TestRequest::post()
            .uri(path)
            .insert_header((header::AUTHORIZATION, format!("Bearer {}", key("throttled"))))
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .set_payload(body.to_owned())
            .to_request()
    };
    // `throttled` has a burst of one: its first request spends it, whatever becomes of it.
    let first = actix_test::call_service(&service, request("/v1/profiles/nope/presign", "{")).await;
    assert_eq!(first.status(), 404);
    for (path, body) in [
        ("/v1/profiles/invoices/presign", r#"{"vars": {"supplier": "acme"}}"#),
        ("/v1/profiles/nope/presign", "{"),
        ("/v1/profiles/datasets/presign", "not json"),
    ] {
        let response = actix_test::call_service(&service, request(path, body)).await;
        assert_eq!(response.status(), 429, "{path}");
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "2");
    }
    // The profile list is not limited (see ARCHITECTURE.md).
    let list = actix_test::TestRequest::get()
        .uri("/v1/profiles")
        .insert_header((header::AUTHORIZATION, format!("Bearer {}", key("throttled"))))
        .to_request();
    assert_eq!(actix_test::call_service(&service, list).await.status(), 200);
    // A wrong key is answered 401 and spends nobody's budget.
    let wrong = actix_test::TestRequest::post()
        .uri("/v1/profiles/invoices/presign")
        .insert_header((header::AUTHORIZATION, "Bearer not-a-valid-key-000000"))
        .to_request();
    assert_eq!(actix_test::call_service(&service, wrong).await.status(), 401);

    let metrics = state.registry.metrics().render();
    let count = |profile: &str| {
        sample(
            &metrics,
            "postgate_presign_requests_total",
            &[("profile", profile), ("outcome", "rate_limited")],
        )
    };
    assert_eq!(count("invoices"), Some(1.0));
    assert_eq!(count("_unknown"), Some(1.0));
    assert_eq!(count("datasets"), Some(1.0));
}

#[test]
fn limits_follow_reloads_and_keep_the_state_of_unchanged_apps() {
    let dir = policies_copy();
    let config_dir = tempfile::tempdir().unwrap();
    let config_path = config_dir.path().join("postgate.yaml");
    let hash = |key: &str| postgate::auth::hash_key(&postgate::secret::Secret::new(key));
    let write_config = |web: &str, mobile: &str, default: &str| {
        let text = format!(
            "{default}apps:\n  web:\n    keys: [\"{}\"]\n{web}  mobile:\n    keys: [\"{}\"]\n{mobile}  ingest:\n    keys: [\"{}\"]\n",
            hash(key("web")),
            hash(key("mobile")),
            hash(key("ingest")),
        );
        std::fs::write(&config_path, text).unwrap();
    };
    let one_per_minute = "    rate_limit: { per_second: 0.0167, burst: 1 }\n";
    write_config(one_per_minute, one_per_minute, "");
    let time = FakeRelativeClock::default();
    let source = Source {
        policies: dir.path().to_owned(),
        stores: std::sync::Arc::new(postgate::registry::unsigned_stores(&["default"])),
        apps: AppsSource::ConfigFile(Some(config_path.clone())),
    };
    let registry =
        Registry::start_with_clock(source, false, Default::default(), None, RateClock::manual(time.clone())).unwrap();
    let first = registry.current();
    assert_eq!(first.limiters.check("web"), Ok(()));
    assert!(first.limiters.check("web").is_err());
    assert_eq!(first.limiters.check("mobile"), Ok(()));
    assert!(first.limiters.check("mobile").is_err());
    for _ in 0..100 {
        assert_eq!(first.limiters.check("ingest"), Ok(()), "no limit, no default");
    }

    // Only mobile's limit changes: a new generation, web keeps its spent burst.
    write_config(one_per_minute, "    rate_limit: { per_second: 1, burst: 3 }\n", "");
    assert_eq!(registry.reload(Trigger::Admin).generation, 2);
    let second = registry.current();
    assert!(second.limiters.shares_state(&first.limiters, "web"));
    assert!(second.limiters.check("web").is_err(), "web's state survived the reload");
    assert!(!second.limiters.shares_state(&first.limiters, "mobile"));
    for _ in 0..3 {
        assert_eq!(
            second.limiters.check("mobile"),
            Ok(()),
            "mobile's new limit starts full"
        );
    }
    assert!(second.limiters.check("mobile").is_err());

    // A profile change alone keeps every app's state.
    let invoices = dir.path().join("invoices.yaml");
    let text = std::fs::read_to_string(&invoices).unwrap();
    std::fs::write(&invoices, text.replace("max: 10 MiB", "max: 20 MiB")).unwrap();
    assert_eq!(registry.reload(Trigger::Admin).generation, 3);
    let third = registry.current();
    assert!(third.limiters.shares_state(&second.limiters, "web"));
    assert!(third.limiters.shares_state(&second.limiters, "mobile"));
    assert!(third.limiters.check("mobile").is_err());

    // A default limit applies to apps without their own; `unlimited` opts out.
    write_config(
        one_per_minute,
        "    rate_limit: unlimited\n",
        "default_rate_limit: { per_second: 2, burst: 2 }\n",
    );
    registry.reload(Trigger::Admin);
    let fourth = registry.current();
    assert!(fourth.limiters.shares_state(&third.limiters, "web"));
    for _ in 0..100 {
        assert_eq!(fourth.limiters.check("mobile"), Ok(()));
    }
    assert_eq!(fourth.limiters.check("ingest"), Ok(()));
    assert_eq!(fourth.limiters.check("ingest"), Ok(()));
    let over = fourth.limiters.check("ingest").unwrap_err();
    assert_eq!(over.retry_after_secs().get(), 1);

    // A bad limit refuses the reload; the last good limits stay served, state and all.
    write_config("    rate_limit: { per_second: -1 }\n", "", "");
    let report = registry.reload(Trigger::Admin);
    assert_eq!(report.result, postgate::metrics::ReloadResult::Failure);
    assert!(
        report.diagnostics[0]
            .to_string()
            .ends_with("apps.web.rate_limit.per_second: -1 is outside 0.001..=1000000"),
        "{}",
        report.diagnostics[0]
    );
    assert!(registry.current().limiters.check("web").is_err());

    // Time heals: a minute later web may sign again.
    time.advance(Duration::from_secs(60));
    assert_eq!(registry.current().limiters.check("web"), Ok(()));
}
