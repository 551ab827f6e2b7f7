//! AWS Signature Version 4 for POST policies: the signing key chain and the signature.
//!
//! Spec: <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-authentication-HTTPPOST.html>.
//! For a POST form the string to sign is the base64 policy itself.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this never fails.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The four keys of the derivation chain, in order: date, region, service, signing.
pub fn signing_key_chain(secret: &str, date: &str, region: &str, service: &str) -> [[u8; 32]; 4] {
    let mut first = Vec::with_capacity(4 + secret.len());
    first.extend_from_slice(b"AWS4");
    first.extend_from_slice(secret.as_bytes());
    let k_date = hmac(&first, date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    [k_date, k_region, k_service, k_signing]
}

/// `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    signing_key_chain(secret, date, region, service)[3]
}

/// The lowercase hex signature of `string_to_sign`.
pub fn signature(signing_key: &[u8; 32], string_to_sign: &[u8]) -> String {
    hex::encode(hmac(signing_key, string_to_sign))
}
