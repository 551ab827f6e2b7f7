//! The bucket's own settings browsers and multipart uploads depend on, audited from the documents
//! the store returns: CORS (can each app origin POST and PUT, send the signed headers, read
//! `ETag`?) and lifecycle (are abandoned multipart uploads aborted?). Pure: documents in, findings
//! and the exact JSON to apply out.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::profile::plan::{MARKER_FIELD, Target};
use crate::profile::{Method, Profile};

/// What a browser upload needs of the bucket's CORS rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrowserNeeds {
    /// The apps' `cors_origins`.
    pub origins: Vec<String>,
    /// Lowercase request headers the signed PUTs and parts carry.
    pub headers: Vec<String>,
    /// `POST` and `PUT`, as the served profiles and the store use them.
    pub methods: Vec<&'static str>,
}

/// The audit of one bucket document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Audit {
    /// `ok`, `missing` (pieces to add), `absent` (no document), `unreadable` (the store refused
    /// or cannot answer the call), or `not-needed`.
    pub status: &'static str,
    /// What is missing, one line each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// The store's error code when unreadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The configuration to apply (AWS CLI `put-bucket-cors` / `put-bucket-lifecycle-configuration`
    /// JSON), when something is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apply: Option<serde_json::Value>,
}

impl Audit {
    pub fn unreadable(code: &str) -> Audit {
        Audit {
            code: Some(code.to_owned()),
            ..Audit::plain("unreadable")
        }
    }

    fn not_needed() -> Audit {
        Audit::plain("not-needed")
    }

    fn plain(status: &'static str) -> Audit {
        Audit {
            status,
            missing: Vec::new(),
            code: None,
            apply: None,
        }
    }
}

/// The request headers a browser sends with the signed PUTs and parts of `profile`.
pub fn browser_headers(profile: &Profile, out: &mut Vec<String>) {
    if !profile.plan().allows(Method::Put) && profile.multipart().is_none() {
        return;
    }
    for rule in profile.plan().rules() {
        let header = match rule.target {
            Target::ContentType => "content-type".to_owned(),
            Target::Field(i) => {
                let field = &profile.fields()[i].0;
                crate::profile::plan::put_header(field)
                    .unwrap_or(field)
                    .to_ascii_lowercase()
            }
            Target::Metadata(i) => profile.metadata()[i].field.to_ascii_lowercase(),
            Target::Marker => MARKER_FIELD.to_owned(),
            Target::Checksum => {
                for algorithm in &profile.checksum().algorithms {
                    out.push(algorithm.field().to_owned());
                }
                continue;
            }
            Target::NoOverwrite => "if-none-match".to_owned(),
            Target::Bucket | Target::Key | Target::Size | Target::ChecksumAlgorithm => continue,
        };
        out.push(header);
    }
    out.sort();
    out.dedup();
}

/// A bucket document as read (no document: an empty one); `None` for XML that cannot be read.
fn parse<T: Default + for<'de> Deserialize<'de>>(document: Option<&[u8]>) -> Option<T> {
    match document {
        None => Some(T::default()),
        Some(bytes) => quick_xml::de::from_reader(bytes).ok(),
    }
}

#[derive(Deserialize, Default)]
struct CorsDocument {
    #[serde(default, rename = "CORSRule")]
    rules: Vec<CorsRule>,
}

#[derive(Deserialize, Default)]
struct CorsRule {
    #[serde(default, rename = "AllowedOrigin")]
    origins: Vec<String>,
    #[serde(default, rename = "AllowedMethod")]
    methods: Vec<String>,
    #[serde(default, rename = "AllowedHeader")]
    headers: Vec<String>,
    #[serde(default, rename = "ExposeHeader")]
    expose: Vec<String>,
}

/// S3's CORS matching: one `*` in a pattern stands for any run of characters; case-insensitive
/// for headers, exact for origins.
fn wildcard(pattern: &str, value: &str, fold: bool) -> bool {
    let (pattern, value) = if fold {
        (pattern.to_ascii_lowercase(), value.to_ascii_lowercase())
    } else {
        (pattern.to_owned(), value.to_owned())
    };
    match pattern.split_once('*') {
        None => pattern == value,
        Some((head, tail)) => {
            value.len() >= head.len() + tail.len() && value.starts_with(head) && value.ends_with(tail)
        }
    }
}

/// Audits a `?cors` document (`None`: the bucket has none) against what the apps' browsers need.
pub fn audit_cors(document: Option<&[u8]>, needs: &BrowserNeeds) -> Audit {
    if needs.origins.is_empty() {
        return Audit::not_needed();
    }
    let Some(parsed) = parse::<CorsDocument>(document) else {
        return Audit::unreadable("MalformedXML");
    };
    let mut missing = Vec::new();
    let mut lacking_origins = Vec::new();
    for origin in &needs.origins {
        let rules: Vec<&CorsRule> = parsed
            .rules
            .iter()
            .filter(|r| r.origins.iter().any(|o| wildcard(o, origin, false)))
            .collect();
        let mut gaps = Vec::new();
        for &method in &needs.methods {
            if !rules.iter().any(|r| r.methods.iter().any(|m| m == method)) {
                gaps.push(format!("method {method}"));
            }
        }
        for header in &needs.headers {
            if !rules
                .iter()
                .any(|r| r.headers.iter().any(|h| wildcard(h, header, true)))
            {
                gaps.push(format!("header {header}"));
            }
        }
        if !rules
            .iter()
            .any(|r| r.expose.iter().any(|h| h.eq_ignore_ascii_case("etag")))
        {
            gaps.push("ExposeHeader ETag (multipart needs it)".to_owned());
        }
        if !gaps.is_empty() {
            missing.push(format!("{origin}: {}", gaps.join(", ")));
            lacking_origins.push(origin.clone());
        }
    }
    if missing.is_empty() {
        return Audit::plain("ok");
    }
    let mut allowed_headers = needs.headers.clone();
    allowed_headers.retain(|h| !h.starts_with("x-amz-meta-"));
    if needs.headers.iter().any(|h| h.starts_with("x-amz-meta-")) {
        allowed_headers.push("x-amz-meta-*".to_owned());
    }
    allowed_headers.sort();
    Audit {
        status: if document.is_none() { "absent" } else { "missing" },
        missing,
        code: None,
        apply: Some(json!({
            "CORSRules": [{
                "AllowedOrigins": lacking_origins,
                "AllowedMethods": needs.methods,
                "AllowedHeaders": allowed_headers,
                "ExposeHeaders": ["ETag"],
                "MaxAgeSeconds": 3600
            }]
        })),
    }
}

#[derive(Deserialize, Default)]
struct LifecycleDocument {
    #[serde(default, rename = "Rule")]
    rules: Vec<LifecycleRule>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct LifecycleRule {
    #[serde(default)]
    status: String,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    filter: Option<LifecycleFilter>,
    #[serde(default)]
    abort_incomplete_multipart_upload: Option<AbortRule>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct LifecycleFilter {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    and: Option<LifecycleAnd>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct LifecycleAnd {
    #[serde(default)]
    prefix: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct AbortRule {
    #[serde(default)]
    days_after_initiation: Option<u32>,
}

/// Audits a `?lifecycle` document: when a served profile uploads in parts, an enabled rule must
/// abort incomplete multipart uploads under every multipart key prefix (`prefixes`), within
/// `days`. `prefixes` empty: no profile uses multipart.
pub fn audit_lifecycle(document: Option<&[u8]>, prefixes: &[String], days: u32) -> Audit {
    if prefixes.is_empty() {
        return Audit::not_needed();
    }
    let Some(parsed) = parse::<LifecycleDocument>(document) else {
        return Audit::unreadable("MalformedXML");
    };
    let covering: Vec<(String, u32)> = parsed
        .rules
        .iter()
        .filter(|r| r.status.eq_ignore_ascii_case("enabled"))
        .filter_map(|r| {
            let days = r.abort_incomplete_multipart_upload.as_ref()?.days_after_initiation?;
            let filter = r.filter.as_ref();
            let prefix = filter
                .and_then(|f| {
                    f.prefix
                        .clone()
                        .or_else(|| f.and.as_ref().and_then(|a| a.prefix.clone()))
                })
                .or_else(|| r.prefix.clone())
                .unwrap_or_default();
            Some((prefix, days))
        })
        .collect();
    let missing: Vec<String> = prefixes
        .iter()
        .filter(|p| {
            !covering
                .iter()
                .any(|(prefix, d)| p.starts_with(prefix.as_str()) && *d <= days)
        })
        .map(|p| format!("AbortIncompleteMultipartUpload within {days} days for keys under `{p}`"))
        .collect();
    if missing.is_empty() {
        return Audit::plain("ok");
    }
    Audit {
        status: if document.is_none() { "absent" } else { "missing" },
        missing,
        code: None,
        apply: Some(json!({
            "Rules": [{
                "ID": "postgate-abort-incomplete-multipart",
                "Status": "Enabled",
                "Filter": { "Prefix": "" },
                "AbortIncompleteMultipartUpload": { "DaysAfterInitiation": days }
            }]
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs() -> BrowserNeeds {
        BrowserNeeds {
            origins: vec!["https://app.example.com".into()],
            headers: vec!["content-type".into(), "x-amz-meta-postgate-upload".into()],
            methods: vec!["POST", "PUT"],
        }
    }

    #[test]
    fn cors_rules_are_checked_for_origin_methods_headers_and_etag() {
        let full = br#"<CORSConfiguration><CORSRule><AllowedOrigin>https://*.example.com</AllowedOrigin>
            <AllowedMethod>POST</AllowedMethod><AllowedMethod>PUT</AllowedMethod><AllowedHeader>*</AllowedHeader>
            <ExposeHeader>ETag</ExposeHeader></CORSRule></CORSConfiguration>"#;
        assert_eq!(audit_cors(Some(full), &needs()).status, "ok");

        let partial = br#"<CORSConfiguration><CORSRule><AllowedOrigin>https://app.example.com</AllowedOrigin>
            <AllowedMethod>PUT</AllowedMethod><AllowedHeader>Content-Type</AllowedHeader></CORSRule></CORSConfiguration>"#;
        let audit = audit_cors(Some(partial), &needs());
        assert_eq!(audit.status, "missing");
        assert_eq!(
            audit.missing,
            [
                "https://app.example.com: method POST, header x-amz-meta-postgate-upload, ExposeHeader ETag (multipart needs it)"
            ]
        );
        let apply = audit.apply.unwrap();
        assert_eq!(apply["CORSRules"][0]["ExposeHeaders"][0], "ETag");
        assert_eq!(apply["CORSRules"][0]["AllowedHeaders"][1], "x-amz-meta-*");

        assert_eq!(audit_cors(None, &needs()).status, "absent");
        assert_eq!(audit_cors(None, &BrowserNeeds::default()).status, "not-needed");
    }

    #[test]
    fn lifecycle_needs_an_abort_rule_over_every_multipart_prefix() {
        let prefixes = vec!["media/".to_owned()];
        let good = br#"<LifecycleConfiguration><Rule><ID>a</ID><Filter><Prefix></Prefix></Filter><Status>Enabled</Status>
            <AbortIncompleteMultipartUpload><DaysAfterInitiation>2</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule></LifecycleConfiguration>"#;
        assert_eq!(audit_lifecycle(Some(good), &prefixes, 2).status, "ok");
        let elsewhere = br#"<LifecycleConfiguration><Rule><ID>a</ID><Filter><Prefix>logs/</Prefix></Filter><Status>Enabled</Status>
            <AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule></LifecycleConfiguration>"#;
        let audit = audit_lifecycle(Some(elsewhere), &prefixes, 2);
        assert_eq!(audit.status, "missing");
        assert_eq!(
            audit.apply.unwrap()["Rules"][0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"],
            2
        );
        assert_eq!(audit_lifecycle(None, &[], 2).status, "not-needed");
    }
}
