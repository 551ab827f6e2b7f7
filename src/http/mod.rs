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
pub use pages::{DEV_EVENTS_PATH, DevPages};

/// What every request handler shares.
pub struct AppState {
    pub registry: Arc<Registry>,
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive after the headers.
    pub body_timeout: std::time::Duration,
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

/// What the upload routes need beyond the snapshot (the lifecycle's own).
pub use crate::lifecycle::Uploads;

/// The routes, in one table (the hot route first: actix tries them in order). A known path
/// asked with another method answers 405 with `Allow`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    // Every query extractor answers a malformed query with a problem, not actix's plain text.
    cfg.app_data(web::QueryConfig::default().error_handler(|error, req| {
        let problem = problem::invalid_query(&error);
        tracing::info!(path = req.path(), code = "invalid-query", status = 400, "refused");
        actix_web::error::InternalError::from_response(error, problem.response()).into()
    }));
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
        .service(resource("/openapi.json", "GET").route(web::get().to(openapi::serve)))
        .service(resource("/", "GET").route(web::get().to(pages::index)))
        .service(resource("/form/{name}", "GET").route(web::get().to(pages::form)))
        .service(resource("/uploaded", "GET").route(web::get().to(pages::uploaded)))
        .service(resource("/dev/events", "POST").route(web::post().to(pages::dev_events)))
        .default_service(web::to(handlers::not_found));
}

/// One route of the API listener: its path, its methods (`Allow`), and whether the OpenAPI
/// document describes it (the dev pages and the document itself are not described).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub path: &'static str,
    pub allow: &'static str,
    pub documented: bool,
}

/// Every route `routes` registers: `resource` refuses any other, and the OpenAPI test compares
/// the document with the documented ones.
pub const ROUTES: &[Route] = &[
    Route {
        path: "/v1/profiles/{name}/presign",
        allow: "POST",
        documented: true,
    },
    Route {
        path: "/v1/profiles/{name}/multipart",
        allow: "POST",
        documented: true,
    },
    Route {
        path: "/v1/profiles/{name}/uppy",
        allow: "POST",
        documented: true,
    },
    Route {
        path: "/v1/uploads/parts",
        allow: "POST",
        documented: true,
    },
    Route {
        path: "/v1/uploads/list",
        allow: "POST",
        documented: true,
    },
    Route {
        path: "/v1/uploads/abort",
        allow: "POST",
        documented: true,
    },
    Route {
        path: "/v1/uploads/complete",
        allow: "POST",
        documented: true,
    },
    Route {
        path: "/v1/uppy/s3/{operation}",
        allow: "GET, POST, DELETE",
        documented: true,
    },
    Route {
        path: "/v1/profiles",
        allow: "GET",
        documented: true,
    },
    Route {
        path: "/v1/profiles/{name}",
        allow: "GET",
        documented: true,
    },
    Route {
        path: "/metrics",
        allow: "GET",
        documented: true,
    },
    Route {
        path: "/healthz",
        allow: "GET",
        documented: true,
    },
    Route {
        path: "/readyz",
        allow: "GET",
        documented: true,
    },
    Route {
        path: "/openapi.json",
        allow: "GET",
        documented: false,
    },
    Route {
        path: "/",
        allow: "GET",
        documented: false,
    },
    Route {
        path: "/form/{name}",
        allow: "GET",
        documented: false,
    },
    Route {
        path: "/uploaded",
        allow: "GET",
        documented: false,
    },
    Route {
        path: "/dev/events",
        allow: "POST",
        documented: false,
    },
];

/// A path whose other methods answer 405 with `Allow: <allow>`; it must be in `ROUTES` (the
/// admin listener's `/-/…` routes aside), with the same methods.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    assert!(
        path.starts_with("/-/") || ROUTES.iter().any(|r| r.path == path && r.allow == allow),
        "{path} ({allow}) is not in http::ROUTES"
    );
    web::resource(path).default_service(web::to(move |req: actix_web::HttpRequest| async move {
        handlers::method_not_allowed(req, allow)
    }))
}

/// The admin routes (a separate listener, off unless configured).
pub fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/-/reload", "POST").route(web::post().to(handlers::admin_reload)))
        .service(resource("/-/events/{app}/dead", "GET").route(web::get().to(handlers::admin_dead_letters)))
        .service(resource("/-/events/{app}/replay", "POST").route(web::post().to(handlers::admin_replay)))
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

/// The request body as a handler reads it, through a handle the middleware keeps too.
struct SharedPayload(std::rc::Rc<std::cell::RefCell<actix_web::dev::Payload>>);

impl futures_util::Stream for SharedPayload {
    type Item = Result<actix_web::web::Bytes, actix_web::error::PayloadError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut *self.0.borrow_mut()).poll_next(cx)
    }
}

/// The body of a refused request is kept (unread) with its answer, so the HTTP layer closes the
/// connection after the answer instead of draining whatever the client still sends (actix
/// drains a dropped chunked body with no deadline).
pub fn close_unread_bodies<S>(
    mut req: actix_web::dev::ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<actix_web::dev::ServiceResponse, actix_web::Error>> + use<S>
where
    S: actix_web::dev::Service<
            actix_web::dev::ServiceRequest,
            Response = actix_web::dev::ServiceResponse,
            Error = actix_web::Error,
        >,
{
    use actix_web::HttpMessage;
    let original = std::rc::Rc::new(std::cell::RefCell::new(req.take_payload()));
    let reader: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<actix_web::web::Bytes, actix_web::error::PayloadError>>>,
    > = Box::pin(SharedPayload(original.clone()));
    req.set_payload(actix_web::dev::Payload::from(reader));
    let response = srv.call(req);
    async move {
        let response = response.await?;
        if !(response.status().is_client_error() || response.status().is_server_error()) {
            return Ok(response);
        }
        // Kept by the answer's body: the HTTP layer decides to close when that body ends.
        Ok(response.map_body(|_, body| {
            actix_web::body::BoxBody::new(KeptBody {
                body,
                _request_body: original,
            })
        }))
    }
}

/// A refused request's answer, holding the request's body (unread) until the answer is sent.
struct KeptBody {
    body: actix_web::body::BoxBody,
    _request_body: std::rc::Rc<std::cell::RefCell<actix_web::dev::Payload>>,
}

impl actix_web::body::MessageBody for KeptBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> actix_web::body::BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<actix_web::web::Bytes, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_next(cx)
    }
}

/// Where and how the servers listen.
pub struct Listen<'a> {
    pub api: &'a str,
    /// The admin listener (`POST /-/reload`); off when `None`.
    pub admin: Option<&'a str>,
    /// API worker threads; `None`: one per CPU core.
    pub workers: Option<usize>,
    /// Open connections per worker.
    pub max_connections: usize,
}

/// Runs the API (and the admin listener when configured) until shutdown.
pub async fn serve(state: AppState, cors_config: CorsConfig, listen: Listen<'_>) -> std::io::Result<()> {
    let state = web::Data::new(state);
    let api_state = state.clone();
    let mut api = HttpServer::new(move || {
        App::new()
            .app_data(api_state.clone())
            .wrap_fn(close_unread_bodies)
            .wrap(cors(&cors_config, api_state.registry.clone()))
            .configure(routes)
    });
    if let Some(workers) = listen.workers {
        api = api.workers(workers.max(1));
    }
    // After an answer that leaves the body unread, wait at most 1 s for the client to hang up,
    // then close: a refused client cannot keep its connection by sending slowly.
    api = api
        .max_connections(listen.max_connections.max(1))
        .client_disconnect_timeout(std::time::Duration::from_secs(1));
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
