//! Google's own V4 conformance vectors (`../shared/vectors/gcs/`, from googleapis/conformance-
//! tests): all 29 signed URLs and all 11 POST policies, made with the dummy service account's RSA
//! key (`GOOG4-RSA-SHA256`), reproduced byte for byte by a `kind: gcs` store. Each vector's
//! host settings (client endpoint, emulator host, universe domain, URL style, bucket-bound
//! hostname) are mapped to the store settings an operator would write; the signing is the
//! gateway's own (`Signer::query_signer` over `sigv4::append_traced`, `gcs::sign_policy`).

use std::collections::BTreeMap;

use postgate::profile::conditions::Condition;
use postgate::secret::Secret;
use postgate::sign::sigv4::{self, QueryRequest, Trace};
use postgate::sign::{Addressing, Credentials, Endpoint, Keys, Kind, Store, amz_date_now, gcs};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The one vector whose canonical request does not hash to its own string to sign; its URL,
/// string to sign and signature are reproduced like every other's.
const SELF_CONTRADICTORY: &str = "Universe domain with virtual hosted style";

fn vectors() -> Value {
    let path = crate::shared_vectors().join("gcs/v4_signatures.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The dummy service account the vectors were signed with.
fn service_account() -> Keys {
    let path = crate::shared_vectors().join("gcs/test_service_account.not-a-test.json");
    let account: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let key = sigv4::rsa_key_from_pem(account["private_key"].as_str().unwrap()).unwrap();
    Keys::service_account(account["client_email"].as_str().unwrap(), key)
}

/// The store an operator would configure for a vector's host settings: `hostname` over
/// `clientEndpoint` over `emulatorHostname` over `universeDomain`, each with the vector's scheme.
fn store(input: &Value) -> Store {
    let text = |name: &str| input[name].as_str();
    let scheme = text("scheme").unwrap_or("https");
    let with_scheme = |host: &str| match host.contains("://") {
        true => host.to_owned(),
        false => format!("{scheme}://{host}"),
    };
    let endpoint = text("hostname")
        .or(text("clientEndpoint"))
        .or(text("emulatorHostname"))
        .map(with_scheme)
        .or_else(|| text("universeDomain").map(|domain| format!("https://storage.{domain}")))
        .map_or(Endpoint::Aws, Endpoint::Custom);
    let addressing = match text("urlStyle") {
        Some("VIRTUAL_HOSTED_STYLE") => Addressing::Virtual,
        _ => Addressing::Path,
    };
    let mut origins = BTreeMap::new();
    if text("urlStyle") == Some("BUCKET_BOUND_HOSTNAME") {
        let bucket = text("bucket").unwrap().to_owned();
        origins.insert(bucket, with_scheme(text("bucketBoundHostname").unwrap()));
    }
    let store = Store::awaiting_credentials("gcs", "auto", endpoint, addressing)
        .with_kind(Kind::Gcs)
        .with_bucket_origins(origins);
    store.set_keys(service_account());
    store
}

fn timestamp(input: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(input["timestamp"].as_str().unwrap(), &Rfc3339).unwrap()
}

fn pairs(value: &Value) -> Vec<(String, String)> {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(n, v)| (n.clone(), v.as_str().unwrap().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_signed_url_vector_is_reproduced_byte_for_byte() {
    let vectors = vectors();
    let cases = vectors["signingV4Tests"].as_array().unwrap();
    assert_eq!(cases.len(), 29, "the suite has 29 signed-URL cases");
    let mut failures = Vec::new();
    for case in cases {
        let name = case["description"].as_str().unwrap();
        let store = store(case);
        let now = timestamp(case);
        let signer = store.signer(now).unwrap();
        let object = case["object"].as_str().unwrap_or_default();
        let (origin, host, mut path) = store.object_location(case["bucket"].as_str().unwrap(), object);
        if object.is_empty() {
            // A bucket's own URL (List Objects) has no trailing slash.
            path.pop();
        }
        let headers = pairs(&case["headers"]);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let params = pairs(&case["queryParameters"]);
        let params: Vec<(&str, &str)> = params.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        // A signed payload is named by its header; else the payload is unsigned.
        let payload_hash = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("x-goog-content-sha256"))
            .map_or(sigv4::UNSIGNED_PAYLOAD, |(_, v)| v);
        let (date, day_key) = amz_date_now(&signer, now);
        let mut url = format!("{origin}{path}?");
        let mut trace = Trace::default();
        sigv4::append_traced(
            &mut url,
            &QueryRequest {
                method: case["method"].as_str().unwrap(),
                host: &host,
                path: &path,
                params: &params,
                headers: &headers,
                payload_hash,
            },
            &signer.query_signer(&date, &day_key, case["expiration"].as_u64().unwrap()),
            Some(&mut trace),
        );
        let mut compared = vec![(
            "canonical request",
            &trace.canonical_request,
            &case["expectedCanonicalRequest"],
        )];
        if name == SELF_CONTRADICTORY {
            // Its canonical request keeps the bucket in the path while its URL, string to sign
            // and signature moved it into the host: that field alone disagrees with the rest.
            let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                case["expectedCanonicalRequest"].as_str().unwrap().as_bytes(),
            ));
            assert!(
                !case["expectedStringToSign"].as_str().unwrap().ends_with(&hash),
                "{name}"
            );
            compared.clear();
        }
        for (what, ours, expected) in compared.into_iter().chain([
            ("string to sign", &trace.string_to_sign, &case["expectedStringToSign"]),
            ("URL", &url, &case["expectedUrl"]),
        ]) {
            if Some(ours.as_str()) != expected.as_str() {
                failures.push(format!("{name}: {what}\n  ours:     {ours:?}\n  expected: {expected}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_post_policy_vector_is_reproduced_byte_for_byte() {
    let vectors = vectors();
    let cases = vectors["postPolicyV4Tests"].as_array().unwrap();
    assert_eq!(cases.len(), 11, "the suite has 11 POST policy cases");
    let mut failures = Vec::new();
    for case in cases {
        let name = case["description"].as_str().unwrap();
        let input = &case["policyInput"];
        let expected = &case["policyOutput"];
        let store = store(input);
        let now = timestamp(input);
        let signer = store.signer(now).unwrap();
        let (bucket, object) = (input["bucket"].as_str().unwrap(), input["object"].as_str().unwrap());
        // The vector's conditions, then each field's, then the bucket and the key.
        let mut conditions = Vec::new();
        if let Some([field, prefix]) = input["conditions"]["startsWith"].as_array().map(Vec::as_slice) {
            let field = field.as_str().unwrap().trim_start_matches('$');
            conditions.push(Condition::StartsWith {
                field: field.to_owned().into(),
                prefix: prefix.as_str().unwrap().to_owned().into(),
            });
        }
        if let Some([min, max]) = input["conditions"]["contentLengthRange"].as_array().map(Vec::as_slice) {
            conditions.push(Condition::ContentLengthRange {
                min: min.as_u64().unwrap(),
                max: max.as_u64().unwrap(),
            });
        }
        let fields = pairs(&input["fields"]);
        conditions.extend(fields.iter().map(|(n, v)| Condition::eq(n.as_str(), v.as_str())));
        conditions.push(Condition::eq("bucket", bucket));
        conditions.push(Condition::eq("key", object));
        let (date, day_key) = amz_date_now(&signer, now);
        let expiration = now + time::Duration::seconds(input["expiration"].as_i64().unwrap());
        let signed = gcs::sign_policy(
            &conditions,
            expiration,
            &gcs::PolicySigner {
                access_id: &signer.credentials().access_key_id,
                key: signer.key(&day_key),
                amz_date: &date,
            },
        );
        let mut ours: BTreeMap<String, String> = fields.into_iter().collect();
        ours.insert("key".into(), object.into());
        ours.extend(signed.fields.into_iter().map(|(n, v)| (n.to_owned(), v)));
        let theirs: BTreeMap<String, String> = pairs(&expected["fields"]).into_iter().collect();
        let url = store.bucket_url(bucket);
        if ours != theirs || url != expected["url"].as_str().unwrap() {
            failures.push(format!(
                "{name}:\n  ours:     {url} {ours:?}\n  expected: {} {theirs:?}\n  policy: {}",
                expected["url"], signed.document
            ));
        }
        // The decoded policy is what the vector shows (non-ASCII shown unescaped there).
        let decoded: Value = serde_json::from_str(&signed.document).unwrap();
        let shown: Value =
            serde_json::from_str(case["policyOutput"]["expectedDecodedPolicy"].as_str().unwrap()).unwrap();
        assert_eq!(decoded, shown, "{name}: decoded policy");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// HMAC keys sign the same requests with `GOOG4-HMAC-SHA256`: the key chain starts from
/// `"GOOG4" + secret` and ends in `goog4_request` (no published vector; pinned against an
/// independent computation of the chain and the string to sign).
#[test]
fn hmac_keys_sign_with_the_goog4_chain() {
    let credentials = Credentials {
        access_key_id: "GOOG1EXAMPLE".into(),
        secret_access_key: Secret::new("secret"),
        session_token: None,
        expires_at: None,
    };
    let store = Store::new("gcs", "auto", Endpoint::Aws, Addressing::Path, credentials).with_kind(Kind::Gcs);
    let now = OffsetDateTime::parse("2019-02-01T09:00:00Z", &Rfc3339).unwrap();
    let signer = store.signer(now).unwrap();
    let url = signer.presigned_object_url("PUT", "test-bucket", "test-object", &[], &[], now, 10);
    let (prefix, signature) = url.split_once("&X-Goog-Signature=").unwrap();
    assert_eq!(
        prefix,
        "https://storage.googleapis.com/test-bucket/test-object?X-Goog-Algorithm=GOOG4-HMAC-SHA256&X-Goog-Credential=GOOG1EXAMPLE%2F20190201%2Fauto%2Fstorage%2Fgoog4_request&X-Goog-Date=20190201T090000Z&X-Goog-Expires=10&X-Goog-SignedHeaders=host"
    );
    // The chain by hand: HMAC("GOOG4secret", date) → "auto" → "storage" → "goog4_request".
    let hmac = |key: &[u8], data: &str| {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        mac.update(data.as_bytes());
        mac.finalize().into_bytes().to_vec()
    };
    let mut key = b"GOOG4secret".to_vec();
    for part in ["20190201", "auto", "storage", "goog4_request"] {
        key = hmac(&key, part);
    }
    let canonical = format!(
        "PUT\n/test-bucket/test-object\n{}\nhost:storage.googleapis.com\n\nhost\nUNSIGNED-PAYLOAD",
        prefix.split_once('?').unwrap().1
    );
    let to_sign = format!(
        "GOOG4-HMAC-SHA256\n20190201T090000Z\n20190201/auto/storage/goog4_request\n{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(canonical.as_bytes()))
    );
    assert_eq!(signature, hex::encode(hmac(&key, &to_sign)));
}
