//! The probe's cases: for each method, the changes a holder of a signed upload might make, each
//! tried alone on a fresh signature, with the constraint it must not get past. Pure data.

use crate::profile::enforcement::{Constraint, ProbeMethod};

/// One change to a signed upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// One byte more than signed (POST: over `size.max`).
    BodyLonger,
    /// One byte less (POST: under `size.min`).
    BodyShorter,
    /// A field or header set to another value (added when absent).
    Set(&'static str, &'static str),
    /// A field or header dropped.
    Drop(&'static str),
    /// POST: a field of this name and value sent before the signed one of the same name (compared
    /// case-insensitively); added when there is none.
    Before(&'static str, &'static str),
    /// The upload signed with the digest of other bytes.
    WrongChecksum,
    /// PUT: the same upload sent twice, `If-None-Match: *` signed.
    Overwrite,
    /// PUT: `x-amz-copy-source` naming the probe's control object.
    CopySource,
    /// Sent after the signature expired.
    Expired,
    /// Another key under the case's own prefix.
    OtherKey,
    /// The per-upload marker set to another grant's value.
    OtherMarker,
}

/// One probe case.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Stable id, `<method>-<what>`: the JSON's and the README table's row.
    pub id: &'static str,
    pub method: ProbeMethod,
    pub constraint: Constraint,
    pub change: Change,
}

const fn case(id: &'static str, method: ProbeMethod, constraint: Constraint, change: Change) -> Case {
    Case {
        id,
        method,
        constraint,
        change,
    }
}

use Change::*;
use Constraint as C;
use ProbeMethod::{Multipart, Post, Put};

/// Every case, in the order they run and are reported.
pub const CASES: &[Case] = &[
    case("post-size-over", Post, C::SizeRange, BodyLonger),
    case("post-size-under", Post, C::SizeRange, BodyShorter),
    case(
        "post-content-type-changed",
        Post,
        C::ContentType,
        Set("Content-Type", "text/html"),
    ),
    case(
        "post-metadata-changed",
        Post,
        C::Metadata,
        Set("x-amz-meta-purpose", "other"),
    ),
    case("post-metadata-dropped", Post, C::Metadata, Drop("x-amz-meta-purpose")),
    case(
        "post-metadata-added",
        Post,
        C::Metadata,
        Set("x-amz-meta-admin", "true"),
    ),
    case(
        "post-field-added",
        Post,
        C::ExtraFields,
        Set("Content-Encoding", "gzip"),
    ),
    case(
        "post-amz-field-added",
        Post,
        C::ExtraFields,
        Set("x-amz-storage-class", "REDUCED_REDUNDANCY"),
    ),
    case(
        "post-tagging-added",
        Post,
        C::ExtraFields,
        Set("tagging", "<Tagging><TagSet/></Tagging>"),
    ),
    case(
        "post-content-type-twice",
        Post,
        C::DuplicateFields,
        Before("Content-Type", "text/html"),
    ),
    case(
        "post-metadata-case-variant",
        Post,
        C::DuplicateFields,
        Before("X-Amz-Meta-Purpose", "other"),
    ),
    case(
        "post-key-twice",
        Post,
        C::DuplicateFields,
        Before("key", "postgate-probe/elsewhere.txt"),
    ),
    case("post-checksum-wrong", Post, C::Checksum, WrongChecksum),
    case("post-expired", Post, C::Expiry, Expired),
    case("post-key-changed", Post, C::Key, OtherKey),
    case("post-marker-changed", Post, C::Marker, OtherMarker),
    case(
        "post-marker-dropped",
        Post,
        C::Marker,
        Drop(crate::profile::plan::MARKER_FIELD),
    ),
    case("put-body-longer", Put, C::ExactLength, BodyLonger),
    case("put-body-shorter", Put, C::ExactLength, BodyShorter),
    case(
        "put-content-type-changed",
        Put,
        C::ContentType,
        Set("Content-Type", "text/html"),
    ),
    case(
        "put-metadata-changed",
        Put,
        C::Metadata,
        Set("x-amz-meta-purpose", "other"),
    ),
    case("put-metadata-dropped", Put, C::Metadata, Drop("x-amz-meta-purpose")),
    case(
        "put-metadata-added",
        Put,
        C::UnsignedHeaders,
        Set("x-amz-meta-admin", "true"),
    ),
    case(
        "put-acl-added",
        Put,
        C::UnsignedHeaders,
        Set("x-amz-acl", "public-read"),
    ),
    case("put-copy-source-added", Put, C::UnsignedHeaders, CopySource),
    case(
        "put-storage-class-added",
        Put,
        C::UnsignedHeaders,
        Set("x-amz-storage-class", "REDUCED_REDUNDANCY"),
    ),
    case(
        "put-sse-added",
        Put,
        C::UnsignedHeaders,
        Set("x-amz-server-side-encryption", "AES256"),
    ),
    case(
        "put-tagging-added",
        Put,
        C::UnsignedHeaders,
        Set("x-amz-tagging", "a=b"),
    ),
    case("put-checksum-wrong", Put, C::Checksum, WrongChecksum),
    case("put-checksum-dropped", Put, C::Checksum, Drop("x-amz-checksum-sha256")),
    case("put-overwrite", Put, C::Overwrite, Overwrite),
    case("put-expired", Put, C::Expiry, Expired),
    case("put-key-changed", Put, C::Key, OtherKey),
    case("put-marker-changed", Put, C::Marker, OtherMarker),
    case(
        "put-marker-dropped",
        Put,
        C::Marker,
        Drop(crate::profile::plan::MARKER_FIELD),
    ),
    case("part-larger", Multipart, C::PartSize, BodyLonger),
    case("part-smaller", Multipart, C::PartSize, BodyShorter),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_name_their_method() {
        let mut ids: Vec<&str> = CASES.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), CASES.len());
        for case in CASES {
            let prefix = match case.method {
                ProbeMethod::Post => "post-",
                ProbeMethod::Put => "put-",
                ProbeMethod::Multipart => "part-",
            };
            assert!(case.id.starts_with(prefix), "{}", case.id);
        }
        // Every constraint is tried by at least one case.
        for constraint in Constraint::ALL {
            assert!(CASES.iter().any(|c| c.constraint == *constraint), "{constraint:?}");
        }
    }
}
