//! A request against a profile, signed by whichever method it asks for (both field styles), then
//! checked by the one coverage checker of the tests (tests/it/coverage.rs, included by path).
//!
//! Input: `NAME\nJSON` signs against `NAME`, one of the example and golden profiles loaded once;
//! `YAML\n%%\nJSON` compiles `YAML` first. `JSON` is the presign request body.

#![no_main]

#[path = "common.rs"]
mod common;
#[path = "../../tests/it/coverage.rs"]
mod coverage;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use postgate::profile::{self, Profile, ProfileName, UploadRequest};
use postgate::secret::Secret;
use postgate::sign::{Addressing, Credentials, Endpoint, FieldStyle, Store, sign};

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
    for style in [FieldStyle::Botocore, FieldStyle::JsSdk] {
        let Ok(signed) = sign(profile, &STORE.signer(ctx.now).unwrap(), &request, &ctx, style) else {
            return;
        };
        if let Err(problem) = coverage::check(profile, &signed, common::now()) {
            panic!("{problem}");
        }
    }
});
