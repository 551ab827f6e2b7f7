//! The upload routes after (or instead of) a presign: multipart uploads (create, sign parts,
//! list, abort), `complete`, and Uppy's `signRequest` with the S3-shaped routes it calls back
//! (`/v1/uppy/s3/{operation}`). Each extracts the request, calls one function of
//! `crate::lifecycle` (which holds every store call and every decision about an object), and
//! renders its result as JSON or S3 XML.
//!
//! State lives in upload tokens (`crate::upload::token`), never in the gateway.

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::AppState;
use super::handlers::{
    Caller, allowed_profile, check_json_content_type, client_address, identify_as, parse_json, read_body, recheck,
};
use super::problem::{Problem, ProblemCode};
use crate::lifecycle::{self, Completed, Grant, MultipartStarted, SignedPart};
use crate::metrics::{MultipartOperation, Outcome, UNKNOWN_PROFILE};
use crate::profile::{Profile, UploadRequest};
use crate::registry::{Served, Snapshot};
use crate::sign::FieldStyle;
use crate::store::xml_escape;
use crate::text::write_json_string;
use crate::upload::Claims;

/// The problems of reading any JSON body (OpenAPI responses shared by the upload routes).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // a description for the OpenAPI document only
pub enum BodyProblems {
    #[response(
        status = 400,
        description = "`malformed-json`, `invalid-request`",
        content_type = "application/problem+json"
    )]
    Malformed(Problem),
    #[response(
        status = 413,
        description = "`body-too-large`",
        content_type = "application/problem+json"
    )]
    TooLarge(Problem),
    #[response(
        status = 415,
        description = "`unsupported-media-type`",
        content_type = "application/problem+json"
    )]
    NotJson(Problem),
}

/// The problems of a route that calls the store (OpenAPI responses shared by the upload routes).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // a description for the OpenAPI document only
pub enum StoreProblems {
    #[response(
        status = 502,
        description = "`store-refused`",
        content_type = "application/problem+json"
    )]
    Refused(Problem),
    #[response(
        status = 503,
        description = "`store-unavailable` (with `Retry-After`), `upload-tokens-unconfigured`; `event-undelivered`, `events-unavailable` (the app's event endpoint or queue; nothing carried out; `Retry-After`); `audit-unavailable` (a grant with `audit.fail_closed`)",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}

/// What a caller of a token route sends.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The `upload_token` of a presign or multipart answer.
    #[schema(max_length = 8192, pattern = "^pgu1\\.")]
    pub upload_token: String,
    /// `POST /v1/uploads/parts`: the parts to sign (1-based), at most 1,000 per call.
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub part_numbers: Vec<u32>,
    /// `complete` of a POST form whose key left `${filename}` to the store: the file's name.
    #[serde(default)]
    pub filename: Option<String>,
}

/// `POST /v1/profiles/{name}/multipart`
#[utoipa::path(
    post,
    path = "/v1/profiles/{name}/multipart",
    tag = "uploads",
    summary = "Start a multipart upload: admitted like a PUT, with its part plan and upload token",
    params(("name" = String, Path, description = "The profile's name", example = "media")),
    request_body(content = UploadRequest, content_type = "application/json", example = json!({
        "vars": {"user": "alice"}, "filename": "clip.png", "content_type": "image/png", "size": 12345
    })),
    responses(
        (status = 200, description = "The upload: `upload_id`, `key`, the part plan and `upload_token`", body = MultipartStarted),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`unknown-profile`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The profile refuses the request (`method-unavailable` when it takes no multipart uploads, `size-required`, …)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate-limited`", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        StoreProblems,
    ),
)]
pub async fn create_multipart(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let snapshot = state.registry.current();
    let result = async {
        let (caller, snapshot, profile, mut request): (_, _, _, UploadRequest) = signing_request(
            &state,
            &snapshot,
            &req,
            &name,
            payload,
            "{\"size\": 104857600, \"filename\": \"big.bin\"}",
        )
        .await?;
        crate::profile::bind_claims(&profile, &mut request, caller.claims.as_deref())
            .map_err(|refusals| Problem::refused(&name, refusals))?;
        let client = client_address(&req);
        let grant = Grant::now(&caller.app, caller.sub()).from_client(client.as_deref());
        let created = lifecycle::start_multipart(&state.uploads, &snapshot, &profile, &request, &grant).await?;
        Ok::<_, Problem>(created)
    }
    .await;
    let label = profile_label(&snapshot, &name);
    match result {
        Ok(created) => {
            state
                .registry
                .metrics()
                .multipart(label, MultipartOperation::Create, Outcome::Signed);
            no_store(HttpResponse::Ok()).json(created)
        }
        Err(problem) => {
            state
                .registry
                .metrics()
                .multipart(label, MultipartOperation::Create, problem.outcome);
            problem.response()
        }
    }
}

/// `POST /v1/uploads/parts`
#[utoipa::path(
    post,
    path = "/v1/uploads/parts",
    tag = "uploads",
    summary = "Presigned UploadPart URLs, each signing its part's exact Content-Length",
    request_body(content = TokenRequest, content_type = "application/json", example = json!({"upload_token": "pgu1.k1.…", "part_numbers": [1, 2, 3]})),
    responses(
        (status = 200, description = "One URL per part", body = SignedParts),
        (status = 401, description = "`unauthenticated`, `token-invalid`, `token-expired`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`token-app-mismatch`, `token-user-mismatch`, `forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`part-invalid`, `not-multipart`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`unknown-profile`: the token's profile is no longer served", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        StoreProblems,
    ),
)]
pub async fn sign_parts(state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    token_route(
        &state,
        &req,
        payload,
        MultipartOperation::SignParts,
        |snapshot, claims, request| async move {
            let parts = lifecycle::sign_parts(&snapshot, &claims, &request.part_numbers, OffsetDateTime::now_utc())?;
            Ok(no_store(HttpResponse::Ok()).json(SignedParts { parts }))
        },
    )
    .await
}

/// Signed part URLs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignedParts {
    pub parts: Vec<SignedPart>,
}

/// `POST /v1/uploads/list`
#[utoipa::path(
    post,
    path = "/v1/uploads/list",
    tag = "uploads",
    summary = "The parts the store holds for a multipart upload (to resume it)",
    request_body(content = TokenRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The stored parts and the plan", body = ListedParts),
        (status = 401, description = "`token-invalid`, `token-expired`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`token-app-mismatch`, `token-user-mismatch`, `forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`unknown-profile`, `upload-not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`not-multipart`", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        StoreProblems,
    ),
)]
pub async fn list_parts(state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    token_route(
        &state,
        &req,
        payload,
        MultipartOperation::ListParts,
        |snapshot, claims, _| {
            let state = state.clone();
            async move {
                let listed = lifecycle::list_parts(&state.uploads.client, &snapshot, &claims).await?;
                Ok(no_store(HttpResponse::Ok()).json(listed_wire(listed)))
            }
        },
    )
    .await
}

/// What the store holds of a multipart upload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListedParts {
    pub parts: Vec<ListedPartWire>,
    pub part_size: u64,
    pub part_count: u32,
    pub last_part_size: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListedPartWire {
    pub part_number: u32,
    pub size: u64,
    pub etag: Option<String>,
}

fn listed_wire(listed: lifecycle::Listed) -> ListedParts {
    ListedParts {
        parts: listed
            .parts
            .into_iter()
            .map(|p| ListedPartWire {
                part_number: p.part_number,
                size: p.size,
                etag: p.etag,
            })
            .collect(),
        part_size: listed.plan.part_size,
        part_count: listed.plan.part_count,
        last_part_size: listed.plan.last_part_size,
    }
}

/// `POST /v1/uploads/abort`
#[utoipa::path(
    post,
    path = "/v1/uploads/abort",
    tag = "uploads",
    summary = "Abort a multipart upload: its parts are removed",
    request_body(content = TokenRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Aborted (also when it already was)"),
        (status = 401, description = "`token-invalid`, `token-expired`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`token-app-mismatch`, `token-user-mismatch`, `forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`unknown-profile`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`not-multipart`", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        StoreProblems,
    ),
)]
pub async fn abort(state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    token_route(
        &state,
        &req,
        payload,
        MultipartOperation::Abort,
        |snapshot, claims, _| {
            let state = state.clone();
            async move {
                lifecycle::abort(&state.uploads, &snapshot, &claims).await?;
                Ok(no_store(HttpResponse::Ok()).json(serde_json::json!({"aborted": true, "key": claims.bounds.key})))
            }
        },
    )
    .await
}

/// `POST /v1/uploads/complete`
#[utoipa::path(
    post,
    path = "/v1/uploads/complete",
    tag = "uploads",
    summary = "Verify an upload (and complete a multipart one): size, type, metadata, checksum, sniffed bytes; promote or remove",
    request_body(content = TokenRequest, content_type = "application/json", example = json!({"upload_token": "pgu1.k1.…"})),
    responses(
        (status = 200, description = "The object is what was allowed", body = Completed),
        (status = 401, description = "`token-invalid`, `token-expired`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`token-app-mismatch`, `token-user-mismatch`, `forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`upload-not-found`: nothing of this upload is stored at the key (yet); nothing was deleted", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`not-this-upload`: the object at the key does not carry this upload's marker (someone else's; left untouched); `object-exists`: `overwrite: false` and the key is taken; `upload-changed`: the object was written again while it was checked", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The object broke a rule (`object-size-mismatch`, `object-type-mismatch`, `object-metadata-mismatch`, `object-checksum-mismatch`, `content-sniff-mismatch`, `parts-mismatch`); it was removed (`removed`); `event-refused`: the app's event endpoint refused it (removed)", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        StoreProblems,
    ),
)]
pub async fn complete(state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let snapshot = state.registry.current();
    let started = Instant::now();
    let result = async {
        let (claims, request) = token_request(&state, &snapshot, &req, payload).await?;
        Ok::<_, Problem>((claims, request.filename))
    }
    .await;
    let response = match result {
        Ok((claims, filename)) => match finish(&state, &snapshot, &req, &claims, filename.as_deref()).await {
            Ok(completed) => no_store(HttpResponse::Ok()).json(completed),
            Err(problem) => problem.response(),
        },
        Err(problem) => problem.response(),
    };
    tracing::info!(
        status = response.status().as_u16(),
        latency_us = started.elapsed().as_micros() as u64,
        "complete"
    );
    response
}

/// `complete`, counted by outcome.
///
/// The lifecycle runs as a task of its own: a client that disconnects does not cut it short
/// between telling the app and promoting (or removing) the object.
async fn finish(
    state: &AppState,
    snapshot: &Arc<Snapshot>,
    req: &HttpRequest,
    claims: &Claims,
    filename: Option<&str>,
) -> Result<Completed, Problem> {
    let label = profile_label(snapshot, &claims.profile);
    let client = client_address(req);
    let outcome = match req.app_data::<web::Data<AppState>>().cloned() {
        Some(data) => {
            let (snapshot, claims, filename) = (snapshot.clone(), claims.clone(), filename.map(str::to_owned));
            let task = actix_web::rt::spawn(async move {
                lifecycle::complete(
                    &data.uploads,
                    &snapshot,
                    &claims,
                    filename.as_deref(),
                    client.as_deref(),
                )
                .await
            });
            task.await.map_err(|_| Problem::internal())?
        }
        None => lifecycle::complete(&state.uploads, snapshot, claims, filename, client.as_deref()).await,
    };
    let metrics = state.registry.metrics();
    match outcome {
        Ok(completed) => {
            metrics.complete(label, crate::metrics::CompleteOutcome::Verified, completed.size);
            Ok(completed)
        }
        Err(failure) => {
            metrics.complete(label, super::problem::complete_outcome(failure.code), 0);
            Err(failure.into())
        }
    }
}

/// The routes that take `{upload_token, …}` with an app key: identify, open the token for
/// the app, count, answer.
async fn token_route<F, Fut>(
    state: &web::Data<AppState>,
    req: &HttpRequest,
    payload: web::Payload,
    operation: MultipartOperation,
    handle: F,
) -> HttpResponse
where
    F: FnOnce(Arc<Snapshot>, Claims, TokenRequest) -> Fut,
    Fut: std::future::Future<Output = Result<HttpResponse, Problem>>,
{
    let snapshot = state.registry.current();
    let mut label = UNKNOWN_PROFILE.to_owned();
    let result = async {
        let (claims, request) = token_request(state, &snapshot, req, payload).await?;
        label = profile_label(&snapshot, &claims.profile).to_owned();
        handle(snapshot.clone(), claims, request).await
    }
    .await;
    match result {
        Ok(response) => {
            state.registry.metrics().multipart(&label, operation, Outcome::Signed);
            response
        }
        Err(problem) => {
            state.registry.metrics().multipart(&label, operation, problem.outcome);
            problem.response()
        }
    }
}

/// The opening of every route that mints a capability (multipart start, Uppy): the app, its
/// rate limit (before the body is read), the profile it may use, and the JSON body.
/// Returns the snapshot in force once the body is in: the caller, its rights and the profile
/// are checked again against it if a reload came while the body was arriving.
async fn signing_request<T: serde::de::DeserializeOwned>(
    state: &AppState,
    snapshot: &Arc<Snapshot>,
    req: &HttpRequest,
    name: &str,
    payload: web::Payload,
    example: &str,
) -> Result<(Caller, Arc<Snapshot>, Served, T), Problem> {
    let caller = identify_as(state, snapshot, req, true).await.map_err(|(_, p)| p)?;
    allowed_profile(snapshot, &caller.app, name)?;
    check_json_content_type(req)?;
    let body = read_body(req, payload, state).await?;
    let request = parse_json(&body, example)?;
    let (fresh, caller) = recheck(state, snapshot, req, caller).await?;
    let profile = allowed_profile(&fresh, &caller.app, name)?.clone();
    Ok((caller, fresh, profile, request))
}

/// The opening of every route that takes an upload token: the app, the JSON body, and the
/// token opened for that app.
async fn token_request(
    state: &AppState,
    snapshot: &Snapshot,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<(Claims, TokenRequest), Problem> {
    // Part URLs and `complete` cost the operator as signatures and store calls do: they draw
    // on the app's budget too.
    let caller = identify_as(state, snapshot, req, true).await.map_err(|(_, p)| p)?;
    check_json_content_type(req)?;
    let body = read_body(req, payload, state).await?;
    // A key revoked while the body arrived no longer counts.
    let caller = recheck(state, snapshot, req, caller).await?.1;
    let request: TokenRequest = parse_json(&body, "{\"upload_token\": \"pgu1.…\"}")?;
    let claims = lifecycle::open_token(
        state.uploads.tokens()?,
        &request.upload_token,
        Some(&caller.app),
        caller.sub(),
        OffsetDateTime::now_utc(),
    )?;
    Ok((claims, request))
}

fn profile_label<'s>(snapshot: &'s Snapshot, name: &str) -> &'s str {
    snapshot
        .profiles
        .get_key_value(name)
        .map_or(UNKNOWN_PROFILE, |(name, _)| name.as_str())
}

fn no_store(mut builder: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    builder.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    builder
}

// ---------------------------------------------------------------------------------------------
// Uppy

/// What an app's `signRequest` forwards: Uppy's request as it is, and the upload's description.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UppySignRequest {
    /// Uppy's `signRequest` argument, unchanged.
    pub request: UppyRequest,
    /// The upload as for a presign: `size`, `filename`, `content_type`, `vars`, `metadata`
    /// (for PutObject and CreateMultipartUpload; the other steps carry the upload token).
    #[serde(default)]
    pub upload: UploadRequest,
}

/// `@uppy/aws-s3` 6's presignable request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // `key` and `expires_in` are Uppy's proposals: the profile decides both.
pub struct UppyRequest {
    /// The S3 call's method.
    #[schema(pattern = "^(GET|PUT|POST|DELETE)$")]
    pub method: String,
    pub key: String,
    #[serde(default, rename = "uploadId")]
    pub upload_id: Option<String>,
    #[serde(default, rename = "partNumber")]
    pub part_number: Option<u32>,
    #[serde(default, rename = "contentType")]
    pub content_type: Option<String>,
    /// Seconds, at most 7 days (a SigV4 limit); the profile's `expires_in` decides.
    #[serde(default, rename = "expiresIn", deserialize_with = "seconds_within_a_week")]
    #[schema(minimum = 0, maximum = 604800)]
    pub expires_in: Option<u64>,
}

/// Uppy's `expiresIn`, refused (400) beyond what the document allows rather than ignored.
fn seconds_within_a_week<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let seconds = Option::<u64>::deserialize(deserializer)?;
    match seconds {
        Some(seconds) if seconds > 604_800 => {
            Err(serde::de::Error::custom("expiresIn is at most 604800 seconds (7 days)"))
        }
        other => Ok(other),
    }
}

/// `POST /v1/profiles/{name}/uppy`: answers `@uppy/aws-s3` 6's `signRequest`.
#[utoipa::path(
    post,
    path = "/v1/profiles/{name}/uppy",
    tag = "uploads",
    summary = "Answer Uppy's signRequest: a POST form or PUT URL, a multipart start, part URLs, and gateway URLs for list, complete and abort",
    params(("name" = String, Path, description = "The profile's name", example = "media")),
    request_body(content = UppySignRequest, content_type = "application/json", example = json!({"request": {"method": "PUT", "key": "f1", "contentType": "image/png"}, "upload": {"vars": {"user": "alice"}, "size": 1234, "filename": "a.png", "content_type": "image/png"}})),
    responses(
        (status = 200, description = "`{url, key?, headers?, fields?}` as Uppy takes it, plus `upload_token`"),
        (status = 401, description = "`unauthenticated`, `token-invalid`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The profile refuses the upload (its `detail` is what Uppy should show)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`, `token-app-mismatch`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`unknown-profile`, `upload-not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate-limited`", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        StoreProblems,
    ),
)]
pub async fn uppy_sign(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let started = Instant::now();
    let snapshot = state.registry.current();
    let result = async {
        let (caller, snapshot, profile, mut sign): (_, _, _, UppySignRequest) = signing_request(
            &state,
            &snapshot,
            &req,
            &name,
            payload,
            "{\"request\": {\"method\": \"PUT\", \"key\": \"…\"}, \"upload\": {\"size\": 1}}",
        )
        .await?;
        // The steps that start an upload take its vars; the others carry its upload token.
        if sign.request.upload_id.is_none() {
            crate::profile::bind_claims(&profile, &mut sign.upload, caller.claims.as_deref())
                .map_err(|refusals| Problem::refused(&name, refusals))?;
        }
        uppy_answer(&state, &req, &snapshot, &profile, &caller, sign).await
    }
    .await;
    // Counted as a presign request: each answer is a signed capability (or a refusal of one).
    let label = profile_label(&snapshot, &name);
    let elapsed = started.elapsed().as_secs_f64();
    match result {
        Ok(body) => {
            state.registry.metrics().presign(label, Outcome::Signed, elapsed);
            no_store(HttpResponse::Ok()).content_type("application/json").body(body)
        }
        Err(problem) => {
            state.registry.metrics().presign(label, problem.outcome, elapsed);
            problem.response()
        }
    }
}

async fn uppy_answer(
    state: &AppState,
    req: &HttpRequest,
    snapshot: &Snapshot,
    profile: &Served,
    caller: &Caller,
    sign: UppySignRequest,
) -> Result<String, Problem> {
    let UppySignRequest { request, mut upload } = sign;
    let open = |token: &str| {
        lifecycle::open_token(
            state.uploads.tokens()?,
            token,
            Some(&caller.app),
            caller.sub(),
            OffsetDateTime::now_utc(),
        )
    };
    match (
        request.method.as_str(),
        request.upload_id.as_deref(),
        request.part_number,
    ) {
        // PutObject: a POST form or a PUT URL, as the profile and store allow.
        ("PUT", None, None) => {
            if upload.content_type.is_none() && profile.content_type().is_some() {
                upload.content_type = request.content_type.clone();
            }
            uppy_put_object(state, snapshot, req, profile, caller, &upload)
        }
        // CreateMultipartUpload: started now; Uppy's POST to the returned URL reads the upload
        // ID, which is the upload token, so every later step carries it.
        ("POST", None, None) if profile.signing_store().kind == crate::sign::Kind::Azure => {
            let refusal = crate::profile::Refusal {
                kind: crate::profile::RefusalKind::MethodUnavailable,
                field: "method".into(),
                message: "Uppy's multipart uploads read each part's ETag, which Azure's Put Block does not answer; use the gateway's multipart API, or Uppy's single uploads".into(),
            };
            Err(lifecycle::Failure::refused(profile.name().as_str(), vec![refusal]).into())
        }
        ("POST", None, None) => {
            let client = client_address(req);
            let grant = Grant::now(&caller.app, caller.sub()).from_client(client.as_deref());
            let created = lifecycle::start_multipart(&state.uploads, snapshot, profile, &upload, &grant).await?;
            let url = capability_url(state, req, "create", &created.upload_token, profile)?;
            Ok(serde_json::json!({"url": url, "key": created.key, "upload_token": created.upload_token}).to_string())
        }
        ("PUT", Some(token), Some(number)) => {
            let claims = open(token)?;
            let parts = lifecycle::sign_parts(snapshot, &claims, &[number], OffsetDateTime::now_utc())?;
            Ok(serde_json::json!({"url": parts[0].url}).to_string())
        }
        (method @ ("GET" | "POST" | "DELETE"), Some(token), None) => {
            let claims = open(token)?;
            let (profile, _) = lifecycle::upload_context(snapshot, &claims)?;
            lifecycle::multipart_of(&claims)?;
            let operation = match method {
                "GET" => "list",
                "POST" => "complete",
                _ => "abort",
            };
            let url = capability_url(state, req, operation, token, profile)?;
            Ok(serde_json::json!({"url": url}).to_string())
        }
        (method, upload_id, part) => Err(Problem::of(
            ProblemCode::InvalidRequest,
            format!(
                "`{}` with uploadId {} and partNumber {} is not a request Uppy makes",
                method.escape_debug(),
                if upload_id.is_some() { "set" } else { "unset" },
                if part.is_some() { "set" } else { "unset" }
            ),
        )),
    }
}

/// Uppy's PutObject: the signed form or PUT URL with its upload token, as JSON. A form whose key
/// leaves `${filename}` to the store or that redirects is refused: Uppy can do neither.
fn uppy_put_object(
    state: &AppState,
    snapshot: &Snapshot,
    req: &HttpRequest,
    profile: &Served,
    caller: &Caller,
    upload: &UploadRequest,
) -> Result<String, Problem> {
    state.uploads.tokens()?;
    let client = client_address(req);
    let grant = Grant::now(&caller.app, caller.sub()).from_client(client.as_deref());
    let granted = lifecycle::grant_recorded(&state.uploads, snapshot, profile, upload, &grant, FieldStyle::Botocore)?;
    if let crate::sign::Signed::Post(post) = &granted.signed
        && (post.key.contains("${filename}") || post.fields.iter().any(|(n, _)| n == "success_action_redirect"))
    {
        let refusal = crate::profile::Refusal {
            kind: crate::profile::RefusalKind::MethodUnavailable,
            field: "upload.method".into(),
            message: "Uppy refuses a form whose key leaves `${filename}` to the store or that redirects; send `upload.filename`, or ask for `upload.method: put`".into(),
        };
        return Err(Problem::refused(profile.name().as_str(), vec![refusal]));
    }
    let mut out = String::from("{");
    granted.signed.write_json_members(&mut out);
    out.push_str(",\"upload_token\":");
    write_json_string(&mut out, granted.upload_token.as_deref().unwrap_or_default());
    out.push('}');
    Ok(out)
}

/// S3's `ListPartsResult` for the parts the store holds (one page: the gateway read them all).
fn list_parts_xml(claims: &Claims, listed: &lifecycle::Listed) -> String {
    let mut body = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListPartsResult>");
    body.push_str(&format!(
        "<Bucket>{}</Bucket><Key>{}</Key>",
        xml_escape(&claims.bucket),
        xml_escape(&claims.bounds.key)
    ));
    for part in &listed.parts {
        body.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>&quot;{}&quot;</ETag><Size>{}</Size></Part>",
            part.part_number,
            xml_escape(part.etag.as_deref().unwrap_or_default()),
            part.size
        ));
    }
    body.push_str("<IsTruncated>false</IsTruncated></ListPartsResult>");
    body
}

/// A URL back to the gateway for one Uppy step on one upload: `tag` binds the operation, the
/// token and the expiry (the profile's `expires_in`), so Uppy can call it without an app key.
fn capability_url(
    state: &AppState,
    req: &HttpRequest,
    operation: &str,
    token: &str,
    profile: &Profile,
) -> Result<String, Problem> {
    let tokens = state.uploads.tokens()?;
    let expires = (OffsetDateTime::now_utc() + profile.expires_in())
        .unix_timestamp()
        .to_string();
    let tag = tokens.tag(&[operation, token, &expires]);
    let base = match &state.uploads.public_url {
        Some(base) => base.trim_end_matches('/').to_owned(),
        // Not `Forwarded`/`X-Forwarded-*`, which a client sets: the Host the request came to.
        // Behind TLS, set `public_url`.
        None => {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("127.0.0.1");
            format!("http://{host}")
        }
    };
    let mut url = format!("{base}/v1/uppy/s3/{operation}?upload_token=");
    crate::sign::sigv4::uri_encode(&mut url, token, false);
    url.push_str("&expires=");
    url.push_str(&expires);
    url.push_str("&tag=");
    crate::sign::sigv4::uri_encode(&mut url, &tag, false);
    Ok(url)
}

#[derive(Debug, Deserialize)]
pub struct CapabilityQuery {
    upload_token: String,
    expires: i64,
    tag: String,
}

/// `/v1/uppy/s3/{operation}`: the S3 calls Uppy makes to the URLs `uppy_sign` returned —
/// answered as S3 answers them (XML), after the gateway's checks. Errors are S3 error documents
/// with `Content-Type: application/xml` and `x-amz-error-code`, which Uppy shows.
#[utoipa::path(
    method(get, post, delete),
    path = "/v1/uppy/s3/{operation}",
    tag = "uploads",
    summary = "The S3 calls Uppy makes to the URLs `signRequest` returned: create (POST), list (GET), complete (POST), abort (DELETE)",
    description = "Not called by apps: `POST /v1/profiles/{name}/uppy` returns these URLs, with the upload token, an expiry and a tag binding them, so Uppy can call them without an app key. Answers are S3's XML; refusals are S3 error documents whose `Code` is the gateway's problem code, also in `x-amz-error-code`.",
    security(()),
    params(
        ("operation" = String, Path, description = "`create`, `list`, `complete` or `abort`", example = "complete"),
        ("upload_token" = String, Query, description = "The upload token"),
        ("expires" = i64, Query, description = "Unix seconds after which the URL is refused"),
        ("tag" = String, Query, description = "The gateway's MAC over the operation, the token and the expiry"),
    ),
    responses(
        (status = 200, description = "`InitiateMultipartUploadResult` (create), `ListPartsResult` (list), `CompleteMultipartUploadResult` (complete)", body = String, content_type = "application/xml"),
        (status = 204, description = "Aborted"),
        (status = 400, description = "`invalid-query`: the query lacks `upload_token`, `expires` or `tag`, or does not parse", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`token-invalid`, `token-expired`", body = String, content_type = "application/xml"),
        (status = 403, description = "`url-invalid` (a changed or expired URL), `forbidden`", body = String, content_type = "application/xml"),
        (status = 404, description = "`unknown-profile`, `upload-not-found`", body = String, content_type = "application/xml"),
        (status = 405, description = "`method-not-allowed`: another method than the operation's", body = String, content_type = "application/xml"),
        (status = 409, description = "`object-exists`, `upload-changed`", body = String, content_type = "application/xml"),
        (status = 422, description = "The upload is not what was allowed (`parts-mismatch`, `content-sniff-mismatch`, …); it was removed", body = String, content_type = "application/xml"),
        (status = 502, description = "`store-refused`", body = String, content_type = "application/xml"),
        (status = 503, description = "`store-unavailable`, `upload-tokens-unconfigured`", body = String, content_type = "application/xml"),
    ),
)]
pub async fn uppy_s3(
    state: web::Data<AppState>,
    req: HttpRequest,
    operation: web::Path<String>,
    query: web::Query<CapabilityQuery>,
) -> HttpResponse {
    let snapshot = state.registry.current();
    match uppy_s3_inner(&state, &req, &snapshot, &operation, &query).await {
        Ok(response) => response,
        Err(problem) => {
            let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>");
            xml.push_str(&xml_escape(problem.code));
            xml.push_str("</Code><Message>");
            xml.push_str(&xml_escape(&problem.detail));
            xml.push_str("</Message></Error>");
            HttpResponse::build(problem.status)
                .insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/xml")))
                .insert_header(("x-amz-error-code", problem.code))
                .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
                .body(xml)
        }
    }
}

async fn uppy_s3_inner(
    state: &AppState,
    req: &HttpRequest,
    snapshot: &Arc<Snapshot>,
    operation: &str,
    query: &CapabilityQuery,
) -> Result<HttpResponse, Problem> {
    let tokens = state.uploads.tokens()?;
    let expires = query.expires.to_string();
    let forbidden = |detail: &str| Problem::of(ProblemCode::UrlInvalid, detail.to_owned());
    if !tokens.verify_tag(&[operation, &query.upload_token, &expires], &query.tag) {
        return Err(forbidden("the URL's tag does not match: it was changed or forged"));
    }
    if query.expires < OffsetDateTime::now_utc().unix_timestamp() {
        return Err(forbidden("the URL expired; sign the step again"));
    }
    let now = OffsetDateTime::now_utc();
    let claims = lifecycle::open_token(tokens, &query.upload_token, None, None, now)?;
    // Uppy's calls draw on the token's app's budget, as the app's own calls do.
    state
        .check_rate(snapshot, &claims.app)
        .await
        .map_err(|over| Problem::rate_limited(&claims.app, &over))?;
    let method = req.method().as_str();
    let xml = |body: String| {
        HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/xml")))
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .body(body)
    };
    match (operation, method) {
        ("create", "POST") => {
            lifecycle::upload_context(snapshot, &claims)?;
            Ok(xml(format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InitiateMultipartUploadResult><Bucket>{}</Bucket><Key>{}</Key><UploadId>{}</UploadId></InitiateMultipartUploadResult>",
                xml_escape(&claims.bucket),
                xml_escape(&claims.bounds.key),
                xml_escape(&query.upload_token)
            )))
        }
        ("list", "GET") => {
            let listed = lifecycle::list_parts(&state.uploads.client, snapshot, &claims).await?;
            Ok(xml(list_parts_xml(&claims, &listed)))
        }
        ("complete", "POST") => {
            let completed = finish(state, snapshot, req, &claims, None).await?;
            let (origin, _, path) = lifecycle::upload_context(snapshot, &claims)?
                .1
                .object_location(&completed.bucket, &completed.key);
            Ok(xml(format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUploadResult><Location>{}</Location><Bucket>{}</Bucket><Key>{}</Key><ETag>&quot;{}&quot;</ETag></CompleteMultipartUploadResult>",
                xml_escape(&format!("{origin}{path}")),
                xml_escape(&completed.bucket),
                xml_escape(&completed.key),
                xml_escape(completed.etag.as_deref().unwrap_or_default())
            )))
        }
        ("abort", "DELETE") => {
            lifecycle::abort(&state.uploads, snapshot, &claims).await?;
            Ok(HttpResponse::NoContent().finish())
        }
        _ => Err(Problem::of(
            ProblemCode::MethodNotAllowed,
            format!("`{}` takes no {method}", operation.escape_debug()),
        )),
    }
}
