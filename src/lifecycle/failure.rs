//! Why a step of the lifecycle failed: a `Code` (stable, one per kind) and a detail for the
//! caller. The HTTP edge gives each code its status, title and metric outcome in one exhaustive
//! `match` (`http::problem`), so a code added here is not served until it is in that table.

use crate::profile::Refusal;
use crate::store::StoreError;
use crate::upload::Violation;

crate::listed_enum! {
/// Every way a grant or a later step fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    TokenInvalid,
    TokenExpired,
    TokenAppMismatch,
    /// The token was granted to another end user (`sub`).
    TokenUserMismatch,
    TokensUnconfigured,
    UrlInvalid,
    NotMultipart,
    PartInvalid,
    FilenameRequired,
    UploadNotFound,
    /// An object is at the key, and it is not this upload's (its marker differs or is absent).
    NotThisUpload,
    ObjectExists,
    ObjectSizeMismatch,
    ObjectTypeMismatch,
    ObjectMetadataMismatch,
    ObjectChecksumMismatch,
    ContentSniffMismatch,
    PartsMismatch,
    CompletionRefused,
    UploadChanged,
    StoreRefused,
    StoreUnavailable,
    CredentialsUnavailable,
    InvalidQuery,
    BodyTimeout,
    IdTokenMalformed,
    IdTokenAlgorithm,
    IdTokenIssuer,
    IdTokenAudience,
    IdTokenUnknownKey,
    IdTokenSignature,
    IdTokenExpired,
    IdTokenNotYetValid,
    IdTokenClaimInvalid,
    IdTokenRequired,
    AppKeyRequired,
    AppKeyNotAccepted,
    JwksUnavailable,
    OriginNotAllowed,
    /// The profile is not served (any more).
    UnknownProfile,
    /// The profile does not allow the app (any more).
    Forbidden,
    /// The profile refuses the request (`Failure::refusals` says why, field by field).
    Refused,
    /// The app's event endpoint answered 4xx to `upload.completed`: the upload is removed.
    EventRefused,
    /// The app's event endpoint could not be reached (sync): nothing was promoted.
    EventUndelivered,
    /// The event queue could not store the event: nothing was carried out.
    EventsUnavailable,
    /// `audit.fail_closed` and the audit line could not be written: nothing was granted.
    AuditUnavailable,
    // The HTTP edge's own codes: they never come out of the lifecycle, but live in the one
    // table so every code the gateway answers is listed once.
    Unauthenticated,
    RateLimited,
    MalformedJson,
    InvalidRequest,
    InvalidFormat,
    BodyUnreadable,
    BodyTooLarge,
    UnsupportedMediaType,
    MethodNotAllowed,
    NotFound,
    NotReady,
    Internal,
}
}

impl Code {
    /// The stable machine code (`code` of a problem answer, `refusal.code` of an event).
    pub fn name(self) -> &'static str {
        match self {
            Code::TokenInvalid => "token-invalid",
            Code::TokenExpired => "token-expired",
            Code::TokenAppMismatch => "token-app-mismatch",
            Code::TokenUserMismatch => "token-user-mismatch",
            Code::TokensUnconfigured => "upload-tokens-unconfigured",
            Code::UrlInvalid => "url-invalid",
            Code::NotMultipart => "not-multipart",
            Code::PartInvalid => "part-invalid",
            Code::FilenameRequired => "filename-required",
            Code::UploadNotFound => "upload-not-found",
            Code::ObjectExists => "object-exists",
            Code::NotThisUpload => "not-this-upload",
            Code::ObjectSizeMismatch => "object-size-mismatch",
            Code::ObjectTypeMismatch => "object-type-mismatch",
            Code::ObjectMetadataMismatch => "object-metadata-mismatch",
            Code::ObjectChecksumMismatch => "object-checksum-mismatch",
            Code::ContentSniffMismatch => "content-sniff-mismatch",
            Code::PartsMismatch => "parts-mismatch",
            Code::CompletionRefused => "completion-refused",
            Code::UploadChanged => "upload-changed",
            Code::StoreRefused => "store-refused",
            Code::StoreUnavailable => "store-unavailable",
            Code::InvalidQuery => "invalid-query",
            Code::BodyTimeout => "body-timeout",
            Code::CredentialsUnavailable => "credentials-unavailable",
            Code::IdTokenMalformed => "id-token-malformed",
            Code::IdTokenAlgorithm => "id-token-algorithm",
            Code::IdTokenIssuer => "id-token-issuer",
            Code::IdTokenAudience => "id-token-audience",
            Code::IdTokenUnknownKey => "id-token-unknown-key",
            Code::IdTokenSignature => "id-token-signature",
            Code::IdTokenExpired => "id-token-expired",
            Code::IdTokenNotYetValid => "id-token-not-yet-valid",
            Code::IdTokenClaimInvalid => "id-token-claim-invalid",
            Code::IdTokenRequired => "id-token-required",
            Code::AppKeyRequired => "app-key-required",
            Code::AppKeyNotAccepted => "app-key-not-accepted",
            Code::JwksUnavailable => "jwks-unavailable",
            Code::OriginNotAllowed => "origin-not-allowed",
            Code::UnknownProfile => "unknown-profile",
            Code::Forbidden => "forbidden",
            Code::Refused => "request-refused",
            Code::EventRefused => "event-refused",
            Code::EventUndelivered => "event-undelivered",
            Code::EventsUnavailable => "events-unavailable",
            Code::AuditUnavailable => "audit-unavailable",
            Code::Unauthenticated => "unauthenticated",
            Code::RateLimited => "rate-limited",
            Code::MalformedJson => "malformed-json",
            Code::InvalidRequest => "invalid-request",
            Code::InvalidFormat => "invalid-format",
            Code::BodyUnreadable => "body-unreadable",
            Code::BodyTooLarge => "body-too-large",
            Code::UnsupportedMediaType => "unsupported-media-type",
            Code::MethodNotAllowed => "method-not-allowed",
            Code::NotFound => "not-found",
            Code::NotReady => "not-ready",
            Code::Internal => "internal",
        }
    }
}

/// A failed step: its code, what the caller should know, and (for `Code::Refused`) every
/// refusal of the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: Code,
    pub detail: String,
    /// `Code::Refused`: the profile's refusals, each naming a request field.
    pub refusals: Vec<Refusal>,
    /// `Code::Refused`: the profile that refused.
    pub profile: String,
}

impl Failure {
    pub fn new(code: Code, detail: impl Into<String>) -> Failure {
        Failure {
            code,
            detail: detail.into(),
            refusals: Vec::new(),
            profile: String::new(),
        }
    }

    /// The profile refuses the request.
    pub fn refused(profile: &str, refusals: Vec<Refusal>) -> Failure {
        Failure {
            refusals,
            profile: profile.to_owned(),
            ..Failure::new(Code::Refused, String::new())
        }
    }

    /// A store failure: down → `StoreUnavailable`; an unknown upload → `UploadNotFound`; any
    /// other refusal → `StoreRefused`. The detail is the store error's, which never holds a URL
    /// (`store::describe`).
    pub fn store(error: StoreError) -> Failure {
        match &error {
            StoreError::Unavailable { .. } => {
                tracing::warn!(%error, "store call failed");
                Failure::new(Code::StoreUnavailable, format!("{error}; retry later"))
            }
            StoreError::NoCredentials(unavailable) => Failure::credentials(unavailable),
            StoreError::Refused { code, .. } if code == "NoSuchUpload" => {
                Failure::new(Code::UploadNotFound, format!("{error}: it was completed or aborted"))
            }
            StoreError::Refused { .. } => {
                tracing::warn!(%error, "store refused a call");
                Failure::new(Code::StoreRefused, error.to_string())
            }
        }
    }

    /// The store has no credentials to sign with (they refresh in the background).
    pub fn credentials(unavailable: &crate::sign::CredentialsUnavailable) -> Failure {
        tracing::warn!(store = %unavailable.store, reason = %unavailable.reason, "no valid credentials to sign with");
        Failure::new(Code::CredentialsUnavailable, format!("{unavailable}; retry shortly"))
    }

    /// The object broke a rule; `removed` says what became of it.
    pub fn violation(violation: &Violation, removed: &str) -> Failure {
        let code = match violation {
            Violation::Size { .. } => Code::ObjectSizeMismatch,
            Violation::ContentType { .. } => Code::ObjectTypeMismatch,
            Violation::Metadata { .. } => Code::ObjectMetadataMismatch,
            Violation::Checksum { .. } => Code::ObjectChecksumMismatch,
            Violation::Sniffed { .. } => Code::ContentSniffMismatch,
            Violation::PartCount { .. }
            | Violation::PartMissing { .. }
            | Violation::PartExtra { .. }
            | Violation::PartSize { .. } => Code::PartsMismatch,
        };
        Failure::new(code, format!("{violation}; the upload was {removed}"))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.detail)
    }
}
