//! The OpenAPI 3.1 description of the HTTP API, generated from the handlers' annotations and the
//! wire types (`utoipa`). Served at `/openapi.json`; `schema/openapi.json` is a checked-in copy
//! that a test keeps fresh.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::problem::{FieldError, Problem};
use super::wire::{
    ConditionWire, ContentTypeWire, Health, MetadataWire, PresignResponse, ProfileDetail, ProfileList, ProfileSummary,
    VarWire,
};
use crate::profile::UploadRequest;

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

/// `GET /openapi.json`: the API description.
pub async fn serve() -> actix_web::HttpResponse {
    static DOCUMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(document);
    actix_web::HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT.as_str())
}
