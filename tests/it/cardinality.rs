//! Metric cardinality under hostile traffic: 10,000 in-process requests with random profile
//! names, var values, filenames, metadata, apps and keys leave every `postgate_*` family within
//! the bound its definition allows — (loaded profiles + `_unknown`) × outcomes, × buckets for
//! the histogram — and no client-supplied string in `/metrics`.

use std::collections::{BTreeMap, BTreeSet};

use actix_web::http::header;
use actix_web::{App, test as actix_test};
use postgate::http;
use postgate::metrics::{self, Outcome, PRESIGN_DURATION_BUCKETS, ReloadResult, Trigger, UNKNOWN_PROFILE};
use serde_json::json;

use crate::support::state::{KEYS, policies_copy, registry, state};

const REQUESTS: usize = 10_000;
/// Every random string starts with this, so one search of `/metrics` finds any of them.
const RANDOM_PREFIX: &str = "zq";

/// xorshift64: reproducible randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// `zq` and 6 to 30 random characters: a valid var value for most profiles.
    fn token(&mut self) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";
        let len = 6 + self.below(25);
        let tail: String = (0..len).map(|_| char::from(*self.pick(CHARS))).collect();
        format!("{RANDOM_PREFIX}{tail}")
    }

    /// A random value, sometimes wrapped in characters the gateway must refuse.
    fn hostile(&mut self) -> String {
        let token = self.token();
        match self.below(6) {
            0 => format!("../{token}"),
            1 => format!("{token}/x"),
            2 => format!("{token}\u{202e}gnp.exe"),
            3 => format!("${{{token}}}"),
            4 => format!("{token} {token}"),
            _ => token,
        }
    }
}

/// A body the profile accepts, with random values wherever it takes one.
fn valid_body(rng: &mut Rng, profile: &str) -> Option<serde_json::Value> {
    let token = rng.token();
    Some(match profile {
        "attachments" => json!({"filename": format!("{token}.txt")}),
        "avatars" => json!({"vars": {"user": token}, "filename": format!("{}.png", rng.token()),
            "content_type": "image/png", "metadata": {"purpose": "avatar", "caption": rng.token()}}),
        "datasets" => json!({"vars": {"tenant": "t-0042", "dataset": token.replace('-', "_")},
            "metadata": {"source": rng.token()}}),
        "documents" => json!({"vars": {"user": token}, "filename": format!("{}.pdf", rng.token()),
            "content_type": "application/pdf", "metadata": {"kind": "contract"}}),
        "invoices" => json!({"vars": {"supplier": token}}),
        _ => return None,
    })
}

#[actix_web::test]
async fn hostile_traffic_leaves_every_metric_family_bounded() {
    let dir = policies_copy();
    let state = state(registry(dir.path()));
    let service = actix_test::init_service(App::new().app_data(state.clone()).configure(http::routes)).await;
    let loaded: Vec<String> = state.registry.current().profiles.keys().cloned().collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    for _ in 0..REQUESTS {
        let profile = if rng.chance(50) {
            rng.pick(&loaded).clone()
        } else {
            match rng.below(4) {
                0 => format!("{}%2F..%2F{}", rng.token(), rng.token()),
                1 => format!("{}%E2%80%AE", rng.token()),
                _ => rng.token(),
            }
        };
        let query = if rng.chance(5) {
            format!("?format={}", rng.token())
        } else {
            String::new()
        };
        let mut request = actix_test::TestRequest::post().uri(&format!("/v1/profiles/{profile}/presign{query}"));
        match rng.below(20) {
            0 => {}
            1 => request = request.insert_header((header::AUTHORIZATION, format!("Basic {}", rng.token()))),
            2..=4 => request = request.insert_header((header::AUTHORIZATION, format!("Bearer {}", rng.token()))),
            _ => {
                let (_, key) = rng.pick(KEYS);
                request = request.insert_header((header::AUTHORIZATION, format!("Bearer {key}")));
            }
        }
        let content_type = if rng.chance(95) {
            "application/json".to_owned()
        } else {
            format!("text/{}", rng.token())
        };
        request = request.insert_header((header::CONTENT_TYPE, content_type));
        if let Some(body) = valid_body(&mut rng, &profile).filter(|_| rng.chance(40)) {
            let response = actix_test::call_service(&service, request.set_payload(body.to_string()).to_request()).await;
            assert!(!response.status().is_server_error(), "{}", response.status());
            continue;
        }
        let mut vars = serde_json::Map::new();
        for name in ["user", "supplier", "tenant", "dataset"] {
            if rng.chance(70) {
                let value = if rng.chance(50) {
                    "alice".to_owned()
                } else {
                    rng.hostile()
                };
                vars.insert(name.to_owned(), json!(value));
            }
        }
        if rng.chance(10) {
            vars.insert(rng.token(), json!(rng.token()));
        }
        let mut metadata = serde_json::Map::new();
        if rng.chance(50) {
            let purpose = if rng.chance(50) {
                "avatar".to_owned()
            } else {
                rng.hostile()
            };
            metadata.insert("purpose".to_owned(), json!(purpose));
        }
        if rng.chance(30) {
            metadata.insert("kind".to_owned(), json!("contract"));
        }
        if rng.chance(10) {
            metadata.insert(rng.token(), json!(rng.token()));
        }
        let mut body = json!({ "vars": vars, "metadata": metadata });
        if rng.chance(60) {
            body["filename"] = json!(format!("{}.png", rng.hostile()));
        }
        if rng.chance(50) {
            body["content_type"] = json!(*rng.pick(&["image/png", "text/html", "application/pdf", "text/csv"]));
        }
        if rng.chance(30) {
            body["size"] = json!(rng.next() % 20_000_000);
        }
        let body = match rng.below(20) {
            0 => format!("{{\"vars\": {{\"{}\": ", rng.token()),
            1 => format!("{{\"{}\": 1}}", rng.token()),
            _ => body.to_string(),
        };
        let response = actix_test::call_service(&service, request.set_payload(body).to_request()).await;
        assert!(!response.status().is_server_error(), "{}", response.status());
    }

    let response =
        actix_test::call_service(&service, actix_test::TestRequest::get().uri("/metrics").to_request()).await;
    let text = String::from_utf8(actix_test::read_body(response).await.to_vec()).unwrap();
    assert!(
        !text.contains(RANDOM_PREFIX),
        "a client-supplied string became part of /metrics:\n{}",
        text.lines().find(|l| l.contains(RANDOM_PREFIX)).unwrap()
    );

    // Every series, by family (a histogram's _bucket, _sum and _count lines are one family).
    let mut series: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("postgate_")) {
        let (name_and_labels, _) = line.rsplit_once(' ').unwrap();
        let name = name_and_labels.split('{').next().unwrap();
        let family = [metrics::PRESIGN_DURATION]
            .into_iter()
            .find(|histogram| name.starts_with(histogram))
            .unwrap_or(name);
        series.entry(family).or_default().insert(name_and_labels);
    }

    // The bound of each family, from its definition.
    let profiles = loaded.len() + 1; // the loaded names and `_unknown`
    let histogram_series = PRESIGN_DURATION_BUCKETS.len() + 1 + 2; // the buckets, +Inf, _sum, _count
    let bounds: BTreeMap<&str, usize> = [
        (metrics::PRESIGN_REQUESTS, profiles * Outcome::ALL.len()),
        (metrics::PRESIGN_DURATION, profiles * histogram_series),
        (metrics::EXPIRY_CLAMPED, loaded.len()),
        (metrics::RELOADS, Trigger::ALL.len() * ReloadResult::ALL.len()),
        (metrics::LAST_RELOAD_SUCCESSFUL, 1),
        (metrics::LAST_RELOAD_SUCCESS_TIMESTAMP, 1),
        (metrics::GENERATION, 1),
        (metrics::CONFIG_HASH, 1),
        (metrics::PROFILES_LOADED, 1),
        (metrics::BUILD_INFO, 1),
        (metrics::CREDENTIALS_EXPIRY, 4),
        (metrics::CREDENTIALS_VALID, 4),
        (metrics::CREDENTIALS_REFRESHES, 8),
        (metrics::JWKS_FETCHES, 16),
        (metrics::END_USER_TOKENS, 96),
        (metrics::RATE_LIMIT_BACKEND_UP, 1),
        (metrics::RATE_LIMIT_FALLBACKS, 1),
        (metrics::CONFIG_PART_FAILING, metrics::CONFIG_PARTS.len()),
        (metrics::LOG_LINES_DROPPED, 1),
    ]
    .into_iter()
    .collect();
    for (family, lines) in &series {
        let bound = bounds
            .get(family)
            .unwrap_or_else(|| panic!("{family} has no bound in this test; give it one"));
        assert!(
            lines.len() <= *bound,
            "{family}: {} series, more than {bound}",
            lines.len()
        );
    }

    // The label values are the loaded names, `_unknown` and the fixed outcome words, and the
    // traffic reached most of them (so the bound was tested, not just met by silence).
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let mut outcomes = BTreeSet::new();
    let mut profile_labels = BTreeSet::new();
    let mut counted = 0.0;
    for sample in scrape.samples.iter().filter(|s| s.metric == metrics::PRESIGN_REQUESTS) {
        let profile = sample.labels.get("profile").unwrap();
        let outcome = sample.labels.get("outcome").unwrap();
        assert!(
            profile == UNKNOWN_PROFILE || loaded.iter().any(|l| l == profile),
            "{profile}"
        );
        assert!(Outcome::ALL.iter().any(|o| o.as_str() == outcome), "{outcome}");
        profile_labels.insert(profile.to_owned());
        outcomes.insert(outcome.to_owned());
        if let prometheus_parse::Value::Counter(value) = sample.value {
            counted += value;
        }
    }
    assert_eq!(counted, REQUESTS as f64, "every request is counted once");
    assert_eq!(profile_labels.len(), profiles, "{profile_labels:?}");
    for outcome in [
        "signed",
        "refused",
        "unknown_profile",
        "unauthenticated",
        "forbidden",
        "bad_request",
        "rate_limited",
    ] {
        assert!(outcomes.contains(outcome), "no request ended `{outcome}`: {outcomes:?}");
    }
    assert!(series[metrics::PRESIGN_REQUESTS].len() > profiles * 3);
}

/// README.md's metrics table names exactly the gateway's own metric families (in the table's
/// order, compared as sets): a metric added, renamed or removed fails here until the table says so.
#[test]
fn readme_metrics_table_is_the_registered_families() {
    let metrics = postgate::metrics::Metrics::new();
    let mut registered: Vec<&str> = metrics
        .families()
        .iter()
        .map(String::as_str)
        .filter(|name| name.starts_with("postgate_"))
        .collect();
    let readme = std::fs::read_to_string(crate::repo_path("README.md")).unwrap();
    let section = readme
        .split("\n## Metrics\n")
        .nth(1)
        .expect("README.md has a Metrics section");
    let rows: Vec<&str> = section
        .lines()
        .skip_while(|line| !line.starts_with("| metric |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| line.split('`').nth(1))
        .collect();
    let mut documented: Vec<&str> = rows.iter().copied().filter(|n| n.starts_with("postgate_")).collect();
    assert!(!registered.is_empty());
    registered.sort_unstable();
    documented.sort_unstable();
    assert_eq!(
        documented, registered,
        "README.md's metrics table and metrics::Metrics differ"
    );
    // The process collector's families are one row.
    let process = metrics.families().iter().any(|n| n.starts_with("process_"));
    assert_eq!(rows.contains(&"process_*"), process, "README.md's `process_*` row");
}
