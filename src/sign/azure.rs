//! Azure Blob Storage (`kind: azure`): a service SAS for one blob. A SAS cannot bound size, type
//! or metadata, so an Azure store signs only *where* and *how long*: a create-only (`sp=c`) SAS
//! for one blob under the staging prefix, valid for the profile's `expires_in`. Every other rule
//! of the plan is sent to the client as the headers to set and checked by `complete` (Get Blob
//! Properties → checks → a server-side copy to the final name, or removal), which is mandatory:
//! the registry serves every profile on an Azure store with staging.
//!
//! Spec: <https://learn.microsoft.com/rest/api/storageservices/create-service-sas> (version
//! 2020-12-06 and later: sixteen fields). Proven against Azurite, which validates SAS signatures,
//! expiry and permissions (`tests/it/azure.rs`).

use std::borrow::Cow;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;

use super::sigv4::uri_encode;
use crate::profile::Profile;
use crate::text::format_rfc3339;

/// The service version a SAS is signed for (`sv`).
pub const SAS_VERSION: &str = "2022-11-02";

/// The staging prefix of an Azure store whose profile names none.
pub const DEFAULT_STAGING: &str = "postgate-staging/";

/// The header a single PUT must send to make a block blob.
pub const BLOB_TYPE: (&str, &str) = ("x-ms-blob-type", "BlockBlob");

/// S3 names and the Azure headers that carry the same thing on Put Blob (compared without case).
const RENAMED: &[(&str, &str)] = &[
    ("Cache-Control", "x-ms-blob-cache-control"),
    ("Content-Disposition", "x-ms-blob-content-disposition"),
    ("Content-Encoding", "x-ms-blob-content-encoding"),
    ("Content-Language", "x-ms-blob-content-language"),
];

/// The SAS permissions of a call: a single upload may create a blob, never replace one (`c`);
/// the gateway's promotion copy creates or replaces (`cw`, as S3's CopyObject; `If-None-Match`
/// keeps an existing one); a block and the block list write (`w`, to the upload's own staged
/// blob); reads `r`; deletes `d`.
pub fn permissions(method: &str, params: &[(&str, &str)], headers: &[(&str, &str)]) -> &'static str {
    let param = |name: &str| params.iter().any(|(n, _)| *n == name);
    match method {
        "PUT" if param("comp") || param("partNumber") => "w",
        "PUT" if headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("x-ms-copy-source")) => "cw",
        "PUT" => "c",
        "DELETE" => "d",
        _ => "r",
    }
}

/// A multipart upload's ID on Azure, which has none: 16 random hex digits, the prefix of its
/// block IDs (sealed in the token; the blob's headers are set from the token at `complete`).
pub fn upload_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
}

/// Whether `upload_id` is one `upload_id` made.
pub fn is_upload_id(upload_id: &str) -> bool {
    upload_id.len() == 16 && upload_id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Part `part_number`'s block ID: base64 of `<upload ID>-<5 digits>`, one length for every
/// block of a blob, as Azure requires.
pub fn block_id(upload_id: &str, part_number: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{upload_id}-{part_number:05}"))
}

/// The part number a block ID names for this upload; `None` for another upload's block.
pub fn part_number(upload_id: &str, block_id: &str) -> Option<u32> {
    let decoded = base64::engine::general_purpose::STANDARD.decode(block_id).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (prefix, number) = text.split_once('-')?;
    let digits = number.len() == 5 && number.bytes().all(|b| b.is_ascii_digit());
    (prefix == upload_id && digits).then(|| number.parse().ok()).flatten()
}

/// A call's query before its SAS: a part URL (`partNumber`, `uploadId`) is Put Block's
/// `comp=block&blockid=…`; others as they are.
pub fn query_params(params: &[(&str, &str)]) -> Vec<(String, String)> {
    let value = |name: &str| params.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    if let (Some(number), Some(upload_id)) = (value("partNumber"), value("uploadId")) {
        let number = number.parse().unwrap_or_default();
        return vec![
            ("comp".into(), "block".into()),
            ("blockid".into(), block_id(upload_id, number)),
        ];
    }
    params.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
}

/// The header Put Block List sets an object header with: the blob's own names
/// (`x-ms-blob-content-type`, `x-ms-meta-*`, …).
pub fn commit_header(name: &str) -> Cow<'static, str> {
    if name.eq_ignore_ascii_case("Content-Type") {
        return "x-ms-blob-content-type".into();
    }
    Cow::Owned(carried(name.to_owned().into(), "".into()).0.into_owned())
}

/// A metadata name as Azure takes it: a C# identifier, so `-` becomes `_` (profile names hold
/// no `_`, so the mapping is one to one; `metadata_name` maps back).
pub fn azure_metadata_name(name: &str) -> String {
    name.replace('-', "_")
}

/// A stored metadata name as the profile spells it.
pub fn metadata_name(azure: &str) -> String {
    azure.replace('_', "-")
}

/// How Azure carries a plan entry named `name`: the header a Put Blob sends.
pub fn carried<'a>(name: Cow<'a, str>, value: Cow<'a, str>) -> (Cow<'a, str>, Cow<'a, str>) {
    if name.len() > 11 && name[..11].eq_ignore_ascii_case("x-amz-meta-") {
        return (format!("x-ms-meta-{}", azure_metadata_name(&name[11..])).into(), value);
    }
    match RENAMED.iter().find(|(s3, _)| s3.eq_ignore_ascii_case(&name)) {
        Some((_, azure)) => ((*azure).into(), value),
        None => (name, value),
    }
}

/// What an Azure store cannot serve for `profile`, one sentence each (empty: it can).
pub fn problems(profile: &Profile) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, _) in &profile.fields {
        if !RENAMED.iter().any(|(s3, _)| s3.eq_ignore_ascii_case(name)) {
            problems.push(format!(
                "fields.{name}: an Azure store has no such header (it carries {}); a blob has no ACL, tags or S3 encryption settings",
                RENAMED.iter().map(|(s3, _)| *s3).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    for rule in &profile.metadata {
        if !rule.name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            problems.push(format!(
                "metadata.{}: Azure metadata names are identifiers and must start with a letter",
                rule.name
            ));
        }
    }
    if profile.checksum.required {
        problems
            .push("checksum.required: an Azure store takes no x-amz-checksum-* (Azure checks Content-MD5)".to_owned());
    }
    if profile.plan().methods() == [crate::profile::Method::Post] {
        problems.push("methods: Azure takes no POST form uploads, and this profile is POST-only".to_owned());
    }
    problems
}

/// One blob's SAS.
pub struct Sas<'a> {
    pub account: &'a str,
    /// The account key, decoded from its base64.
    pub key: &'a [u8],
    pub container: &'a str,
    pub blob: &'a str,
    pub permissions: &'a str,
    pub expiry: OffsetDateTime,
    /// `https`, or `https,http` for an `http://` endpoint (an emulator).
    pub protocol: &'a str,
}

impl Sas<'_> {
    /// The string the signature covers: sixteen fields, the unused ones empty.
    pub fn string_to_sign(&self) -> String {
        let resource = format!("/blob/{}/{}/{}", self.account, self.container, self.blob);
        let expiry = format_rfc3339(self.expiry);
        [
            self.permissions,
            "",
            &expiry,
            &resource,
            "",
            "",
            self.protocol,
            SAS_VERSION,
            "b",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
        ]
        .join("\n")
    }

    /// Appends the SAS query (`sv`, `spr`, `se`, `sr`, `sp`, `sig`) to `out`, without `?`.
    pub fn append_query(&self, out: &mut String) {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key).expect("HMAC takes any key length");
        mac.update(self.string_to_sign().as_bytes());
        let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let expiry = format_rfc3339(self.expiry);
        for (i, (name, value)) in [
            ("sv", SAS_VERSION),
            ("spr", self.protocol),
            ("se", &expiry),
            ("sr", "b"),
            ("sp", self.permissions),
            ("sig", &signature),
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                out.push('&');
            }
            out.push_str(name);
            out.push('=');
            uri_encode(out, value, false);
        }
    }
}

/// The account key as signing takes it; `None` when it is not base64.
pub fn account_key(secret: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(secret.trim()).ok()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn names_are_carried_as_put_blob_headers() {
        let cases = [
            ("x-amz-meta-uploaded-by", "x-ms-meta-uploaded_by"),
            ("x-amz-meta-postgate-upload", "x-ms-meta-postgate_upload"),
            ("Content-Disposition", "x-ms-blob-content-disposition"),
            ("Content-Type", "Content-Type"),
            ("If-None-Match", "If-None-Match"),
        ];
        for (name, azure) in cases {
            assert_eq!(carried(name.into(), "v".into()).0, azure, "{name}");
        }
        assert_eq!(metadata_name(&azure_metadata_name("uploaded-by")), "uploaded-by");
    }

    #[test]
    fn the_string_to_sign_has_sixteen_fields() {
        let sas = Sas {
            account: "devstoreaccount1",
            key: b"k",
            container: "c",
            blob: "a b/ü.png",
            permissions: "c",
            expiry: datetime!(2026-12-06 08:00:00 UTC),
            protocol: "https",
        };
        assert_eq!(
            sas.string_to_sign(),
            "c\n\n2026-12-06T08:00:00Z\n/blob/devstoreaccount1/c/a b/ü.png\n\n\nhttps\n2022-11-02\nb\n\n\n\n\n\n\n"
        );
        let mut query = String::new();
        sas.append_query(&mut query);
        assert!(
            query.starts_with("sv=2022-11-02&spr=https&se=2026-12-06T08%3A00%3A00Z&sr=b&sp=c&sig="),
            "{query}"
        );
    }
}
