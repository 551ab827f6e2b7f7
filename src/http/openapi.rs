//! The OpenAPI 3.1 description of the HTTP API, generated from the handlers' annotations and the
//! wire types (`utoipa`). Served at `/openapi.json`; `schema/openapi.json` is a checked-in copy
//! that a test keeps fresh.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::problem::{FieldError, Problem};
use super::wire::{ConditionWire, ContentTypeWire, MetadataWire, ProfileDetail, ProfileSummary, VarWire};
use crate::profile::UploadRequest;

/// `POST /v1/profiles/{name}/presign`'s answer: the form, and what a client shows and needs.
/// (Documentation only: the gateway writes this JSON by hand on the hot path.)
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PresignResponse {
    /// `POST`: post `fields` and then the file (a form) to `url`; `PUT`: send the file as the
    /// body to `url` with `headers`.
    #[schema(value_type = String, pattern = "^(POST|PUT)$")]
    method: String,
    /// Where to send the upload.
    url: String,
    /// POST only: the form fields, in the order to send them; the file goes last.
    fields: Option<indexmap::IndexMap<String, String>>,
    /// PUT only: the headers to send with exactly these values (`Content-Length`, signed too,
    /// is the body's length, which HTTP clients set themselves).
    headers: Option<indexmap::IndexMap<String, String>>,
    /// The object key (a POST form's ends in a literal `${filename}` when the request named no
    /// file and the profile leaves it to the store).
    key: String,
    /// When the form stops being accepted (RFC 3339, whole seconds, UTC).
    #[schema(format = DateTime)]
    expires_at: String,
    /// The largest upload the signature admits, in bytes (a PUT's exact size).
    max_size: u64,
    /// The profile that signed it.
    profile: String,
    /// The generation of the profile set that signed it.
    generation: u64,
    /// Present (true) when the form's expiry was cut short to the credentials' expiry.
    expiry_clamped: Option<bool>,
}

/// `GET /v1/profiles`'s answer.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ProfileList<'a> {
    generation: u64,
    profiles: Vec<ProfileSummary<'a>>,
}

/// `GET /healthz` and `GET /readyz`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Health {
    /// `ok` or `ready`.
    status: String,
    /// `readyz` only: the served generation.
    generation: Option<u64>,
    /// `readyz` only: how many profiles are loaded.
    profiles: Option<u64>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "postgate",
        description = "Signs S3 uploads for named upload profiles: presigned POST forms, presigned PUT URLs and multipart uploads; verifies and completes them.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        super::handlers::presign,
        super::handlers::list_profiles,
        super::handlers::get_profile,
        super::handlers::metrics,
        super::handlers::healthz,
        super::handlers::readyz,
        super::uploads::create_multipart,
        super::uploads::sign_parts,
        super::uploads::list_parts,
        super::uploads::abort,
        super::uploads::complete,
        super::uploads::uppy_sign,
        super::uploads::uppy_s3,
    ),
    components(schemas(
        UploadRequest, PresignResponse, ProfileList, ProfileSummary, ProfileDetail, ContentTypeWire,
        VarWire, MetadataWire, ConditionWire, Problem, FieldError, Health,
        crate::lifecycle::MultipartStarted, super::uploads::TokenRequest, super::uploads::SignedParts,
        crate::lifecycle::SignedPart, super::uploads::ListedParts, super::uploads::ListedPartWire,
        crate::lifecycle::Completed, crate::lifecycle::Sniff, super::uploads::UppySignRequest, super::uploads::UppyRequest,
    )),
    modifiers(&BearerAuth),
    security(("app_key" = [])),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "app_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The app's key (`Authorization: Bearer <app key>`)"))
                    .build(),
            ),
        );
    }
}

/// The API description as pretty JSON (what `/openapi.json` serves).
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut json = doc.to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}
