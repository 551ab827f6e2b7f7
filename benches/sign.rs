//! In-process benchmarks: compiling profiles, rendering a key, and one signature end to end
//! (snapshot lookup → admit → policy JSON → base64 → HMAC → response JSON).
//! Run: `cargo bench --bench sign`. Results: BENCHMARKS.md.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use postgate::metrics::Metrics;
use postgate::profile::{self, Context, Method, ProfileName, UploadRequest, admit};
use postgate::registry::{self, AppsSource, Registry, Source, SourceFile};
use postgate::sign::{FieldStyle, Store, post, put};
use time::OffsetDateTime;
use uuid::Uuid;

#[path = "../tests/it/support/fixture.rs"]
mod fixture;

// The allocator of the `postgate` binary, so the figures are those of the process that serves.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const AVATARS: &str = include_str!("../policies/avatars.yaml");
const PHOTOS: &str = include_str!("../policies/photos.yaml");
const MEDIA: &str = include_str!("../policies/media.yaml");

fn store() -> Store {
    fixture::example_store()
}

fn request() -> UploadRequest {
    fixture::avatar_upload_request()
}

fn put_request() -> UploadRequest {
    serde_json::from_str(
        r#"{"method": "put", "vars": {"user": "alice"}, "filename": "me.png", "content_type": "image/png", "size": 12345,
            "checksum": {"algorithm": "sha256", "value": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="}}"#,
    )
    .unwrap()
}

/// `count` distinct profiles, each a variation of avatars.yaml.
fn generated(count: usize) -> Vec<SourceFile> {
    (0..count)
        .map(|i| SourceFile {
            path: format!("p{i:05}.yaml").into(),
            text: AVATARS.replace("avatars/${user}", &format!("avatars-{i}/${{user}}")),
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let name = ProfileName::new("avatars").unwrap();
    c.bench_function("compile one profile", |b| {
        b.iter(|| profile::parse(&name, black_box(AVATARS)).unwrap())
    });

    let files = generated(1000);
    let stores = Arc::new(
        [("default".to_owned(), Arc::new(store()))]
            .into_iter()
            .collect::<registry::Stores>(),
    );
    c.bench_function("compile 1000 profiles", |b| {
        b.iter(|| registry::build(black_box(&files), &stores).unwrap())
    });

    let compiled = profile::parse(&name, AVATARS).unwrap();
    let values = profile::template::Values {
        vars: &["alice"],
        filename: Some("me.png"),
        uuid: "019a9f3c-0000-7000-8000-000000000001",
        date: "2026-11-21",
        app: "web",
    };
    c.bench_function("render a key", |b| b.iter(|| compiled.key().render(black_box(&values))));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("avatars.yaml"), AVATARS).unwrap();
    std::fs::write(dir.path().join("photos.yaml"), PHOTOS).unwrap();
    std::fs::write(dir.path().join("media.yaml"), MEDIA).unwrap();
    let source = Source {
        policies: dir.path().to_owned(),
        stores: stores.clone(),
        apps: AppsSource::Fixed(Default::default(), Default::default()),
    };
    let registry = Arc::new(Registry::start(source, false, Arc::new(Metrics::new()), None).unwrap());
    let store = store();
    let signer = store.signer(OffsetDateTime::now_utc()).unwrap();
    let request = request();
    let snapshot = registry.current();
    let profile = snapshot.get("avatars").unwrap();
    let now = OffsetDateTime::now_utc();
    let ctx = Context {
        app: "web",
        now,
        uuid: Uuid::now_v7(),
    };
    c.bench_function("parts: admit", |b| {
        b.iter(|| admit(profile, black_box(&request), Method::Post, &ctx).unwrap())
    });
    let filled = admit(profile, &request, Method::Post, &ctx).unwrap();
    c.bench_function("parts: POST renderer", |b| {
        b.iter(|| post::post_form(black_box(filled.clone()), &signer, now, FieldStyle::Botocore))
    });
    let form = post::post_form(filled, &signer, now, FieldStyle::Botocore);
    c.bench_function("parts: response JSON", |b| b.iter(|| black_box(&form).to_json()));
    let photos = snapshot.get("photos").unwrap();
    let put_request = put_request();
    let filled = admit(photos, &put_request, Method::Put, &ctx).unwrap();
    c.bench_function("parts: PUT renderer", |b| {
        b.iter(|| put::put_url(black_box(filled.clone()), &signer, now))
    });
    c.bench_function("parts: uuid v7 + clock", |b| {
        b.iter(|| (Uuid::now_v7(), OffsetDateTime::now_utc()))
    });

    // Snapshot lookup → method → admit → render → response JSON, as the handler does.
    let end_to_end = |name: &str, request: &UploadRequest| {
        let snapshot = registry.current();
        let profile = snapshot.get(name).unwrap();
        let now = OffsetDateTime::now_utc();
        let ctx = Context {
            app: "web",
            now,
            uuid: Uuid::now_v7(),
        };
        let signer = store.signer(now).unwrap();
        let signed = postgate::sign::sign(profile, &signer, black_box(request), &ctx, FieldStyle::Botocore).unwrap();
        signed.to_json()
    };
    c.bench_function("sign one request end to end", |b| {
        b.iter(|| end_to_end("avatars", &request))
    });
    c.bench_function("sign one PUT URL end to end", |b| {
        b.iter(|| end_to_end("photos", &put_request))
    });
    // The PUT the peers sign (bench/peers): `media`, Content-Length, Content-Type and one
    // metadata header.
    let media_put: UploadRequest = serde_json::from_str(
        r#"{"method": "put", "vars": {"user": "alice"}, "filename": "me.png", "content_type": "image/png", "size": 12345}"#,
    )
    .unwrap();
    c.bench_function("sign one PUT URL as the peers do", |b| {
        b.iter(|| end_to_end("media", &media_put))
    });

    // The same invoice on each store kind: SigV4, Google's V4 with an HMAC key and with a
    // service account's RSA key, Azure's SAS.
    let invoices = profile::parse(
        &ProfileName::new("invoices").unwrap(),
        include_str!("../policies/invoices.yaml"),
    )
    .unwrap();
    let invoice: UploadRequest = serde_json::from_str(
        r#"{"method": "put", "vars": {"supplier": "acme"}, "content_type": "application/pdf", "size": 12345}"#,
    )
    .unwrap();
    let account: serde_json::Value = serde_json::from_str(include_str!(
        "../../shared/vectors/gcs/test_service_account.not-a-test.json"
    ))
    .unwrap();
    let rsa = postgate::sign::sigv4::rsa_key_from_pem(account["private_key"].as_str().unwrap()).unwrap();
    let gcs_rsa = Store::awaiting_credentials(
        "gcs",
        "auto",
        postgate::sign::Endpoint::Custom(postgate::sign::GCS_ENDPOINT.into()),
        postgate::sign::Addressing::Path,
    )
    .with_kind(postgate::sign::Kind::Gcs);
    gcs_rsa.set_keys(postgate::sign::Keys::service_account(
        "sa@example.iam.gserviceaccount.com",
        rsa,
    ));
    let gcs_hmac = fixture::example_store().with_kind(postgate::sign::Kind::Gcs);
    let azure = fixture::example_store()
        .with_kind(postgate::sign::Kind::Azure)
        .with_post(false);
    azure.set_credentials(postgate::sign::Credentials {
        access_key_id: "account".into(),
        secret_access_key: postgate::secret::Secret::new("a2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleQ=="),
        session_token: None,
        expires_at: None,
    });
    for (kind, store) in [
        ("s3", &store),
        ("gcs hmac", &gcs_hmac),
        ("gcs rsa", &gcs_rsa),
        ("azure", &azure),
    ] {
        c.bench_function(&format!("sign one invoice PUT URL: {kind}"), |b| {
            b.iter(|| {
                let now = OffsetDateTime::now_utc();
                let ctx = Context {
                    app: "web",
                    now,
                    uuid: Uuid::now_v7(),
                };
                let signer = store.signer(now).unwrap();
                let signed =
                    postgate::sign::sign(&invoices, &signer, black_box(&invoice), &ctx, FieldStyle::Botocore).unwrap();
                signed.to_json()
            })
        });
    }

    // After the signature: an upload token sealed and opened, and 1,000 part URLs of one
    // multipart upload (the profile's expiry, each with its exact Content-Length).
    let keys = postgate::upload::TokenKeys::new(
        "k1",
        vec![(
            "k1".into(),
            postgate::secret::Secret::new("bench-token-key-0123456789abcdef"),
        )],
    )
    .unwrap();
    let media = snapshot.get("media").unwrap();
    let multipart_request = UploadRequest {
        vars: [("user".to_owned(), "alice".to_owned())].into_iter().collect(),
        filename: Some("movie.mp4".into()),
        content_type: Some("video/mp4".into()),
        size: Some(5_000 * 1024 * 1024),
        ..Default::default()
    };
    let filled = postgate::profile::admit_multipart(media, &multipart_request, &ctx).unwrap();
    let plan = postgate::upload::PartPlan::new(filled.max_size, 5 * 1024 * 1024).unwrap();
    let claims = postgate::upload::Claims {
        profile: "media".into(),
        sub: None,
        app: "web".into(),
        store: "default".into(),
        bucket: media.bucket().into(),
        carry: postgate::upload::Carry::Multipart,
        bounds: filled.bounds(),
        upload_id: Some("2~bench-upload-id-0123456789abcdef0123456789".into()),
        parts: Some(plan),
        issued_at: now.unix_timestamp(),
        expires_at: (now + std::time::Duration::from_secs(86_400)).unix_timestamp(),
    };
    c.bench_function("upload token: seal", |b| b.iter(|| keys.seal(black_box(&claims))));
    let token = keys.seal(&claims);
    c.bench_function("upload token: open", |b| {
        b.iter(|| keys.open(black_box(&token), now).unwrap())
    });
    let target = postgate::sign::multipart::PartTarget {
        bucket: media.bucket(),
        key: &filled.key,
        upload_id: claims.upload_id.as_deref().unwrap(),
        expires_in: media.expires_in(),
        not_after: now + std::time::Duration::from_secs(86_400),
    };
    c.bench_function("sign 1000 part URLs", |b| {
        b.iter(|| {
            (1..=1000u32)
                .map(|n| postgate::sign::multipart::part_url(&signer, &target, n, plan.size_of(n).unwrap(), now))
                .collect::<Vec<_>>()
        })
    });
}

/// End users' ID tokens: the full check of an ES256 and an RS256 token (keys made by openssl
/// for the run, the JWKS read from a file) and the same token remembered.
fn tokens(c: &mut Criterion) {
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    postgate::identity::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let issuer = "https://id.bench.example";
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let claims =
        serde_json::json!({"iss": issuer, "aud": "bench-client", "sub": "alice", "iat": now, "exp": now + 7200});
    let mut keys = Vec::new();
    let mut tokens: Vec<(Algorithm, String)> = Vec::new();
    for (kid, alg, args) in [
        (
            "ec-1",
            Algorithm::ES256,
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
        ),
        (
            "rsa-1",
            Algorithm::RS256,
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..],
        ),
    ] {
        let path = dir.path().join(format!("{kid}.pem"));
        let status = std::process::Command::new("openssl")
            .arg("genpkey")
            .args(args)
            .arg("-out")
            .arg(&path)
            .status()
            .expect("openssl makes the benchmark's keys");
        assert!(status.success());
        let pem = std::fs::read(&path).unwrap();
        let private = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
            _ => EncodingKey::from_rsa_pem(&pem),
        }
        .unwrap();
        let mut jwk = Jwk::from_encoding_key(&private, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        keys.push(jwk);
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        tokens.push((alg, jsonwebtoken::encode(&header, &claims, &private).unwrap()));
    }
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::to_string(&JwkSet { keys }).unwrap()).unwrap();
    let config = dir.path().join("postgate.yaml");
    std::fs::write(
        &config,
        format!(
            "apps:\n  users:\n    auth: token\n    end_user_tokens:\n      issuer: \"{issuer}\"\n      audiences: [bench-client]\n      algorithms: [ES256, RS256]\n      jwks_file: {}\n",
            jwks.display()
        ),
    )
    .unwrap();
    let apps = postgate::config::GatewayConfig::load(Some(&config))
        .unwrap()
        .token_apps()
        .unwrap();
    let identities = postgate::identity::Identities::build(&apps, &Default::default());
    let metrics = Arc::new(Metrics::new());
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let now = now as u64;
    let verify = |token: &str| {
        runtime
            .block_on(identities.verify_fully(token, None, now, &metrics))
            .unwrap()
    };
    c.bench_function("end-user token: verify ES256", |b| {
        b.iter(|| verify(black_box(&tokens[0].1)))
    });
    c.bench_function("end-user token: verify RS256", |b| {
        b.iter(|| verify(black_box(&tokens[1].1)))
    });
    c.bench_function("end-user token: remembered", |b| {
        b.iter(|| {
            runtime
                .block_on(identities.verify(black_box(&tokens[0].1), None, now, &metrics))
                .unwrap()
        })
    });
}

criterion_group!(sign, benches, tokens);
criterion_main!(sign);
