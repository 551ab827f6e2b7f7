//! The audit log: one JSON line per grant (presign, multipart start), naming who was granted
//! what and never a signature, policy or token; with `fail_closed`, a grant whose line cannot be
//! written (`/dev/full`) is refused 503 `audit-unavailable`, and without it, granted anyway.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{App, test as actix_test, web};
use postgate::audit::Audit;
use postgate::http::{self, AppState};
use postgate::metrics::Metrics;
use serde_json::Value;

use crate::support::state::{app_state, key, policies_copy, registry};

/// The gateway's routes with the audit log at `output`; a presign of `avatars` for `web`.
async fn presign(output: &str, fail_closed: bool) -> (u16, Value) {
    let dir = policies_copy();
    let mut state: AppState = app_state(registry(dir.path()));
    let audit = Audit::open(output, fail_closed, Arc::new(Metrics::new())).unwrap();
    state.uploads.audit = Some(Arc::new(audit));
    let service = actix_test::init_service(App::new().app_data(web::Data::new(state)).configure(http::routes)).await;
    let req = actix_test::TestRequest::post()
        .uri("/v1/profiles/avatars/presign")
        .peer_addr("192.0.2.7:40000".parse().unwrap())
        .insert_header((header::AUTHORIZATION, format!("Bearer {}", key("web"))))
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .set_payload(
            r#"{"vars": {"user": "alice"}, "filename": "me.png", "content_type": "image/png", "metadata": {"purpose": "avatar"}}"#,
        )
        .to_request();
    let response = actix_test::call_service(&service, req).await;
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_slice(&actix_test::read_body(response).await).unwrap(),
    )
}

#[actix_web::test]
async fn grants_are_audited_and_fail_closed_refuses_an_unwritten_line() {
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("audit.jsonl");
    let (status, answer) = presign(log.to_str().unwrap(), true).await;
    assert_eq!(status, 200, "{answer}");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line = &lines[0];
    for (field, value) in [
        ("event", "grant"),
        ("app", "web"),
        ("profile", "avatars"),
        ("method", "post"),
        ("bucket", "user-content"),
        ("client", "192.0.2.7"),
    ] {
        assert_eq!(line[field], value, "{field} in {line}");
    }
    assert_eq!(line["profile_digest"].as_str().unwrap().len(), 64);
    assert_eq!(line["key"], answer["key"]);
    assert!(line["size_max"].as_u64().unwrap() > 0 && line["expires_at"].is_string() && line["upload_id"].is_string());
    // Nothing that lets anyone upload: no signature, policy, token or credential.
    let fields = answer["fields"].as_object().unwrap();
    for secret in [
        fields["x-amz-signature"].as_str().unwrap(),
        fields["policy"].as_str().unwrap(),
        answer["upload_token"].as_str().unwrap(),
        "wJalrXUtnFEMI",
    ] {
        assert!(!text.contains(secret), "the audit line holds a secret: {text}");
    }

    // A line that cannot be written: refused with fail_closed, granted without.
    let (status, answer) = presign("/dev/full", true).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (503, Some("audit-unavailable")),
        "{answer}"
    );
    assert!(answer.get("fields").is_none());
    let (status, answer) = presign("/dev/full", false).await;
    assert_eq!(status, 200, "{answer}");
}

/// After a rotation moved the file away, SIGHUP's `reopen` writes to a new file at the path.
#[test]
fn the_audit_file_is_reopened_after_a_rotation() {
    let work = tempfile::tempdir().unwrap();
    let (path, rotated) = (work.path().join("audit.jsonl"), work.path().join("audit.jsonl.1"));
    let audit = Audit::open(path.to_str().unwrap(), true, Arc::new(Metrics::new())).unwrap();
    let record = postgate::audit::CompleteRecord {
        app: "web",
        sub: None,
        profile: "media",
        method: "put",
        store: "default",
        bucket: "user-content",
        key: "media/a.png",
        upload_id: "m1",
        outcome: "verified",
        size: Some(1),
        client: None,
    };
    audit.complete(&record).unwrap();
    std::fs::rename(&path, &rotated).unwrap();
    audit.complete(&record).unwrap();
    audit.reopen();
    audit.complete(&record).unwrap();
    let lines = |p: &std::path::Path| std::fs::read_to_string(p).unwrap().lines().count();
    assert_eq!((lines(&rotated), lines(&path)), (2, 1));
}
