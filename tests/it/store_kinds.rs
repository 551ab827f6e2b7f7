//! The same profiles on each store kind: what a kind cannot sign is refused when the profile set
//! is built (naming the profile and the setting), and what it can is rendered in its own words
//! (`x-goog-*` on GCS) with every rule of the plan still carried.

use std::collections::BTreeMap;

use postgate::profile::{self, Context, ProfileName, UploadRequest};
use postgate::secret::Secret;
use postgate::sign::{Addressing, Credentials, Endpoint, FieldStyle, Kind, Signed, Store, sign};
use time::macros::datetime;

use crate::repo_path;

/// A GCS store signing with an HMAC key (a made-up one: these are known answers, not uploads).
pub fn gcs_store() -> Store {
    let credentials = Credentials {
        access_key_id: "GOOG1EEXAMPLEHMACKEYID".into(),
        secret_access_key: Secret::new("bGoa+V7g/yqDXvKRqq+JTFn4uQZbPiQJo4pf9RzJ"),
        session_token: None,
        expires_at: None,
    };
    Store::new(
        "default",
        "auto",
        Endpoint::Custom(postgate::sign::GCS_ENDPOINT.into()),
        Addressing::Auto,
        credentials,
    )
    .with_kind(Kind::Gcs)
}

/// An Azure store with Azurite's well-known account (known answers, not uploads).
pub fn azure_store() -> Store {
    let credentials = Credentials {
        access_key_id: "devstoreaccount1".into(),
        secret_access_key: Secret::new(
            "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
        ),
        session_token: None,
        expires_at: None,
    };
    Store::new(
        "default",
        "",
        Endpoint::Custom("https://devstoreaccount1.blob.core.windows.net".into()),
        Addressing::Path,
        credentials,
    )
    .with_kind(Kind::Azure)
    .with_post(false)
    .with_staging(Some(postgate::sign::azure::DEFAULT_STAGING.into()))
}

fn example(name: &str) -> profile::Profile {
    let text = std::fs::read_to_string(repo_path(&format!("policies/{name}.yaml"))).unwrap();
    profile::parse(&ProfileName::new(name).unwrap(), &text).unwrap()
}

fn example_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_path("policies"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".yaml").map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[test]
fn each_kind_names_what_it_cannot_sign_for_each_example_profile() {
    let stores = [
        ("s3", crate::support::state::aws_store()),
        ("gcs", gcs_store()),
        ("azure", azure_store()),
    ];
    let mut table: BTreeMap<String, BTreeMap<&str, Vec<String>>> = BTreeMap::new();
    for name in example_names() {
        let profile = example(&name);
        for (kind, store) in &stores {
            table
                .entry(name.clone())
                .or_default()
                .insert(kind, store.problems(&profile));
        }
    }
    // S3 serves every example; the others are what the README's store-kind table says.
    assert!(table.values().all(|kinds| kinds["s3"].is_empty()));
    // One example is served by every kind, unchanged (proven by uploads in `azure.rs`).
    assert!(table["invoices"].values().all(Vec::is_empty), "{:?}", table["invoices"]);
    insta::assert_yaml_snapshot!(table);
}

#[test]
fn a_profile_a_gcs_store_cannot_sign_refuses_the_set_naming_why() {
    let dir = crate::support::state::policies_copy();
    let (files, _) = postgate::registry::read_dir(dir.path()).unwrap();
    let stores = std::sync::Arc::new(
        [("default".to_owned(), std::sync::Arc::new(gcs_store()))]
            .into_iter()
            .collect(),
    );
    let errors = postgate::registry::build(&files, &stores).unwrap_err();
    let shown: Vec<String> = errors.iter().filter(|d| d.is_error()).map(|d| d.to_string()).collect();
    assert!(
        shown.iter().any(|e| e.contains("avatars.yaml")
            && e.contains("store `default` (gcs) cannot serve this profile: fields.x-amz-server-side-encryption")),
        "{shown:#?}"
    );
    assert!(
        !shown
            .iter()
            .any(|e| e.contains("invoices.yaml") || e.contains("documents.yaml")),
        "{shown:#?}"
    );
}

fn signed(profile: &profile::Profile, store: &Store, request: &str) -> serde_json::Value {
    let now = datetime!(2026-12-06 08:00:00 UTC);
    let ctx = Context {
        app: "web",
        now,
        uuid: uuid::Uuid::nil(),
    };
    let request: UploadRequest = serde_json::from_str(request).unwrap();
    let signed = sign(
        profile,
        &store.signer(now).unwrap(),
        &request,
        &ctx,
        FieldStyle::Botocore,
    )
    .unwrap();
    if let Signed::Post(post) = &signed {
        // Every field but the policy and the signature is one condition of the policy, and
        // every condition but the bucket's and the length's is a field.
        let policy: serde_json::Value = serde_json::from_str(&post.policy).unwrap();
        let mut conditioned: Vec<String> = policy["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| match c {
                serde_json::Value::Object(map) => map.keys().next().cloned(),
                serde_json::Value::Array(list) => list[1].as_str().map(|f| f.trim_start_matches('$').to_owned()),
                _ => None,
            })
            .filter(|name| name != "bucket" && name != "content-length-range")
            .collect();
        let mut fields: Vec<String> = post
            .fields
            .iter()
            .map(|(n, _)| n.to_string())
            .filter(|n| n != "policy" && n != "x-goog-signature")
            .collect();
        conditioned.sort();
        fields.sort();
        assert_eq!(conditioned, fields, "{}", post.policy);
    }
    let answer: serde_json::Value = serde_json::from_str(&signed.to_json()).unwrap();
    assert!(!signed.to_json().to_ascii_lowercase().contains("x-amz"), "{answer}");
    answer
}

#[test]
fn gcs_forms_and_urls_carry_the_plan_in_gcs_words() {
    let store = gcs_store();
    let invoices = example("invoices");
    let post = signed(
        &invoices,
        &store,
        r#"{"vars": {"supplier": "acme"}, "content_type": "application/pdf", "method": "post"}"#,
    );
    insta::assert_json_snapshot!("gcs_post_invoices", post);
    let documents = example("documents");
    let put = signed(
        &documents,
        &store,
        r#"{"vars": {"user": "alice"}, "filename": "c.pdf", "content_type": "application/pdf", "size": 2048,
            "metadata": {"kind": "contract"}, "method": "put"}"#,
    );
    insta::assert_json_snapshot!("gcs_put_documents", put);
    assert_eq!(put["headers"]["x-goog-acl"], "private");
    // `overwrite: false` is the XML API's generation precondition, signed.
    let kept = profile::parse(
        &ProfileName::new("kept").unwrap(),
        "bucket: kept-bucket\nkey: \"k/${uuid}\"\nsize: { max: 10 }\noverwrite: false\napps: all\n",
    )
    .unwrap();
    let put = signed(&kept, &store, r#"{"size": 5, "method": "put"}"#);
    assert_eq!(put["headers"]["x-goog-if-generation-match"], "0");
    assert!(
        put["url"]
            .as_str()
            .unwrap()
            .contains("%3Bx-goog-if-generation-match%3Bx-goog-meta-postgate-upload&"),
        "{put}"
    );
}

#[test]
fn a_checksum_is_refused_on_gcs_not_left_unsigned() {
    let store = gcs_store();
    let now = datetime!(2026-12-06 08:00:00 UTC);
    let request: UploadRequest = serde_json::from_str(
        r#"{"vars": {"user": "alice"}, "filename": "c.pdf", "content_type": "application/pdf", "size": 2048,
            "metadata": {"kind": "contract"}, "method": "put", "checksum": {"algorithm": "sha256", "value": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="}}"#,
    )
    .unwrap();
    let ctx = Context {
        app: "web",
        now,
        uuid: uuid::Uuid::nil(),
    };
    let refusals = sign(
        &example("documents"),
        &store.signer(now).unwrap(),
        &request,
        &ctx,
        FieldStyle::Botocore,
    )
    .unwrap_err();
    assert_eq!(refusals[0].field, "checksum");
    assert!(refusals[0].message.contains("Google Cloud Storage"), "{:?}", refusals);
}

#[test]
fn gcs_stores_are_configured_with_a_service_account_or_an_hmac_key() {
    let dir = tempfile::tempdir().unwrap();
    let account = crate::shared_vectors().join("gcs/test_service_account.not-a-test.json");
    let write = |yaml: &str| {
        let path = dir.path().join("postgate.yaml");
        std::fs::write(&path, yaml).unwrap();
        postgate::config::GatewayConfig::load(Some(&path)).unwrap()
    };
    let no_env = |_: &str| None;
    // A service account signs with RSA, as its email.
    let config = write(&format!(
        "stores:\n  gcs:\n    kind: gcs\n    addressing: virtual\n    credentials:\n      service_account_file: {}\n",
        account.display()
    ));
    let (store, _) = config.resolve_store("gcs", &no_env).unwrap();
    let now = datetime!(2026-12-06 08:00:00 UTC);
    let url = store
        .signer(now)
        .unwrap()
        .presigned_object_url("PUT", "b-1", "k", &[], &[], now, 60);
    assert!(url.starts_with("https://b-1.storage.googleapis.com/k?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=test-iam-credentials%40dummy-project-id"), "{url}");
    // An HMAC key from the environment, and a bucket at its own hostname.
    let config = write(
        "stores:\n  gcs:\n    kind: gcs\n    bucket_hostnames:\n      b-1: https://uploads.example.com\n    credentials:\n      access_key_id_env: HMAC_ID\n      secret_access_key_env: HMAC_SECRET\n",
    );
    let env = |name: &str| match name {
        "HMAC_ID" => Some("GOOG1ID".to_owned()),
        "HMAC_SECRET" => Some("secret".to_owned()),
        _ => None,
    };
    let (store, _) = config.resolve_store("gcs", &env).unwrap();
    assert_eq!(store.bucket_url("b-1"), "https://uploads.example.com/");
    assert_eq!(store.bucket_url("b-2"), "https://storage.googleapis.com/b-2/");
    let url = store
        .signer(now)
        .unwrap()
        .presigned_object_url("PUT", "b-1", "k", &[], &[], now, 60);
    assert!(
        url.starts_with(
            "https://uploads.example.com/k?X-Goog-Algorithm=GOOG4-HMAC-SHA256&X-Goog-Credential=GOOG1ID%2F"
        ),
        "{url}"
    );
    // Settings that mean nothing for the kind are refused, naming them and no value.
    let bad = [
        ("stores:\n  gcs:\n    kind: gcs\n    region: eu\n", "takes no `region`"),
        (
            "stores:\n  gcs:\n    kind: gcs\n",
            "no credentials: set GOOGLE_HMAC_ACCESS_ID",
        ),
        (
            "stores:\n  s3:\n    bucket_hostnames: { b-1: https://x.example }\n",
            "only `kind: gcs`",
        ),
    ];
    for (yaml, says) in bad {
        let config = write(yaml);
        let name = config.store_names()[0].clone();
        // AWS keys in the environment are never taken for a GCS HMAC key.
        let aws_env = |name: &str| name.starts_with("AWS_").then(|| "AKIAIOSFODNN7EXAMPLE".to_owned());
        let error = config.resolve_store(&name, &aws_env).unwrap_err().to_string();
        assert!(error.contains(says), "{yaml}: {error}");
    }
    let not_a_key = dir.path().join("key.json");
    std::fs::write(
        &not_a_key,
        r#"{"client_email": "a@b", "private_key": "SECRET-MATERIAL"}"#,
    )
    .unwrap();
    let config = write(&format!(
        "stores:\n  gcs:\n    kind: gcs\n    credentials:\n      service_account_file: {}\n",
        not_a_key.display()
    ));
    let error = config.resolve_store("gcs", &no_env).unwrap_err().to_string();
    assert!(
        error.contains("not a PEM") && !error.contains("SECRET-MATERIAL"),
        "{error}"
    );
}

/// GCS takes large files as XML API multipart uploads: each part URL signs its exact length,
/// as on S3, in Google's V4 (the part plan and `complete` are the S3 flow's, in GCS's names).
#[test]
fn gcs_part_urls_sign_their_exact_length() {
    let store = gcs_store();
    let now = datetime!(2026-12-06 08:00:00 UTC);
    let signer = store.signer(now).unwrap();
    let target = postgate::sign::multipart::PartTarget {
        bucket: "user-content",
        key: "media/alice/clip.mp4",
        upload_id: "ABPnzm5",
        expires_in: std::time::Duration::from_secs(3600),
        not_after: now + time::Duration::hours(24),
    };
    let part = postgate::sign::multipart::part_url(&signer, &target, 2, 5 * 1024 * 1024, now);
    let url = &part.url;
    assert!(
        url.starts_with(
            "https://storage.googleapis.com/user-content/media/alice/clip.mp4?X-Goog-Algorithm=GOOG4-HMAC-SHA256&"
        ),
        "{url}"
    );
    assert!(
        url.contains("&X-Goog-SignedHeaders=content-length%3Bhost&partNumber=2&uploadId=ABPnzm5&X-Goog-Signature="),
        "{url}"
    );
}
