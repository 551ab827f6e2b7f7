//! A request against a profile, admitted and signed, then checked against the invariants of
//! ARCHITECTURE.md (the same checks as tests/it/properties.rs, on fuzzed requests).
//!
//! Input: `NAME\nJSON` signs against `NAME`, one of the example and golden profiles loaded once;
//! `YAML\n%%\nJSON` compiles `YAML` first. `JSON` is the presign request body.

#![no_main]

#[path = "common.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use postgate::profile::{self, Profile, ProfileName, UploadRequest, admit};
use postgate::secret::Secret;
use postgate::sign::{Addressing, Credentials, Endpoint, PresignedPost, Store, presign};
use serde_json::Value;

/// The profiles of policies/ and the golden profiles that compile, by file stem.
static PROFILES: LazyLock<BTreeMap<String, Profile>> = LazyLock::new(|| {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut profiles = BTreeMap::new();
    for dir in ["policies", "tests/data/compile"] {
        for entry in std::fs::read_dir(root.join(dir))
            .expect("the repository's profiles")
            .flatten()
        {
            let path = entry.path();
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
            let (Ok(name), Ok(text)) = (ProfileName::new(&stem), std::fs::read_to_string(&path)) else {
                continue;
            };
            if let Ok(profile) = profile::parse(&name, &text) {
                profiles.insert(stem, profile);
            }
        }
    }
    assert!(profiles.len() > 5, "the example profiles did not load");
    profiles
});

static STORE: LazyLock<Store> = LazyLock::new(|| {
    let credentials = Credentials {
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        session_token: Some(Secret::new("session\"token\\")),
        expires_at: None,
    };
    Store::new("default", "eu-west-1", Endpoint::Aws, Addressing::Auto, credentials)
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let compiled;
    let (profile, body) = if let Some((yaml, body)) = text.split_once("\n%%\n") {
        let name = ProfileName::new("fuzzed").expect("a valid profile name");
        let Ok(profile) = profile::parse(&name, yaml) else {
            return;
        };
        compiled = profile;
        (&compiled, body)
    } else {
        let (name, body) = text.split_once('\n').unwrap_or((text, ""));
        let Some(profile) = PROFILES.get(name) else {
            return;
        };
        (profile, body)
    };
    let Ok(request) = serde_json::from_str::<UploadRequest>(body) else {
        return;
    };
    let ctx = common::context();
    let Ok(upload) = admit(profile, &request, &ctx) else {
        return;
    };
    let post = presign(upload, &STORE, common::now());
    check(profile, &post);
});

/// The invariants every signed form keeps, whatever was asked.
fn check(profile: &Profile, post: &PresignedPost) {
    let policy: Value = serde_json::from_str(&post.policy).expect("the policy is JSON");
    let conditions = policy["conditions"].as_array().expect("a condition list");
    let field = |name: &str| {
        post.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    };
    let mut covered = Vec::new();
    let mut range = None;
    for condition in conditions {
        match condition {
            Value::Object(map) => {
                for (name, value) in map {
                    if let Some(sent) = field(name) {
                        assert_eq!(Some(sent), value.as_str(), "{name} differs from its condition");
                    }
                    covered.push(name.to_ascii_lowercase());
                }
            }
            Value::Array(items) if items[0] == "starts-with" => {
                let name = items[1].as_str().expect("a field").trim_start_matches('$');
                let prefix = items[2].as_str().expect("a prefix");
                assert!(!prefix.is_empty(), "an empty starts-with in {}", post.policy);
                if let Some(sent) = field(name) {
                    assert!(sent.starts_with(prefix), "{name} does not start with {prefix:?}");
                }
                covered.push(name.to_ascii_lowercase());
            }
            Value::Array(items) if items[0] == "content-length-range" => {
                range = Some((items[1].as_u64().expect("a min"), items[2].as_u64().expect("a max")));
            }
            other => panic!("unexpected condition {other}"),
        }
    }
    let mut distinct = covered.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        covered.len(),
        "a duplicated condition in {}",
        post.policy
    );
    for (name, _) in &post.fields {
        if name != "policy" && name != "x-amz-signature" {
            assert!(
                covered.contains(&name.to_ascii_lowercase()),
                "{name} is not covered by {}",
                post.policy
            );
        }
    }
    let (min, max) = range.expect("a content-length-range");
    assert!(min <= max && max <= profile.size().max, "range {min}..{max}");
    assert!(post.expires_at <= common::now() + profile.expires_in());

    assert_eq!(field("key"), Some(post.key.as_str()));
    assert!(post.key.starts_with(profile.key().literal_prefix()), "{:?}", post.key);
    assert!(post.key.len() <= 1024, "a key of {} bytes", post.key.len());
    let key = post.key.strip_suffix("${filename}").unwrap_or(&post.key);
    for segment in key.split('/') {
        assert!(segment != "." && segment != "..", "a dot segment in {:?}", post.key);
    }
    assert!(
        !post.key.chars().any(|c| c.is_control()
            || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')),
        "a forbidden character in {:?}",
        post.key
    );

    // The hand-written answer is JSON and says what the form holds.
    let answer: Value = serde_json::from_str(&post.to_json()).expect("the answer is JSON");
    assert_eq!(answer["key"].as_str(), Some(post.key.as_str()));
    let fields = answer["fields"].as_object().expect("fields");
    assert_eq!(fields.len(), post.fields.len(), "a field name repeats");
    for (name, value) in &post.fields {
        assert_eq!(fields[name.as_ref()].as_str(), Some(value.as_ref()));
    }
}
