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
pub const REFUSAL_KINDS: &[RefusalKind] = &[
    RefusalKind::VarUnknown,
    RefusalKind::VarMissing,
    RefusalKind::VarInvalid,
    RefusalKind::FilenameNotAccepted,
    RefusalKind::FilenameInvalid,
    RefusalKind::ContentTypeNotAllowed,
    RefusalKind::ContentTypeRequired,
    RefusalKind::SizeOutOfRange,
    RefusalKind::MetadataUnknown,
    RefusalKind::MetadataMissing,
    RefusalKind::MetadataInvalid,
    RefusalKind::KeyTooLong,
    RefusalKind::KeyInvalid,
    RefusalKind::MethodUnavailable,
    RefusalKind::SizeRequired,
    RefusalKind::FilenameRequired,
    RefusalKind::ChecksumRequired,
    RefusalKind::ChecksumInvalid,
    RefusalKind::VarBound,
    RefusalKind::ClaimMissing,
];

/// The codes of the upload routes and the lifecycle (`crate::lifecycle::Code`); `describe`
/// below is their one table: status and title, and `complete_outcome` the metric outcome.
pub use crate::lifecycle::Code as ProblemCode;

impl ProblemCode {
    /// The machine code, the status and the title.
    pub fn describe(self) -> (&'static str, StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            ProblemCode::TokenInvalid => ("token-invalid", S::UNAUTHORIZED, "The upload token is not valid"),
            ProblemCode::TokenExpired => ("token-expired", S::UNAUTHORIZED, "The upload token expired"),
            ProblemCode::TokenAppMismatch => (
                "token-app-mismatch",
                S::FORBIDDEN,
                "The upload token belongs to another app",
            ),
            ProblemCode::TokenUserMismatch => (
                "token-user-mismatch",
                S::FORBIDDEN,
                "The upload token belongs to another end user",
            ),
            ProblemCode::TokensUnconfigured => (
                "upload-tokens-unconfigured",
                S::SERVICE_UNAVAILABLE,
                "Upload tokens are not configured",
            ),
            ProblemCode::UrlInvalid => ("url-invalid", S::FORBIDDEN, "This URL is not valid"),
            ProblemCode::NotMultipart => ("not-multipart", S::UNPROCESSABLE_ENTITY, "Not a multipart upload"),
            ProblemCode::PartInvalid => ("part-invalid", S::UNPROCESSABLE_ENTITY, "No such part in the plan"),
            ProblemCode::FilenameRequired => (
                "filename-required",
                S::UNPROCESSABLE_ENTITY,
                "The request needs the file's name",
            ),
            ProblemCode::UploadNotFound => ("upload-not-found", S::NOT_FOUND, "No such upload"),
            ProblemCode::ObjectExists => ("object-exists", S::CONFLICT, "The key is taken"),
            ProblemCode::NotThisUpload => (
                "not-this-upload",
                S::CONFLICT,
                "The object at the key is not this upload's",
            ),
            ProblemCode::ObjectSizeMismatch => (
                "object-size-mismatch",
                S::UNPROCESSABLE_ENTITY,
                "The upload is not what was allowed",
            ),
            ProblemCode::ObjectTypeMismatch => (
                "object-type-mismatch",
                S::UNPROCESSABLE_ENTITY,
                "The upload is not what was allowed",
            ),
            ProblemCode::ObjectMetadataMismatch => (
                "object-metadata-mismatch",
                S::UNPROCESSABLE_ENTITY,
                "The upload is not what was allowed",
            ),
            ProblemCode::ObjectChecksumMismatch => (
                "object-checksum-mismatch",
                S::UNPROCESSABLE_ENTITY,
                "The upload is not what was allowed",
            ),
            ProblemCode::ContentSniffMismatch => (
                "content-sniff-mismatch",
                S::UNPROCESSABLE_ENTITY,
                "The upload is not what was allowed",
            ),
            ProblemCode::PartsMismatch => (
                "parts-mismatch",
                S::UNPROCESSABLE_ENTITY,
                "The upload is not what was allowed",
            ),
            ProblemCode::CompletionRefused => (
                "completion-refused",
                S::UNPROCESSABLE_ENTITY,
                "The store refused to complete the upload",
            ),
            ProblemCode::UploadChanged => ("upload-changed", S::CONFLICT, "The object changed while it was checked"),
            ProblemCode::StoreRefused => ("store-refused", S::BAD_GATEWAY, "The store refused the call"),
            ProblemCode::StoreUnavailable => ("store-unavailable", S::SERVICE_UNAVAILABLE, "The store is unavailable"),
            ProblemCode::InvalidQuery => ("invalid-query", S::BAD_REQUEST, "Malformed query string"),
            ProblemCode::BodyTimeout => ("body-timeout", S::REQUEST_TIMEOUT, "The body did not arrive in time"),
            ProblemCode::CredentialsUnavailable => (
                "credentials-unavailable",
                S::SERVICE_UNAVAILABLE,
                "The store's credentials are unavailable",
            ),
            ProblemCode::IdTokenMalformed => ("id-token-malformed", S::UNAUTHORIZED, "The end-user token is not a JWT"),
            ProblemCode::IdTokenAlgorithm => (
                "id-token-algorithm",
                S::UNAUTHORIZED,
                "The end-user token's algorithm is not accepted",
            ),
            ProblemCode::IdTokenIssuer => (
                "id-token-issuer",
                S::UNAUTHORIZED,
                "The end-user token's issuer is not accepted",
            ),
            ProblemCode::IdTokenAudience => (
                "id-token-audience",
                S::UNAUTHORIZED,
                "The end-user token's audience is not accepted",
            ),
            ProblemCode::IdTokenUnknownKey => (
                "id-token-unknown-key",
                S::UNAUTHORIZED,
                "The end-user token's key is unknown",
            ),
            ProblemCode::IdTokenSignature => (
                "id-token-signature",
                S::UNAUTHORIZED,
                "The end-user token's signature is not valid",
            ),
            ProblemCode::IdTokenExpired => ("id-token-expired", S::UNAUTHORIZED, "The end-user token expired"),
            ProblemCode::IdTokenNotYetValid => (
                "id-token-not-yet-valid",
                S::UNAUTHORIZED,
                "The end-user token is not valid yet",
            ),
            ProblemCode::IdTokenClaimInvalid => (
                "id-token-claim-invalid",
                S::UNAUTHORIZED,
                "The end-user token lacks a required claim",
            ),
            ProblemCode::IdTokenRequired => ("id-token-required", S::UNAUTHORIZED, "The app needs an end-user token"),
            ProblemCode::AppKeyRequired => ("app-key-required", S::UNAUTHORIZED, "The app needs its app key"),
            ProblemCode::AppKeyNotAccepted => (
                "app-key-not-accepted",
                S::UNAUTHORIZED,
                "The app takes end-user tokens only",
            ),
            ProblemCode::JwksUnavailable => (
                "jwks-unavailable",
                S::SERVICE_UNAVAILABLE,
                "The identity provider's keys are unavailable",
            ),
            ProblemCode::OriginNotAllowed => (
                "origin-not-allowed",
                S::FORBIDDEN,
                "The app does not accept calls from this origin",
            ),
            ProblemCode::UnknownProfile => ("unknown-profile", S::NOT_FOUND, "No such profile"),
            ProblemCode::Forbidden => ("forbidden", S::FORBIDDEN, "Not allowed for this app"),
            ProblemCode::Refused => (
                "request-refused",
                S::UNPROCESSABLE_ENTITY,
                "The profile refuses this request",
            ),
        }
    }
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

/// The outcome `postgate_complete_total` counts for a failed `complete`, by code: the metric
/// half of the table above.
pub fn complete_outcome(code: ProblemCode) -> CompleteOutcome {
    use ProblemCode as C;
    match code {
        C::ObjectSizeMismatch => CompleteOutcome::Size,
        C::ObjectTypeMismatch => CompleteOutcome::ContentType,
        C::ObjectMetadataMismatch => CompleteOutcome::Metadata,
        C::ObjectChecksumMismatch => CompleteOutcome::Checksum,
        C::ContentSniffMismatch => CompleteOutcome::Sniffed,
        C::PartsMismatch => CompleteOutcome::Parts,
        C::UploadNotFound => CompleteOutcome::NotFound,
        C::NotThisUpload => CompleteOutcome::NotThisUpload,
        C::ObjectExists => CompleteOutcome::Exists,
        C::CompletionRefused
        | C::TokenInvalid
        | C::TokenExpired
        | C::TokenAppMismatch
        | C::TokenUserMismatch
        | C::UrlInvalid
        | C::Forbidden
        | C::UnknownProfile => CompleteOutcome::Rejected,
        C::StoreUnavailable | C::StoreRefused | C::CredentialsUnavailable => CompleteOutcome::StoreUnavailable,
        C::TokensUnconfigured
        | C::NotMultipart
        | C::PartInvalid
        | C::FilenameRequired
        | C::UploadChanged
        | C::InvalidQuery
        | C::BodyTimeout
        | C::IdTokenMalformed
        | C::IdTokenAlgorithm
        | C::IdTokenIssuer
        | C::IdTokenAudience
        | C::IdTokenUnknownKey
        | C::IdTokenSignature
        | C::IdTokenExpired
        | C::IdTokenNotYetValid
        | C::IdTokenClaimInvalid
        | C::IdTokenRequired
        | C::AppKeyRequired
        | C::AppKeyNotAccepted
        | C::JwksUnavailable
        | C::OriginNotAllowed
        | C::Refused => CompleteOutcome::Error,
    }
}

impl From<crate::lifecycle::Failure> for Problem {
    fn from(failure: crate::lifecycle::Failure) -> Problem {
        if failure.code == ProblemCode::Refused {
            return Problem::refused(&failure.profile, failure.refusals);
        }
        let mut problem = Problem::upload(failure.code, failure.detail);
        if matches!(
            failure.code,
            ProblemCode::StoreUnavailable | ProblemCode::CredentialsUnavailable
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
    pub fn new(status: StatusCode, code: &'static str, title: &'static str, detail: impl Into<String>) -> Problem {
        let outcome = match status.as_u16() {
            401 => Outcome::Unauthenticated,
            403 => Outcome::Forbidden,
            404 => Outcome::UnknownProfile,
            422 => Outcome::Refused,
            429 => Outcome::RateLimited,
            400..=499 => Outcome::BadRequest,
            _ => Outcome::Error,
        };
        Problem {
            kind: format!("urn:postgate:problem:{code}"),
            title,
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            outcome,
            retry_after: None,
        }
    }

    pub fn unauthenticated(detail: &str) -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Authentication required",
            detail,
        )
    }

    pub fn forbidden(detail: String) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed for this app", detail)
    }

    pub fn unknown_profile(name: &str, available: &[&str]) -> Problem {
        let list = if available.is_empty() {
            "none".to_owned()
        } else {
            available.join(", ")
        };
        Problem::new(
            StatusCode::NOT_FOUND,
            "unknown-profile",
            "No such profile",
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
        let mut problem = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            "The profile refuses this request",
            detail,
        );
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
        let mut problem = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            format!(
                "app `{app}` is over its rate limit of {}; retry in {retry_after} s",
                over.limit
            ),
        );
        problem.retry_after = Some(retry_after);
        problem
    }

    /// A problem of the upload routes.
    pub fn upload(code: ProblemCode, detail: impl Into<String>) -> Problem {
        let (code, status, title) = code.describe();
        Problem::new(status, code, title, detail)
    }

    /// The store has no credentials to sign with: 503, retry shortly (they refresh in the
    /// background).
    pub fn credentials_unavailable(unavailable: &crate::sign::CredentialsUnavailable) -> Problem {
        tracing::warn!(store = %unavailable.store, reason = %unavailable.reason, "no valid credentials to sign with");
        let mut problem = Problem::upload(
            ProblemCode::CredentialsUnavailable,
            format!("{unavailable}; retry shortly"),
        );
        problem.retry_after = std::num::NonZeroU32::new(5);
        problem
    }

    pub fn internal() -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the gateway failed; the error is logged",
        )
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
    Problem::upload(
        ProblemCode::InvalidQuery,
        format!("the query string does not parse: {error}; send it URL-encoded, each parameter once"),
    )
}
