//! The upload routes after (or instead of) a presign: multipart uploads (create, sign parts,
//! list, abort), `complete` (verify any upload, promote or remove it), and Uppy's
//! `signRequest` with the S3-shaped routes it calls back (`/v1/uppy/s3/{operation}`).
//!
//! State lives in upload tokens (`crate::upload::token`), never in the gateway: every call
//! opens its token, checks that the profile still exists and still allows the token's app in
//! the current snapshot, and talks to the store through `crate::store`.

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::AppState;
use super::handlers::{Caller, allowed_profile, check_json_content_type, identify, parse_json, read_body, recheck};
use super::problem::{Problem, ProblemCode};
use crate::metrics::{CompleteOutcome, MultipartOperation, Outcome, UNKNOWN_PROFILE};
use crate::profile::conditions::write_json_string;
use crate::profile::{Bounds, Context, Profile, UploadRequest, admit_multipart};
use crate::registry::Snapshot;
use crate::sign::multipart::{PartTarget, create_headers, part_url};
use crate::sign::{FieldStyle, Signed, Store, format_rfc3339, sign_upload};
use crate::store::{Completion, StoreError, xml_escape};
use crate::upload::verify::SNIFF_BYTES;
use crate::upload::{Carry, Claims, PartPlan, TokenError, TokenKeys, Violation, check_object, check_parts, sniff};

/// A token's claims for `bounds`, signed now for `app`.
pub(super) fn claims(
    snapshot: &Snapshot,
    profile: &Profile,
    app: &str,
    bounds: Bounds,
    carry: Carry,
    issued_at: OffsetDateTime,
    expires_at: OffsetDateTime,
) -> Claims {
    let name = profile.name().as_str();
    Claims {
        profile: name.to_owned(),
        profile_digest: snapshot
            .digests
            .get(name)
            .map(|digest| hex::encode(&digest[..8]))
            .unwrap_or_default(),
        app: app.to_owned(),
        store: profile.store().to_owned(),
        bucket: profile.bucket().to_owned(),
        carry,
        bounds,
        upload_id: None,
        parts: None,
        issued_at: issued_at.unix_timestamp(),
        expires_at: expires_at.unix_timestamp(),
    }
}

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
        description = "`store-unavailable` (with `Retry-After`), `upload-tokens-unconfigured`",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}

/// What a caller of a token route sends.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The `upload_token` of a presign or multipart answer.
    pub upload_token: String,
    /// `POST /v1/uploads/parts`: the parts to sign (1-based), at most 1,000 per call.
    #[serde(default)]
    pub part_numbers: Vec<u32>,
    /// `complete` of a POST form whose key left `${filename}` to the store: the file's name.
    #[serde(default)]
    pub filename: Option<String>,
}

/// How far the store's clock may be behind the gateway's when `complete` compares an object's
/// `Last-Modified` with the signature's time.
const CLOCK_SKEW_SECS: i64 = 120;

/// The most part URLs one call signs.
const MAX_PARTS_PER_CALL: usize = 1000;

/// `POST /v1/profiles/{name}/multipart`
#[utoipa::path(
    post,
    path = "/v1/profiles/{name}/multipart",
    tag = "uploads",
    summary = "Start a multipart upload: admitted like a PUT, with its part plan and upload token",
    params(("name" = String, Path, description = "The profile's name", example = "datasets")),
    request_body(content = UploadRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The upload: `upload_id`, `key`, the part plan and `upload_token`", body = MultipartCreated),
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
        let created = start_multipart(&state, &snapshot, &profile, &caller.app, &request).await?;
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
            no_store(HttpResponse::Ok()).json(MultipartCreated {
                generation: snapshot.generation,
                ..created
            })
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

/// A started multipart upload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MultipartCreated {
    pub upload_id: String,
    pub key: String,
    pub bucket: String,
    pub size: u64,
    pub part_size: u64,
    pub part_count: u32,
    pub last_part_size: u64,
    pub upload_token: String,
    /// When the token stops working: complete before then.
    pub expires_at: String,
    pub profile: String,
    pub generation: u64,
}

async fn start_multipart(
    state: &AppState,
    snapshot: &Snapshot,
    profile: &Arc<Profile>,
    app: &str,
    request: &UploadRequest,
) -> Result<MultipartCreated, Problem> {
    let tokens = tokens(state)?;
    let store = store_of(snapshot, profile)?;
    let now = OffsetDateTime::now_utc();
    let ctx = Context {
        app,
        now,
        uuid: Uuid::now_v7(),
    };
    let name = profile.name().as_str();
    let filled = admit_multipart(profile, request, &ctx).map_err(|refusals| Problem::refused(name, refusals))?;
    let rule = profile
        .multipart()
        .copied()
        .unwrap_or_else(|| unreachable_rule(profile));
    let size = filled.max_size;
    let Some(plan) = PartPlan::new(size, rule.part_size) else {
        let refusal = crate::profile::Refusal {
            kind: crate::profile::RefusalKind::SizeOutOfRange,
            field: "size".into(),
            message: "a multipart upload needs at least 1 byte; send an empty file with a PUT".into(),
        };
        return Err(Problem::refused(name, vec![refusal]));
    };
    let headers = create_headers(&filled);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_ref(), v.as_ref())).collect();
    let upload_id = state
        .uploads
        .client
        .create_multipart(store, profile.bucket(), &filled.key, &headers)
        .await
        .map_err(store_problem)?;
    let expires_at = now + rule.expires_in;
    let mut claims = claims(
        snapshot,
        profile,
        app,
        filled.bounds(),
        Carry::Multipart,
        now,
        expires_at,
    );
    claims.upload_id = Some(upload_id.clone());
    claims.parts = Some(plan);
    tracing::info!(app, profile = name, key = %filled.key, parts = plan.part_count, "multipart upload started");
    Ok(MultipartCreated {
        upload_id,
        key: filled.key.clone(),
        bucket: profile.bucket().to_owned(),
        size,
        part_size: plan.part_size,
        part_count: plan.part_count,
        last_part_size: plan.last_part_size,
        upload_token: tokens.seal(&claims),
        expires_at: format_rfc3339(expires_at),
        profile: name.to_owned(),
        generation: snapshot.generation,
    })
}

/// Admission refused a profile without `multipart` (`multipart_unavailable`); this is never
/// reached, and answers with the default rule if it were.
fn unreachable_rule(profile: &Profile) -> crate::profile::MultipartRule {
    tracing::error!(
        profile = profile.name().as_str(),
        "multipart admitted without a multipart rule"
    );
    crate::profile::MultipartRule {
        part_size: crate::profile::DEFAULT_PART_BYTES,
        expires_in: crate::profile::DEFAULT_MULTIPART_EXPIRES_IN,
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
        (status = 403, description = "`token-app-mismatch`, `forbidden`", body = Problem, content_type = "application/problem+json"),
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
            let (profile, store) = upload_context(&snapshot, &claims)?;
            let (upload_id, plan) = multipart_of(&claims)?;
            if request.part_numbers.is_empty() || request.part_numbers.len() > MAX_PARTS_PER_CALL {
                return Err(part_invalid(format!(
                    "name 1 to {MAX_PARTS_PER_CALL} parts in `part_numbers`; this upload has {}",
                    plan.part_count
                )));
            }
            let parts = sign_part_urls(profile, store, &claims, upload_id, plan, &request.part_numbers)?;
            Ok(no_store(HttpResponse::Ok()).json(parts))
        },
    )
    .await
}

/// Signed part URLs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignedParts {
    pub parts: Vec<SignedPart>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignedPart {
    pub part_number: u32,
    /// The part's exact size: send exactly this many bytes.
    pub size: u64,
    pub url: String,
    pub expires_at: String,
}

fn sign_part_urls(
    profile: &Profile,
    store: &Store,
    claims: &Claims,
    upload_id: &str,
    plan: &PartPlan,
    numbers: &[u32],
) -> Result<SignedParts, Problem> {
    let now = OffsetDateTime::now_utc();
    let store = store.signer(now).map_err(|e| Problem::credentials_unavailable(&e))?;
    let target = PartTarget {
        bucket: &claims.bucket,
        key: &claims.bounds.key,
        upload_id,
        expires_in: profile.expires_in(),
        not_after: OffsetDateTime::from_unix_timestamp(claims.expires_at).unwrap_or(now),
    };
    let mut parts = Vec::with_capacity(numbers.len());
    for &number in numbers {
        let Some(size) = plan.size_of(number) else {
            return Err(part_invalid(format!(
                "part {number} is not in this upload's plan of {} part(s)",
                plan.part_count
            )));
        };
        let url = part_url(&store, &target, number, size, now);
        parts.push(SignedPart {
            part_number: number,
            size,
            url: url.url,
            expires_at: format_rfc3339(url.expires_at),
        });
    }
    Ok(SignedParts { parts })
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
        (status = 403, description = "`token-app-mismatch`, `forbidden`", body = Problem, content_type = "application/problem+json"),
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
                let listed = listed_parts(&state, &snapshot, &claims).await?;
                Ok(no_store(HttpResponse::Ok()).json(listed))
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

async fn listed_parts(state: &AppState, snapshot: &Snapshot, claims: &Claims) -> Result<ListedParts, Problem> {
    let (_, store) = upload_context(snapshot, claims)?;
    let (upload_id, plan) = multipart_of(claims)?;
    let parts = state
        .uploads
        .client
        .list_parts(store, &claims.bucket, &claims.bounds.key, upload_id)
        .await
        .map_err(store_problem)?;
    Ok(ListedParts {
        parts: parts
            .into_iter()
            .map(|p| ListedPartWire {
                part_number: p.part_number,
                size: p.size,
                etag: p.etag,
            })
            .collect(),
        part_size: plan.part_size,
        part_count: plan.part_count,
        last_part_size: plan.last_part_size,
    })
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
        (status = 403, description = "`token-app-mismatch`, `forbidden`", body = Problem, content_type = "application/problem+json"),
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
                abort_upload(&state, &snapshot, &claims).await?;
                Ok(no_store(HttpResponse::Ok()).json(serde_json::json!({"aborted": true, "key": claims.bounds.key})))
            }
        },
    )
    .await
}

async fn abort_upload(state: &AppState, snapshot: &Snapshot, claims: &Claims) -> Result<(), Problem> {
    let (_, store) = upload_context(snapshot, claims)?;
    let (upload_id, _) = multipart_of(claims)?;
    state
        .uploads
        .client
        .abort_multipart(store, &claims.bucket, &claims.bounds.key, upload_id)
        .await
        .map_err(store_problem)
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
        (status = 403, description = "`token-app-mismatch`, `forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`upload-not-found`: nothing is stored at the key (yet); nothing was deleted", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`object-exists`: `overwrite: false` and the key is taken; `upload-changed`: the object was written again while it was checked", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The object broke a rule (`object-size-mismatch`, `object-type-mismatch`, `object-metadata-mismatch`, `object-checksum-mismatch`, `content-sniff-mismatch`, `parts-mismatch`); it was removed (`removed`)", body = Problem, content_type = "application/problem+json"),
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
        Ok((claims, filename)) => match finish(&state, &snapshot, &claims, filename.as_deref()).await {
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

/// A verified upload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Completed {
    pub key: String,
    pub bucket: String,
    pub size: u64,
    pub etag: Option<String>,
    pub content_type: Option<String>,
    pub metadata: std::collections::BTreeMap<String, String>,
    /// The checksum the store reports for the declared algorithm, if any.
    pub checksum: Option<String>,
    /// `verify.staging`: the staging key the object was promoted from (now removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<String>,
    /// Whether the first bytes were checked against the type.
    pub sniffed: bool,
    pub profile: String,
    /// `post`, `put` or `multipart`.
    #[schema(value_type = String)]
    pub method: Carry,
}

/// Completes (multipart) and verifies one upload; removes it on a violation. Idempotent: a
/// second call finds the upload completed (or promoted) and verifies it again.
async fn finish(
    state: &AppState,
    snapshot: &Snapshot,
    claims: &Claims,
    filename: Option<&str>,
) -> Result<Completed, Problem> {
    let label = profile_label(snapshot, &claims.profile);
    let outcome = finish_inner(state, snapshot, claims, filename).await;
    let metrics = state.registry.metrics();
    match &outcome {
        Ok(completed) => metrics.complete(label, CompleteOutcome::Verified, completed.size),
        Err((kind, _)) => metrics.complete(label, *kind, 0),
    }
    outcome.map_err(|(_, problem)| problem)
}

type Failure = (CompleteOutcome, Problem);

async fn finish_inner(
    state: &AppState,
    snapshot: &Snapshot,
    claims: &Claims,
    filename: Option<&str>,
) -> Result<Completed, Failure> {
    let plain = |problem: Problem| {
        let kind = match problem.status.as_u16() {
            503 => CompleteOutcome::StoreUnavailable,
            404 => CompleteOutcome::NotFound,
            403 | 401 => CompleteOutcome::Rejected,
            _ => CompleteOutcome::Error,
        };
        (kind, problem)
    };
    let (profile, store) = upload_context(snapshot, claims).map_err(plain)?;
    let client = &state.uploads.client;
    let bucket = claims.bucket.as_str();
    let key = uploaded_key(claims, filename).map_err(plain)?;
    let final_key = claims.bounds.promote_to.as_deref();

    // Idempotent: an upload promoted by an earlier call is verified where it now is, if the
    // object there is not older than the signature (then it is another upload's).
    if let Some(final_key) = final_key
        && client
            .head(store, bucket, &key)
            .await
            .map_err(store_problem)
            .map_err(plain)?
            .is_none()
        && let Some(head) = client
            .head(store, bucket, final_key)
            .await
            .map_err(store_problem)
            .map_err(plain)?
        && !predates(&head, claims)
    {
        check_object(&claims.bounds, &head).map_err(|v| violation_problem(&v, "kept"))?;
        return Ok(completed(
            claims,
            profile,
            final_key,
            head,
            Some(key.clone()),
            profile.verify().sniff,
        ));
    }

    if claims.carry == Carry::Multipart {
        complete_multipart(state, store, claims, &key).await?;
    }

    let head = head_with_retry(state, store, bucket, &key).await.map_err(plain)?;
    let Some(head) = head else {
        return Err(plain(Problem::upload(
            ProblemCode::UploadNotFound,
            format!("no object at `{key}` yet: upload first, then complete (nothing was deleted)"),
        )));
    };
    // An object older than the signature is another upload's: never checked, never removed
    // (`overwrite: false` would be beaten by completing a token that uploaded nothing).
    if predates(&head, claims) {
        return Err(plain(Problem::upload(
            ProblemCode::UploadNotFound,
            format!(
                "the object at `{key}` is older than this upload's signature, so it is not this upload (nothing was deleted)"
            ),
        )));
    }

    let mut violation = check_object(&claims.bounds, &head).err();
    let sniffs = profile.verify().sniff;
    if violation.is_none() && sniffs {
        let declared = head.content_type.clone().unwrap_or_default();
        // The bytes of the version just checked; another version means the client is writing
        // to the key while it is checked.
        let first = client
            .first_bytes(store, bucket, &key, SNIFF_BYTES, head.etag.as_deref())
            .await
            .map_err(changed_or_store_problem)
            .map_err(plain)?;
        violation = sniff(&declared, &first).err();
    }
    if let Some(violation) = violation {
        let removed = remove(state, store, profile, bucket, &key).await.map_err(plain)?;
        tracing::warn!(profile = claims.profile.as_str(), app = claims.app.as_str(), key = %key, %violation, removed = %removed, "upload refused at complete");
        return Err(violation_problem(&violation, &removed));
    }

    if let Some(final_key) = final_key {
        // Copy the version that was checked, and only it: the client may still hold a valid URL
        // for the staging key.
        let quoted = head.etag.as_deref().map(|e| format!("\"{e}\""));
        let mut headers = copy_headers(profile, true);
        if let Some(quoted) = &quoted {
            headers.push(("x-amz-copy-source-if-match", quoted));
        }
        client
            .copy(store, bucket, &key, final_key, &headers)
            .await
            .map_err(changed_or_store_problem)
            .map_err(plain)?;
        // Stores that ignore the precondition: a single-part object keeps its ETag in a copy.
        let copied = client
            .head(store, bucket, final_key)
            .await
            .map_err(store_problem)
            .map_err(plain)?;
        if let (Some(checked), Some(copied)) = (&head.etag, copied.as_ref().and_then(|c| c.etag.as_ref()))
            && !checked.contains('-')
            && checked != copied
        {
            client
                .delete(store, bucket, final_key)
                .await
                .map_err(store_problem)
                .map_err(plain)?;
            return Err(plain(Problem::upload(
                ProblemCode::UploadChanged,
                format!(
                    "the staged object changed while it was checked; nothing was promoted to `{final_key}`: complete again"
                ),
            )));
        }
        client
            .delete(store, bucket, &key)
            .await
            .map_err(store_problem)
            .map_err(plain)?;
        return Ok(completed(claims, profile, final_key, head, Some(key.clone()), sniffs));
    }
    Ok(completed(claims, profile, &key, head, None, sniffs))
}

fn completed(
    claims: &Claims,
    profile: &Profile,
    key: &str,
    head: crate::upload::ObjectHead,
    promoted_from: Option<String>,
    sniffed: bool,
) -> Completed {
    let checksum = claims
        .bounds
        .checksum
        .as_ref()
        .and_then(|(algorithm, _)| head.checksums.iter().find(|(a, _)| a == algorithm))
        .map(|(_, value)| value.clone());
    Completed {
        key: key.to_owned(),
        bucket: claims.bucket.clone(),
        size: head.size,
        etag: head.etag,
        content_type: head.content_type,
        metadata: head.metadata,
        checksum,
        promoted_from,
        sniffed,
        profile: profile.name().as_str().to_owned(),
        method: claims.carry,
    }
}

/// Lists the parts, checks them against the plan, and completes from the store's own list.
/// On a violation the upload is aborted. An upload already completed is left to the HEAD.
async fn complete_multipart(state: &AppState, store: &Store, claims: &Claims, key: &str) -> Result<(), Failure> {
    let client = &state.uploads.client;
    let plain = |problem: Problem| (CompleteOutcome::StoreUnavailable, problem);
    let (upload_id, plan) = multipart_of(claims).map_err(|p| (CompleteOutcome::Error, p))?;
    let listed = match client.list_parts(store, &claims.bucket, key, upload_id).await {
        Ok(listed) => listed,
        // Completed (or aborted) already: the HEAD decides.
        Err(error) if error.code() == Some("NoSuchUpload") => return Ok(()),
        Err(error) => return Err(plain(store_problem(error))),
    };
    if listed.is_empty()
        && let Ok(Some(head)) = client.head(store, &claims.bucket, key).await
        && !predates(&head, claims)
    {
        // s3s-fs answers an unknown upload with an empty list: completed before.
        return Ok(());
    }
    let parts = match check_parts(plan, &listed) {
        Ok(parts) => parts,
        Err(violation) => {
            client
                .abort_multipart(store, &claims.bucket, key, upload_id)
                .await
                .map_err(|e| plain(store_problem(e)))?;
            return Err(violation_problem(&violation, "aborted"));
        }
    };
    let completed = client
        .complete_multipart(
            store,
            &claims.bucket,
            key,
            upload_id,
            &parts,
            Completion {
                object_size: plan.total(),
                no_overwrite: claims.bounds.no_overwrite,
            },
        )
        .await;
    match completed {
        Ok(_) => Ok(()),
        // Completed by a concurrent call or an earlier attempt of this one: the HEAD (with its
        // age check) decides.
        Err(StoreError::Refused { code, .. }) if code == "NoSuchUpload" => Ok(()),
        Err(StoreError::Refused { code, .. }) if code == "PreconditionFailed" => {
            // Ours (an earlier attempt completed it) or another object's.
            if let Ok(Some(head)) = client.head(store, &claims.bucket, key).await
                && !predates(&head, claims)
            {
                return Ok(());
            }
            let _ = client.abort_multipart(store, &claims.bucket, key, upload_id).await;
            Err((
                CompleteOutcome::Exists,
                Problem::upload(
                    ProblemCode::ObjectExists,
                    format!(
                        "an object is already stored at `{key}` and the profile does not overwrite; the upload was aborted"
                    ),
                ),
            ))
        }
        // The parts themselves are refused: nothing can complete this upload.
        Err(error @ StoreError::Refused { .. })
            if matches!(
                error.code(),
                Some("InvalidPart" | "InvalidPartOrder" | "EntityTooSmall")
            ) =>
        {
            let _ = client.abort_multipart(store, &claims.bucket, key, upload_id).await;
            Err((
                CompleteOutcome::Rejected,
                Problem::upload(
                    ProblemCode::CompletionRefused,
                    format!("{error}; the upload was aborted"),
                ),
            ))
        }
        // Anything else (credentials, a store bug): the upload is kept for another attempt.
        Err(error) => Err(plain(store_problem(error))),
    }
}

/// A store refusal of a precondition (`If-Match`, `x-amz-copy-source-if-match`) means the object
/// changed under `complete`; anything else as `store_problem`.
fn changed_or_store_problem(error: StoreError) -> Problem {
    match &error {
        StoreError::Refused { status: 412, .. } => Problem::upload(
            ProblemCode::UploadChanged,
            "the object changed while it was checked (written again with a still valid URL); complete again",
        ),
        _ => store_problem(error),
    }
}

/// Whether the object at the key is older than the signature: then it is not this upload (with
/// `CLOCK_SKEW_SECS` of slack for the store's clock).
fn predates(head: &crate::upload::ObjectHead, claims: &Claims) -> bool {
    head.last_modified
        .is_some_and(|modified| modified + CLOCK_SKEW_SECS < claims.issued_at)
}

/// HEAD, retrying a not-found briefly (a store may list an object a moment after its upload).
async fn head_with_retry(
    state: &AppState,
    store: &Store,
    bucket: &str,
    key: &str,
) -> Result<Option<crate::upload::ObjectHead>, Problem> {
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        if let Some(head) = state
            .uploads
            .client
            .head(store, bucket, key)
            .await
            .map_err(store_problem)?
        {
            return Ok(Some(head));
        }
    }
    Ok(None)
}

/// Removes a refused object: moved under the profile's quarantine prefix, else deleted.
/// Returns what happened (`deleted`, `quarantined as <key>`).
async fn remove(
    state: &AppState,
    store: &Store,
    profile: &Profile,
    bucket: &str,
    key: &str,
) -> Result<String, Problem> {
    let client = &state.uploads.client;
    let removed = match &profile.verify().quarantine {
        Some(prefix) => {
            let target = format!("{prefix}{key}");
            match client
                .copy(store, bucket, key, &target, &copy_headers(profile, false))
                .await
            {
                Ok(()) => format!("quarantined as {target}"),
                // A refused copy (a key too long, say) must not leave the object where it is.
                Err(error @ StoreError::Refused { .. }) => {
                    format!("deleted (the quarantine copy was refused: {error})")
                }
                Err(error) => return Err(store_problem(error)),
            }
        }
        None => "deleted".to_owned(),
    };
    client.delete(store, bucket, key).await.map_err(store_problem)?;
    Ok(removed)
}

/// The pinned `x-amz-*` headers a copy does not carry over (metadata, type and the other
/// object headers it does): every one for a promotion; for a quarantine copy only encryption
/// (a refused object gets no public ACL, object lock or redirect from the profile).
fn copy_headers(profile: &Profile, promotion: bool) -> Vec<(&'static str, &str)> {
    profile
        .fields()
        .iter()
        .filter_map(|(field, value)| Some((crate::profile::plan::put_header(field)?, value.as_str())))
        .filter(|(header, _)| {
            header.starts_with("x-amz-") && (promotion || header.starts_with("x-amz-server-side-encryption"))
        })
        .collect()
}

/// The key the upload went to; a POST key left to the store is completed with the filename.
fn uploaded_key(claims: &Claims, filename: Option<&str>) -> Result<String, Problem> {
    let key = &claims.bounds.key;
    let Some(prefix) = key.strip_suffix("${filename}") else {
        return Ok(key.clone());
    };
    match filename {
        // The same rules as at admission, and the name must already be what they make of it.
        Some(name) if crate::profile::admit::sanitize_filename(name).as_deref() == Ok(name) => {
            Ok(format!("{prefix}{name}"))
        }
        _ => Err(Problem::upload(
            ProblemCode::FilenameRequired,
            "this upload's key left `${filename}` to the store: send the uploaded file's name as `filename` (one path segment)",
        )),
    }
}

fn violation_problem(violation: &Violation, removed: &str) -> Failure {
    let (outcome, code) = match violation {
        Violation::Size { .. } => (CompleteOutcome::Size, ProblemCode::ObjectSizeMismatch),
        Violation::ContentType { .. } => (CompleteOutcome::ContentType, ProblemCode::ObjectTypeMismatch),
        Violation::Metadata { .. } => (CompleteOutcome::Metadata, ProblemCode::ObjectMetadataMismatch),
        Violation::Checksum { .. } => (CompleteOutcome::Checksum, ProblemCode::ObjectChecksumMismatch),
        Violation::Sniffed { .. } => (CompleteOutcome::Sniffed, ProblemCode::ContentSniffMismatch),
        Violation::PartCount { .. }
        | Violation::PartMissing { .. }
        | Violation::PartExtra { .. }
        | Violation::PartSize { .. } => (CompleteOutcome::Parts, ProblemCode::PartsMismatch),
    };
    let problem = Problem::upload(code, format!("{violation}; the upload was {removed}"));
    (outcome, problem)
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
) -> Result<(Caller, Arc<Snapshot>, Arc<Profile>, T), Problem> {
    let caller = identify(state, snapshot, req).await?;
    let app = &caller.app;
    state
        .check_rate(snapshot, app)
        .await
        .map_err(|over| Problem::rate_limited(app, &over))?;
    allowed_profile(snapshot, app, name)?;
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
    let caller = identify(state, snapshot, req).await?;
    check_json_content_type(req)?;
    let body = read_body(req, payload, state).await?;
    // A key revoked while the body arrived no longer counts.
    let app = recheck(state, snapshot, req, caller).await?.1.app;
    let request: TokenRequest = parse_json(&body, "{\"upload_token\": \"pgu1.…\"}")?;
    let claims = open_token(tokens(state)?, &request.upload_token, Some(&app))?;
    Ok((claims, request))
}

fn tokens(state: &AppState) -> Result<&TokenKeys, Problem> {
    state.uploads.tokens.as_deref().ok_or_else(|| {
        Problem::upload(
            ProblemCode::TokensUnconfigured,
            "the gateway has no `upload_tokens` key, so it cannot issue or open upload tokens; its operator sets `upload_tokens` in postgate.yaml",
        )
    })
}

/// Opens a token; `app`: the token must be that app's.
fn open_token(tokens: &TokenKeys, token: &str, app: Option<&str>) -> Result<Claims, Problem> {
    let claims = tokens.open(token.trim(), OffsetDateTime::now_utc()).map_err(|error| {
        let code = match error {
            TokenError::Expired(_) => ProblemCode::TokenExpired,
            _ => ProblemCode::TokenInvalid,
        };
        Problem::upload(code, error.to_string())
    })?;
    if let Some(app) = app
        && claims.app != app
    {
        return Err(Problem::upload(
            ProblemCode::TokenAppMismatch,
            format!("this token was issued to app `{}`, not `{app}`", claims.app),
        ));
    }
    Ok(claims)
}

/// The token's profile (which must still exist and allow the token's app: revoking a profile
/// or an app's access stops its uploads) and store, from the current snapshot.
fn upload_context<'s>(snapshot: &'s Snapshot, claims: &Claims) -> Result<(&'s Arc<Profile>, &'s Arc<Store>), Problem> {
    let profile = allowed_profile(snapshot, &claims.app, &claims.profile)?;
    let store = snapshot.stores.get(&claims.store).ok_or_else(|| {
        Problem::upload(
            ProblemCode::StoreUnavailable,
            format!("store `{}` of this upload is no longer configured", claims.store),
        )
    })?;
    Ok((profile, store))
}

fn store_of<'s>(snapshot: &'s Snapshot, profile: &Profile) -> Result<&'s Arc<Store>, Problem> {
    snapshot.store_of(profile).ok_or_else(|| {
        tracing::error!(
            store = profile.store(),
            "a loaded profile names a store that is not in its snapshot"
        );
        Problem::internal()
    })
}

fn multipart_of(claims: &Claims) -> Result<(&str, &PartPlan), Problem> {
    match (&claims.upload_id, &claims.parts) {
        (Some(id), Some(plan)) if claims.carry == Carry::Multipart => Ok((id, plan)),
        _ => Err(Problem::upload(
            ProblemCode::NotMultipart,
            "this upload token is for a single POST or PUT upload; only `complete` takes it",
        )),
    }
}

fn part_invalid(detail: String) -> Problem {
    Problem::upload(ProblemCode::PartInvalid, detail)
}

/// A store failure as a problem: down → 503; a refusal → 502 (or 404 for a missing upload).
fn store_problem(error: StoreError) -> Problem {
    match &error {
        StoreError::Unavailable { .. } => {
            tracing::warn!(%error, "store call failed");
            let mut problem = Problem::upload(ProblemCode::StoreUnavailable, format!("{error}; retry later"));
            problem.retry_after = std::num::NonZeroU32::new(5);
            problem
        }
        StoreError::NoCredentials(unavailable) => Problem::credentials_unavailable(unavailable),
        StoreError::Refused { code, .. } if code == "NoSuchUpload" => Problem::upload(
            ProblemCode::UploadNotFound,
            format!("{error}: it was completed or aborted"),
        ),
        StoreError::Refused { .. } => {
            tracing::warn!(%error, "store refused a call");
            Problem::upload(ProblemCode::StoreRefused, error.to_string())
        }
    }
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
    pub method: String,
    pub key: String,
    #[serde(default, rename = "uploadId")]
    pub upload_id: Option<String>,
    #[serde(default, rename = "partNumber")]
    pub part_number: Option<u32>,
    #[serde(default, rename = "contentType")]
    pub content_type: Option<String>,
    #[serde(default, rename = "expiresIn")]
    pub expires_in: Option<u64>,
}

/// `POST /v1/profiles/{name}/uppy`: answers `@uppy/aws-s3` 6's `signRequest`.
#[utoipa::path(
    post,
    path = "/v1/profiles/{name}/uppy",
    tag = "uploads",
    summary = "Answer Uppy's signRequest: a POST form or PUT URL, a multipart start, part URLs, and gateway URLs for list, complete and abort",
    params(("name" = String, Path, description = "The profile's name", example = "documents")),
    request_body(content = UppySignRequest, content_type = "application/json", example = json!({"request": {"method": "PUT", "key": "f1", "contentType": "application/pdf"}, "upload": {"size": 1234, "filename": "a.pdf", "content_type": "application/pdf"}})),
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
        uppy_answer(&state, &req, &snapshot, &profile, &caller.app, sign).await
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
    profile: &Arc<Profile>,
    app: &str,
    sign: UppySignRequest,
) -> Result<String, Problem> {
    let UppySignRequest { request, mut upload } = sign;
    let name = profile.name().as_str();
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
            let store = store_of(snapshot, profile)?;
            let now = OffsetDateTime::now_utc();
            let ctx = Context {
                app,
                now,
                uuid: Uuid::now_v7(),
            };
            let signer = store.signer(now).map_err(|e| Problem::credentials_unavailable(&e))?;
            let (signed, bounds) = sign_upload(profile, &signer, &upload, &ctx, FieldStyle::Botocore)
                .map_err(|refusals| Problem::refused(name, refusals))?;
            if let Signed::Post(post) = &signed
                && (post.key.contains("${filename}") || post.fields.iter().any(|(n, _)| n == "success_action_redirect"))
            {
                let refusal = crate::profile::Refusal {
                    kind: crate::profile::RefusalKind::MethodUnavailable,
                    field: "upload.method".into(),
                    message: "Uppy refuses a form whose key leaves `${filename}` to the store or that redirects; send `upload.filename`, or ask for `upload.method: put`".into(),
                };
                return Err(Problem::refused(name, vec![refusal]));
            }
            let carry = if matches!(signed, Signed::Post(_)) {
                Carry::Post
            } else {
                Carry::Put
            };
            let token = tokens(state)?.seal(&claims(
                snapshot,
                profile,
                app,
                bounds,
                carry,
                now,
                signed.expires_at() + profile.verify().within,
            ));
            let mut out = String::from("{");
            signed.write_json_members(&mut out);
            out.push_str(",\"upload_token\":");
            write_json_string(&mut out, &token);
            out.push('}');
            Ok(out)
        }
        // CreateMultipartUpload: started now; Uppy's POST to the returned URL reads the upload
        // ID, which is the upload token, so every later step carries it.
        ("POST", None, None) => {
            let created = start_multipart(state, snapshot, profile, app, &upload).await?;
            let url = capability_url(state, req, "create", &created.upload_token, profile)?;
            Ok(serde_json::json!({"url": url, "key": created.key, "upload_token": created.upload_token}).to_string())
        }
        ("PUT", Some(token), Some(number)) => {
            let claims = open_token(tokens(state)?, token, Some(app))?;
            let (profile, store) = upload_context(snapshot, &claims)?;
            let (upload_id, plan) = multipart_of(&claims)?;
            let parts = sign_part_urls(profile, store, &claims, upload_id, plan, &[number])?;
            Ok(serde_json::json!({"url": parts.parts[0].url}).to_string())
        }
        (method @ ("GET" | "POST" | "DELETE"), Some(token), None) => {
            let claims = open_token(tokens(state)?, token, Some(app))?;
            let (profile, _) = upload_context(snapshot, &claims)?;
            multipart_of(&claims)?;
            let operation = match method {
                "GET" => "list",
                "POST" => "complete",
                _ => "abort",
            };
            let url = capability_url(state, req, operation, token, profile)?;
            Ok(serde_json::json!({"url": url}).to_string())
        }
        (method, upload_id, part) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "Not an Uppy request",
            format!(
                "`{}` with uploadId {} and partNumber {} is not a request Uppy makes",
                method.escape_debug(),
                if upload_id.is_some() { "set" } else { "unset" },
                if part.is_some() { "set" } else { "unset" }
            ),
        )),
    }
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
    let tokens = tokens(state)?;
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
    snapshot: &Snapshot,
    operation: &str,
    query: &CapabilityQuery,
) -> Result<HttpResponse, Problem> {
    let tokens = tokens(state)?;
    let expires = query.expires.to_string();
    let forbidden = |detail: &str| Problem::upload(ProblemCode::UrlInvalid, detail.to_owned());
    if !tokens.verify_tag(&[operation, &query.upload_token, &expires], &query.tag) {
        return Err(forbidden("the URL's tag does not match: it was changed or forged"));
    }
    if query.expires < OffsetDateTime::now_utc().unix_timestamp() {
        return Err(forbidden("the URL expired; sign the step again"));
    }
    let claims = open_token(tokens, &query.upload_token, None)?;
    let method = req.method().as_str();
    let xml = |body: String| {
        HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/xml")))
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .body(body)
    };
    match (operation, method) {
        ("create", "POST") => {
            upload_context(snapshot, &claims)?;
            Ok(xml(format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InitiateMultipartUploadResult><Bucket>{}</Bucket><Key>{}</Key><UploadId>{}</UploadId></InitiateMultipartUploadResult>",
                xml_escape(&claims.bucket),
                xml_escape(&claims.bounds.key),
                xml_escape(&query.upload_token)
            )))
        }
        ("list", "GET") => {
            let listed = listed_parts(state, snapshot, &claims).await?;
            let mut body = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListPartsResult>");
            body.push_str(&format!(
                "<Bucket>{}</Bucket><Key>{}</Key>",
                xml_escape(&claims.bucket),
                xml_escape(&claims.bounds.key)
            ));
            for part in listed.parts {
                body.push_str(&format!(
                    "<Part><PartNumber>{}</PartNumber><ETag>&quot;{}&quot;</ETag><Size>{}</Size></Part>",
                    part.part_number,
                    xml_escape(part.etag.as_deref().unwrap_or_default()),
                    part.size
                ));
            }
            body.push_str("<IsTruncated>false</IsTruncated></ListPartsResult>");
            Ok(xml(body))
        }
        ("complete", "POST") => {
            let completed = finish(state, snapshot, &claims, None).await?;
            let (origin, _, path) = upload_context(snapshot, &claims)?
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
            abort_upload(state, snapshot, &claims).await?;
            Ok(HttpResponse::NoContent().finish())
        }
        _ => Err(Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            format!("`{}` takes no {method}", operation.escape_debug()),
        )),
    }
}
