//! Request handlers. Each request takes one snapshot at its start and uses it to the end.

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{self, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::AppState;
use super::problem::{Problem, ProblemCode};
#[allow(unused_imports)]
use super::wire::{Health, PresignResponse, ProfileList};
use super::wire::{ProfileDetail, ProfileSummary, presign_response};
use crate::metrics::{Outcome, Trigger, UNKNOWN_PROFILE};
use crate::profile::UploadRequest;
use crate::registry::{Served, Snapshot};
use crate::sign::FieldStyle;

#[derive(Deserialize)]
pub struct PresignQuery {
    /// `json` (default) or `curl` (a `curl -K` config).
    #[serde(default)]
    format: Option<String>,
    /// `botocore` (default) or `js-sdk`: the casing of a POST form's signing fields.
    #[serde(default)]
    fields: Option<String>,
}

/// `POST /v1/profiles/{name}/presign`
#[utoipa::path(
    post,
    path = "/v1/profiles/{name}/presign",
    tag = "signing",
    summary = "Sign one upload: a POST form or a presigned PUT URL",
    params(
        ("name" = String, Path, description = "The profile's name", example = "avatars"),
        ("format" = Option<String>, Query, description = "`json` (default) or `curl` (a `curl -K` config)", example = "json"),
        ("fields" = Option<String>, Query, description = "POST forms: `botocore` (default: `x-amz-algorithm`, `policy`, …, as boto3's `generate_presigned_post`) or `js-sdk` (`bucket`, `X-Amz-Algorithm`, `Policy`, …, as the AWS SDK for JavaScript's `createPresignedPost`)", example = "botocore"),
    ),
    request_body(content = UploadRequest, content_type = "application/json", example = json!({
        "vars": {"user": "alice"}, "filename": "me.png", "content_type": "image/png", "size": 12345,
        "metadata": {"purpose": "avatar"}
    })),
    responses(
        (status = 200, description = "The signed upload: `method` POST with `fields`, or PUT with `headers`", headers(("Cache-Control" = String, description = "no-store")),
            content((PresignResponse = "application/json"), (String = "text/plain"))),
        (status = 400, description = "`malformed-json`, `invalid-request`, `invalid-format`, `body-unreadable`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: the profile does not list the app", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`unknown-profile`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The profile refuses the request; `errors` lists every field to fix, each with its code (`var-invalid`, `size-required`, `method-unavailable`, `checksum-invalid`, …: the table in README.md)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate-limited`: the app is over its rate limit", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Whole seconds until the app's next request is admitted (at least 1)"))),
    ),
)]
pub async fn presign(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let started = Instant::now();
    let snapshot = state.registry.current();
    let name = name.into_inner();
    let label = if snapshot.profiles.contains_key(&name) {
        name.as_str()
    } else {
        UNKNOWN_PROFILE
    };
    let result = presign_inner(&state, &snapshot, &req, &name, payload).await;
    let (outcome, app, response, fingerprint) = match result {
        Ok((app, response, fingerprint)) => (Outcome::Signed, app, response, fingerprint),
        Err((app, problem)) => (problem.outcome, app, problem.response(), String::new()),
    };
    let elapsed = started.elapsed();
    state.registry.metrics().presign(label, outcome, elapsed.as_secs_f64());
    tracing::info!(
        app = app.as_deref().unwrap_or("-"),
        profile = label,
        outcome = outcome.as_str(),
        status = response.status().as_u16(),
        generation = snapshot.generation,
        latency_us = elapsed.as_micros() as u64,
        signature = fingerprint.as_str(),
        "presign"
    );
    response
}

type PresignError = (Option<String>, Problem);

async fn presign_inner(
    state: &AppState,
    snapshot: &Snapshot,
    req: &HttpRequest,
    name: &str,
    payload: web::Payload,
) -> Result<(Option<String>, HttpResponse, String), PresignError> {
    // The rate limit is counted as soon as the app is known, before anything that costs: a
    // flooding app is turned away without its body being read or its token verified.
    let caller = identify_as(state, snapshot, req, true).await?;
    let app = caller.app.clone();
    let fail = |problem: Problem| (Some(app.clone()), problem);
    allowed_profile(snapshot, &app, name).map_err(fail)?;
    // Parsed here rather than by an extractor, so a malformed query is answered, logged and
    // counted like every other refusal.
    let query = web::Query::<PresignQuery>::from_query(req.query_string())
        .map_err(|e| fail(super::problem::invalid_query(&e)))?;
    let curl = match query.format.as_deref() {
        None | Some("json") => false,
        Some("curl") => true,
        Some(other) => {
            return Err(fail(Problem::of(
                ProblemCode::InvalidFormat,
                format!("`format={}` is not known; use `json` or `curl`", other.escape_debug()),
            )));
        }
    };
    let style = match query.fields.as_deref() {
        None | Some("botocore") => FieldStyle::Botocore,
        Some("js-sdk") => FieldStyle::JsSdk,
        Some(other) => {
            return Err(fail(Problem::of(
                ProblemCode::InvalidFormat,
                format!(
                    "`fields={}` is not known; use `botocore` or `js-sdk`",
                    other.escape_debug()
                ),
            )));
        }
    };
    check_json_content_type(req).map_err(fail)?;
    let body = read_body(req, payload, state).await.map_err(fail)?;
    // The body may have taken seconds: the app key, its rights on the profile and the profile
    // itself are those in force now, when the form is signed, not when the headers came.
    let (fresh, caller) = recheck(state, snapshot, req, caller).await.map_err(fail)?;
    let snapshot: &Snapshot = &fresh;
    let profile = allowed_profile(snapshot, &app, name).map_err(fail)?;
    let mut request = parse_request(&body).map_err(fail)?;
    crate::profile::bind_claims(profile, &mut request, caller.claims.as_deref())
        .map_err(|refusals| fail(Problem::refused(name, refusals)))?;

    let client = client_address(req);
    let grant = crate::lifecycle::Grant::now(&app, caller.sub()).from_client(client.as_deref());
    let granted = crate::lifecycle::grant_recorded(&state.uploads, snapshot, profile, &request, &grant, style)
        .map_err(|failure| fail(failure.into()))?;
    let (signed, upload_token) = (granted.signed, granted.upload_token);
    if signed.expiry_clamped() {
        state.registry.metrics().expiry_clamped(name);
    }
    let fingerprint = hex::encode(&Sha256::digest(signed.signature().as_bytes())[..6]);
    let response = if curl {
        HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .content_type("text/plain; charset=utf-8")
            .body(signed.curl_config())
    } else {
        HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .content_type("application/json")
            .body(presign_response(
                &signed,
                name,
                snapshot.generation,
                upload_token.as_deref(),
            ))
    };
    Ok((Some(app), response, fingerprint))
}

/// The address of the connection's peer, for the audit log (not a forwarding header, which the
/// client writes).
pub(super) fn client_address(req: &HttpRequest) -> Option<String> {
    req.peer_addr().map(|addr| addr.ip().to_string())
}

/// Who calls: the app, and the end user's verified claims when a token came with the request.
pub(super) struct Caller {
    pub app: String,
    pub claims: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
}

impl Caller {
    /// The end user's `sub`, when a verified ID token came with the request.
    pub fn sub(&self) -> Option<&str> {
        self.claims.as_deref()?.get("sub")?.as_str()
    }
}

/// The header carrying an end user's token next to an app key.
pub const END_USER_TOKEN_HEADER: &str = "end-user-token";

/// Who calls: an app key, an end user's ID token, or both (`apps.<app>.auth`), and the origin
/// the app accepts calls from.
pub(super) async fn identify(state: &AppState, snapshot: &Snapshot, req: &HttpRequest) -> Result<Caller, Problem> {
    identify_as(state, snapshot, req, false)
        .await
        .map_err(|(_, problem)| problem)
}

/// `identify`, and with `limit` the app's rate limit counted as soon as the app is known: from
/// the app key (one hash), or from the unverified issuer and audience of a bare ID token, so
/// tokens that will not verify still spend their app's budget before any signature is checked.
/// The error names the app when it is known.
pub(super) async fn identify_as(
    state: &AppState,
    snapshot: &Snapshot,
    req: &HttpRequest,
    limit: bool,
) -> Result<Caller, (Option<String>, Problem)> {
    let credential = bearer(req).map_err(|p| (None, p))?;
    let caller = if crate::identity::looks_like_jwt(credential) {
        by_id_token(state, snapshot, credential, limit).await?
    } else {
        by_app_key(state, snapshot, req, credential, limit).await?
    };
    // An origin another app lists is not this app's, unless this one lists it too.
    let identities = &snapshot.identities;
    if let Some(origin) = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok())
        && identities.allows_origin(origin)
        && !identities
            .app(&caller.app)
            .is_some_and(|a| a.cors_origins.iter().any(|o| o == origin))
    {
        return Err((
            Some(caller.app.clone()),
            Problem::of(
                ProblemCode::OriginNotAllowed,
                format!("app `{}` does not accept calls from {origin}", caller.app),
            ),
        ));
    }
    Ok(caller)
}

/// The credential of `Authorization: Bearer <credential>`.
fn bearer(req: &HttpRequest) -> Result<&str, Problem> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(Problem::unauthenticated(
            "send `Authorization: Bearer <app key>` or `Authorization: Bearer <ID token>`",
        ));
    };
    match value.to_str().unwrap_or_default().split_once(' ') {
        Some((scheme, credential)) if scheme.eq_ignore_ascii_case("bearer") => Ok(credential.trim()),
        _ => Err(Problem::unauthenticated(
            "the Authorization header must be `Bearer <app key>` or `Bearer <ID token>`",
        )),
    }
}

/// With `limit`, one unit of `app`'s rate limit.
async fn spend(state: &AppState, snapshot: &Snapshot, app: &str, limit: bool) -> Result<(), (Option<String>, Problem)> {
    if limit && let Err(over) = state.check_rate(snapshot, app).await {
        return Err((Some(app.to_owned()), Problem::rate_limited(app, &over)));
    }
    Ok(())
}

fn auth_mode(snapshot: &Snapshot, app: &str) -> crate::identity::AuthMode {
    snapshot
        .identities
        .app(app)
        .map_or(crate::identity::AuthMode::Key, |a| a.mode)
}

/// A bare end-user ID token in `Authorization`: its app's budget spent first, then verified.
async fn by_id_token(
    state: &AppState,
    snapshot: &Snapshot,
    credential: &str,
    limit: bool,
) -> Result<Caller, (Option<String>, Problem)> {
    use crate::identity::AuthMode;
    if let Some(app) = snapshot.identities.app_of(credential) {
        spend(state, snapshot, &app, limit).await?;
    }
    let verified = verify_token(state, snapshot, credential, None)
        .await
        .map_err(|p| (None, p))?;
    if matches!(auth_mode(snapshot, &verified.app), AuthMode::Both | AuthMode::Key) {
        return Err((
            Some(verified.app.clone()),
            Problem::of(
                ProblemCode::AppKeyRequired,
                format!(
                    "app `{}` takes its app key in `Authorization` (and the user's token in `End-User-Token`)",
                    verified.app
                ),
            ),
        ));
    }
    Ok(Caller {
        app: verified.app,
        claims: Some(verified.claims),
    })
}

/// An app key in `Authorization`, with the end user's token in `End-User-Token` where the app
/// takes one.
async fn by_app_key(
    state: &AppState,
    snapshot: &Snapshot,
    req: &HttpRequest,
    credential: &str,
    limit: bool,
) -> Result<Caller, (Option<String>, Problem)> {
    use crate::identity::AuthMode;
    let app = snapshot
        .apps
        .authenticate(credential)
        .map(str::to_owned)
        .ok_or_else(|| (None, Problem::unauthenticated("the app key is not valid")))?;
    spend(state, snapshot, &app, limit).await?;
    let fail = |problem: Problem| (Some(app.clone()), problem);
    let mode = auth_mode(snapshot, &app);
    if mode == AuthMode::Token {
        return Err(fail(Problem::of(
            ProblemCode::AppKeyNotAccepted,
            format!("app `{app}` takes end users' ID tokens only: `Authorization: Bearer <ID token>`"),
        )));
    }
    let user_token = req
        .headers()
        .get(END_USER_TOKEN_HEADER)
        .map(|v| v.to_str().unwrap_or_default().trim());
    let claims = match user_token {
        Some(token) => Some(
            verify_token(state, snapshot, token, Some(&app))
                .await
                .map_err(fail)?
                .claims,
        ),
        None if mode == AuthMode::Both => {
            return Err(fail(Problem::of(
                ProblemCode::IdTokenRequired,
                format!("app `{app}` needs the end user's ID token in `End-User-Token`"),
            )));
        }
        None => None,
    };
    Ok(Caller { app, claims })
}

/// After the body, which may have taken seconds: the snapshot in force now, and the caller
/// identified again in it if a reload came meanwhile (the same app, or 401), so the key, its
/// rights and the profile are those in force when the upload is signed.
pub(super) async fn recheck(
    state: &AppState,
    snapshot: &Snapshot,
    req: &HttpRequest,
    caller: Caller,
) -> Result<(Arc<Snapshot>, Caller), Problem> {
    let fresh = state.registry.current();
    if fresh.generation == snapshot.generation {
        return Ok((fresh, caller));
    }
    let again = identify(state, &fresh, req).await?;
    if again.app != caller.app {
        return Err(Problem::unauthenticated(
            "the credentials changed hands during the request",
        ));
    }
    Ok((fresh, again))
}

async fn verify_token(
    state: &AppState,
    snapshot: &Snapshot,
    token: &str,
    for_app: Option<&str>,
) -> Result<crate::identity::Verified, Problem> {
    use crate::identity::TokenError as E;
    let metrics = state.registry.metrics_arc();
    let now = OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    match snapshot.identities.verify(token, for_app, now, &metrics).await {
        Ok(verified) => {
            metrics.end_user_token(&verified.app, "valid");
            Ok(verified)
        }
        Err((app, error)) => {
            if let Some(app) = &app {
                metrics.end_user_token(app, error.label());
            }
            let code = match &error {
                E::Malformed(_) => ProblemCode::IdTokenMalformed,
                E::Algorithm(_) => ProblemCode::IdTokenAlgorithm,
                E::Issuer(_) => ProblemCode::IdTokenIssuer,
                E::Audience => ProblemCode::IdTokenAudience,
                E::UnknownKey(_) => ProblemCode::IdTokenUnknownKey,
                E::Signature => ProblemCode::IdTokenSignature,
                E::Expired => ProblemCode::IdTokenExpired,
                E::NotYetValid => ProblemCode::IdTokenNotYetValid,
                E::ClaimInvalid(_) => ProblemCode::IdTokenClaimInvalid,
                E::JwksUnavailable(_) => ProblemCode::JwksUnavailable,
            };
            let mut problem = Problem::of(code, error.to_string());
            if code == ProblemCode::JwksUnavailable {
                problem.retry_after = std::num::NonZeroU32::new(5);
            }
            Err(problem)
        }
    }
}

/// The named profile, if it exists and the app may use it.
pub(super) fn allowed_profile<'s>(snapshot: &'s Snapshot, app: &str, name: &str) -> Result<&'s Served, Problem> {
    match snapshot.get(name) {
        Some(profile) if profile.allows_app(app) => Ok(profile),
        Some(_) => Err(Problem::forbidden(format!("app `{app}` may not use profile `{name}`"))),
        None => {
            let available: Vec<&str> = snapshot
                .profiles
                .iter()
                .filter(|(_, p)| p.allows_app(app))
                .map(|(n, _)| n.as_str())
                .collect();
            Err(Problem::unknown_profile(name, &available))
        }
    }
}

pub(super) fn check_json_content_type(req: &HttpRequest) -> Result<(), Problem> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        return Ok(());
    }
    Err(Problem::of(
        ProblemCode::UnsupportedMediaType,
        format!(
            "send `Content-Type: application/json` (got `{}`)",
            if content_type.is_empty() {
                "nothing"
            } else {
                content_type
            }
        ),
    ))
}

/// The request body, whole, within `state.max_body_bytes` and before `state.body_timeout` runs
/// out (a client that sends its headers and then trickles or withholds the body is answered
/// 408 and its connection closed, rather than holding a handler).
pub(super) async fn read_body(req: &HttpRequest, payload: web::Payload, state: &AppState) -> Result<BytesMut, Problem> {
    let timeout = state.body_timeout;
    match tokio::time::timeout(timeout, read_body_within(req, payload, state.max_body_bytes)).await {
        Ok(body) => body,
        Err(_) => Err(Problem::of(
            ProblemCode::BodyTimeout,
            format!(
                "the body did not arrive within {} s; send it with the headers",
                timeout.as_secs_f64()
            ),
        )),
    }
}

async fn read_body_within(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<BytesMut, Problem> {
    let too_large = || {
        Problem::of(
            ProblemCode::BodyTooLarge,
            format!("a presign request body is at most {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(256).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Problem::of(ProblemCode::BodyUnreadable, e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn parse_request(body: &[u8]) -> Result<UploadRequest, Problem> {
    parse_json(body, "{\"vars\": {\"user\": \"alice\"}}")
}

/// A JSON body of type `T`; `example` is shown when the body is empty.
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], example: &str) -> Result<T, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::of(
            ProblemCode::MalformedJson,
            format!("the body is empty; send a JSON object like {example}"),
        ));
    }
    serde_json::from_slice(body).map_err(|error| {
        let code = if error.is_data() {
            ProblemCode::InvalidRequest
        } else {
            ProblemCode::MalformedJson
        };
        Problem::of(code, error.to_string())
    })
}

/// `GET /v1/profiles`: the profiles this app may use.
#[utoipa::path(
    get,
    path = "/v1/profiles",
    tag = "profiles",
    summary = "The profiles this app may use",
    responses(
        (status = 200, description = "The profiles", body = ProfileList),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn list_profiles(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, Problem> {
    let snapshot = state.registry.current();
    let app = identify(&state, &snapshot, &req).await?.app;
    let profiles: Vec<ProfileSummary<'_>> = snapshot
        .profiles
        .values()
        .filter(|p| p.allows_app(&app))
        .map(|p| ProfileSummary::of(p))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "generation": snapshot.generation,
        "profiles": profiles,
    })))
}

/// `GET /v1/profiles/{name}`: the compiled profile.
#[utoipa::path(
    get,
    path = "/v1/profiles/{name}",
    tag = "profiles",
    summary = "One compiled profile, with its condition list",
    params(("name" = String, Path, description = "The profile's name", example = "avatars")),
    responses(
        (status = 200, description = "The profile", body = ProfileDetail),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`unknown-profile`", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn get_profile(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let snapshot = state.registry.current();
    let app = identify(&state, &snapshot, &req).await?.app;
    let profile = allowed_profile(&snapshot, &app, &name)?;
    Ok(HttpResponse::Ok().json(ProfileDetail::of(profile, profile.signing_store())))
}

/// `GET /metrics`
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    security(()),
    responses((status = 200, description = "Prometheus text exposition 0.0.4", body = String, content_type = "text/plain")),
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.registry.metrics().render())
}

/// `GET /healthz`: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness",
    security(()),
    responses((status = 200, description = "The process answers", body = Health)),
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: a profile set is loaded and every store has credentials to sign with.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Readiness",
    security(()),
    responses(
        (status = 200, description = "A profile set is loaded and every store can sign", body = Health),
        (status = 503, description = "`not-ready`", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.registry.current();
    if snapshot.generation == 0 {
        return Problem::of(ProblemCode::NotReady, "no profile set is loaded yet").response();
    }
    let now = OffsetDateTime::now_utc();
    let unavailable: Vec<String> = snapshot
        .stores
        .values()
        .filter_map(|store| store.signer(now).err())
        .map(|e| {
            tracing::debug!(store = %e.store, reason = %e.reason, "not ready: no valid credentials");
            e.to_string()
        })
        .collect();
    if !unavailable.is_empty() {
        return Problem::of(ProblemCode::NotReady, unavailable.join("; ")).response();
    }
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ready",
        "generation": snapshot.generation,
        "profiles": snapshot.profiles.len(),
    }))
}

/// A known path asked with a method it does not answer.
pub fn method_not_allowed(req: HttpRequest, allow: &'static str) -> HttpResponse {
    let mut response = Problem::of(
        ProblemCode::MethodNotAllowed,
        format!(
            "{} answers {allow} only (got {})",
            req.path().escape_debug(),
            req.method()
        ),
    )
    .response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// Anything else.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    Problem::of(
        ProblemCode::NotFound,
        format!("no route for {} {}", req.method(), req.path().escape_debug()),
    )
    .response()
}

/// `POST /-/reload` (admin listener): reload now and answer with the diagnostics.
pub async fn admin_reload(state: web::Data<AppState>) -> HttpResponse {
    let registry = state.registry.clone();
    let report = match web::block(move || registry.reload(Trigger::Admin)).await {
        Ok(report) => report,
        Err(_) => return Problem::internal().response(),
    };
    let status = if report.result == crate::metrics::ReloadResult::Failure {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    HttpResponse::build(status).json(serde_json::json!({
        "result": report.result.as_str(),
        "generation": report.generation,
        "profiles": report.profiles,
        "failed_parts": report.failed_parts,
        "diagnostics": report.diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>(),
    }))
}

/// The event queue, or why there is none.
fn event_queue(state: &AppState) -> Result<&Arc<crate::events::queue::Queue>, Problem> {
    state
        .uploads
        .notifier
        .queue()
        .ok_or_else(|| Problem::of(ProblemCode::EventsUnavailable, "no `events.redis` is configured"))
}

/// `GET /-/events/{app}/dead?limit=N` (admin listener): the app's dead letters, oldest first.
pub async fn admin_dead_letters(
    state: web::Data<AppState>,
    app: web::Path<String>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> HttpResponse {
    let queue = match event_queue(&state) {
        Ok(queue) => queue,
        Err(problem) => return problem.response(),
    };
    let limit = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100)
        .min(10_000);
    match queue.dead_letters(&app, limit).await {
        Ok(letters) => HttpResponse::Ok().json(serde_json::json!({ "app": *app, "dead_letters": letters })),
        Err(cause) => Problem::of(ProblemCode::EventsUnavailable, cause).response(),
    }
}

/// `POST /-/events/{app}/replay?entry=ID` (admin listener): the app's dead letters (or one)
/// back into its queue, from the first attempt.
pub async fn admin_replay(
    state: web::Data<AppState>,
    app: web::Path<String>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> HttpResponse {
    let queue = match event_queue(&state) {
        Ok(queue) => queue,
        Err(problem) => return problem.response(),
    };
    match queue.replay(&app, query.get("entry").map(String::as_str)).await {
        Ok(replayed) => {
            if state.registry.current().events.get(&app).is_some() {
                state.registry.metrics().events_replayed(&app, replayed);
            }
            HttpResponse::Ok().json(serde_json::json!({ "app": *app, "replayed": replayed }))
        }
        Err(cause) => Problem::of(ProblemCode::EventsUnavailable, cause).response(),
    }
}
