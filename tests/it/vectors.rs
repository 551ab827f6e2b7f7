//! Published SigV4 known-answer vectors (copied from the shared set into tests/data/vectors).

use postgate::profile::conditions::Condition;
use postgate::sign::{policy_document, sigv4};
use time::macros::datetime;

use crate::repo_path;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(repo_path("tests/data/vectors").join(name)).unwrap()
}

fn sign(policy: &[u8], secret: &str, date: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(policy);
    sigv4::signature(&sigv4::signing_key(secret, date, "us-east-1", "s3"), b64.as_bytes())
}

#[test]
fn s3_docs_browser_upload_example() {
    let policy = vector("aws-sigv4-post-example.policy.json");
    assert_eq!(policy.len(), 648);
    let key = sigv4::signing_key(SECRET, "20151229", "us-east-1", "s3");
    assert_eq!(
        hex::encode(key),
        "cbcef1ebeaefc82cce6530b9f0a9ae598846065f5c5bae0674bd5ebc4ba52d28"
    );
    assert_eq!(
        sign(&policy, SECRET, "20151229"),
        "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e"
    );
    // Control: the same text with LF line endings signs differently.
    let lf: Vec<u8> = policy.iter().copied().filter(|b| *b != b'\r').collect();
    assert_eq!(
        sign(&lf, SECRET, "20151229"),
        "86aaafeda50e7b032f0fe24086079df198e4c3d0d308518251cf6653a9bf390d"
    );
}

#[test]
fn botocore_generate_presigned_post_document_and_signature() {
    let expected = vector("botocore-generate-presigned-post.policy.json");
    let conditions = [
        Condition::eq("bucket", "sigv4examplebucket"),
        Condition::eq("key", "user/user1/photo.jpg"),
        Condition::eq("x-amz-algorithm", "AWS4-HMAC-SHA256"),
        Condition::eq(
            "x-amz-credential",
            "AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request",
        ),
        Condition::eq("x-amz-date", "20151229T000000Z"),
    ];
    let document = policy_document(datetime!(2015-12-29 01:00:00 UTC), &conditions);
    assert_eq!(document.as_bytes(), expected.as_slice(), "{document}");
    assert_eq!(
        sign(document.as_bytes(), SECRET, "20151229"),
        "3364624b39010d9b06f5d9b8c9a18a6e478d261c048159c92f2fd6fa885f14e6"
    );
}

#[test]
fn iam_signing_key_derivation() {
    let chain = sigv4::signing_key_chain(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "20120215",
        "us-east-1",
        "iam",
    );
    let hex: Vec<String> = chain.iter().map(hex::encode).collect();
    assert_eq!(
        hex,
        [
            "969fbb94feb542b71ede6f87fe4d5fa29c789342b0f407474670f0c2489e0a0d",
            "69daa0209cd9c5ff5c8ced464a696fd4252e981430b10e3d3fd8e2f197d7a70c",
            "f72cfd46f26bc4643f06a11eabb6c0ba18780c19a8da0c31ace671265e3c87fa",
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d",
        ]
    );
}

/// The copies in tests/data/vectors match the shared originals when those are beside the repo.
#[test]
fn vector_copies_match_shared_originals() {
    let shared = repo_path("../shared/vectors");
    if !shared.is_dir() {
        return;
    }
    for name in [
        "aws-sigv4-post-example.policy.json",
        "botocore-generate-presigned-post.policy.json",
    ] {
        assert_eq!(std::fs::read(shared.join(name)).unwrap(), vector(name), "{name}");
    }
}
