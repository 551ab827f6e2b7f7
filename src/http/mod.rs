//! The HTTP edge — the only module that imports actix_web. Authenticates apps, takes one snapshot
//! per request, admits and signs through the pure core, and maps every error to a problem body.

mod handlers;
pub mod openapi;
mod pages;
pub mod problem;
mod uploads;
mod wire;

use std::sync::Arc;

use actix_cors::Cors;
use actix_web::{App, HttpServer, web};

use crate::config::CorsConfig;
use crate::registry::Registry;
use crate::store::StoreClient;
use crate::upload::TokenKeys;
pub use pages::DevPages;

/// What every request handler shares.
pub struct AppState {
    pub registry: Arc<Registry>,
    pub max_body_bytes: usize,
    /// The dev upload pages (`/`, `/form/{profile}`, `/uploaded`); off outside `postgate dev`.
    pub dev_pages: Option<DevPages>,
    pub uploads: Uploads,
    /// Rate limits shared by replicas (Redis); `None`: each process limits on its own.
    pub shared_limits: Option<Arc<crate::shared_limits::SharedLimits>>,
}

impl AppState {
    /// Counts one request of `app` against its rate limit: on the shared backend when there is
    /// one (the snapshot's limiter standing in when it fails), else in this process.
    pub async fn check_rate(
        &self,
        snapshot: &crate::registry::Snapshot,
        app: &str,
    ) -> Result<(), crate::ratelimit::OverLimit> {
        match &self.shared_limits {
            Some(shared) => shared.check(app, &snapshot.limiters).await,
            None => snapshot.limiters.check(app),
        }
    }
}

/// What the upload routes (multipart, complete, Uppy) need beyond the snapshot.
pub struct Uploads {
    /// `None`: `upload_tokens` is not configured; the upload routes answer 503.
    pub tokens: Option<Arc<TokenKeys>>,
    pub client: StoreClient,
    /// The base of URLs that point back at the gateway; default: the request's scheme and host.
    pub public_url: Option<String>,
}

/// The routes, in one table (the hot route first: actix tries them in order). A known path
/// asked with another method answers 405 with `Allow`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/profiles/{name}/presign", "POST").route(web::post().to(handlers::presign)))
        .service(resource("/v1/profiles/{name}/multipart", "POST").route(web::post().to(uploads::create_multipart)))
        .service(resource("/v1/profiles/{name}/uppy", "POST").route(web::post().to(uploads::uppy_sign)))
        .service(resource("/v1/uploads/parts", "POST").route(web::post().to(uploads::sign_parts)))
        .service(resource("/v1/uploads/list", "POST").route(web::post().to(uploads::list_parts)))
        .service(resource("/v1/uploads/abort", "POST").route(web::post().to(uploads::abort)))
        .service(resource("/v1/uploads/complete", "POST").route(web::post().to(uploads::complete)))
        .service(
            resource("/v1/uppy/s3/{operation}", "GET, POST, DELETE")
                .route(web::get().to(uploads::uppy_s3))
                .route(web::post().to(uploads::uppy_s3))
                .route(web::delete().to(uploads::uppy_s3)),
        )
        .service(resource("/v1/profiles", "GET").route(web::get().to(handlers::list_profiles)))
        .service(resource("/v1/profiles/{name}", "GET").route(web::get().to(handlers::get_profile)))
        .service(resource("/metrics", "GET").route(web::get().to(handlers::metrics)))
        .service(resource("/healthz", "GET").route(web::get().to(handlers::healthz)))
        .service(resource("/readyz", "GET").route(web::get().to(handlers::readyz)))
        .service(resource("/openapi.json", "GET").route(web::get().to(handlers::openapi)))
        .service(resource("/", "GET").route(web::get().to(pages::index)))
        .service(resource("/form/{name}", "GET").route(web::get().to(pages::form)))
        .service(resource("/uploaded", "GET").route(web::get().to(pages::uploaded)))
        .default_service(web::to(handlers::not_found));
}

/// A path whose other methods answer 405 with `Allow: <allow>`.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move |req: actix_web::HttpRequest| async move {
        handlers::method_not_allowed(req, allow)
    }))
}

/// The admin routes (a separate listener, off unless configured).
pub fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/-/reload", "POST").route(web::post().to(handlers::admin_reload)))
        .default_service(web::to(handlers::not_found));
}

/// The CORS policy: exact allowed origins (`cors.allowed_origins`, and each app's
/// `cors_origins` in the served snapshot, so they follow reloads), the API's methods and headers.
pub fn cors(config: &CorsConfig, registry: Arc<crate::registry::Registry>) -> Cors {
    let cors = Cors::default()
        .allowed_methods(["GET", "POST", "DELETE"])
        .allowed_headers(["authorization", "content-type", handlers::END_USER_TOKEN_HEADER])
        // Uppy reads a refusal's S3 error code from this header.
        .expose_headers(["x-amz-error-code", "etag"])
        .max_age(config.max_age);
    if config.allowed_origins.iter().any(|o| o == "*") {
        return cors.allow_any_origin();
    }
    let fixed = config.allowed_origins.clone();
    cors.allowed_origin_fn(move |origin, _| {
        let Ok(origin) = origin.to_str() else { return false };
        fixed.iter().any(|o| o == origin) || registry.current().identities.allows_origin(origin)
    })
}

/// Where and how the servers listen.
pub struct Listen<'a> {
    pub api: &'a str,
    /// The admin listener (`POST /-/reload`); off when `None`.
    pub admin: Option<&'a str>,
    /// API worker threads; `None`: one per CPU core.
    pub workers: Option<usize>,
}

/// Runs the API (and the admin listener when configured) until shutdown.
pub async fn serve(state: AppState, cors_config: CorsConfig, listen: Listen<'_>) -> std::io::Result<()> {
    let state = web::Data::new(state);
    let api_state = state.clone();
    let mut api = HttpServer::new(move || {
        App::new()
            .app_data(api_state.clone())
            .wrap(cors(&cors_config, api_state.registry.clone()))
            .configure(routes)
    });
    if let Some(workers) = listen.workers {
        api = api.workers(workers.max(1));
    }
    let api = api.bind(listen.api)?.run();
    match listen.admin {
        Some(admin_listen) => {
            let admin_state = state.clone();
            let admin = HttpServer::new(move || App::new().app_data(admin_state.clone()).configure(admin_routes))
                .workers(1)
                .bind(admin_listen)?
                .run();
            futures_util::future::try_join(api, admin).await.map(|_| ())
        }
        None => api.await,
    }
}
