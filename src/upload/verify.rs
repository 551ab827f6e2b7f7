//! Is the stored object what the signature allowed? Size, content type, metadata and checksum
//! against the token's bounds; a multipart upload's parts against its part plan; and, when the
//! profile asks, the first bytes against the content type (magic numbers, with `infer`).
//!
//! Pure: the store calls that fetch the object's head and first bytes live in the store client.

use std::collections::BTreeMap;

use super::{ListedPart, PartPlan};
use crate::profile::{Bounds, ChecksumAlgorithm};

/// How many first bytes sniffing reads (`infer` needs at most a few hundred; HTML may start
/// after a long preamble).
pub const SNIFF_BYTES: u64 = 8192;

/// What `HeadObject` says about an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    pub content_type: Option<String>,
    pub etag: Option<String>,
    /// `x-amz-meta-*` names (lowercase, without the prefix) and values.
    pub metadata: BTreeMap<String, String>,
    /// The checksums the store reports (`x-amz-checksum-*`), by algorithm.
    pub checksums: Vec<(ChecksumAlgorithm, String)>,
    /// `Last-Modified`, Unix seconds.
    pub last_modified: Option<i64>,
    /// `x-amz-version-id`, on a versioned bucket.
    pub version_id: Option<String>,
    /// The object headers a profile may pin (`OBJECT_HEADERS`), by lowercase name.
    pub headers: BTreeMap<String, String>,
}

/// The object headers a profile may pin that a store keeps with the object and answers on HEAD.
pub const OBJECT_HEADERS: [&str; 4] = [
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
];

/// What a store whose signatures bound only the key (Azure) leaves to `complete` besides
/// `check_object`: no metadata but what was signed (the marker included), and each object
/// header exactly as the profile pins it (`pinned`: the profile's `fields`), or absent.
pub fn check_unsigned(bounds: &Bounds, head: &ObjectHead, pinned: &[(String, String)]) -> Result<(), Violation> {
    let signed =
        |name: &str| name == crate::profile::plan::MARKER_NAME || bounds.metadata.iter().any(|(n, _)| n == name);
    if let Some((name, value)) = head.metadata.iter().find(|(name, _)| !signed(name)) {
        return Err(Violation::Metadata {
            name: name.clone(),
            found: Some(value.clone()),
            expected: "no such metadata".into(),
        });
    }
    for header in OBJECT_HEADERS {
        let expected = pinned
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(header))
            .map(|(_, v)| v);
        let found = head.headers.get(header);
        if found != expected {
            return Err(Violation::Metadata {
                name: header.to_owned(),
                found: found.cloned(),
                expected: expected.cloned().unwrap_or_else(|| "none".into()),
            });
        }
    }
    Ok(())
}

/// Why an upload is not what was allowed. Each has a stable code at the HTTP edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("the object is {size} bytes; the signature allowed {min}..={max}")]
    Size { size: u64, min: u64, max: u64 },
    #[error("the object's Content-Type is {found:?}; the signature allowed {allowed}")]
    ContentType { found: Option<String>, allowed: String },
    #[error("the object's metadata `{name}` is {found:?}; the signature set {expected:?}")]
    Metadata {
        name: String,
        found: Option<String>,
        expected: String,
    },
    #[error("the object's {algorithm} checksum is {found}; the signature declared {expected}")]
    Checksum {
        algorithm: &'static str,
        found: String,
        expected: String,
    },
    #[error("{}", sniffed_message(declared, found.as_deref()))]
    Sniffed { declared: String, found: Option<String> },
    #[error("the upload has {found} part(s); its plan has {expected}")]
    PartCount { found: usize, expected: u32 },
    #[error("part {part} is missing")]
    PartMissing { part: u32 },
    #[error("part {part} is not in the plan of {count} part(s)")]
    PartExtra { part: u32, count: u32 },
    #[error("part {part} is {found} bytes; the plan says {expected}")]
    PartSize { part: u32, found: u64, expected: u64 },
}

fn sniffed_message(declared: &str, found: Option<&str>) -> String {
    match found {
        Some(found) => format!("the file's bytes are {found}, not the declared {declared}"),
        None => format!("the file's bytes do not start as {declared} does"),
    }
}

/// Checks a stored object against what its signature allowed.
pub fn check_object(bounds: &Bounds, head: &ObjectHead) -> Result<(), Violation> {
    if head.size < bounds.min_size || head.size > bounds.max_size {
        return Err(Violation::Size {
            size: head.size,
            min: bounds.min_size,
            max: bounds.max_size,
        });
    }
    if let Some(rule) = &bounds.content_type {
        let admitted = head.content_type.as_deref().is_some_and(|found| rule.admits(found));
        if !admitted {
            return Err(Violation::ContentType {
                found: head.content_type.clone(),
                allowed: match rule {
                    crate::profile::TypeBound::Exact(exact) => format!("exactly {exact}"),
                    crate::profile::TypeBound::Prefix(prefix) => format!("a type starting with {prefix}"),
                },
            });
        }
    }
    for (name, expected) in &bounds.metadata {
        let found = head.metadata.get(name);
        if found != Some(expected) {
            return Err(Violation::Metadata {
                name: name.clone(),
                found: found.cloned(),
                expected: expected.clone(),
            });
        }
    }
    if let Some((algorithm, expected)) = &bounds.checksum
        && let Some((_, found)) = head.checksums.iter().find(|(a, _)| a == algorithm)
        && found != expected
    {
        return Err(Violation::Checksum {
            algorithm: algorithm.name(),
            found: found.clone(),
            expected: expected.clone(),
        });
    }
    Ok(())
}

/// Checks the parts a store lists against the plan: every planned part there once, each of
/// its planned size, nothing else. Returns the parts in order, for the complete call.
pub fn check_parts(plan: &PartPlan, listed: &[ListedPart]) -> Result<Vec<ListedPart>, Violation> {
    let mut parts: Vec<ListedPart> = listed.to_vec();
    parts.sort_by_key(|p| p.part_number);
    parts.dedup_by_key(|p| p.part_number);
    if let Some(extra) = parts.iter().find(|p| plan.size_of(p.part_number).is_none()) {
        return Err(Violation::PartExtra {
            part: extra.part_number,
            count: plan.part_count,
        });
    }
    for number in 1..=plan.part_count {
        let Some(part) = parts.iter().find(|p| p.part_number == number) else {
            return Err(Violation::PartMissing { part: number });
        };
        let expected = plan.size_of(number).unwrap_or_default();
        if part.size != expected {
            return Err(Violation::PartSize {
                part: number,
                found: part.size,
                expected,
            });
        }
    }
    if parts.len() != plan.part_count as usize {
        return Err(Violation::PartCount {
            found: parts.len(),
            expected: plan.part_count,
        });
    }
    Ok(parts)
}

/// Checks an object's first bytes against its declared content type. A type `infer` knows must
/// be what the bytes are (`Ok(true)`: proven); a type it does not know (text, CSV, JSON) passes
/// unless the bytes are recognisably something else (an HTML page, an executable, an archive),
/// and `Ok(false)` says that nothing was proven.
pub fn sniff(declared: &str, first_bytes: &[u8]) -> Result<bool, Violation> {
    let essence = declared
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let found = infer::get(first_bytes).map(|kind| kind.mime_type());
    let same = |found: &str| found == essence || aliases(found).contains(&essence.as_str());
    match found {
        Some(found) if same(found) => Ok(true),
        // Plain text is a fine reading of many text formats infer names (XML is text).
        Some("text/xml") if essence.starts_with("text/") || essence.ends_with("+xml") || essence.ends_with("/xml") => {
            Ok(essence.ends_with("xml"))
        }
        None if !infer::is_mime_supported(&essence) => Ok(false),
        found => Err(Violation::Sniffed {
            declared: essence.clone(),
            found: found.map(str::to_owned),
        }),
    }
}

/// Other names of a type `infer` reports.
fn aliases(found: &str) -> &'static [&'static str] {
    match found {
        "image/jpeg" => &["image/jpg", "image/pjpeg"],
        "application/zip" => &["application/x-zip-compressed"],
        "audio/mpeg" => &["audio/mp3"],
        "audio/x-wav" => &["audio/wav", "audio/wave"],
        "video/quicktime" => &["video/mov"],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
    const HTML: &[u8] = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>";

    #[test]
    fn sniffing() {
        assert_eq!(sniff("image/png", PNG), Ok(true));
        assert!(matches!(sniff("image/png", HTML), Err(Violation::Sniffed { found: Some(f), .. }) if f == "text/html"));
        assert!(matches!(
            sniff("image/png", b"just text"),
            Err(Violation::Sniffed { found: None, .. })
        ));
        assert!(sniff("image/jpeg", PNG).is_err());
        assert_eq!(sniff("text/plain", b"just text"), Ok(false), "nothing proven of text");
        assert_eq!(sniff("text/csv; charset=utf-8", b"a,b\n1,2\n"), Ok(false));
        assert!(sniff("text/plain", HTML).is_err());
        assert_eq!(sniff("text/html", HTML), Ok(true));
        assert!(sniff("application/pdf", PNG).is_err());
        assert_eq!(sniff("application/pdf", b"%PDF-1.7\n"), Ok(true));
    }

    #[test]
    fn parts_against_their_plan() {
        let plan = PartPlan::new(11 * 1024 * 1024, 5 * 1024 * 1024).unwrap();
        let part = |n, size| ListedPart {
            part_number: n,
            size,
            etag: None,
        };
        let five = 5 * 1024 * 1024;
        let good = [part(2, five), part(1, five), part(3, 1024 * 1024)];
        assert_eq!(
            check_parts(&plan, &good)
                .unwrap()
                .iter()
                .map(|p| p.part_number)
                .collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(check_parts(&plan, &good[..2]), Err(Violation::PartMissing { part: 3 }));
        assert_eq!(
            check_parts(&plan, &[part(1, five), part(2, five), part(3, 1024 * 1024), part(4, 1)]),
            Err(Violation::PartExtra { part: 4, count: 3 })
        );
        assert_eq!(
            check_parts(&plan, &[part(1, five), part(2, five - 1), part(3, 1024 * 1024)]),
            Err(Violation::PartSize {
                part: 2,
                found: five - 1,
                expected: five
            })
        );
    }
}
