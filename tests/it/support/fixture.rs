//! The example store and request that tests, benches and examples sign with: AWS's documented
//! example key pair (never a real credential) for `eu-west-1`, and one `avatars` request.
//! Benches and examples include this file by path (`#[path]`), so the fixture is written once.

#![allow(dead_code)] // each includer uses what it needs

use postgate::profile::UploadRequest;
use postgate::secret::Secret;
use postgate::sign::{Addressing, Credentials, Endpoint, Store};

/// AWS's documented example access key id.
pub const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
/// AWS's documented example secret access key.
pub const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// The `default` store on AWS, `eu-west-1`, signing with the example keys.
pub fn example_store() -> Store {
    let credentials = Credentials {
        access_key_id: ACCESS_KEY_ID.into(),
        secret_access_key: Secret::new(SECRET_ACCESS_KEY),
        session_token: None,
        expires_at: None,
    };
    Store::new("default", "eu-west-1", Endpoint::Aws, Addressing::Auto, credentials)
}

/// An `avatars` request naming everything (`postgate::profile`'s example profile).
pub const AVATAR_REQUEST: &str = r#"{"vars": {"user": "alice"}, "filename": "me.png", "content_type": "image/png", "size": 12345, "metadata": {"purpose": "avatar"}}"#;

/// `AVATAR_REQUEST`, parsed.
pub fn avatar_upload_request() -> UploadRequest {
    serde_json::from_str(AVATAR_REQUEST).expect("the example request parses")
}
