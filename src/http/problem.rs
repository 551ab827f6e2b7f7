//! The one place errors become HTTP: RFC 9457 `application/problem+json` bodies with a stable
//! machine `code` per kind and a per-field `errors` list. Changing a code is a breaking change
//! (the table is snapshot-tested).

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::metrics::{CompleteOutcome, Outcome};
use crate::profile::{Refusal, RefusalKind};
use crate::ratelimit::OverLimit;

/// The machine code of each refusal kind.
pub fn refusal_code(kind: RefusalKind) -> &'static str {
    match kind {
        RefusalKind::VarUnknown => "var-unknown",
        RefusalKind::VarMissing => "var-missing",
        RefusalKind::VarInvalid => "var-invalid",
        RefusalKind::FilenameNotAccepted => "filename-not-accepted",
        RefusalKind::FilenameInvalid => "filename-invalid",
        RefusalKind::ContentTypeNotAllowed => "content-type-not-allowed",
        RefusalKind::ContentTypeRequired => "content-type-required",
        RefusalKind::SizeOutOfRange => "size-out-of-range",
        RefusalKind::MetadataUnknown => "metadata-unknown",
        RefusalKind::MetadataMissing => "metadata-missing",
        RefusalKind::MetadataInvalid => "metadata-invalid",
        RefusalKind::KeyTooLong => "key-too-long",
        RefusalKind::KeyInvalid => "key-invalid",
        RefusalKind::MethodUnavailable => "method-unavailable",
        RefusalKind::SizeRequired => "size-required",
        RefusalKind::FilenameRequired => "filename-required",
        RefusalKind::ChecksumRequired => "checksum-required",
        RefusalKind::ChecksumInvalid => "checksum-invalid",
        RefusalKind::VarBound => "var-bound",
        RefusalKind::ClaimMissing => "claim-missing",
    }
}

/// Every refusal kind, for the code table test.
pub const REFUSAL_KINDS: &[RefusalKind] = RefusalKind::ALL;

/// The codes of the upload routes and the lifecycle (`crate::lifecycle::Code`); `describe`
/// below is their one table: status and title, and `complete_outcome` the metric outcome.
pub use crate::lifecycle::Code as ProblemCode;

impl ProblemCode {
    /// The one table: every code's machine code, status, title, the presign and multipart
    /// metric outcome (`postgate_presign_requests_total`, `postgate_multipart_requests_total`)
    /// and the `complete` outcome (`postgate_upload_completes_total`). Written out, never
    /// inferred from a status.
    pub fn row(self) -> Row {
        use CompleteOutcome as D;
        use Outcome as O;
        use ProblemCode as C;
        use StatusCode as S;
        let code = self.name();
        let row = |status, title, outcome, complete| Row {
            code,
            status,
            title,
            outcome,
            complete,
        };
        match self {
            C::TokenInvalid => row(
                S::UNAUTHORIZED,
                "The upload token is not valid",
                O::Unauthenticated,
                D::Rejected,
            ),
            C::TokenExpired => row(
                S::UNAUTHORIZED,
                "The upload token expired",
                O::Unauthenticated,
                D::Rejected,
            ),
            C::TokenAppMismatch => row(
                S::FORBIDDEN,
                "The upload token belongs to another app",
                O::Forbidden,
                D::Rejected,
            ),
            C::TokenUserMismatch => row(
                S::FORBIDDEN,
                "The upload token belongs to another end user",
                O::Forbidden,
                D::Rejected,
            ),
            C::TokensUnconfigured => row(
                S::SERVICE_UNAVAILABLE,
                "Upload tokens are not configured",
                O::Error,
                D::Error,
            ),
            C::UrlInvalid => row(S::FORBIDDEN, "This URL is not valid", O::Forbidden, D::Rejected),
            C::NotMultipart => row(S::UNPROCESSABLE_ENTITY, "Not a multipart upload", O::Refused, D::Error),
            C::PartInvalid => row(
                S::UNPROCESSABLE_ENTITY,
                "No such part in the plan",
                O::Refused,
                D::Error,
            ),
            C::FilenameRequired => row(
                S::UNPROCESSABLE_ENTITY,
                "The request needs the file's name",
                O::Refused,
                D::Error,
            ),
            C::UploadNotFound => row(S::NOT_FOUND, "No such upload", O::UnknownProfile, D::NotFound),
            C::ObjectExists => row(S::CONFLICT, "The key is taken", O::BadRequest, D::Exists),
            C::NotThisUpload => row(
                S::CONFLICT,
                "The object at the key is not this upload's",
                O::BadRequest,
                D::NotThisUpload,
            ),
            C::ObjectSizeMismatch => row(
                S::UNPROCESSABLE_ENTITY,
                "The upload is not what was allowed",
                O::Refused,
                D::Size,
            ),
            C::ObjectTypeMismatch => row(
                S::UNPROCESSABLE_ENTITY,
                "The upload is not what was allowed",
                O::Refused,
                D::ContentType,
            ),
            C::ObjectMetadataMismatch => row(
                S::UNPROCESSABLE_ENTITY,
                "The upload is not what was allowed",
                O::Refused,
                D::Metadata,
            ),
            C::ObjectChecksumMismatch => row(
                S::UNPROCESSABLE_ENTITY,
                "The upload is not what was allowed",
                O::Refused,
                D::Checksum,
            ),
            C::ContentSniffMismatch => row(
                S::UNPROCESSABLE_ENTITY,
                "The upload is not what was allowed",
                O::Refused,
                D::Sniffed,
            ),
            C::PartsMismatch => row(
                S::UNPROCESSABLE_ENTITY,
                "The upload is not what was allowed",
                O::Refused,
                D::Parts,
            ),
            C::CompletionRefused => row(
                S::UNPROCESSABLE_ENTITY,
                "The store refused to complete the upload",
                O::Refused,
                D::Rejected,
            ),
            C::UploadChanged => row(
                S::CONFLICT,
                "The object changed while it was checked",
                O::BadRequest,
                D::Error,
            ),
            C::StoreRefused => row(
                S::BAD_GATEWAY,
                "The store refused the call",
                O::Error,
                D::StoreUnavailable,
            ),
            C::StoreUnavailable => row(
                S::SERVICE_UNAVAILABLE,
                "The store is unavailable",
                O::Error,
                D::StoreUnavailable,
            ),
            C::InvalidQuery => row(S::BAD_REQUEST, "Malformed query string", O::BadRequest, D::Error),
            C::BodyTimeout => row(
                S::REQUEST_TIMEOUT,
                "The body did not arrive in time",
                O::BadRequest,
                D::Error,
            ),
            C::CredentialsUnavailable => row(
                S::SERVICE_UNAVAILABLE,
                "The store's credentials are unavailable",
                O::Error,
                D::StoreUnavailable,
            ),
            C::IdTokenMalformed => row(
                S::UNAUTHORIZED,
                "The end-user token is not a JWT",
                O::Unauthenticated,
                D::Error,
            ),
            C::IdTokenAlgorithm => row(
                S::UNAUTHORIZED,
                "The end-user token's algorithm is not accepted",
                O::Unauthenticated,
                D::Error,
            ),
            C::IdTokenIssuer => row(
                S::UNAUTHORIZED,
                "The end-user token's issuer is not accepted",
                O::Unauthenticated,
                D::Error,
            ),
            C::IdTokenAudience => row(
                S::UNAUTHORIZED,
                "The end-user token's audience is not accepted",
                O::Unauthenticated,
                D::Error,
            ),
            C::IdTokenUnknownKey => row(
                S::UNAUTHORIZED,
                "The end-user token's key is unknown",
                O::Unauthenticated,
                D::Error,
            ),
            C::IdTokenSignature => row(
                S::UNAUTHORIZED,
                "The end-user token's signature is not valid",
                O::Unauthenticated,
                D::Error,
            ),
            C::IdTokenExpired => row(
                S::UNAUTHORIZED,
                "The end-user token expired",
                O::Unauthenticated,
                D::Error,
            ),
            C::IdTokenNotYetValid => row(
                S::UNAUTHORIZED,
                "The end-user token is not valid yet",
                O::Unauthenticated,
                D::Error,
            ),
            C::IdTokenClaimInvalid => row(
                S::UNAUTHORIZED,
                "The end-user token lacks a required claim",
                O::Unauthenticated,
                D::Error,
            ),
            C::IdTokenRequired => row(
                S::UNAUTHORIZED,
                "The app needs an end-user token",
                O::Unauthenticated,
                D::Error,
            ),
            C::AppKeyRequired => row(
                S::UNAUTHORIZED,
                "The app needs its app key",
                O::Unauthenticated,
                D::Error,
            ),
            C::AppKeyNotAccepted => row(
                S::UNAUTHORIZED,
                "The app takes end-user tokens only",
                O::Unauthenticated,
                D::Error,
            ),
            C::JwksUnavailable => row(
                S::SERVICE_UNAVAILABLE,
                "The identity provider's keys are unavailable",
                O::Error,
                D::Error,
            ),
            C::OriginNotAllowed => row(
                S::FORBIDDEN,
                "The app does not accept calls from this origin",
                O::Forbidden,
                D::Error,
            ),
            C::UnknownProfile => row(S::NOT_FOUND, "No such profile", O::UnknownProfile, D::Rejected),
            C::Forbidden => row(S::FORBIDDEN, "Not allowed for this app", O::Forbidden, D::Rejected),
            C::Refused => row(
                S::UNPROCESSABLE_ENTITY,
                "The profile refuses this request",
                O::Refused,
                D::Error,
            ),
            C::EventRefused => row(
                S::UNPROCESSABLE_ENTITY,
                "The app refused the upload",
                O::Refused,
                D::Rejected,
            ),
            C::EventUndelivered => row(
                S::SERVICE_UNAVAILABLE,
                "The app's event endpoint cannot be reached",
                O::Error,
                D::Error,
            ),
            C::EventsUnavailable => row(
                S::SERVICE_UNAVAILABLE,
                "The event queue is unavailable",
                O::Error,
                D::Error,
            ),
            C::AuditUnavailable => row(
                S::SERVICE_UNAVAILABLE,
                "The audit log cannot be written",
                O::Error,
                D::Error,
            ),
            C::Unauthenticated => row(S::UNAUTHORIZED, "Authentication required", O::Unauthenticated, D::Error),
            C::RateLimited => row(S::TOO_MANY_REQUESTS, "Too many requests", O::RateLimited, D::Error),
            C::MalformedJson => row(S::BAD_REQUEST, "The body is not valid JSON", O::BadRequest, D::Error),
            C::InvalidRequest => row(
                S::BAD_REQUEST,
                "The body does not have the expected shape",
                O::BadRequest,
                D::Error,
            ),
            C::InvalidFormat => row(S::BAD_REQUEST, "Unknown format", O::BadRequest, D::Error),
            C::BodyUnreadable => row(S::BAD_REQUEST, "The body could not be read", O::BadRequest, D::Error),
            C::BodyTooLarge => row(S::PAYLOAD_TOO_LARGE, "The body is too large", O::BadRequest, D::Error),
            C::UnsupportedMediaType => row(
                S::UNSUPPORTED_MEDIA_TYPE,
                "The body must be JSON",
                O::BadRequest,
                D::Error,
            ),
            C::MethodNotAllowed => row(S::METHOD_NOT_ALLOWED, "Method not allowed", O::BadRequest, D::Error),
            C::NotFound => row(S::NOT_FOUND, "No such route", O::UnknownProfile, D::Error),
            C::NotReady => row(S::SERVICE_UNAVAILABLE, "Not ready", O::Error, D::Error),
            C::Internal => row(S::INTERNAL_SERVER_ERROR, "Internal error", O::Error, D::Error),
        }
    }

    /// The machine code, the status and the title.
    pub fn describe(self) -> (&'static str, StatusCode, &'static str) {
        let row = self.row();
        (row.code, row.status, row.title)
    }
}

/// One row of the failure table.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub code: &'static str,
    pub status: StatusCode,
    pub title: &'static str,
    pub outcome: Outcome,
    pub complete: CompleteOutcome,
}

/// The table as README.md shows it (between `<!-- upload-codes -->` markers, checked equal by a
/// test): status, code and title of every code, in `ProblemCode::ALL` order.
pub fn code_table_markdown() -> String {
    let mut out = String::from("| status | code | title |\n|---|---|---|\n");
    for code in ProblemCode::ALL {
        let (name, status, title) = code.describe();
        out.push_str(&format!("| {} | `{name}` | {title} |\n", status.as_u16()));
    }
    out
}

/// The outcome `postgate_upload_completes_total` counts for a failed `complete`, by code.
pub fn complete_outcome(code: ProblemCode) -> CompleteOutcome {
    code.row().complete
}

impl From<crate::lifecycle::Failure> for Problem {
    fn from(failure: crate::lifecycle::Failure) -> Problem {
        if failure.code == ProblemCode::Refused {
            return Problem::refused(&failure.profile, failure.refusals);
        }
        let mut problem = Problem::of(failure.code, failure.detail);
        if matches!(
            failure.code,
            ProblemCode::StoreUnavailable
                | ProblemCode::CredentialsUnavailable
                | ProblemCode::EventUndelivered
                | ProblemCode::EventsUnavailable
                | ProblemCode::AuditUnavailable
        ) {
            problem.retry_after = std::num::NonZeroU32::new(5);
        }
        problem
    }
}

/// One field an app should fix.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub code: &'static str,
    pub detail: String,
}

/// An error answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    #[serde(serialize_with = "status_number")]
    #[schema(value_type = u16)]
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(skip)]
    #[schema(ignore)]
    pub outcome: Outcome,
    /// Seconds for the `Retry-After` header (429 only).
    #[serde(skip)]
    #[schema(ignore)]
    pub retry_after: Option<std::num::NonZeroU32>,
}

fn status_number<S: serde::Serializer>(status: &StatusCode, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u16(status.as_u16())
}

impl Problem {
    /// The problem of `code`, its status, title and outcome from the one table.
    pub fn of(code: ProblemCode, detail: impl Into<String>) -> Problem {
        Problem::with_code(code.row(), code.row().code, detail)
    }

    /// A row of the table answered under another machine code (a refusal's, from its kind).
    fn with_code(row: Row, code: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("urn:postgate:problem:{code}"),
            title: row.title,
            status: row.status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            outcome: row.outcome,
            retry_after: None,
        }
    }

    pub fn unauthenticated(detail: &str) -> Problem {
        Problem::of(ProblemCode::Unauthenticated, detail)
    }

    pub fn forbidden(detail: String) -> Problem {
        Problem::of(ProblemCode::Forbidden, detail)
    }

    pub fn unknown_profile(name: &str, available: &[&str]) -> Problem {
        let list = if available.is_empty() {
            "none".to_owned()
        } else {
            available.join(", ")
        };
        Problem::of(
            ProblemCode::UnknownProfile,
            format!(
                "there is no profile `{}`; this app may use: {list}",
                name.escape_debug()
            ),
        )
    }

    pub fn refused(profile: &str, refusals: Vec<Refusal>) -> Problem {
        let code = refusals.first().map_or("request-refused", |r| refusal_code(r.kind));
        // Uppy shows only `detail`: with one reason, it is that reason.
        let detail = match refusals.as_slice() {
            [only] => format!("{}: {}", only.field, only.message),
            _ => format!("profile `{profile}` refuses {} field(s); see `errors`", refusals.len()),
        };
        let mut problem = Problem::with_code(ProblemCode::Refused.row(), code, detail);
        problem.errors = refusals
            .into_iter()
            .map(|r| FieldError {
                code: refusal_code(r.kind),
                field: r.field,
                detail: r.message,
            })
            .collect();
        problem
    }

    pub fn rate_limited(app: &str, over: &OverLimit) -> Problem {
        let retry_after = over.retry_after_secs();
        let mut problem = Problem::of(
            ProblemCode::RateLimited,
            format!(
                "app `{app}` is over its rate limit of {}; retry in {retry_after} s",
                over.limit
            ),
        );
        problem.retry_after = Some(retry_after);
        problem
    }

    /// The store has no credentials to sign with: 503, retry shortly (they refresh in the
    /// background).
    pub fn credentials_unavailable(unavailable: &crate::sign::CredentialsUnavailable) -> Problem {
        tracing::warn!(store = %unavailable.store, reason = %unavailable.reason, "no valid credentials to sign with");
        let mut problem = Problem::of(
            ProblemCode::CredentialsUnavailable,
            format!("{unavailable}; retry shortly"),
        );
        problem.retry_after = std::num::NonZeroU32::new(5);
        problem
    }

    pub fn internal() -> Problem {
        Problem::of(ProblemCode::Internal, "the gateway failed; the error is logged")
    }

    pub fn response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(seconds.get())));
        }
        // A refusal may come before the body was read (a wrong key, a rate limit, a slow body):
        // the connection is closed after it rather than drained, whatever the client still sends.
        response.force_close();
        response.body(serde_json::to_string(self).unwrap_or_default())
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        self.response()
    }
}

/// A query string that does not parse: 400 `invalid-query`, saying what is wrong.
pub fn invalid_query(error: &actix_web::error::QueryPayloadError) -> Problem {
    Problem::of(
        ProblemCode::InvalidQuery,
        format!("the query string does not parse: {error}; send it URL-encoded, each parameter once"),
    )
}
