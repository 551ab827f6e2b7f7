//! `postgate probe` against the real stores. What each store enforces is pinned, one verdict per
//! case, in `tests/data/probe/<store>.txt` (`UPDATE_PROBE=1` rewrites a file from the run); the
//! README's "What each tested store enforces" table is generated from those files
//! (`UPDATE_README=1`), and the verdicts agree with the end-to-end suites' tables.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use postgate::probe::{self, PREFIX, Scope, cases::CASES};
use postgate::profile::enforcement::{ProbeMethod, Verdict};
use postgate::store::{ClientConfig, StoreClient};

use crate::repo_path;
use crate::support::process::postgate;
use crate::support::s3::{Kind, S3Server, garage_turn};

/// Each column of the README table: the file stem and the heading.
const COLUMNS: &[(&str, &str)] = &[
    ("s3s-fs", "s3s-fs 0.14"),
    ("postgate-dev", "`postgate dev`'s store"),
    ("garage", "Garage 2.5"),
    ("seaweedfs", "SeaweedFS 4.48"),
];
const BUCKET: &str = "other-bucket";
const TABLE_START: &str = "<!-- probe-table:start (generated from tests/data/probe/*.txt by tests/it/probe.rs) -->";
const TABLE_END: &str = "<!-- probe-table:end -->";

async fn probe_store(store: &postgate::sign::Store) -> probe::Report {
    let client = StoreClient::new(ClientConfig::default());
    let scope = Scope {
        bucket: BUCKET.to_owned(),
        ..Scope::default()
    };
    probe::run(&client, store, &scope).await.unwrap()
}

/// `case verdict` lines, in `CASES` order.
fn verdict_lines(report: &probe::Report) -> String {
    report
        .cases
        .iter()
        .map(|c| {
            format!(
                "{} {}\n",
                c.case,
                serde_json::to_value(c.verdict).unwrap().as_str().unwrap()
            )
        })
        .collect()
}

fn pinned(stem: &str) -> String {
    std::fs::read_to_string(repo_path(&format!("tests/data/probe/{stem}.txt")))
        .unwrap_or_else(|e| panic!("tests/data/probe/{stem}.txt: {e}"))
}

/// The run's verdicts equal the pinned ones (or replace them under `UPDATE_PROBE=1`).
fn check_pinned(stem: &str, report: &probe::Report) {
    let seen = verdict_lines(report);
    if std::env::var_os("UPDATE_PROBE").is_some() {
        std::fs::write(repo_path(&format!("tests/data/probe/{stem}.txt")), &seen).unwrap();
    }
    assert_eq!(
        seen,
        pinned(stem),
        "{stem}: the probe saw other verdicts than tests/data/probe/{stem}.txt pins \
         (UPDATE_PROBE=1 rewrites it; then UPDATE_README=1 the README table)\n{}",
        report.text()
    );
}

async fn probe_server(kind: Kind) {
    let _turn = garage_turn().await;
    let Some(server) = S3Server::remote(kind) else {
        return;
    };
    let before = server.objects().await;
    let report = probe_store(&server.store()).await;
    println!("{}", report.text());
    assert_eq!(server.objects().await, before, "the probe left objects behind");
    check_pinned(kind.name(), &report);
    check_killed_probe(&server).await;
    check_bucket_audit(&server).await;
}

const ORIGIN: &str = "https://app.example.com";
const CORS: &str = "<CORSConfiguration><CORSRule><AllowedOrigin>https://app.example.com</AllowedOrigin>\
    <AllowedMethod>POST</AllowedMethod><AllowedMethod>PUT</AllowedMethod><AllowedHeader>*</AllowedHeader>\
    <ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>3600</MaxAgeSeconds></CORSRule></CORSConfiguration>";
const LIFECYCLE: &str = "<LifecycleConfiguration><Rule><ID>abort</ID><Filter><Prefix></Prefix></Filter>\
    <Status>Enabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>\
    </AbortIncompleteMultipartUpload></Rule></LifecycleConfiguration>";

/// Sends a bucket subresource call (`PUT`/`DELETE` `?cors`, `?lifecycle`) signed with the
/// server's own credentials; returns the status.
async fn bucket_call(server: &S3Server, method: &str, which: &str, body: &str) -> u16 {
    use base64::Engine as _;
    let store = server.store();
    let now = time::OffsetDateTime::now_utc();
    let digest = {
        use md5::Digest as _;
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body.as_bytes()))
    };
    let headers: Vec<(&str, &str)> = if body.is_empty() {
        vec![]
    } else {
        vec![("content-md5", &digest)]
    };
    let url = store
        .signer(now)
        .unwrap()
        .presigned_object_url(method, BUCKET, "", &[(which, "")], &headers, now, 300);
    let mut request = reqwest::Client::new()
        .request(method.parse().unwrap(), url)
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request.send().await.unwrap().status().as_u16()
}

/// The bucket's CORS and lifecycle rules as the store keeps them: absent, the probe prints what
/// to apply; applied, it finds them in place (where the store takes them).
async fn check_bucket_audit(server: &S3Server) {
    let snapshot = crate::support::s3::load_policies();
    let client = StoreClient::new(ClientConfig::default());
    let store = server.store();
    let scope = Scope {
        bucket: BUCKET.to_owned(),
        profiles: served(&snapshot),
        origins: vec![ORIGIN.to_owned()],
    };
    let before = probe::run(&client, &store, &scope).await.unwrap();
    check_flags(server.kind(), &before);
    let cors_put = bucket_call(server, "PUT", "cors", CORS).await;
    let lifecycle_put = bucket_call(server, "PUT", "lifecycle", LIFECYCLE).await;
    let after = probe::run(&client, &store, &scope).await.unwrap();
    bucket_call(server, "DELETE", "cors", "").await;
    bucket_call(server, "DELETE", "lifecycle", "").await;
    println!(
        "{}: CORS {} → PUT {cors_put} → {}; lifecycle {} → PUT {lifecycle_put} → {}",
        server.kind().name(),
        before.cors.status,
        after.cors.status,
        before.lifecycle.status,
        after.lifecycle.status
    );
    assert_eq!(before.cors.status, "absent", "{:?}", before.cors);
    assert!(before.cors.apply.is_some());
    assert_eq!(before.lifecycle.status, "absent", "{:?}", before.lifecycle);
    if cors_put == 200 {
        assert_eq!(after.cors.status, "ok", "{:?}", after.cors);
    }
    if lifecycle_put == 200 {
        assert_eq!(after.lifecycle.status, "ok", "{:?}", after.lifecycle);
    }
    assert!(
        cors_put == 200 || lifecycle_put == 200,
        "the store took neither rule: nothing was checked live"
    );
}

#[tokio::test]
async fn probe_on_s3s_finds_what_the_e2e_suite_pins() {
    let server = S3Server::start().await;
    let before = server.objects().await;
    let report = probe_store(&server.store()).await;
    assert_eq!(server.objects().await, before, "the probe left objects behind");
    check_pinned("s3s-fs", &report);
    check_readme_members(&report);

    // The served profiles' gaps: `photos` (PUT) relies on unsigned headers being refused.
    let snapshot = crate::support::s3::load_policies();
    let scope = Scope {
        bucket: BUCKET.to_owned(),
        profiles: served(&snapshot),
        origins: Vec::new(),
    };
    let client = StoreClient::new(ClientConfig::default());
    let report = probe::run(&client, &server.store(), &scope).await.unwrap();
    check_flags(Kind::S3sFs, &report);
}

/// The example profiles the probe's flags are checked on.
fn served(snapshot: &postgate::registry::Snapshot) -> Vec<&postgate::profile::Profile> {
    ["media", "photos", "avatars"]
        .map(|p| &***snapshot.get(p).unwrap())
        .to_vec()
}

/// What the probe flags per store: `overwrite: false` (photos) on Garage, unsigned headers
/// (photos' PUT) on bare s3s-fs, unsigned form fields (avatars) on SeaweedFS.
fn check_flags(kind: Kind, report: &probe::Report) {
    use postgate::profile::enforcement::Constraint;
    let flagged = |profile: &str, method: ProbeMethod, constraint: Constraint| {
        report.profiles[profile]
            .iter()
            .any(|g| g.method == method && g.constraint == constraint)
    };
    assert!(report.has_gaps(), "{}", report.text());
    match kind {
        Kind::Garage => {
            assert!(
                flagged("photos", ProbeMethod::Put, Constraint::Overwrite),
                "{}",
                report.text()
            );
            assert!(!flagged("photos", ProbeMethod::Put, Constraint::UnsignedHeaders));
        }
        Kind::S3sFs => {
            assert!(
                flagged("photos", ProbeMethod::Put, Constraint::UnsignedHeaders),
                "{}",
                report.text()
            );
            assert!(!flagged("photos", ProbeMethod::Put, Constraint::Overwrite));
        }
        Kind::SeaweedFs => {
            assert!(
                flagged("avatars", ProbeMethod::Post, Constraint::ExtraFields),
                "{}",
                report.text()
            );
            assert!(report.profiles["photos"].is_empty(), "{}", report.text());
        }
    }
}

/// README's table of the `--json` members names exactly the report's members.
fn check_readme_members(report: &probe::Report) {
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
    let start = readme
        .find("`--json` prints the report.")
        .expect("README describes the JSON");
    let table = readme[start..].split("\n\n").nth(1).unwrap();
    let documented: Vec<String> = table
        .lines()
        .skip(2)
        .flat_map(|row| {
            let first = row.split('|').nth(1).unwrap_or_default();
            first
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .map(|name| name.trim_end_matches("[]").to_owned())
        .collect();
    let json = serde_json::to_value(report).unwrap();
    let members: Vec<String> = json.as_object().unwrap().keys().cloned().collect();
    let mut sorted = documented.clone();
    sorted.sort();
    let mut actual = members.clone();
    actual.sort();
    assert_eq!(sorted, actual, "README's JSON members against the report's");
}

#[tokio::test]
async fn probe_on_the_dev_store() {
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir(data.path().join(BUCKET)).unwrap();
    let dev = postgate::dev::start(data.path(), "127.0.0.1:0", Vec::new()).unwrap();
    let store = crate::support::s3::dev_store(&dev.endpoint);
    let report = probe_store(&store).await;
    let left: Vec<_> = walkdir(&data.path().join(BUCKET));
    assert!(left.is_empty(), "the probe left {left:?}");
    check_pinned("postgate-dev", &report);
}

fn walkdir(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if entry.path().is_dir() {
            out.extend(walkdir(&entry.path()));
        } else {
            out.push(entry.path().display().to_string());
        }
    }
    out
}

/// Garage (`tests/garage/`): the pinned verdicts, and a killed probe cleaned by the next run.
#[tokio::test]
async fn garage_probe_finds_the_pinned_verdicts() {
    probe_server(Kind::Garage).await;
}

/// SeaweedFS (`tests/seaweedfs/`), as on Garage.
#[tokio::test]
async fn seaweedfs_probe_finds_the_pinned_verdicts() {
    probe_server(Kind::SeaweedFs).await;
}

/// A config with one store: `server`, its credentials in the environment.
fn probe_config(dir: &Path, server: &S3Server) -> std::path::PathBuf {
    let path = dir.join("postgate.yaml");
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(
        &path,
        format!(
            "policies: {}\nstores:\n  default:\n    endpoint: {}\n    region: {}\n    addressing: path\n    \
             credentials:\n      access_key_id_env: PROBE_KEY_ID\n      secret_access_key_env: PROBE_SECRET\n",
            dir.join("policies").display(),
            server.endpoint,
            server.region
        ),
    )
    .unwrap();
    path
}

/// `postgate probe` killed while it has objects in the bucket leaves them; the next run removes
/// them (and aborts the multipart uploads it can list), so the bucket ends as it was.
async fn check_killed_probe(server: &S3Server) {
    let dir = tempfile::tempdir().unwrap();
    let config = probe_config(dir.path(), server);
    let (key_id, secret) = server.credentials();
    let command = |json: bool| {
        let mut command = postgate();
        command
            .args(["probe", "--bucket", BUCKET, "--config"])
            .arg(&config)
            .env("PROBE_KEY_ID", key_id)
            .env("PROBE_SECRET", secret);
        if json {
            command.arg("--json");
        }
        command
    };
    // Someone else's, under the probe's prefix: beside a run's keys, and in a run's folder.
    let foreign = [
        format!("{PREFIX}notes.txt"),
        format!("{PREFIX}01a249b9887b7719ac4f7e6ae461440d/put-control/theirs.txt"),
    ];
    for key in &foreign {
        assert_eq!(
            server.raw_put(BUCKET, key, None, b"not the probe's".to_vec()).await,
            200
        );
    }
    let before = server.objects().await;
    let mut child = command(false)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let prefix = format!("{BUCKET}/{PREFIX}");
    let mut left = Vec::new();
    for _ in 0..300 {
        left = server
            .objects()
            .await
            .into_iter()
            .filter(|k| k.starts_with(&prefix))
            .collect();
        if left.len() >= 3 + foreign.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        left.len() >= 3 + foreign.len(),
        "the probe wrote nothing to kill it over"
    );
    assert!(
        server.objects().await.len() > before.len(),
        "the killed probe left its objects"
    );

    // In another thread: an s3s-fs server answers on this test's runtime.
    let mut second = command(true);
    let output = tokio::task::spawn_blocking(move || second.output().unwrap())
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["cleanup"]["removed"].as_u64().unwrap() >= 3, "{report}");
    assert_eq!(report["cleanup"]["left"], 2, "{report}");
    assert_eq!(
        server.objects().await,
        before,
        "the second run left the bucket as it found it"
    );
    let client = StoreClient::new(ClientConfig::default());
    for key in &foreign {
        let theirs = server.object(BUCKET, key).await.expect("someone else's object stays");
        assert_eq!(theirs.bytes, b"not the probe's");
        client.delete(&server.store(), BUCKET, key).await.unwrap();
    }
    if server.kind() != Kind::S3sFs {
        let pending = client.list_multipart(&server.store(), BUCKET, PREFIX).await.unwrap();
        assert!(pending.is_empty(), "{pending:?}");
    }
}

#[tokio::test]
async fn a_killed_probe_is_cleaned_up_by_the_next_run() {
    check_killed_probe(&S3Server::start().await).await;
}

/// The README table, rendered from the pinned verdicts.
fn table() -> String {
    let files: Vec<Vec<(String, String)>> = COLUMNS
        .iter()
        .map(|(stem, _)| {
            pinned(stem)
                .lines()
                .map(|l| {
                    let (case, verdict) = l.split_once(' ').unwrap();
                    (case.to_owned(), verdict.to_owned())
                })
                .collect()
        })
        .collect();
    let mut out = String::from("| case | constraint |");
    for (_, heading) in COLUMNS {
        out.push_str(&format!(" {heading} |"));
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---|".repeat(COLUMNS.len()));
    out.push('\n');
    for case in CASES {
        out.push_str(&format!("| `{}` | {} |", case.id, case.constraint.name()));
        for file in &files {
            let verdict = file.iter().find(|(c, _)| c == case.id).map_or("—", |(_, v)| v.as_str());
            let verdict: Verdict =
                serde_json::from_value(serde_json::Value::String(verdict.to_owned())).unwrap_or(Verdict::Untested);
            let cell = if verdict.is_gap() {
                format!("**{}**", verdict.name())
            } else {
                verdict.name().to_owned()
            };
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
    out
}

#[test]
fn readme_store_table_is_generated_from_the_probe_verdicts() {
    let readme_path = repo_path("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let start = readme
        .find(TABLE_START)
        .expect("README has the probe table's start marker")
        + TABLE_START.len();
    let end = readme.find(TABLE_END).expect("README has the probe table's end marker");
    let wanted = format!("\n{}", table());
    if std::env::var_os("UPDATE_README").is_some() {
        let updated = format!("{}{}{}", &readme[..start], wanted, &readme[end..]);
        std::fs::write(&readme_path, updated).unwrap();
        return;
    }
    assert_eq!(
        &readme[start..end],
        wanted,
        "README's store table differs from tests/data/probe/*.txt: UPDATE_README=1 rewrites it"
    );
}

/// On every case both run, the probe's pinned verdict is the end-to-end suite's.
#[test]
fn the_probe_agrees_with_the_end_to_end_suites() {
    for (stem, kind) in [
        ("s3s-fs", Kind::S3sFs),
        ("garage", Kind::Garage),
        ("seaweedfs", Kind::SeaweedFs),
    ] {
        let pinned = pinned(stem);
        let mut compared = 0;
        for (case, verdict) in crate::e2e::verdicts(kind) {
            let line = pinned
                .lines()
                .find(|l| l.split(' ').next() == Some(case))
                .unwrap_or_else(|| panic!("{stem}: no pinned verdict for {case}"));
            let probe: Verdict =
                serde_json::from_value(serde_json::Value::String(line.split(' ').nth(1).unwrap().to_owned())).unwrap();
            assert_eq!(probe, verdict, "{stem}: {case}");
            compared += 1;
        }
        assert!(compared >= 18, "{stem}: {compared} shared cases");
    }
}

/// A probe file as Garage's run writes it, reduced to the case that matters here.
const GARAGE_OVERWRITE: &str = r#"{"store": "default", "cases": [
  {"case": "put-overwrite", "method": "put", "constraint": "overwrite", "verdict": "not-enforced", "status": 200},
  {"case": "put-key-changed", "method": "put", "constraint": "key", "verdict": "enforced", "status": 403}
]}"#;

/// With `stores.<name>.probe`, `check` warns on each profile relying on what the store does not
/// enforce (`--deny-warnings` fails), and the profile endpoint shows it.
#[actix_web::test]
async fn a_probe_file_makes_check_and_the_profile_endpoint_name_the_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let probe_file = dir.path().join("garage.json");
    std::fs::write(&probe_file, GARAGE_OVERWRITE).unwrap();
    let config = dir.path().join("postgate.yaml");
    std::fs::write(
        &config,
        format!(
            "policies: {}\nstores:\n  default:\n    endpoint: http://127.0.0.1:9\n    probe: {}\n",
            repo_path("policies").display(),
            probe_file.display()
        ),
    )
    .unwrap();
    let check = |deny: bool| {
        let mut command = postgate();
        command.args(["check", "--config"]).arg(&config);
        if deny {
            command.arg("--deny-warnings");
        }
        command.output().unwrap()
    };
    let out = check(false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            "warning: photos: put relies on overwrite, which store `default` does not enforce (not enforced, by \
             `postgate probe`): overwrite: false is not enforced by this store; use verify with staging instead \
             (uploads land under the staging prefix and only `complete` writes the key)"
        ]
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(" profiles ok, 1 warning\n"));
    assert_eq!(check(true).status.code(), Some(1));

    // The endpoint: the store's enforcement travels with the served profile.
    use crate::support::state::{app_limits, key, policies_copy, registry_signing, state};
    use actix_web::{App, test as actix_test};
    use postgate::ratelimit::RateClock;
    let enforcement = serde_json::from_str(GARAGE_OVERWRITE).unwrap();
    let policies = policies_copy();
    let store = crate::support::state::aws_store().with_enforcement(Some(enforcement));
    let state = state(registry_signing(
        policies.path(),
        app_limits(),
        RateClock::manual(Default::default()),
        store,
    ));
    let service = actix_test::init_service(App::new().app_data(state).configure(postgate::http::routes)).await;
    let get = |name: &str| {
        actix_test::TestRequest::get()
            .uri(&format!("/v1/profiles/{name}"))
            .insert_header(("Authorization", format!("Bearer {}", key("mobile"))))
            .to_request()
    };
    let photos: serde_json::Value = actix_test::call_and_read_body_json(&service, get("photos")).await;
    assert_eq!(
        photos["store_gaps"],
        serde_json::json!([{
            "method": "put",
            "constraint": "overwrite",
            "verdict": "not enforced",
            "advice": postgate::profile::enforcement::Constraint::Overwrite.advice()
        }])
    );
    let avatars: serde_json::Value = actix_test::call_and_read_body_json(&service, get("avatars")).await;
    assert!(avatars.get("store_gaps").is_none(), "{avatars}");
}

/// Bad input to the command is an error that says what is wrong, never a panic or a probe.
#[test]
fn a_bad_bucket_or_store_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let config = dir.path().join("postgate.yaml");
    std::fs::write(
        &config,
        format!(
            "policies: {}\nstores:\n  default:\n    endpoint: http://127.0.0.1:9\n",
            dir.path().join("policies").display()
        ),
    )
    .unwrap();
    for (args, says) in [
        (vec!["--bucket", "Not_A_Bucket"], "is not a valid S3 bucket name"),
        (vec!["--bucket", "ok-bucket\nkey: x"], "is not a valid S3 bucket name"),
        (
            vec!["--store", "elsewhere", "--bucket", "b-1"],
            "no store `elsewhere` is configured",
        ),
        (vec![], "say which bucket with --bucket"),
    ] {
        let out = postgate()
            .arg("probe")
            .args(&args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
