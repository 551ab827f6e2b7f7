//! The dev upload pages (`postgate dev` only): the `fetch` + `FormData` page at `/`, and the
//! no-JavaScript variant — a form signed and rendered here, posted straight to the store, which
//! redirects back to `/uploaded` (`success_action_redirect`). The templates live in
//! `examples/browser/`, where apps copy them from.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};
use indexmap::IndexMap;

use super::AppState;
use super::handlers::allowed_profile;
use super::problem::{Problem, ProblemCode};
use crate::profile::{Method, UploadRequest};
use crate::sign::{FieldStyle, Signed, format_rfc3339};

const UPLOAD_PAGE: &str = include_str!("../../examples/browser/upload.html");
const FORM_PAGE: &str = include_str!("../../examples/browser/form.html");
const UPLOADED_PAGE: &str = include_str!("../../examples/browser/uploaded.html");

/// The marker the upload page carries for a prefilled app key.
const KEY_META: &str = r#"<meta name="postgate-key" content="">"#;

/// What the dev pages need.
pub struct DevPages {
    /// The app key prefilled into the upload page.
    pub key: String,
    /// The app the no-JavaScript form is signed for (the profile must allow it).
    pub app: String,
    /// The secret of `postgate dev`'s own event receiver (`POST /dev/events`), which the page's
    /// app sends its upload events to unless the config gives it an endpoint.
    pub events_secret: Option<crate::events::WebhookSecret>,
}

/// The path of `postgate dev`'s own event receiver.
pub const DEV_EVENTS_PATH: &str = "/dev/events";

/// `POST /dev/events`: `postgate dev`'s stand-in for an app's endpoint. It checks the Standard
/// Webhooks signature as an app would and answers what an app might, which `complete` passes
/// back to the page.
pub async fn dev_events(state: web::Data<AppState>, req: actix_web::HttpRequest, body: web::Bytes) -> HttpResponse {
    let Some(secret) = state.dev_pages.as_ref().and_then(|p| p.events_secret.as_ref()) else {
        return not_found();
    };
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let (id, timestamp, signatures) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let expected = crate::events::signature_header(
        std::slice::from_ref(secret),
        id,
        timestamp.parse().unwrap_or_default(),
        &body,
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let fresh = timestamp.parse::<i64>().is_ok_and(|t| (now - t).abs() <= 300);
    if !fresh || !signatures.split(' ').any(|s| s == expected) {
        return HttpResponse::Unauthorized().json(serde_json::json!({"error": "the signature does not verify"}));
    }
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    HttpResponse::Ok().json(serde_json::json!({
        "received": id,
        "type": event["type"],
        "key": event["data"]["key"],
        "note": "answered by postgate dev's own receiver; give the app `events` in the config to send these to it",
    }))
}

/// `GET /`: the upload page, with the dev key filled in.
pub async fn index(state: web::Data<AppState>) -> HttpResponse {
    let Some(pages) = &state.dev_pages else {
        return not_found();
    };
    let meta = format!(r#"<meta name="postgate-key" content="{}">"#, escape(&pages.key));
    html(StatusCode::OK, UPLOAD_PAGE.replacen(KEY_META, &meta, 1))
}

/// `GET /form/{profile}?var=value…`: a form signed here, for a browser without JavaScript.
pub async fn form(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    name: web::Path<String>,
    vars: web::Query<IndexMap<String, String>>,
) -> HttpResponse {
    let Some(pages) = &state.dev_pages else {
        return not_found();
    };
    let snapshot = state.registry.current();
    let app = pages.app.as_str();
    let profile = match allowed_profile(&snapshot, app, &name) {
        Ok(profile) => profile,
        Err(problem) => return error_page(&problem),
    };
    // An HTML form can only POST.
    let request = UploadRequest {
        vars: vars.into_inner(),
        method: Some(Method::Post),
        ..UploadRequest::default()
    };
    let client = super::handlers::client_address(&req);
    let grant = crate::lifecycle::Grant::now(app, None).from_client(client.as_deref());
    let granted = crate::lifecycle::grant_recorded(
        &state.uploads,
        &snapshot,
        profile,
        &request,
        &grant,
        FieldStyle::default(),
    );
    let post = match granted {
        Ok(granted) => match granted.signed {
            Signed::Post(post) => post,
            Signed::Put(_) => return error_page(&Problem::internal()),
        },
        Err(failure) => return error_page(&failure.into()),
    };
    let mut fields = String::new();
    for (field, value) in &post.fields {
        fields.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
            escape(field),
            escape(value)
        ));
    }
    let page = FORM_PAGE
        .replace("{{action}}", &escape(&post.url))
        .replace("{{profile}}", &escape(&name))
        .replace("{{expires_at}}", &format_rfc3339(post.expires_at))
        .replace("{{max_size}}", &post.max_size.to_string())
        .replacen("<!--fields-->", &fields, 1);
    let mut response = html(StatusCode::OK, page);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /uploaded?bucket=…&key=…&etag=…`: where the store redirects after a form upload.
pub async fn uploaded(state: web::Data<AppState>, query: web::Query<IndexMap<String, String>>) -> HttpResponse {
    if state.dev_pages.is_none() {
        return not_found();
    }
    let get = |name: &str| escape(query.get(name).map_or("", String::as_str));
    let page = UPLOADED_PAGE
        .replace("{{bucket}}", &get("bucket"))
        .replace("{{key}}", &get("key"))
        .replace("{{etag}}", &get("etag"));
    html(StatusCode::OK, page)
}

fn error_page(problem: &Problem) -> HttpResponse {
    let mut items = String::new();
    for error in &problem.errors {
        items.push_str(&format!(
            "<li><code>{}</code>: {}</li>\n",
            escape(&error.field),
            escape(&error.detail)
        ));
    }
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body><h1>{title}</h1>\n<p id=\"error\"><code>{code}</code>: {detail}</p>\n<ul>\n{items}</ul></body></html>\n",
        title = escape(problem.title),
        code = escape(problem.code),
        detail = escape(&problem.detail),
    );
    html(problem.status, page)
}

fn not_found() -> HttpResponse {
    Problem::of(ProblemCode::NotFound, "the dev pages are off").response()
}

fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body)
}

/// Text made safe for HTML element content and double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
