//! The HTTP API in-process (actix test service): the contract of every error kind, auth, CORS,
//! the profile listings, `/metrics` as valid exposition format, and forms from the API uploaded
//! to a real S3 server with every rejection of the core suite.

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header;
use actix_web::{App, test as actix_test, web};
use postgate::config::CorsConfig;
use postgate::http::{self, AppState};
use postgate::profile::UploadRequest;
use postgate::ratelimit::RateClock;
use serde_json::{Value, json};

use crate::e2e::{check_put_rejections, check_rejections, check_uploads};
use crate::repo_path;
use crate::support::s3::{S3Server, SignedForm, SignedPut, SignedUpload};
use crate::support::state::*;
fn cors_config() -> CorsConfig {
    CorsConfig {
        allowed_origins: vec!["https://app.example.com".into()],
        max_age: 600,
    }
}

macro_rules! service {
    ($state:expr) => {{
        let state = $state;
        actix_test::init_service(
            App::new()
                .app_data(state.clone())
                .wrap(http::cors(&cors_config(), state.registry.clone()))
                .configure(http::routes),
        )
        .await
    }};
}

/// One request of the contract table.
struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    app: Option<&'static str>,
    content_type: Option<&'static str>,
    body: String,
}

fn presign(name: &'static str, path: &'static str, app: &'static str, body: Value) -> Case {
    Case {
        name,
        method: "POST",
        path,
        app: Some(app),
        content_type: Some("application/json"),
        body: body.to_string(),
    }
}

async fn respond<B: MessageBody>(
    service: &impl Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    case: &Case,
) -> (u16, String, Value) {
    let (status, headers, body) = respond_with_headers(service, case).await;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, body)
}

async fn respond_with_headers<B: MessageBody>(
    service: &impl Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    case: &Case,
) -> (u16, header::HeaderMap, Value) {
    let mut req = match case.method {
        "GET" => actix_test::TestRequest::get(),
        "PUT" => actix_test::TestRequest::put(),
        "DELETE" => actix_test::TestRequest::delete(),
        _ => actix_test::TestRequest::post(),
    }
    .uri(case.path);
    if let Some(app) = case.app {
        let value = if app == "wrong" {
            "Bearer not-a-valid-key-000000".to_owned()
        } else if app == "basic" {
            "Basic d2ViOndlYg==".to_owned()
        } else {
            format!("Bearer {}", key(app))
        };
        req = req.insert_header((header::AUTHORIZATION, value));
    }
    if let Some(content_type) = case.content_type {
        req = req.insert_header((header::CONTENT_TYPE, content_type));
    }
    let response = actix_test::call_service(service, req.set_payload(case.body.clone()).to_request()).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = actix_test::read_body(response).await;
    let json = serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    (status, headers, json)
}

#[actix_web::test]
async fn api_contract() {
    let dir = policies_copy();
    let state = state(registry(dir.path()));
    let service = service!(state);
    let avatars = "/v1/profiles/avatars/presign";
    let cases = vec![
        Case {
            name: "no key",
            app: None,
            ..presign("", avatars, "web", json!({}))
        },
        presign("wrong key", avatars, "wrong", json!({})),
        Case {
            name: "presign with PUT",
            method: "PUT",
            ..presign("", avatars, "web", json!({}))
        },
        Case {
            name: "delete a profile",
            method: "DELETE",
            body: String::new(),
            ..presign("", "/v1/profiles/avatars", "web", json!({}))
        },
        presign("not a bearer key", avatars, "basic", json!({})),
        presign(
            "profile not in the app's list",
            "/v1/profiles/datasets/presign",
            "web",
            json!({}),
        ),
        presign("app in no profile's list", avatars, "other", json!({})),
        presign("unknown profile", "/v1/profiles/nope/presign", "web", json!({})),
        presign(
            "unknown profile, hostile name",
            "/v1/profiles/%2E%2E%2Fetc/presign",
            "web",
            json!({}),
        ),
        Case {
            content_type: Some("text/plain"),
            ..presign("wrong content type", avatars, "web", json!({}))
        },
        Case {
            content_type: None,
            ..presign("no content type", avatars, "web", json!({}))
        },
        Case {
            body: "{\"vars\": {".into(),
            ..presign("malformed JSON", avatars, "web", json!({}))
        },
        Case {
            body: String::new(),
            ..presign("empty body", avatars, "web", json!({}))
        },
        presign("unknown body field", avatars, "web", json!({"varz": {"user": "alice"}})),
        presign("wrong body type", avatars, "web", json!({"size": "big"})),
        Case {
            body: format!("{{\"vars\": {{\"user\": \"{}\"}}}}", "a".repeat(70 * 1024)),
            ..presign("body too large", avatars, "web", json!({}))
        },
        presign(
            "var invalid",
            avatars,
            "web",
            json!({"vars": {"user": "../alice"}, "metadata": {"purpose": "avatar"}}),
        ),
        presign(
            "var missing, var unknown",
            avatars,
            "web",
            json!({"vars": {"tenant": "x"}, "metadata": {"purpose": "avatar"}}),
        ),
        presign(
            "size out of range",
            avatars,
            "web",
            json!({"vars": {"user": "alice"}, "size": 6000000, "metadata": {"purpose": "avatar"}}),
        ),
        presign(
            "content type not allowed",
            avatars,
            "web",
            json!({"vars": {"user": "alice"}, "content_type": "text/html", "metadata": {"purpose": "avatar"}}),
        ),
        presign(
            "content type required",
            "/v1/profiles/documents/presign",
            "web",
            json!({"vars": {"user": "alice"}, "metadata": {"kind": "contract"}}),
        ),
        presign(
            "filename invalid",
            avatars,
            "web",
            json!({"vars": {"user": "alice"}, "filename": "..", "metadata": {"purpose": "avatar"}}),
        ),
        presign(
            "filename not accepted",
            "/v1/profiles/invoices/presign",
            "web",
            json!({"vars": {"supplier": "acme"}, "filename": "a.pdf"}),
        ),
        presign(
            "metadata invalid, unknown, fixed",
            avatars,
            "web",
            json!({"vars": {"user": "alice"}, "metadata": {"purpose": "x", "color": "red", "uploaded-by": "bob"}}),
        ),
        presign("metadata missing", avatars, "web", json!({"vars": {"user": "alice"}})),
        presign(
            "unknown format",
            "/v1/profiles/avatars/presign?format=xml",
            "web",
            json!({}),
        ),
        presign(
            "a query string that does not parse",
            "/v1/profiles/avatars/presign?format=json&format=curl",
            "web",
            json!({}),
        ),
        presign(
            "rate-limited app, within its burst",
            "/v1/profiles/invoices/presign",
            "throttled",
            json!({}),
        ),
        presign(
            "rate-limited app, over its limit",
            "/v1/profiles/invoices/presign",
            "throttled",
            json!({"vars": {"supplier": "acme"}}),
        ),
        Case {
            method: "GET",
            content_type: None,
            body: String::new(),
            ..presign("unknown route", "/v2/things", "web", json!({}))
        },
        Case {
            method: "GET",
            content_type: None,
            body: String::new(),
            ..presign("profile list", "/v1/profiles", "web", json!({}))
        },
        Case {
            method: "GET",
            content_type: None,
            body: String::new(),
            ..presign("profile list of another app", "/v1/profiles", "ingest", json!({}))
        },
        Case {
            method: "GET",
            content_type: None,
            body: String::new(),
            ..presign("compiled profile", "/v1/profiles/avatars", "web", json!({}))
        },
        Case {
            method: "GET",
            content_type: None,
            body: String::new(),
            ..presign(
                "compiled profile, not allowed",
                "/v1/profiles/datasets",
                "web",
                json!({}),
            )
        },
        Case {
            method: "GET",
            app: None,
            content_type: None,
            body: String::new(),
            ..presign("profile list without a key", "/v1/profiles", "web", json!({}))
        },
        Case {
            method: "GET",
            app: None,
            content_type: None,
            body: String::new(),
            ..presign("healthz", "/healthz", "web", json!({}))
        },
        Case {
            method: "GET",
            app: None,
            content_type: None,
            body: String::new(),
            ..presign("readyz", "/readyz", "web", json!({}))
        },
    ];
    let mut results = Vec::new();
    for case in &cases {
        let (status, headers, body) = respond_with_headers(&service, case).await;
        if status >= 400 {
            assert_eq!(
                headers.get(header::CONTENT_TYPE).unwrap(),
                "application/problem+json",
                "{}",
                case.name
            );
            assert_eq!(body["status"], status, "{}", case.name);
            assert!(status < 500, "{}: a server error for bad input", case.name);
        }
        let mut result = json!({ "case": case.name, "status": status, "body": body });
        if let Some(retry_after) = headers.get(header::RETRY_AFTER) {
            result["retry_after"] = json!(retry_after.to_str().unwrap());
        }
        results.push(result);
    }
    insta::assert_json_snapshot!(results);
}

#[test]
fn machine_codes_are_stable() {
    let codes: Vec<(String, &str)> = http::problem::REFUSAL_KINDS
        .iter()
        .map(|kind| (format!("{kind:?}"), http::problem::refusal_code(*kind)))
        .collect();
    let mut unique: Vec<&str> = codes.iter().map(|(_, c)| *c).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), codes.len());
    insta::assert_debug_snapshot!(codes);
}

/// The upload routes' codes: unique, each with one status and title (README.md lists them).
#[test]
fn upload_codes_are_stable() {
    let table: Vec<(String, &str, u16)> = http::problem::ProblemCode::ALL
        .iter()
        .map(|code| {
            let (name, status, _) = code.describe();
            (format!("{code:?}"), name, status.as_u16())
        })
        .collect();
    let mut unique: Vec<&str> = table.iter().map(|(_, c, _)| *c).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), table.len());
    // README.md's table is the failure table, exactly (`UPDATE_README=1` writes it).
    let path = repo_path("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let (start, end) = ("<!-- upload-codes -->\n", "<!-- /upload-codes -->");
    let from = readme.find(start).expect("README.md has the upload-codes block") + start.len();
    let to = from + readme[from..].find(end).expect("the block ends");
    let generated = http::problem::code_table_markdown();
    if std::env::var_os("UPDATE_README").is_some() {
        std::fs::write(&path, format!("{}{generated}{}", &readme[..from], &readme[to..])).unwrap();
    } else {
        assert_eq!(
            &readme[from..to],
            generated,
            "README.md's code table differs from http::problem: run `UPDATE_README=1 cargo test upload_codes`"
        );
    }
    insta::assert_debug_snapshot!(table);
}

#[actix_web::test]
async fn a_signed_form_from_the_api() {
    let dir = policies_copy();
    let state = state(registry(dir.path()));
    let service = service!(state);
    let body = json!({"vars": {"user": "alice"}, "filename": "me.png", "content_type": "image/png", "size": 1234, "metadata": {"purpose": "avatar"}});
    let (status, _, form) = respond(&service, &presign("ok", "/v1/profiles/avatars/presign", "web", body)).await;
    assert_eq!(status, 200, "{form}");
    assert_eq!(form["url"], "https://user-content.s3.eu-west-1.amazonaws.com/");
    assert_eq!(form["profile"], "avatars");
    assert_eq!(form["generation"], 1);
    assert_eq!(form["max_size"], 1234);
    let key = form["key"].as_str().unwrap();
    assert!(key.starts_with("avatars/alice/") && key.ends_with("/me.png"), "{key}");
    let names: Vec<&str> = form["fields"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "key",
            "Content-Type",
            "acl",
            "Cache-Control",
            "Content-Disposition",
            "success_action_status",
            "x-amz-server-side-encryption",
            "x-amz-meta-uploaded-by",
            "x-amz-meta-purpose",
            "x-amz-meta-postgate-upload",
            "x-amz-algorithm",
            "x-amz-credential",
            "x-amz-date",
            "policy",
            "x-amz-signature"
        ]
    );
    assert!(
        form["fields"]["x-amz-credential"]
            .as_str()
            .unwrap()
            .starts_with("AKIAIOSFODNN7EXAMPLE/")
    );

    // The curl format carries the same fields as a `curl -K` config.
    let body = json!({"vars": {"user": "alice"}, "metadata": {"purpose": "avatar"}});
    let (status, content_type, text) = respond(
        &service,
        &presign("curl", "/v1/profiles/avatars/presign?format=curl", "web", body),
    )
    .await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain"));
    let text = text.as_str().unwrap();
    assert!(
        text.starts_with(
            "url = \"https://user-content.s3.eu-west-1.amazonaws.com/\"\nform-string = \"key=avatars/alice/"
        ),
        "{text}"
    );
    assert!(text.contains("form-string = \"x-amz-meta-purpose=avatar\"\n"));
}

#[actix_web::test]
async fn a_signed_put_url_from_the_api() {
    let dir = policies_copy();
    let state = state(registry(dir.path()));
    let service = service!(state);
    let body = json!({"method": "put", "vars": {"user": "bob"}, "filename": "a.pdf", "content_type": "application/pdf", "size": 2048, "metadata": {"kind": "invoice"}});
    let (status, _, answer) = respond(
        &service,
        &presign("put", "/v1/profiles/documents/presign", "web", body.clone()),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["method"], "PUT");
    assert_eq!(answer["max_size"], 2048);
    assert!(answer.get("fields").is_none());
    let url = answer["url"].as_str().unwrap();
    let key = answer["key"].as_str().unwrap();
    assert!(
        url.starts_with(&format!(
            "https://user-documents.s3.eu-west-1.amazonaws.com/{key}?X-Amz-Algorithm=AWS4-HMAC-SHA256&"
        )),
        "{url}"
    );
    assert!(url.contains("&X-Amz-SignedHeaders=content-disposition%3Bcontent-length%3Bcontent-type%3Bhost%3Bx-amz-acl%3Bx-amz-meta-app%3Bx-amz-meta-kind%3Bx-amz-meta-postgate-upload&"), "{url}");
    let marker = answer["headers"]["x-amz-meta-postgate-upload"]
        .as_str()
        .unwrap_or_default();
    assert!(
        key.contains(marker) && marker.len() == 36,
        "the marker is the grant's UUID: {answer}"
    );
    assert_eq!(
        answer["headers"],
        json!({"Content-Type": "application/pdf", "x-amz-acl": "private", "Content-Disposition": "attachment",
               "x-amz-meta-kind": "invoice", "x-amz-meta-app": "web", "x-amz-meta-postgate-upload": marker})
    );

    // The curl format: the URL, the method and every header but Content-Length.
    let (status, _, text) = respond(
        &service,
        &presign("curl", "/v1/profiles/documents/presign?format=curl", "web", body),
    )
    .await;
    assert_eq!(status, 200);
    let text = text.as_str().unwrap();
    assert!(text.starts_with("url = \"https://user-documents."), "{text}");
    assert!(
        text.contains("\nrequest = \"PUT\"\nheader = \"Content-Type: application/pdf\"\n"),
        "{text}"
    );
    assert!(
        !text.to_ascii_lowercase().contains("header = \"content-length"),
        "{text}"
    );

    // A POST-only profile refuses a PUT, naming why.
    let body = json!({"method": "put", "vars": {"user": "bob"}, "filename": "a.png", "content_type": "image/png", "size": 10, "metadata": {"purpose": "avatar"}});
    let (status, _, problem) = respond(&service, &presign("put", "/v1/profiles/avatars/presign", "web", body)).await;
    assert_eq!(status, 422);
    assert_eq!(problem["code"], "method-unavailable");
    assert!(
        problem["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("success_action_status makes the profile POST-only")
    );
}

/// A store declared without POST (`post: false`, as R2 and B2) gets PUT answers; asking it for
/// POST is a clear 422; a POST-only profile on it refuses the whole set.
#[actix_web::test]
async fn a_store_without_post_gets_put_urls() {
    let dir = policies_copy();
    std::fs::remove_file(dir.path().join("avatars.yaml")).unwrap();
    std::fs::remove_file(dir.path().join("attachments.yaml")).unwrap();
    let registry = registry_signing(
        dir.path(),
        app_limits(),
        RateClock::manual(Default::default()),
        aws_store().with_post(false),
    );
    let service = service!(state(registry));
    let body = json!({"vars": {"supplier": "acme"}, "size": 100});
    let (status, _, answer) = respond(
        &service,
        &presign("default", "/v1/profiles/invoices/presign", "web", body),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["method"], "PUT");

    let body = json!({"method": "post", "vars": {"supplier": "acme"}});
    let (status, _, problem) = respond(&service, &presign("post", "/v1/profiles/invoices/presign", "web", body)).await;
    assert_eq!(status, 422);
    assert_eq!(problem["code"], "method-unavailable");
    assert_eq!(
        problem["errors"][0]["detail"],
        "store `default` does not take POST uploads (`post: false`); ask for `put`"
    );

    // A POST-only profile cannot be served by that store: the set is refused at load.
    let stores = std::sync::Arc::new(
        [("default".to_owned(), Arc::new(aws_store().with_post(false)))]
            .into_iter()
            .collect::<postgate::registry::Stores>(),
    );
    let diags = postgate::registry::load(&crate::repo_path("policies"), &stores).unwrap_err();
    let text: Vec<String> = diags.iter().filter(|d| d.is_error()).map(ToString::to_string).collect();
    assert!(
        text.iter().any(|t| t.ends_with("avatars.yaml: store: store `default` takes no POST uploads (`post: false`) and this profile is POST-only (fields.success_action_status makes the profile POST-only: it sets the status of a POST form's answer; a PUT always answers 200)")),
        "{text:#?}"
    );
}

#[actix_web::test]
async fn cors_answers_allowed_origins_only() {
    let dir = policies_copy();
    let state = state(registry(dir.path()));
    let service = service!(state);
    let preflight = |origin: &str| {
        actix_test::TestRequest::default()
            .method(actix_web::http::Method::OPTIONS)
            .uri("/v1/profiles/avatars/presign")
            .insert_header((header::ORIGIN, origin))
            .insert_header((header::ACCESS_CONTROL_REQUEST_METHOD, "POST"))
            .insert_header((header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization, content-type"))
            .to_request()
    };
    let allowed = actix_test::call_service(&service, preflight("https://app.example.com")).await;
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        allowed.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
        "https://app.example.com"
    );
    assert_eq!(allowed.headers().get(header::ACCESS_CONTROL_MAX_AGE).unwrap(), "600");
    let denied = actix_test::call_service(&service, preflight("https://evil.example")).await;
    assert!(denied.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    assert!(denied.status().is_client_error());

    let request = actix_test::TestRequest::get()
        .uri("/v1/profiles")
        .insert_header((header::ORIGIN, "https://app.example.com"))
        .insert_header((header::AUTHORIZATION, format!("Bearer {}", key("web"))))
        .to_request();
    let response = actix_test::call_service(&service, request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
        "https://app.example.com"
    );
}

#[actix_web::test]
async fn metrics_parse_as_prometheus_text() {
    let dir = policies_copy();
    let state = state(registry(dir.path()));
    let service = service!(state);
    let ok = json!({"vars": {"user": "alice"}, "metadata": {"purpose": "avatar"}});
    respond(
        &service,
        &presign("ok", "/v1/profiles/avatars/presign", "web", ok.clone()),
    )
    .await;
    respond(&service, &presign("ok", "/v1/profiles/avatars/presign", "web", ok)).await;
    respond(
        &service,
        &presign("refused", "/v1/profiles/avatars/presign", "web", json!({})),
    )
    .await;
    respond(
        &service,
        &presign("unknown", "/v1/profiles/random-name-123/presign", "web", json!({})),
    )
    .await;
    respond(
        &service,
        &presign("forbidden", "/v1/profiles/datasets/presign", "web", json!({})),
    )
    .await;

    let response =
        actix_test::call_service(&service, actix_test::TestRequest::get().uri("/metrics").to_request()).await;
    assert!(
        response
            .headers()
            .get(header::CONTENT_TYPE)
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = String::from_utf8(actix_test::read_body(response).await.to_vec()).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| crate::sample(&text, name, labels);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    assert_eq!(
        value(
            "postgate_presign_requests_total",
            &[("profile", "avatars"), ("outcome", "signed")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            "postgate_presign_requests_total",
            &[("profile", "avatars"), ("outcome", "refused")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            "postgate_presign_requests_total",
            &[("profile", "_unknown"), ("outcome", "unknown_profile")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            "postgate_presign_requests_total",
            &[("profile", "datasets"), ("outcome", "forbidden")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            "postgate_config_reloads_total",
            &[("trigger", "startup"), ("result", "success")]
        ),
        Some(1.0)
    );
    assert_eq!(value("postgate_config_last_reload_successful", &[]), Some(1.0));
    assert_eq!(value("postgate_config_generation", &[]), Some(1.0));
    assert_eq!(value("postgate_profiles_loaded", &[]), Some(8.0));
    assert!(value("postgate_config_hash", &[]).unwrap() > 0.0);
    assert!(value("postgate_config_last_reload_success_timestamp_seconds", &[]).unwrap() > 1.7e9);
    assert_eq!(
        value("postgate_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        Some(1.0)
    );
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "process_resident_memory_bytes")
    );
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "postgate_presign_duration_seconds_count")
    );
    // No client-supplied string became a label value.
    assert!(!text.contains("random-name-123") && !text.contains("alice"));
}

/// Signs through the HTTP API, as an app would.
async fn api_form<B: MessageBody>(
    service: &impl Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    profile: &str,
    app: &str,
    request: &UploadRequest,
) -> SignedUpload {
    let mut body = json!({ "vars": request.vars, "metadata": request.metadata });
    for (name, value) in [
        ("filename", json!(request.filename)),
        ("content_type", json!(request.content_type)),
        ("size", json!(request.size)),
        ("method", json!(request.method.map(|m| m.as_str().to_ascii_lowercase()))),
        (
            "checksum",
            json!(
                request
                    .checksum
                    .as_ref()
                    .map(|c| json!({"algorithm": c.algorithm.name(), "value": c.value}))
            ),
        ),
    ] {
        if !value.is_null() {
            body[name] = value;
        }
    }
    let req = actix_test::TestRequest::post()
        .uri(&format!("/v1/profiles/{profile}/presign"))
        .insert_header((header::AUTHORIZATION, format!("Bearer {}", key(app))))
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .set_payload(body.to_string())
        .to_request();
    let response = actix_test::call_service(service, req).await;
    assert_eq!(response.status(), 200);
    let answer: Value = serde_json::from_slice(&actix_test::read_body(response).await).unwrap();
    let pairs = |name: &str| -> Vec<(String, String)> {
        answer[name]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect()
    };
    let url = answer["url"].as_str().unwrap().to_owned();
    let key = answer["key"].as_str().unwrap().to_owned();
    match answer["method"].as_str().unwrap() {
        "POST" => SignedUpload::Form(SignedForm {
            url,
            fields: pairs("fields"),
            key,
        }),
        "PUT" => SignedUpload::Put(SignedPut {
            url,
            headers: pairs("headers"),
            key,
        }),
        other => panic!("method {other}"),
    }
}

#[actix_web::test]
async fn forms_from_the_api_upload_and_every_constraint_holds() {
    check_api_against(S3Server::start().await).await;
}

/// The same through the API against Garage (`tests/garage/`; skipped, saying so, when it is not
/// running, unless `CI_REQUIRE_GARAGE` is set, as in CI).
#[actix_web::test]
async fn garage_takes_forms_and_put_urls_from_the_api() {
    let _turn = crate::support::s3::garage_turn().await;
    if let Some(server) = S3Server::garage() {
        check_api_against(server).await;
    }
}

/// The same against SeaweedFS, skipped or required as on Garage.
#[actix_web::test]
async fn seaweedfs_takes_forms_and_put_urls_from_the_api() {
    let _turn = crate::support::s3::garage_turn().await;
    if let Some(server) = S3Server::seaweedfs() {
        check_api_against(server).await;
    }
}

/// Every example upload (POST and PUT), every POST rejection and every PUT change, with
/// uploads signed through the HTTP API.
async fn check_api_against(server: S3Server) {
    let dir = policies_copy();
    let state = state(registry_signing(
        dir.path(),
        app_limits(),
        RateClock::manual(Default::default()),
        server.store(),
    ));
    let service = service!(state);
    check_uploads(&server, async |profile: &str, app: &str, request: &UploadRequest| {
        api_form(&service, profile, app, request).await
    })
    .await;
    check_rejections(&server, async |profile: &str, app: &str, request: &UploadRequest| {
        api_form(&service, profile, app, request).await
    })
    .await;
    check_put_rejections(&server, async |profile: &str, app: &str, request: &UploadRequest| {
        api_form(&service, profile, app, request).await
    })
    .await;
}

async fn get_text<B: MessageBody>(
    service: &impl Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    path: &str,
) -> (u16, String) {
    let response = actix_test::call_service(service, actix_test::TestRequest::get().uri(path).to_request()).await;
    let status = response.status().as_u16();
    let body = actix_test::read_body(response).await;
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[actix_web::test]
async fn dev_pages_sign_forms_and_escape_what_they_show() {
    let dir = policies_copy();
    let registry = registry(dir.path());
    let off = state(registry.clone());
    let on = web::Data::new(AppState {
        dev_pages: Some(http::DevPages {
            key: "dev-key-web-local".into(),
            app: "web".into(),
            events_secret: None,
        }),
        ..app_state(registry)
    });
    let service = service!(on);

    let (status, page) = get_text(&service, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"<meta name="postgate-key" content="dev-key-web-local">"#));

    // The no-JavaScript form: every signed field hidden, in order, the file input last.
    let (status, page) = get_text(&service, "/form/attachments").await;
    assert_eq!(status, 200, "{page}");
    let names: Vec<&str> = page
        .split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "key",
            "Content-Disposition",
            "success_action_redirect",
            "x-amz-meta-postgate-upload",
            "x-amz-algorithm",
            "x-amz-credential",
            "x-amz-date",
            "policy",
            "x-amz-signature"
        ]
    );
    assert!(page.contains("value=\"http://127.0.0.1:8080/uploaded\""));
    assert!(
        page.contains("/${filename}\""),
        "the key keeps ${{filename}} for the store"
    );
    let file_input = page.find("type=\"file\"").unwrap();
    assert!(page.rfind("type=\"hidden\"").unwrap() < file_input);

    // Refusals and query values are shown escaped, never as markup.
    let (status, page) = get_text(&service, "/form/avatars?user=%3Cb%3E").await;
    assert_eq!(status, 422);
    assert!(page.contains("id=\"error\"") && !page.contains("<b>"), "{page}");
    let (status, page) = get_text(&service, "/uploaded?bucket=b&key=a%3Cscript%3E%22&etag=%22e%22").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("a&lt;script&gt;&quot;") && !page.contains("<script>\""),
        "{page}"
    );
    let (status, _) = get_text(&service, "/form/nope").await;
    assert_eq!(status, 404);

    // Outside `postgate dev` the pages do not exist.
    let service = service!(off);
    for path in ["/", "/form/attachments", "/uploaded?key=k"] {
        assert_eq!(get_text(&service, path).await.0, 404, "{path}");
    }
    // The API description is served as checked in.
    let (status, doc) = get_text(&service, "/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc, std::fs::read_to_string(repo_path("schema/openapi.json")).unwrap());
}

/// The OpenAPI document's response texts name codes of the one failure table only, each under
/// the status the table gives it (refusal codes of a 422 under 422): the document cannot name a
/// code the gateway does not answer with, or answer it under another status.
#[test]
fn openapi_response_codes_are_the_failure_tables() {
    let table: std::collections::BTreeMap<&str, u16> = http::problem::ProblemCode::ALL
        .iter()
        .map(|code| {
            let (name, status, _) = code.describe();
            (name, status.as_u16())
        })
        .chain(
            http::problem::REFUSAL_KINDS
                .iter()
                .map(|kind| (http::problem::refusal_code(*kind), 422)),
        )
        .collect();
    let document: Value = serde_json::from_str(&http::openapi::document()).unwrap();
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(responses) = operation["responses"].as_object() else {
                continue;
            };
            for (status, response) in responses {
                let text = response["description"].as_str().unwrap_or_default();
                for (i, piece) in text.split('`').enumerate() {
                    let looks_like_code = i % 2 == 1
                        && !piece.is_empty()
                        && piece.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                        && piece.contains('-');
                    if !looks_like_code || !status.starts_with(['4', '5']) {
                        continue;
                    }
                    let known = table.get(piece);
                    assert!(known.is_some(), "{method} {path} {status}: `{piece}` is in no table");
                    assert_eq!(
                        known.map(u16::to_string).as_deref(),
                        Some(status.as_str()),
                        "{method} {path}: `{piece}` is documented under {status}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 40, "only {checked} codes found in the document");
}
