//! Version 4 signing as AWS S3 and Google Cloud Storage speak it: the signing key chain, the
//! signature of a POST policy, and presigned URLs (query-string authentication). Google's V4
//! (`GOOG4-HMAC-SHA256`, `GOOG4-RSA-SHA256`) is SigV4 with `X-Goog-` names, `goog4_request`
//! scopes and, for service accounts, an RSA signature over the same string to sign; the `Key`
//! a URL is signed with picks the dialect.
//!
//! Spec: <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-authentication-HTTPPOST.html>,
//! <https://cloud.google.com/storage/docs/authentication/signatures>.
//! For a POST form the string to sign is the base64 policy itself.

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this never fails.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The four keys of the derivation chain, in order: date, region, service, signing.
pub fn signing_key_chain(secret: &str, date: &str, region: &str, service: &str) -> [[u8; 32]; 4] {
    dialect_key_chain(&AWS4, secret, date, region, service)
}

/// The key chain of a dialect: `AWS4`/`aws4_request` or `GOOG4`/`goog4_request`.
fn dialect_key_chain(dialect: &Dialect, secret: &str, date: &str, region: &str, service: &str) -> [[u8; 32]; 4] {
    let mut first = Vec::with_capacity(5 + secret.len());
    first.extend_from_slice(dialect.key_prefix.as_bytes());
    first.extend_from_slice(secret.as_bytes());
    let k_date = hmac(&first, date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, dialect.terminator.as_bytes());
    [k_date, k_region, k_service, k_signing]
}

/// `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    signing_key_chain(secret, date, region, service)[3]
}

/// Google's HMAC key of a day: the chain from `"GOOG4" + secret` through `auto`, `storage` and
/// `goog4_request`.
pub fn goog4_signing_key(secret: &str, date: &str) -> [u8; 32] {
    dialect_key_chain(&GOOG4, secret, date, GOOG4_REGION, GOOG4_SERVICE)[3]
}

/// The names that differ between AWS's and Google's V4.
#[derive(Debug)]
pub struct Dialect {
    /// `X-Amz-` or `X-Goog-`, before each query parameter's name.
    pub param_prefix: &'static str,
    /// Before the secret in the key chain: `AWS4` or `GOOG4`.
    key_prefix: &'static str,
    /// The scope's last part: `aws4_request` or `goog4_request`.
    pub terminator: &'static str,
    /// Whether a URL's query is written in canonical order (Google's) or operation first.
    sorted_url: bool,
}

pub const AWS4: Dialect = Dialect {
    param_prefix: "X-Amz-",
    key_prefix: "AWS4",
    terminator: "aws4_request",
    sorted_url: false,
};

pub const GOOG4: Dialect = Dialect {
    param_prefix: "X-Goog-",
    key_prefix: "GOOG4",
    terminator: "goog4_request",
    sorted_url: true,
};

/// Google's scope region and service: every GCS signature is scoped `DATE/auto/storage`.
pub const GOOG4_REGION: &str = "auto";
pub const GOOG4_SERVICE: &str = "storage";

/// What signs: a day's HMAC key (AWS's, or Google's for HMAC keys), or a service account's RSA
/// key (`GOOG4-RSA-SHA256`: PKCS #1 v1.5 over SHA-256, with `ring`, constant time).
#[derive(Clone, Copy)]
pub enum Key<'a> {
    Aws4(&'a [u8; 32]),
    Goog4Hmac(&'a [u8; 32]),
    Goog4Rsa(&'a ring::signature::RsaKeyPair),
}

impl Key<'_> {
    /// `AWS4-HMAC-SHA256`, `GOOG4-HMAC-SHA256` or `GOOG4-RSA-SHA256`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Key::Aws4(_) => "AWS4-HMAC-SHA256",
            Key::Goog4Hmac(_) => "GOOG4-HMAC-SHA256",
            Key::Goog4Rsa(_) => "GOOG4-RSA-SHA256",
        }
    }

    pub fn dialect(&self) -> &'static Dialect {
        match self {
            Key::Aws4(_) => &AWS4,
            Key::Goog4Hmac(_) | Key::Goog4Rsa(_) => &GOOG4,
        }
    }

    /// The lowercase hex signature of `string_to_sign`, appended to `out`.
    pub fn push_signature(&self, out: &mut String, string_to_sign: &[u8]) {
        match self {
            Key::Aws4(key) | Key::Goog4Hmac(key) => push_hex(out, &hmac(*key, string_to_sign)),
            Key::Goog4Rsa(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                // Fails only when the buffer is not the modulus' length or the RNG fails, and
                // the key pair was parsed and checked when it was read.
                pair.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    string_to_sign,
                    &mut signature,
                )
                .expect("an RSA key pair signs into a buffer of its modulus' length");
                push_hex(out, &signature);
            }
        }
    }

    /// `push_signature` into a new string.
    pub fn signature(&self, string_to_sign: &[u8]) -> String {
        let mut out = String::with_capacity(512);
        self.push_signature(&mut out, string_to_sign);
        out
    }
}

impl std::fmt::Debug for Key<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A day's key is as good as the secret for a day: only the algorithm is shown.
        f.write_str(self.algorithm())
    }
}

/// A service account's RSA key from its PEM (`-----BEGIN PRIVATE KEY-----`, PKCS #8), as Google's
/// key files hold it. The error says what is wrong, never a byte of the key.
pub fn rsa_key_from_pem(pem: &str) -> Result<ring::signature::RsaKeyPair, String> {
    let body = pem
        .trim()
        .strip_prefix("-----BEGIN PRIVATE KEY-----")
        .and_then(|rest| rest.strip_suffix("-----END PRIVATE KEY-----"))
        .ok_or("the private key is not a PEM `BEGIN PRIVATE KEY` block (PKCS #8)")?;
    let base64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, base64)
        .map_err(|_| "the private key's PEM body is not base64")?;
    ring::signature::RsaKeyPair::from_pkcs8(&der)
        .map_err(|e| format!("the private key is not an RSA key ring accepts: {e}"))
}

/// The lowercase hex signature of `string_to_sign`.
pub fn signature(signing_key: &[u8; 32], string_to_sign: &[u8]) -> String {
    let mut out = String::with_capacity(64);
    push_hex(&mut out, &hmac(signing_key, string_to_sign));
    out
}

/// Appends `bytes` as lowercase hex (a table lookup per nibble, no per-char `String` growth).
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buffer = [0u8; 64];
    for chunk in bytes.chunks(32) {
        for (i, byte) in chunk.iter().enumerate() {
            buffer[2 * i] = HEX[usize::from(byte >> 4)];
            buffer[2 * i + 1] = HEX[usize::from(byte & 15)];
        }
        out.push_str(std::str::from_utf8(&buffer[..2 * chunk.len()]).expect("hex is ASCII"));
    }
}

/// SigV4's URI encoding: every byte but `A-Za-z0-9-_.~` as `%XX` (uppercase), and `/` too unless
/// `keep_slash` (object key paths keep theirs; S3 does not encode the path twice).
pub fn uri_encode(out: &mut String, text: &str, keep_slash: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let kept = |byte: u8| UNRESERVED[usize::from(byte)] || (keep_slash && byte == b'/');
    // Runs of kept bytes are copied in one go; only the others are escaped one by one.
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        if kept(byte) {
            continue;
        }
        // Bytes before `i` since the last escape are ASCII, so both ends are char boundaries
        // (a multibyte character is escaped byte by byte, leaving empty runs between).
        if start < i {
            out.push_str(&text[start..i]);
        }
        let escape = [b'%', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 15)]];
        out.push_str(std::str::from_utf8(&escape).expect("an escape is ASCII"));
        start = i + 1;
    }
    out.push_str(&text[start..]);
}

/// The bytes SigV4 leaves unencoded: `A-Za-z0-9-_.~`.
const UNRESERVED: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' || b == b'~';
        byte += 1;
    }
    table
};

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
    /// Headers the client must send with exactly these values, besides `Host`. A name given
    /// twice is signed once, its values joined by `,` in the order given.
    pub headers: &'a [(&'a str, &'a str)],
    /// The payload's hash as signed: `UNSIGNED_PAYLOAD` for S3's presigned URLs.
    pub payload_hash: &'a str,
}

/// The payload hash of a presigned S3 URL: the body is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// What a presigned URL's signature was computed over, for tests against published suites.
#[derive(Debug, Default)]
pub struct Trace {
    pub canonical_request: String,
    pub string_to_sign: String,
}

/// Who signs and when.
pub struct QuerySigner<'a> {
    /// The access key id, HMAC key id, or service account's email.
    pub access_key_id: &'a str,
    pub session_token: Option<&'a str>,
    /// The key for `amz_date`'s day, region and service (`signing_key`, `goog4_signing_key`), or
    /// an RSA key; it picks the dialect.
    pub key: Key<'a>,
    pub region: &'a str,
    /// `s3` for the gateway on S3, `storage` on GCS.
    pub service: &'a str,
    /// `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
    /// `X-Amz-Expires` (`X-Goog-Expires`), 1 to 604800.
    pub expires_in: u64,
}

/// The query string of a presigned URL (without `?`): the operation's parameters, then
/// `X-Amz-Algorithm`, `-Credential`, `-Date`, `-Expires`, `-SignedHeaders`, `-Security-Token`,
/// `-Signature`, in botocore's order.
pub fn presign_query(request: &QueryRequest<'_>, signer: &QuerySigner<'_>) -> String {
    let mut query = String::new();
    append_presigned_query(&mut query, request, signer);
    query
}

/// `presign_query`, appended to `out` (a URL up to its `?`), so the URL is built in one buffer.
pub fn append_presigned_query(out: &mut String, request: &QueryRequest<'_>, signer: &QuerySigner<'_>) {
    append_traced(out, request, signer, None);
}

/// `append_presigned_query`, also writing the canonical request and the string to sign to
/// `trace` (the signing path passes `None` and hashes the canonical request without writing it).
pub fn append_traced(
    out: &mut String,
    request: &QueryRequest<'_>,
    signer: &QuerySigner<'_>,
    trace: Option<&mut Trace>,
) {
    let dialect = signer.key.dialect();
    let credential = credential_param(signer);

    // Headers: lowercase names (all written into one buffer), sorted; values trimmed with inner
    // runs of spaces collapsed.
    let lowercase = lowercase_names(request.headers);
    let headers = canonical_headers(request, &lowercase);
    // `SignedHeaders` as the query carries it (`;` encoded; the names need nothing else); the
    // canonical request spells the same list with `;`.
    let mut signed_headers = String::with_capacity(headers.iter().map(|(n, _)| n.len() + 3).sum());
    for (i, (name, _)) in headers.iter().enumerate() {
        if i > 0 {
            signed_headers.push_str("%3B");
        }
        uri_encode(&mut signed_headers, name, false);
    }

    let mut digits = [0u8; 20];
    let expires = decimal(signer.expires_in, &mut digits);
    let mut params: Vec<(Cow<str>, Cow<str>)> = Vec::with_capacity(request.params.len() + 6);
    for (name, value) in request.params {
        params.push((encoded(name), encoded(value)));
    }
    let name = |suffix: &str| Cow::Owned(format!("{}{suffix}", dialect.param_prefix));
    params.push((name("Algorithm"), signer.key.algorithm().into()));
    params.push((name("Credential"), Cow::Borrowed(&credential)));
    params.push((name("Date"), encoded(signer.amz_date)));
    params.push((name("Expires"), Cow::Borrowed(expires)));
    params.push((name("SignedHeaders"), Cow::Borrowed(&signed_headers)));
    if let Some(token) = signer.session_token {
        params.push((name("Security-Token"), encoded(token)));
    }
    let mut order: Vec<usize> = (0..params.len()).collect();
    order.sort_unstable_by(|a, b| params[*a].cmp(&params[*b]));

    let ordered = order.iter().map(|i| &params[*i]);
    let mut hasher = Sha256::new();
    let canonical = match trace {
        None => {
            write_canonical_request(&mut hasher, request, ordered, &headers);
            hasher.finalize().into()
        }
        Some(trace) => {
            let mut text = Vec::new();
            write_canonical_request(&mut text, request, ordered, &headers);
            trace.canonical_request = String::from_utf8(text).expect("the canonical request is text");
            hasher.update(trace.canonical_request.as_bytes());
            let hash: [u8; 32] = hasher.finalize().into();
            trace.string_to_sign = string_to_sign(signer, &hash);
            hash
        }
    };
    let string_to_sign = string_to_sign(signer, &canonical);

    out.reserve(512);
    // botocore writes the operation's parameters first; Google's libraries write the canonical
    // order (the signature is the same).
    let url_order: Box<dyn Iterator<Item = &(Cow<str>, Cow<str>)>> = match dialect.sorted_url {
        true => Box::new(order.iter().map(|i| &params[*i])),
        false => Box::new(params.iter()),
    };
    for (i, (name, value)) in url_order.enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out.push('&');
    out.push_str(dialect.param_prefix);
    out.push_str("Signature=");
    signer.key.push_signature(out, string_to_sign.as_bytes());
}

/// `<key id>/<date>/<region>/<service>/<terminator>`, encoded as a query value, in one buffer.
fn credential_param(signer: &QuerySigner<'_>) -> String {
    let mut credential = String::with_capacity(signer.access_key_id.len() + signer.region.len() + 48);
    uri_encode(&mut credential, signer.access_key_id, false);
    credential.push_str("%2F");
    credential.push_str(&signer.amz_date[..8]);
    credential.push_str("%2F");
    uri_encode(&mut credential, signer.region, false);
    credential.push_str("%2F");
    credential.push_str(signer.service);
    credential.push_str("%2F");
    credential.push_str(signer.key.dialect().terminator);
    credential
}

/// Header names lowercased, all in one buffer (in the request's order).
fn lowercase_names(headers: &[(&str, &str)]) -> String {
    let mut lowercase = String::with_capacity(headers.iter().map(|(n, _)| n.len()).sum());
    for (name, _) in headers {
        let start = lowercase.len();
        lowercase.push_str(name);
        lowercase[start..].make_ascii_lowercase();
    }
    lowercase
}

/// `host` and the request's headers, named from `lowercase`, with canonical values, sorted.
fn canonical_headers<'a>(request: &QueryRequest<'a>, lowercase: &'a str) -> Vec<(&'a str, Cow<'a, str>)> {
    let mut headers: Vec<(&str, Cow<str>)> = Vec::with_capacity(request.headers.len() + 1);
    headers.push(("host", request.host.into()));
    let mut start = 0;
    for (name, value) in request.headers {
        headers.push((&lowercase[start..start + name.len()], canonical_value(value)));
        start += name.len();
    }
    // Stable: a name given twice keeps its values in order, joined by `,`.
    headers.sort_by(|a, b| a.0.cmp(b.0));
    headers.dedup_by(|later, first| {
        if later.0 != first.0 {
            return false;
        }
        let joined = format!("{},{}", first.1, later.1);
        first.1 = Cow::Owned(joined);
        true
    });
    headers
}

/// Where the canonical request is written: a hasher on the signing path, a buffer in a trace.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// The canonical request: method, path, sorted query, canonical headers, signed header names,
/// payload hash, one per line.
fn write_canonical_request<'a>(
    sink: &mut impl Sink,
    request: &QueryRequest<'_>,
    params: impl Iterator<Item = &'a (Cow<'a, str>, Cow<'a, str>)>,
    headers: &[(&str, Cow<str>)],
) {
    for part in [request.method.as_bytes(), b"\n", request.path.as_bytes(), b"\n"] {
        sink.put(part);
    }
    for (i, (name, value)) in params.enumerate() {
        if i > 0 {
            sink.put(b"&");
        }
        sink.put(name.as_bytes());
        sink.put(b"=");
        sink.put(value.as_bytes());
    }
    sink.put(b"\n");
    for (name, value) in headers {
        for part in [name.as_bytes(), b":", value.as_bytes(), b"\n"] {
            sink.put(part);
        }
    }
    sink.put(b"\n");
    for (i, (name, _)) in headers.iter().enumerate() {
        if i > 0 {
            sink.put(b";");
        }
        sink.put(name.as_bytes());
    }
    sink.put(b"\n");
    sink.put(request.payload_hash.as_bytes());
}

/// `AWS4-HMAC-SHA256 \n <amz date> \n <scope> \n <hex of the canonical request's hash>`.
fn string_to_sign(signer: &QuerySigner<'_>, canonical: &[u8; 32]) -> String {
    let mut out = String::with_capacity(160 + signer.region.len());
    out.push_str(signer.key.algorithm());
    out.push('\n');
    out.push_str(signer.amz_date);
    out.push('\n');
    out.push_str(&signer.amz_date[..8]);
    out.push('/');
    out.push_str(signer.region);
    out.push('/');
    out.push_str(signer.service);
    out.push('/');
    out.push_str(signer.key.dialect().terminator);
    out.push('\n');
    push_hex(&mut out, canonical);
    out
}

/// `value` in decimal, written into `digits`.
fn decimal(mut value: u64, digits: &mut [u8; 20]) -> &str {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    std::str::from_utf8(&digits[start..]).expect("digits are ASCII")
}

/// A header value as V4 signs it: spaces and tabs trimmed, inner runs of them collapsed to one
/// space (admission refuses controls, so only Google's vectors send tabs).
fn canonical_value(value: &str) -> Cow<'_, str> {
    let blank = |c: char| c == ' ' || c == '\t';
    let trimmed = value.trim_matches(blank);
    let collapsible = |pair: &[u8]| matches!(pair, [b' ' | b'\t', b' ' | b'\t']);
    if !trimmed.contains('\t') && !trimmed.as_bytes().windows(2).any(collapsible) {
        return Cow::Borrowed(trimmed);
    }
    let mut out = String::with_capacity(trimmed.len());
    for (i, word) in trimmed.split(blank).filter(|w| !w.is_empty()).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
    Cow::Owned(out)
}

/// `text` URI-encoded (every byte but `A-Za-z0-9-_.~`); borrowed when nothing needs encoding.
fn encoded(text: &str) -> Cow<'_, str> {
    if text.bytes().all(|b| UNRESERVED[usize::from(b)]) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    uri_encode(&mut out, text, false);
    Cow::Owned(out)
}
