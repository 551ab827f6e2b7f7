//! AWS Signature Version 4: the signing key chain, the signature of a POST policy, and presigned
//! URLs (query-string authentication).
//!
//! Spec: <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-authentication-HTTPPOST.html>.
//! For a POST form the string to sign is the base64 policy itself.

use std::borrow::Cow;

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

/// SigV4's URI encoding: every byte but `A-Za-z0-9-_.~` as `%XX` (uppercase), and `/` too unless
/// `keep_slash` (object key paths keep theirs; S3 does not encode the path twice).
pub fn uri_encode(out: &mut String, text: &str, keep_slash: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(byte)),
            b'/' if keep_slash => out.push('/'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 15)]));
            }
        }
    }
}

/// One request to presign with query parameters (a presigned URL).
/// Spec: <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html>
pub struct QueryRequest<'a> {
    /// `PUT`, `GET`, …
    pub method: &'a str,
    /// The `Host` header's value (`bucket.s3.eu-west-1.amazonaws.com`, `127.0.0.1:9000`).
    pub host: &'a str,
    /// The absolute path, already URI-encoded (`/bucket/videos/movie%20file.mp4`).
    pub path: &'a str,
    /// The operation's own parameters (`uploadId`, `partNumber`), raw; they come first in the URL.
    pub params: &'a [(&'a str, &'a str)],
    /// Headers the client must send with exactly these values, besides `Host`.
    pub headers: &'a [(&'a str, &'a str)],
}

/// Who signs and when.
pub struct QuerySigner<'a> {
    pub access_key_id: &'a str,
    pub session_token: Option<&'a str>,
    /// The key of `signing_key` for `amz_date`'s day, region and `s3`.
    pub signing_key: &'a [u8; 32],
    pub region: &'a str,
    /// `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
    /// `X-Amz-Expires`, 1 to 604800.
    pub expires_in: u64,
}

/// The query string of a presigned URL (without `?`): the operation's parameters, then
/// `X-Amz-Algorithm`, `-Credential`, `-Date`, `-Expires`, `-SignedHeaders`, `-Security-Token`,
/// `-Signature`, in botocore's order. The payload is `UNSIGNED-PAYLOAD`.
pub fn presign_query(request: &QueryRequest<'_>, signer: &QuerySigner<'_>) -> String {
    use sha2::Digest as _;

    let date = &signer.amz_date[..8];
    let scope = format!("{date}/{}/s3/aws4_request", signer.region);
    let credential = format!("{}/{scope}", signer.access_key_id);

    // Headers: lowercase names, sorted; values trimmed with inner runs of spaces collapsed.
    let mut headers: Vec<(Cow<str>, Cow<str>)> = Vec::with_capacity(request.headers.len() + 1);
    headers.push(("host".into(), request.host.into()));
    for (name, value) in request.headers {
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(*name)
        };
        headers.push((name, canonical_value(value)));
    }
    headers.sort_unstable();
    let mut signed_headers = String::with_capacity(headers.iter().map(|(n, _)| n.len() + 1).sum());
    for (i, (name, _)) in headers.iter().enumerate() {
        if i > 0 {
            signed_headers.push(';');
        }
        signed_headers.push_str(name);
    }

    let expires = signer.expires_in.to_string();
    let mut params: Vec<(Cow<str>, Cow<str>)> = Vec::with_capacity(request.params.len() + 6);
    for (name, value) in request.params {
        params.push((encoded(name), encoded(value)));
    }
    params.push(("X-Amz-Algorithm".into(), super::ALGORITHM.into()));
    params.push(("X-Amz-Credential".into(), encoded(&credential)));
    params.push(("X-Amz-Date".into(), encoded(signer.amz_date)));
    params.push(("X-Amz-Expires".into(), encoded(&expires)));
    params.push(("X-Amz-SignedHeaders".into(), encoded(&signed_headers)));
    if let Some(token) = signer.session_token {
        params.push(("X-Amz-Security-Token".into(), encoded(token)));
    }
    let mut order: Vec<usize> = (0..params.len()).collect();
    order.sort_unstable_by(|a, b| params[*a].cmp(&params[*b]));

    let mut canonical = String::with_capacity(
        192 + request.path.len()
            + params.iter().map(|(n, v)| n.len() + v.len() + 2).sum::<usize>()
            + headers.iter().map(|(n, v)| n.len() + v.len() + 2).sum::<usize>()
            + signed_headers.len(),
    );
    canonical.push_str(request.method);
    canonical.push('\n');
    canonical.push_str(request.path);
    canonical.push('\n');
    for (i, index) in order.iter().enumerate() {
        if i > 0 {
            canonical.push('&');
        }
        let (name, value) = &params[*index];
        canonical.push_str(name);
        canonical.push('=');
        canonical.push_str(value);
    }
    canonical.push('\n');
    for (name, value) in &headers {
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(value);
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&signed_headers);
    canonical.push_str("\nUNSIGNED-PAYLOAD");

    let mut digest = [0u8; 64];
    hex::encode_to_slice(Sha256::digest(canonical.as_bytes()), &mut digest).expect("64 hex digits");
    let mut string_to_sign = String::with_capacity(32 + signer.amz_date.len() + scope.len() + 64);
    string_to_sign.push_str(super::ALGORITHM);
    string_to_sign.push('\n');
    string_to_sign.push_str(signer.amz_date);
    string_to_sign.push('\n');
    string_to_sign.push_str(&scope);
    string_to_sign.push('\n');
    string_to_sign.push_str(std::str::from_utf8(&digest).expect("hex is ASCII"));
    let signature = signature(signer.signing_key, string_to_sign.as_bytes());

    let mut query = String::with_capacity(canonical.len());
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            query.push('&');
        }
        query.push_str(name);
        query.push('=');
        query.push_str(value);
    }
    query.push_str("&X-Amz-Signature=");
    query.push_str(&signature);
    query
}

/// A header value as SigV4 signs it: ASCII spaces trimmed, inner runs of them collapsed to one
/// (other whitespace is the value's own: admission refuses controls, and PUT values are ASCII).
fn canonical_value(value: &str) -> Cow<'_, str> {
    let trimmed = value.trim_matches(' ');
    if !trimmed.contains("  ") {
        return Cow::Borrowed(trimmed);
    }
    let mut out = String::with_capacity(trimmed.len());
    for (i, word) in trimmed.split(' ').filter(|w| !w.is_empty()).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
    Cow::Owned(out)
}

/// `text` URI-encoded (every byte but `A-Za-z0-9-_.~`); borrowed when nothing needs encoding.
fn encoded(text: &str) -> Cow<'_, str> {
    if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    uri_encode(&mut out, text, false);
    Cow::Owned(out)
}
