//! The one checker of what a signed upload may be, whatever was asked: used by the admission
//! cases (tests/it/admit.rs), the property test (tests/it/properties.rs) and the fuzz target
//! (fuzz/fuzz_targets/presign.rs, which includes this file by path). It reads the signed output
//! only (the POST policy and fields, the PUT URL and headers), never the plan that made it.
//!
//! POST: every form field but `policy` and `x-amz-signature` is covered by a condition on the
//! same field with the same value (or prefix) and sent once; no condition is duplicated; no
//! `starts-with` is empty, and the key's is the key up to a trailing `${filename}`; the bucket
//! condition names the profile's bucket; the size range lies inside the profile's; the policy's
//! expiration is within `expires_in`. PUT: every header the client is told to send is signed,
//! every signed header but `host` is one the client is told to send (or `content-length`, the
//! exact size inside the profile's range); the URL's bucket and path are the profile's bucket
//! and the key; nothing is hoisted into the query. Both: every rule the profile requires is
//! there (the content type, within its rule — `application/octet-stream` for a PUT without one —,
//! every pinned field, fixed and required metadata, a required checksum, `If-None-Match: *`
//! under `overwrite: false`); the key starts with the staging prefix (`verify.staging`) and the
//! template's fixed prefix, is at most 1024
//! bytes, has no dot or empty segment, no control or format character, and no `${` but a
//! trailing `${filename}` left to the store (POST only).

use postgate::profile::MAX_UPLOAD_BYTES;
use postgate::profile::plan::put_header;
use postgate::profile::{ContentTypeRule, MetadataValue, Profile, compile::is_forbidden_char};
use postgate::sign::{PresignedPost, PresignedPut, Signed};
use serde_json::Value;
use time::OffsetDateTime;

/// Checks one signed upload of `profile` made at `now`; the error says what is wrong.
pub fn check(profile: &Profile, signed: &Signed, now: OffsetDateTime) -> Result<(), String> {
    let (key, sent) = match signed {
        Signed::Post(post) => (
            check_post(profile, post, now)?,
            post.fields
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
        ),
        Signed::Put(put) => (
            check_put(profile, put, now)?,
            put.headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        ),
    };
    check_required(profile, &sent, matches!(signed, Signed::Put(_)))?;
    check_key(profile, key, matches!(signed, Signed::Post(_)), true)
}

/// Every rule the profile requires is in what the client sends (form fields or headers).
fn check_required(profile: &Profile, sent: &[(String, String)], put: bool) -> Result<(), String> {
    let get = |name: &str| {
        let found: Vec<&str> = sent
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            _ => Err(format!("{name} is sent {} times", found.len())),
        }
    };
    let content_type = get("Content-Type")?;
    match (profile.content_type(), content_type) {
        (Some(ContentTypeRule::Exact(exact)), got) if got != Some(exact.as_str()) => {
            return Err(format!("Content-Type {got:?} is not {exact}"));
        }
        (Some(ContentTypeRule::OneOf(types)), got) if !got.is_some_and(|t| types.iter().any(|x| x == t)) => {
            return Err(format!("Content-Type {got:?} is not one of {types:?}"));
        }
        (Some(ContentTypeRule::Prefix(prefix)), Some(got)) if !got.starts_with(prefix.as_str()) => {
            return Err(format!("Content-Type {got} does not start with {prefix}"));
        }
        (Some(ContentTypeRule::Prefix(_)), None) if put => return Err("a PUT without a Content-Type".into()),
        (None, got) if put && got != Some("application/octet-stream") => {
            return Err(format!("a PUT without a content-type rule signs Content-Type {got:?}"));
        }
        (None, Some(got)) if !put => return Err(format!("a form without a content-type rule sends {got}")),
        _ => {}
    }
    for (field, value) in profile.fields() {
        let name = if put { put_header(field) } else { Some(field.as_str()) };
        if let Some(name) = name
            && get(name)? != Some(value.as_str())
        {
            return Err(format!("the pinned {name}: {value} is not sent as pinned"));
        }
    }
    for rule in profile.metadata() {
        let required = rule.required || matches!(rule.value, MetadataValue::Fixed(_));
        if required && get(&rule.field)?.is_none() {
            return Err(format!("{} is required but not sent", rule.field));
        }
    }
    let checksums = sent
        .iter()
        .filter(|(n, _)| {
            let lower = n.to_ascii_lowercase();
            lower.starts_with("x-amz-checksum-") && lower != "x-amz-checksum-algorithm"
        })
        .count();
    if checksums > 1 || (profile.checksum().required && checksums == 0) {
        return Err(format!(
            "{checksums} checksums sent (required: {})",
            profile.checksum().required
        ));
    }
    if put && !profile.overwrite() && get("If-None-Match")? != Some("*") {
        return Err("overwrite: false without If-None-Match: *".into());
    }
    Ok(())
}

fn check_post<'a>(profile: &Profile, post: &'a PresignedPost, now: OffsetDateTime) -> Result<&'a str, String> {
    let policy: Value = serde_json::from_str(&post.policy).map_err(|e| format!("the policy is not JSON: {e}"))?;
    let conditions = policy["conditions"].as_array().ok_or("no condition list")?;
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
                    if let Some(sent) = field(name)
                        && Some(sent) != value.as_str()
                    {
                        return Err(format!("field {name} = {sent:?} differs from its condition {value}"));
                    }
                    covered.push(name.to_ascii_lowercase());
                }
            }
            Value::Array(items) if items.first().is_some_and(|op| op == "starts-with") => {
                let name = items[1].as_str().unwrap_or_default().trim_start_matches('$');
                let prefix = items[2].as_str().unwrap_or_default();
                if prefix.is_empty() {
                    return Err(format!("an empty starts-with in {}", post.policy));
                }
                if let Some(sent) = field(name)
                    && !sent.starts_with(prefix)
                {
                    return Err(format!("{name} does not start with {prefix:?}"));
                }
                if name.eq_ignore_ascii_case("key") && post.key.strip_suffix("${filename}") != Some(prefix) {
                    return Err(format!(
                        "the key's prefix {prefix:?} is not {:?} up to `${{filename}}`",
                        post.key
                    ));
                }
                covered.push(name.to_ascii_lowercase());
            }
            Value::Array(items) if items.first().is_some_and(|op| op == "content-length-range") => {
                range = Some((
                    items[1].as_u64().unwrap_or(u64::MAX),
                    items[2].as_u64().unwrap_or(u64::MAX),
                ));
            }
            other => return Err(format!("unexpected condition {other}")),
        }
    }
    let mut distinct = covered.clone();
    distinct.sort();
    distinct.dedup();
    if distinct.len() != covered.len() {
        return Err(format!("a duplicated condition in {}", post.policy));
    }
    let mut names: Vec<String> = post.fields.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
    names.sort();
    let count = names.len();
    names.dedup();
    if names.len() != count {
        return Err("a form field is sent twice".into());
    }
    let bucket = conditions.iter().find_map(|c| {
        c.as_object()?
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("bucket"))
            .map(|(_, v)| v)
    });
    if bucket.and_then(Value::as_str) != Some(profile.bucket()) {
        return Err(format!("the bucket condition {bucket:?} is not {}", profile.bucket()));
    }
    let expiration = policy["expiration"].as_str().ok_or("no expiration")?;
    let expiration = OffsetDateTime::parse(expiration, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("expiration {expiration}: {e}"))?;
    if expiration > now + profile.expires_in() {
        return Err("the policy outlives the profile's expires_in".into());
    }
    for (name, _) in &post.fields {
        let lower = name.to_ascii_lowercase();
        if lower != "policy" && lower != "x-amz-signature" && !covered.contains(&lower) {
            return Err(format!("field {name} is not covered by {}", post.policy));
        }
    }
    let (min, max) = range.ok_or("no content-length-range")?;
    if min > max || max > profile.size().max || min < profile.size().min {
        return Err(format!("range {min}..={max} outside the profile's"));
    }
    if post.expires_at > now + profile.expires_in() {
        return Err("the form outlives the profile's expires_in".into());
    }
    if field("key") != Some(post.key.as_str()) {
        return Err("the key field is not the key".into());
    }
    Ok(&post.key)
}

fn check_put<'a>(profile: &Profile, put: &'a PresignedPut, now: OffsetDateTime) -> Result<&'a str, String> {
    let (_, query) = put.url.split_once('?').ok_or("a PUT URL without a query")?;
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .map(percent_decode)
    };
    let signed_headers = param("X-Amz-SignedHeaders").ok_or("no X-Amz-SignedHeaders")?;
    let signed: Vec<&str> = signed_headers.split(';').collect();
    if !signed.contains(&"host") {
        return Err("host is not signed".into());
    }
    let mut sent: Vec<String> = put.client_headers().map(|(n, _)| n.to_ascii_lowercase()).collect();
    for name in &sent {
        if !signed.contains(&name.as_str()) {
            return Err(format!("header {name} is not signed ({signed_headers})"));
        }
    }
    let length = put
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .ok_or("no exact Content-Length is signed")?;
    if length < profile.size().min || length > profile.size().max || length > MAX_UPLOAD_BYTES || length != put.max_size
    {
        return Err(format!("Content-Length {length} outside the profile's range"));
    }
    sent.push("content-length".into());
    sent.push("host".into());
    for name in &signed {
        if !sent.iter().any(|s| s == name) {
            return Err(format!("signed header {name} is not one the client is told to send"));
        }
    }
    if sent.len() != signed.len() {
        return Err(format!("a header is given twice: {sent:?}"));
    }
    let expires: u64 = param("X-Amz-Expires")
        .and_then(|v| v.parse().ok())
        .ok_or("no X-Amz-Expires")?;
    if expires > profile.expires_in().as_secs() || put.expires_at > now + profile.expires_in() {
        return Err("the URL outlives the profile's expires_in".into());
    }
    if query
        .split('&')
        .any(|pair| pair.to_ascii_lowercase().starts_with("x-amz-meta-"))
    {
        return Err("metadata hoisted into the query".into());
    }
    let (before_query, _) = put.url.split_once('?').unwrap_or((&put.url, ""));
    let (_, location) = before_query.split_once("://").ok_or("a PUT URL without a scheme")?;
    let (host, path) = location.split_at(location.find('/').unwrap_or(location.len()));
    let path = percent_decode(path);
    let virtual_hosted = host.starts_with(&format!("{}.", profile.bucket())) && path == format!("/{}", put.key);
    let path_style = path.ends_with(&format!("/{}/{}", profile.bucket(), put.key));
    if !(virtual_hosted || path_style) {
        return Err(format!(
            "the URL {} is not bucket {} and key {}",
            put.url,
            profile.bucket(),
            put.key
        ));
    }
    Ok(&put.key)
}

fn check_key(profile: &Profile, key: &str, post: bool, single: bool) -> Result<(), String> {
    // With `verify.staging`, every single upload goes under the staging prefix, then the
    // template; a multipart upload writes the key itself.
    let staging = profile
        .verify()
        .staging
        .as_deref()
        .filter(|_| single)
        .unwrap_or_default();
    let Some(rest) = key.strip_prefix(staging) else {
        return Err(format!("{key:?} is not under the staging prefix {staging:?}"));
    };
    if !rest.starts_with(profile.key().literal_prefix()) {
        return Err(format!("{key:?} does not start with the template's prefix"));
    }
    if key.len() > 1024 {
        return Err(format!("a key of {} bytes", key.len()));
    }
    if key.chars().any(is_forbidden_char) {
        return Err(format!("a forbidden character in {key:?}"));
    }
    let left = if post { key.strip_suffix("/${filename}") } else { None };
    let body = left.unwrap_or(key);
    if body.contains("${") {
        return Err(format!("`${{` in the signed part of {key:?}"));
    }
    for segment in body.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(format!("an empty or dot segment in {key:?}"));
        }
    }
    Ok(())
}

fn percent_decode(text: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(high << 4 | low);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks a multipart upload of `profile` as signed at `now`: the headers CreateMultipartUpload
/// sets carry every rule the profile requires (`If-None-Match` goes on the completion, so it is
/// taken as sent under `overwrite: false`) and nothing unsigned; each part URL is an UploadPart of
/// the key signing exactly `content-length;host`, its part's length, within `expires_in`; the
/// parts add up to the declared size, inside the profile's range, every part but the last at
/// least 5 MiB, at most 10,000 parts of at most 5 GiB.
pub fn check_multipart(
    profile: &Profile,
    key: &str,
    create_headers: &[(String, String)],
    parts: &[(u32, u64, String)],
    size: u64,
    part_count: u32,
) -> Result<(), String> {
    let mut sent = create_headers.to_vec();
    for (name, _) in create_headers {
        let lower = name.to_ascii_lowercase();
        if lower == "content-length" || lower.starts_with("x-amz-checksum") || lower == "if-none-match" {
            return Err(format!("the create call sets {name}"));
        }
    }
    if !profile.overwrite() {
        sent.push(("If-None-Match".into(), "*".into()));
    }
    check_required(profile, &sent, true)?;
    check_key(profile, key, false, false)?;
    if size < profile.size().min || size > profile.size().max {
        return Err(format!("{size} bytes outside the profile's range"));
    }
    if part_count == 0 || part_count > 10_000 {
        return Err(format!("{part_count} parts"));
    }
    let mut total_of_listed = 0;
    for (number, length, url) in parts {
        let (path, query) = url.split_once('?').ok_or("a part URL without a query")?;
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
                .map(percent_decode)
        };
        if param("X-Amz-SignedHeaders").as_deref() != Some("content-length;host") {
            return Err(format!("part {number} signs {:?}", param("X-Amz-SignedHeaders")));
        }
        if param("partNumber") != Some(number.to_string()) || param("uploadId").is_none() {
            return Err(format!("part {number}'s URL is not an UploadPart of it"));
        }
        let expires: u64 = param("X-Amz-Expires")
            .and_then(|v| v.parse().ok())
            .ok_or("no X-Amz-Expires")?;
        if expires > profile.expires_in().as_secs() {
            return Err(format!("part {number}'s URL outlives the profile's expires_in"));
        }
        if !percent_decode(path).ends_with(&format!("/{key}")) {
            return Err(format!("part {number}'s URL is not for the key"));
        }
        let last = *number == part_count;
        if *length > 5 * 1024 * 1024 * 1024 || (!last && *length < 5 * 1024 * 1024) || *length == 0 {
            return Err(format!("part {number} is {length} bytes"));
        }
        total_of_listed += length;
    }
    if parts.len() == part_count as usize && total_of_listed != size {
        return Err(format!("the parts add up to {total_of_listed}, not {size}"));
    }
    Ok(())
}
