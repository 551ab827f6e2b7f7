//! AWS's own SigV4 test suite (`../shared/vectors/aws-sigv4-suite/`, from aws-c-auth): every
//! case S3 semantics allow is presigned by `sigv4::append_traced` and must reproduce the
//! canonical request, the string to sign and the signature byte for byte, and the signed URL's
//! parameters. `S3_EXCLUDES` lists the cases S3 semantics rule out, each with why.

use std::collections::BTreeSet;
use std::path::Path;

use postgate::sign::sigv4::{self, QueryRequest, QuerySigner, Trace};
use sha2::{Digest, Sha256};

/// Cases S3 semantics exclude, with why.
const S3_EXCLUDES: &[(&str, &str)] = &[
    ("get-relative-normalized", NORMALIZED),
    ("get-relative-relative-normalized", NORMALIZED),
    ("get-slash-dot-slash-normalized", NORMALIZED),
    ("get-slash-normalized", NORMALIZED),
    ("get-slash-pointless-dot-normalized", NORMALIZED),
    ("get-slashes-normalized", NORMALIZED),
    (
        "post-sts-header-after",
        "the session token is added after signing (`omit_session_token`); S3 needs it signed",
    ),
];

/// The expected path is normalized (`/./` dropped, `..` resolved, `//` merged), while S3 signs
/// a key's path as written (`a/../b` is a key).
const NORMALIZED: &str = "S3 never normalizes a key's path";

/// One request of the suite: method, path and query as written, headers in order (folded
/// lines unfolded), and the body.
struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: String,
}

fn parse_request(text: &str) -> Request {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let start: Vec<&str> = lines.next().unwrap().split(' ').collect();
    // The target may hold spaces (`/example space/`): everything between method and version.
    let target = start[1..start.len() - 1].join(" ");
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect();
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            // An obsolete line folding: the value goes on after one space.
            let last = headers.last_mut().unwrap();
            last.1.push(' ');
            last.1.push_str(line.trim());
        } else {
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.to_owned(), value.to_owned()));
        }
    }
    Request {
        method: start[0].to_owned(),
        path: path.to_owned(),
        query,
        headers,
        body: body.to_owned(),
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
}

/// A signed request line's query parameters, decoded, as a set: the suite's SDK orders the `X-Amz-*`
/// parameters differently from botocore (whose order the gateway keeps); both are valid.
fn signed_params(signed_request: &str) -> BTreeSet<String> {
    let line = signed_request.lines().next().unwrap();
    let target = line.split_once(' ').unwrap().1.rsplit_once(' ').unwrap().0;
    let query = target.split_once('?').map_or("", |(_, q)| q);
    decoded(query)
}

/// Query parameters decoded: the suite writes the request's own parameters as the client sent
/// them (raw UTF-8), a URL carries them encoded.
fn decoded(query: &str) -> BTreeSet<String> {
    query.split('&').map(decode).collect()
}

#[test]
fn aws_sigv4_suite_presigns_every_s3_case() {
    let suite = crate::shared_vectors().join("aws-sigv4-suite");
    let mut cases: Vec<_> = std::fs::read_dir(&suite)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 38, "the suite has 38 cases");
    let mut signed = 0;
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if S3_EXCLUDES.iter().any(|(excluded, _)| *excluded == name) {
            continue;
        }
        let context: serde_json::Value = serde_json::from_str(&read(dir, "context.json")).unwrap();
        let request = parse_request(&read(dir, "request.txt"));
        let host = request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.clone())
            .unwrap();
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("host"))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let params: Vec<(&str, &str)> = request.query.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let mut path = String::new();
        sigv4::uri_encode(&mut path, &request.path, true);
        let body = if context["sign_body"].as_bool().unwrap() {
            request.body.as_str()
        } else {
            ""
        };
        let payload_hash = hex(&Sha256::digest(body.as_bytes()));
        let timestamp = context["timestamp"].as_str().unwrap().replace(['-', ':'], "");
        let credentials = &context["credentials"];
        let (region, service) = (
            context["region"].as_str().unwrap(),
            context["service"].as_str().unwrap(),
        );
        let key = sigv4::signing_key(
            credentials["secret_access_key"].as_str().unwrap(),
            &timestamp[..8],
            region,
            service,
        );
        let signer = QuerySigner {
            access_key_id: credentials["access_key_id"].as_str().unwrap(),
            session_token: credentials["token"].as_str(),
            key: sigv4::Key::Aws4(&key),
            region,
            service,
            amz_date: &timestamp,
            expires_in: context["expiration_in_seconds"].as_u64().unwrap(),
        };
        let query_request = QueryRequest {
            method: &request.method,
            host: &host,
            path: &path,
            params: &params,
            headers: &headers,
            payload_hash: &payload_hash,
        };
        let mut trace = Trace::default();
        let mut query = String::new();
        sigv4::append_traced(&mut query, &query_request, &signer, Some(&mut trace));
        assert_eq!(
            trace.canonical_request,
            read(dir, "query-canonical-request.txt"),
            "{name}: canonical request"
        );
        assert_eq!(
            trace.string_to_sign,
            read(dir, "query-string-to-sign.txt"),
            "{name}: string to sign"
        );
        let signature = query.rsplit("X-Amz-Signature=").next().unwrap();
        assert_eq!(signature, read(dir, "query-signature.txt").trim(), "{name}: signature");
        // The signed URL: the same parameters, each encoded the same way.
        let ours = decoded(&query);
        assert_eq!(
            ours,
            signed_params(&read(dir, "query-signed-request.txt")),
            "{name}: signed URL"
        );
        signed += 1;
    }
    assert_eq!(signed, 38 - S3_EXCLUDES.len());
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::new();
    sigv4::push_hex(&mut out, bytes);
    out
}
