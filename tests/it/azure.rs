//! Azure Blob Storage (`kind: azure`) against Azurite, Microsoft's emulator, which validates SAS
//! signatures, expiry and permissions (`tests/azurite/`; skipped, saying so, when it is not
//! running, unless `CI_REQUIRE_AZURITE` is set, as in CI).
//!
//! A SAS bounds only the blob, the permission and the time, so every rule beyond those is proven
//! by `complete`: an upload that breaks one is refused there and removed, nothing promoted. What
//! the SAS does bound is proven by uploads Azurite refuses: expired, widened, another blob, and
//! a second write to the same blob.

use std::collections::BTreeMap;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::{App, test as actix_test};
use base64::Engine as _;
use hmac::Mac;
use postgate::http;
use postgate::ratelimit::RateClock;
use postgate::sign::Store;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::support::state::{app_limits, registry_signing};

/// Azurite's well-known account and key (public, emulator only).
const ACCOUNT: &str = "devstoreaccount1";
const ACCOUNT_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Azurite's blob endpoint, or `None` (said) when it is not running and not required.
fn azurite() -> Option<String> {
    match std::env::var("AZURITE_BLOB_ENDPOINT") {
        Ok(endpoint) => Some(endpoint),
        Err(_) if std::env::var_os("CI_REQUIRE_AZURITE").is_some() => {
            panic!("CI_REQUIRE_AZURITE is set but AZURITE_BLOB_ENDPOINT is not: start tests/azurite/start.sh")
        }
        Err(_) => {
            eprintln!("SKIPPED: Azurite is not running (tests/azurite/start.sh sets AZURITE_BLOB_ENDPOINT)");
            None
        }
    }
}

/// The Azure store an operator would configure for Azurite, through the config.
fn azure_store(endpoint: &str) -> Store {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postgate.yaml");
    std::fs::write(
        &path,
        format!("stores:\n  default:\n    kind: azure\n    account: {ACCOUNT}\n    endpoint: {endpoint}\n    credentials:\n      secret_access_key_env: AZURITE_KEY\n"),
    )
    .unwrap();
    let config = postgate::config::GatewayConfig::load(Some(&path)).unwrap();
    let env = |name: &str| (name == "AZURITE_KEY").then(|| ACCOUNT_KEY.to_owned());
    config.resolve_store("default", &env).unwrap().0
}

/// An account SAS (all of the blob service) for the test's own calls: containers, listings,
/// reads and someone else's writes.
fn account_sas() -> String {
    let expiry = postgate::sign::format_rfc3339(OffsetDateTime::now_utc() + time::Duration::hours(1));
    let (permissions, version) = ("rwdlac", "2022-11-02");
    let to_sign = format!("{ACCOUNT}\n{permissions}\nb\nsco\n\n{expiry}\n\nhttps,http\n{version}\n\n");
    let key = base64::engine::general_purpose::STANDARD.decode(ACCOUNT_KEY).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let query: Vec<String> = [
        ("sv", version),
        ("ss", "b"),
        ("srt", "sco"),
        ("sp", permissions),
        ("se", &expiry),
        ("spr", "https,http"),
        ("sig", &sig),
    ]
    .iter()
    .map(|(n, v)| {
        format!(
            "{n}={}",
            url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
        )
    })
    .collect();
    query.join("&")
}

async fn create_container(endpoint: &str, container: &str) {
    let url = format!("{endpoint}/{container}?restype=container&{}", account_sas());
    let status = reqwest::Client::new().put(url).send().await.unwrap().status().as_u16();
    assert!(status == 201 || status == 409, "creating {container}: {status}");
}

/// The blobs under `prefix`, with their sizes.
async fn blobs(endpoint: &str, container: &str, prefix: &str) -> BTreeMap<String, u64> {
    let url = format!(
        "{endpoint}/{container}?restype=container&comp=list&prefix={}&{}",
        url::form_urlencoded::byte_serialize(prefix.as_bytes()).collect::<String>(),
        account_sas()
    );
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    let mut found = BTreeMap::new();
    for blob in text.split("<Blob>").skip(1) {
        let field = |tag: &str| {
            let start = blob.find(&format!("<{tag}>")).unwrap() + tag.len() + 2;
            blob[start..start + blob[start..].find('<').unwrap()].to_owned()
        };
        found.insert(field("Name"), field("Content-Length").parse().unwrap());
    }
    found
}

/// A blob's bytes and its properties' headers, with the account SAS.
async fn read_blob(endpoint: &str, container: &str, blob: &str) -> (u16, Vec<u8>, reqwest::header::HeaderMap) {
    let url = format!("{endpoint}/{container}/{blob}?{}", account_sas());
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.bytes().await.unwrap().to_vec(), headers)
}

async fn call<S, B>(service: &S, path: &str, body: Value) -> (u16, Value)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    crate::uploads::call(service, path, "web", body).await
}

/// PUTs `bytes` to a signed URL with `headers`; the status.
async fn put(url: &str, headers: &Value, bytes: Vec<u8>) -> u16 {
    let mut request = reqwest::Client::new().put(url).body(bytes);
    for (name, value) in headers.as_object().unwrap() {
        request = request.header(name.as_str(), value.as_str().unwrap());
    }
    request.send().await.unwrap().status().as_u16()
}

/// A profile with metadata and a type list, as Azure serves it: staged, checked at `complete`.
/// A case `complete` refuses: its name, the body's length, its type, a changed header.
type Refused = (&'static str, usize, &'static str, Option<(&'static str, &'static str)>);

const STATEMENTS: &str = r#"bucket: azure-statements
key: "statements/${user}/${uuid}.pdf"
vars:
  user: { pattern: "[a-z0-9-]{1,40}" }
expires_in: 10m
size: { min: 1, max: 1KiB }
content_type:
  one_of: [application/pdf, image/png]
metadata:
  uploaded-by: "${user}"
  kind: { one_of: [monthly, annual] }
fields:
  Content-Disposition: attachment
apps: [web]
"#;

/// Large files as blocks: the block sizes the token's plan fixes are checked at `complete`.
const ARCHIVES: &str = r#"bucket: azure-statements
key: "archives/${user}/${uuid}.bin"
vars:
  user: { pattern: "[a-z0-9-]{1,40}" }
expires_in: 10m
size: { min: 1, max: 1GiB }
content_type:
  exact: application/octet-stream
metadata:
  uploaded-by: "${user}"
multipart:
  part_size: 5MiB
  expires_in: 1h
apps: [web]
"#;

#[actix_web::test]
async fn azurite_block_uploads_commit_only_the_planned_blocks() {
    let Some(endpoint) = azurite() else { return };
    create_container(&endpoint, "azure-statements").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("archives.yaml"), ARCHIVES).unwrap();
    let state = crate::support::state::state(registry_signing(
        dir.path(),
        app_limits(),
        RateClock::manual(Default::default()),
        azure_store(&endpoint),
    ));
    let service = actix_test::init_service(App::new().app_data(state.clone()).configure(http::routes)).await;
    let svc = &service;
    let user = format!("u-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    const MIB: usize = 1024 * 1024;
    let file: Vec<u8> = (0..11 * MIB).map(|i| (i % 251) as u8).collect();
    let start = || async {
        let body = json!({"vars": {"user": user}, "size": file.len(), "content_type": "application/octet-stream"});
        let (status, created) = call(svc, "/v1/profiles/archives/multipart", body).await;
        assert_eq!(status, 200, "{created}");
        assert_eq!(created["part_count"], 3);
        let token = created["upload_token"].as_str().unwrap().to_owned();
        let (status, signed) = call(
            svc,
            "/v1/uploads/parts",
            json!({"upload_token": token, "part_numbers": [1, 2, 3]}),
        )
        .await;
        assert_eq!(status, 200, "{signed}");
        let urls: Vec<String> = signed["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["url"].as_str().unwrap().to_owned())
            .collect();
        (token, created["key"].as_str().unwrap().to_owned(), urls)
    };
    let block = |url: &str, bytes: &[u8]| {
        let (url, bytes) = (url.to_owned(), bytes.to_vec());
        async move {
            reqwest::Client::new()
                .put(url)
                .body(bytes)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };

    // A block one byte larger than planned is taken by Azure (a SAS bounds no size) and refused
    // at `complete`: nothing is committed.
    let (token, staged, urls) = start().await;
    assert!(urls[0].contains("comp=block&blockid="), "{}", urls[0]);
    assert_eq!(block(&urls[0], &file[..5 * MIB + 1]).await, 201);
    assert_eq!(block(&urls[1], &file[5 * MIB..10 * MIB]).await, 201);
    assert_eq!(block(&urls[2], &file[10 * MIB..]).await, 201);
    let (status, refused) = call(svc, "/v1/uploads/complete", json!({"upload_token": token})).await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        !blobs(&endpoint, "azure-statements", &staged)
            .await
            .contains_key(&staged)
    );

    // An aborted upload's blocks are gone: `complete` finds none of its parts, as on S3.
    let (token, staged, urls) = start().await;
    assert_eq!(block(&urls[0], &file[..5 * MIB]).await, 201);
    let block_list = |blob: String| {
        let url = format!(
            "{endpoint}/azure-statements/{blob}?comp=blocklist&blocklisttype=uncommitted&{}",
            account_sas()
        );
        async move { reqwest::get(url).await.unwrap().status().as_u16() }
    };
    assert_eq!(
        block_list(staged.clone()).await,
        200,
        "the block is there before the abort"
    );
    let (status, aborted) = call(svc, "/v1/uploads/abort", json!({"upload_token": token})).await;
    assert!(status < 300, "{aborted}");
    assert_eq!(block_list(staged.clone()).await, 404, "the abort dropped the blocks");
    let (status, answer) = call(svc, "/v1/uploads/complete", json!({"upload_token": token})).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (422, Some("parts-mismatch")),
        "{answer}"
    );
    assert!(
        !blobs(&endpoint, "azure-statements", &staged)
            .await
            .contains_key(&staged)
    );

    // The planned blocks are committed with the gateway's type and metadata, then promoted.
    let (token, staged, urls) = start().await;
    assert!(
        staged.starts_with("postgate-staging/"),
        "a block upload is staged too: {staged}"
    );
    for (i, url) in urls.iter().enumerate() {
        let range = i * 5 * MIB..((i + 1) * 5 * MIB).min(file.len());
        assert_eq!(block(url, &file[range]).await, 201);
    }
    let (status, completed) = call(svc, "/v1/uploads/complete", json!({"upload_token": token})).await;
    assert_eq!(status, 200, "{completed}");
    let key = completed["key"].as_str().unwrap();
    let (status, bytes, properties) = read_blob(&endpoint, "azure-statements", key).await;
    assert_eq!(status, 200);
    assert!(bytes == file, "the committed blob is the file");
    assert_eq!(properties["content-type"], "application/octet-stream");
    assert_eq!(properties["x-ms-meta-uploaded_by"], user.as_str());
    assert!(
        !blobs(&endpoint, "azure-statements", &staged)
            .await
            .contains_key(&staged)
    );
}

#[actix_web::test]
async fn azurite_uploads_are_staged_checked_and_promoted_and_the_sas_bounds_the_rest() {
    let Some(endpoint) = azurite() else { return };
    for container in ["azure-statements", "finance-inbox"] {
        create_container(&endpoint, container).await;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("statements.yaml"), STATEMENTS).unwrap();
    // The example profile, unchanged: the same file an S3 and a GCS store serve.
    std::fs::copy(
        crate::repo_path("policies/invoices.yaml"),
        dir.path().join("invoices.yaml"),
    )
    .unwrap();
    let store = azure_store(&endpoint);
    let state = crate::support::state::state(registry_signing(
        dir.path(),
        app_limits(),
        RateClock::manual(Default::default()),
        store,
    ));
    let service = actix_test::init_service(App::new().app_data(state.clone()).configure(http::routes)).await;
    let svc = &service;
    // A user of its own per run: the listings below see only this run's blobs.
    let user = format!("u-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let request = |size: usize, content_type: &str| json!({"vars": {"user": user}, "content_type": content_type, "size": size, "metadata": {"kind": "monthly"}});
    let listed = async || {
        let mut listed = blobs(&endpoint, "azure-statements", "").await;
        listed.retain(|name, _| name.contains(&format!("/{user}/")));
        listed
    };
    let pdf = |len: usize| {
        let mut bytes = b"%PDF-1.7\n".to_vec();
        bytes.resize(len, b'x');
        bytes
    };

    // The profile endpoint says what the kind enforces and names the headers in Azure's words.
    let req = actix_test::TestRequest::get()
        .uri("/v1/profiles/statements")
        .insert_header(("Authorization", format!("Bearer {}", crate::support::state::key("web"))))
        .to_request();
    let detail: Value = actix_test::call_and_read_body_json(svc, req).await;
    assert_eq!(detail["store_kind"], "azure");
    assert!(
        detail["store_note"].as_str().unwrap().contains("checked by `complete`"),
        "{detail}"
    );
    let names: Vec<&str> = detail["put_headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"x-ms-meta-uploaded_by") && names.contains(&"x-ms-meta-postgate_upload"),
        "{names:?}"
    );

    // An Azure store takes no form: the answer is a PUT with the headers to send.
    let (status, signed) = call(svc, "/v1/profiles/statements/presign", request(100, "application/pdf")).await;
    assert_eq!(status, 200, "{signed}");
    assert_eq!(signed["method"], "PUT");
    let headers = &signed["headers"];
    assert_eq!(headers["x-ms-blob-type"], "BlockBlob");
    assert_eq!(headers["x-ms-meta-uploaded_by"], user.as_str());
    assert_eq!(headers["x-ms-blob-content-disposition"], "attachment");
    let url = signed["url"].as_str().unwrap();
    assert!(url.contains("&sp=c&"), "a create-only SAS: {url}");
    let staged = signed["key"].as_str().unwrap().to_owned();
    // Staged under the store's prefix and the upload's own marker.
    let marker = headers["x-ms-meta-postgate_upload"].as_str().unwrap();
    assert!(
        staged.starts_with(&format!("postgate-staging/{marker}/statements/{user}/")),
        "{staged}"
    );
    assert_eq!(put(url, headers, pdf(100)).await, 201);

    // The SAS bounds the blob, the permission and the time; Azurite refuses every change.
    let widened = url.replace("&sp=c&", "&sp=cw&");
    assert_eq!(put(&widened, headers, pdf(100)).await, 403, "a widened SAS");
    let elsewhere = url.replacen("/statements/", "/other/", 1);
    assert_eq!(put(&elsewhere, headers, pdf(100)).await, 403, "the SAS of another blob");
    // Create-only: the same URL cannot replace what it wrote.
    assert!(
        put(url, headers, pdf(50)).await >= 400,
        "a second write with the same SAS"
    );
    assert_eq!(listed().await, BTreeMap::from([(staged.clone(), 100)]));

    // `complete` checks the staged blob and copies it to its key, then removes the staged one.
    let token = signed["upload_token"].as_str().unwrap();
    let (status, completed) = call(svc, "/v1/uploads/complete", json!({"upload_token": token})).await;
    assert_eq!(status, 200, "{completed}");
    let key = completed["key"].as_str().unwrap().to_owned();
    assert_eq!(format!("postgate-staging/{marker}/{key}"), staged);
    assert_eq!(completed["metadata"]["uploaded-by"], user.as_str());
    assert_eq!(listed().await, BTreeMap::from([(key.clone(), 100)]));
    let (status, bytes, properties) = read_blob(&endpoint, "azure-statements", &key).await;
    assert_eq!((status, bytes), (200, pdf(100)));
    assert_eq!(properties["content-type"], "application/pdf");
    assert_eq!(properties["x-ms-meta-kind"], "monthly");

    // What the SAS cannot bound, `complete` refuses and removes: a larger body, another type,
    // changed metadata. Nothing is promoted.
    let cases: [Refused; 5] = [
        ("oversized", 300, "application/pdf", None),
        ("mistyped", 100, "text/html", None),
        (
            "metadata changed",
            100,
            "application/pdf",
            Some(("x-ms-meta-kind", "annual")),
        ),
        ("metadata added", 100, "application/pdf", Some(("x-ms-meta-extra", "1"))),
        (
            "pinned header changed",
            100,
            "application/pdf",
            Some(("x-ms-blob-content-disposition", "inline")),
        ),
    ];
    for (case, len, content_type, changed) in cases {
        let (status, signed) = call(svc, "/v1/profiles/statements/presign", request(100, "application/pdf")).await;
        assert_eq!(status, 200, "{signed}");
        let mut headers = signed["headers"].clone();
        headers["Content-Type"] = json!(content_type);
        if let Some((name, value)) = changed {
            headers[name] = json!(value);
        }
        let staged = signed["key"].as_str().unwrap();
        assert_eq!(
            put(signed["url"].as_str().unwrap(), &headers, pdf(len)).await,
            201,
            "{case}: Azure takes it"
        );
        let token = signed["upload_token"].as_str().unwrap();
        let (status, refused) = call(svc, "/v1/uploads/complete", json!({"upload_token": token})).await;
        assert_eq!(status, 422, "{case}: {refused}");
        let listed = listed().await;
        assert!(
            !listed.contains_key(staged),
            "{case}: the refused upload is still staged: {listed:?}"
        );
        assert_eq!(listed.len(), 1, "{case}: only the first upload is stored: {listed:?}");
    }

    // An expired SAS is refused by Azurite.
    let store = azure_store(&endpoint);
    let now = OffsetDateTime::now_utc();
    let short =
        store
            .signer(now)
            .unwrap()
            .presigned_object_url("PUT", "azure-statements", "late.pdf", &[], &[], now, 1);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let no_headers = json!({"x-ms-blob-type": "BlockBlob"});
    assert_eq!(put(&short, &no_headers, pdf(10)).await, 403, "an expired SAS");
    assert!(
        !blobs(&endpoint, "azure-statements", "late")
            .await
            .contains_key("late.pdf")
    );

    // Someone else's blob at the staging key: the client's create-only SAS cannot replace it,
    // and `complete` leaves it untouched (`not-this-upload`).
    let (_, signed) = call(svc, "/v1/profiles/statements/presign", request(100, "application/pdf")).await;
    let staged = signed["key"].as_str().unwrap();
    let theirs = format!("{endpoint}/azure-statements/{staged}?{}", account_sas());
    assert_eq!(
        put(&theirs, &json!({"x-ms-blob-type": "BlockBlob"}), b"theirs".to_vec()).await,
        201
    );
    assert!(put(signed["url"].as_str().unwrap(), &signed["headers"], pdf(100)).await >= 400);
    let token = signed["upload_token"].as_str().unwrap();
    let (status, answer) = call(svc, "/v1/uploads/complete", json!({"upload_token": token})).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (409, Some("not-this-upload")),
        "{answer}"
    );
    assert_eq!(read_blob(&endpoint, "azure-statements", staged).await.1, b"theirs");

    // The example profile, unchanged, is served by the Azure store too.
    let (status, signed) = call(
        svc,
        "/v1/profiles/invoices/presign",
        json!({"vars": {"supplier": "acme"}, "content_type": "application/pdf", "size": 64}),
    )
    .await;
    assert_eq!(status, 200, "{signed}");
    assert_eq!(
        put(signed["url"].as_str().unwrap(), &signed["headers"], pdf(64)).await,
        201
    );
    let token = signed["upload_token"].as_str().unwrap();
    let (status, completed) = call(svc, "/v1/uploads/complete", json!({"upload_token": token})).await;
    assert_eq!(status, 200, "{completed}");
    let invoice = completed["key"].as_str().unwrap();
    assert_eq!(read_blob(&endpoint, "finance-inbox", invoice).await.1, pdf(64));
}
