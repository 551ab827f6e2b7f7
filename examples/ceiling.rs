//! The load benchmark's ceiling: the same actix-web version and worker count as postgate, one
//! route at postgate's presign path answering a static JSON body of the same size. Nothing a
//! signing endpoint can do is faster than this.
//! Run: `cargo run --release --example ceiling -- ADDR BODY_BYTES WORKERS`.

use actix_web::{App, HttpResponse, HttpServer, web};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18081".into());
    let bytes: usize = args.next().and_then(|b| b.parse().ok()).unwrap_or(2048);
    let workers: usize = args.next().and_then(|w| w.parse().ok()).unwrap_or(2);
    let body: &'static str =
        Box::leak(format!("{{\"pad\":\"{}\"}}", "x".repeat(bytes.saturating_sub(10))).into_boxed_str());
    HttpServer::new(move || {
        App::new().route(
            "/v1/profiles/{name}/presign",
            web::post().to(move |_body: web::Bytes| async move {
                HttpResponse::Ok().content_type("application/json").body(body)
            }),
        )
    })
    .workers(workers)
    .bind(addr)?
    .run()
    .await
}
