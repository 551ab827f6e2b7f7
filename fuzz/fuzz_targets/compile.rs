//! Bytes → UTF-8 → `profile::parse`; a profile that compiles is explained and admits two
//! requests. Nothing may panic, and parse must return (the YAML limits bound its work).

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use postgate::explain::{explain, explain_text};
use postgate::profile::{self, Method, Profile, ProfileName, UploadRequest, admit};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let name = ProfileName::new("fuzzed").expect("a valid profile name");
    let profile = match profile::parse(&name, text) {
        Ok(profile) => profile,
        Err(diagnostics) => {
            assert!(diagnostics.iter().any(|d| d.is_error()), "a refusal without an error");
            return;
        }
    };
    let _ = explain(&profile);
    let _ = explain_text(&profile);
    let ctx = common::context();
    for method in Method::ALL {
        let _ = admit(&profile, &UploadRequest::default(), method, &ctx);
        let _ = admit(&profile, &plain_request(&profile), method, &ctx);
    }
});

/// A request that gives every declared var and metadata rule a plain value, so that admission
/// gets past the "missing" refusals and renders the key.
fn plain_request(profile: &Profile) -> UploadRequest {
    UploadRequest {
        vars: profile
            .vars()
            .iter()
            .map(|v| (v.name.clone(), "a1".to_owned()))
            .collect(),
        filename: Some("photo.png".to_owned()),
        content_type: Some("image/png".to_owned()),
        size: Some(1),
        metadata: profile
            .metadata()
            .iter()
            .map(|m| (m.name.clone(), "a1".to_owned()))
            .collect(),
        ..UploadRequest::default()
    }
}
