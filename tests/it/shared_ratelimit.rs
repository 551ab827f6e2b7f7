//! Rate limits shared by replicas through a real `redis-server`: two `postgate serve` processes
//! share one app's limit; with Redis killed they fall back to their own limiters (no 5xx); with
//! Redis back the limit is shared again. Skips (saying so) without `redis-server`, unless
//! `CI_REQUIRE_REDIS=1` (CI) makes that a failure.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::process::{Running, free_port, get, postgate, redis_installed, redis_server, wait_ready};
use crate::support::state::policies_copy;
use crate::{sample, wait_until};

const PER_SECOND: f64 = 5.0;
const BURST: f64 = 10.0;
const APP_KEY: &str = "shared-limit-key-0123456789";

/// Sends requests to both replicas for `seconds`, alternating; returns (200s, 429s, others).
fn hammer(bases: &[String], seconds: f64) -> (usize, usize, Vec<u16>) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        let tasks = bases.iter().map(|base| {
            let client = client.clone();
            let url = format!("{base}/v1/profiles/invoices/presign");
            async move {
                let mut statuses = Vec::new();
                while Instant::now() < until {
                    let status = client
                        .post(&url)
                        .header("Authorization", format!("Bearer {APP_KEY}"))
                        .header("Content-Type", "application/json")
                        .body(r#"{"vars": {"supplier": "acme"}}"#)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    statuses.push(status);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                statuses
            }
        });
        let all: Vec<u16> = futures_util::future::join_all(tasks)
            .await
            .into_iter()
            .flatten()
            .collect();
        let ok = all.iter().filter(|&&s| s == 200).count();
        let limited = all.iter().filter(|&&s| s == 429).count();
        let others = all.into_iter().filter(|&s| s != 200 && s != 429).collect();
        (ok, limited, others)
    })
}

#[test]
fn two_replicas_share_one_limit_and_fall_back_when_redis_dies() {
    if !redis_installed("the shared rate-limit test") {
        return;
    }
    let redis_port = free_port();
    let mut redis = Some(redis_server(redis_port, None));
    let dir = policies_copy();
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "policies: {}\napps:\n  web:\n    keys: [\"{}\"]\n    rate_limit: {{ per_second: {PER_SECOND}, burst: {BURST} }}\nrate_limit_backend:\n  redis:\n    url_env: TEST_REDIS_URL\n    timeout: 100ms\n",
            dir.path().display(),
            postgate::auth::hash_key(&postgate::secret::Secret::new(APP_KEY)),
        ),
    )
    .unwrap();
    let mut replicas = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..2 {
        let port = free_port();
        let child = postgate()
            .args(["serve", "--config"])
            .arg(&config)
            .env("POSTGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env("TEST_REDIS_URL", format!("redis://127.0.0.1:{redis_port}/"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        replicas.push(Running(child));
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&base);
        bases.push(base);
    }
    let backend_up = |base: &str| {
        sample(
            &get(&format!("{base}/metrics")).unwrap().1,
            "postgate_rate_limit_backend_up",
            &[],
        )
    };
    // The first checks may come before the connection is made: wait until both answer from Redis.
    for base in &bases {
        let _ = hammer(std::slice::from_ref(base), 0.05);
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("redis-cli")
        .args(["-p", &redis_port.to_string(), "FLUSHALL"])
        .output();

    // Shared: both replicas together stay within one limit.
    let seconds = 3.0;
    let started = Instant::now();
    let (ok, limited, others) = hammer(&bases, seconds);
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = BURST + PER_SECOND * elapsed;
    eprintln!("shared: {ok} admitted, {limited} limited in {elapsed:.2} s (one limit allows {allowed:.1})");
    assert!(others.is_empty(), "{others:?}");
    assert!(
        (ok as f64) <= allowed + 1.0,
        "{ok} admitted: the replicas did not share the limit"
    );
    assert!(
        (ok as f64) >= allowed - 4.0,
        "{ok} admitted: the limit was not used up ({allowed:.1})"
    );
    for base in &bases {
        assert_eq!(backend_up(base), Some(1.0), "{base}");
    }

    // Redis dies: each replica falls back to its own limiter, with no 5xx.
    drop(redis.take());
    let (ok, limited, others) = hammer(&bases, 2.0);
    eprintln!("Redis down: {ok} admitted, {limited} limited by the replicas' own limiters");
    assert!(others.is_empty(), "{others:?}");
    assert!(ok > 0);
    for base in &bases {
        let metrics = get(&format!("{base}/metrics")).unwrap().1;
        assert_eq!(
            sample(&metrics, "postgate_rate_limit_backend_up", &[]),
            Some(0.0),
            "{base}"
        );
        assert!(sample(&metrics, "postgate_rate_limit_backend_fallbacks_total", &[]).is_some_and(|n| n > 0.0));
    }

    // Redis comes back (empty): the limit is shared again.
    redis = Some(redis_server(redis_port, None));
    let back = Instant::now();
    assert!(
        wait_until(20, || {
            let _ = hammer(&bases, 0.05);
            bases.iter().all(|b| backend_up(b) == Some(1.0))
        }),
        "the replicas did not return to Redis"
    );
    eprintln!("shared again {:?} after Redis restarted", back.elapsed());
    let _ = Command::new("redis-cli")
        .args(["-p", &redis_port.to_string(), "FLUSHALL"])
        .output();
    let started = Instant::now();
    let (ok, _, others) = hammer(&bases, 2.0);
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = BURST + PER_SECOND * elapsed;
    eprintln!("shared again: {ok} admitted in {elapsed:.2} s (one limit allows {allowed:.1})");
    assert!(others.is_empty(), "{others:?}");
    assert!((ok as f64) <= allowed + 1.0, "{ok} admitted after Redis came back");
    drop(redis);
}
