//! The profile file as written: serde and JSON Schema types that mirror the YAML and hold no logic.
//!
//! Everything here may be invalid; `compile` is the only way to a `Profile`. The JSON Schema in
//! `schema/profile.schema.json` is generated from these types (`postgate schema`).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use indexmap::IndexMap;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// An upload profile: one YAML file in the policies directory; the file stem is its name.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "postgate upload profile")]
pub struct RawProfile {
    /// Shown to apps and in `postgate explain`.
    #[serde(default)]
    pub description: Option<String>,
    /// The S3 bucket uploads go to.
    #[schemars(regex(pattern = crate::vocabulary::BUCKET.pattern))]
    pub bucket: String,
    /// Which configured store (S3 endpoint and credentials) signs this profile; `default` if omitted.
    #[serde(default)]
    #[schemars(regex(pattern = crate::vocabulary::NAME.pattern))]
    pub store: Option<String>,
    /// The object key template. Placeholders: `${filename}` (only at the end, after `/`),
    /// `${uuid}`, `${date}`, `${app}`, and the names declared under `vars`.
    #[schemars(length(min = 1, max = 1024))]
    pub key: String,
    /// The per-request placeholders this profile accepts, by name.
    #[serde(default, deserialize_with = "unique_keys")]
    #[schemars(extend("propertyNames" = { "pattern": crate::vocabulary::VAR_NAME.pattern }))]
    pub vars: IndexMap<String, RawVar>,
    /// How long a signed form stays valid, like `10m`, `1h`, `2days`. Default `10m`, at most `7d`.
    #[serde(default)]
    #[schemars(regex(pattern = r"^\s*[0-9]+\s*[a-zA-Z]+(\s*[0-9]+\s*[a-zA-Z]+)*\s*$"))]
    pub expires_in: Option<String>,
    /// The accepted object size; becomes `content-length-range`. Required.
    #[serde(default)]
    #[schemars(with = "RawSize")]
    pub size: Option<RawSize>,
    /// Which `Content-Type` an upload may have: exactly one of `prefix`, `one_of`, `exact`.
    #[serde(default)]
    #[schemars(with = "RawContentType")]
    pub content_type: Option<RawContentType>,
    /// User metadata (`x-amz-meta-*`) rules, by name (lowercase letters, digits and `-`).
    #[serde(default, deserialize_with = "unique_keys")]
    #[schemars(extend("propertyNames" = { "pattern": crate::vocabulary::METADATA_NAME.pattern }))]
    pub metadata: IndexMap<String, RawMetadata>,
    /// Other S3 POST form fields, pinned to exact values.
    #[serde(default, deserialize_with = "unique_keys")]
    #[schemars(extend("propertyNames" = { "enum": crate::vocabulary::KNOWN_FIELDS }))]
    pub fields: IndexMap<String, String>,
    /// The apps that may request this profile: a list of app names, or `all` for every app.
    /// Omitted: every app, with a warning (say `all` to mean it).
    #[serde(default)]
    pub apps: Option<RawApps>,
    /// How uploads may be carried: `post` (a form), `put` (a presigned URL). Default: every
    /// method that can carry the profile's rules.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub methods: Option<Vec<crate::profile::Method>>,
    /// Checksums the request declares (`x-amz-checksum-*`), which the store verifies.
    #[serde(default)]
    pub checksum: Option<RawChecksum>,
    /// Who names the file in a key ending in `${filename}`: `request` (the request must give the
    /// `filename`; the gateway checks it and signs the whole key) or `store` (a POST form may
    /// leave it to the store, and the uploader then chooses everything after the key's prefix).
    /// Omitted: `store`, with a warning.
    #[serde(default)]
    pub filename: Option<RawFilename>,
    /// `false`: never replace an existing object (`If-None-Match: *`; PUT only). Default `true`.
    #[serde(default)]
    pub overwrite: Option<bool>,
    /// Allow a public `acl` (`public-read`, `public-read-write`, `authenticated-read`).
    #[serde(default)]
    pub public: bool,
    /// Multipart uploads (`POST /v1/profiles/{name}/multipart`): files above 5 GiB and uploads
    /// that resume. With it, `size.max` may go up to 5 TiB; single POST and PUT uploads stay at
    /// 5 GiB.
    #[serde(default)]
    pub multipart: Option<RawMultipart>,
    /// What `POST /v1/uploads/complete` checks and does besides size, type, metadata and
    /// checksum: sniff the first bytes, promote from a staging key, quarantine a refused object.
    #[serde(default)]
    pub verify: Option<RawVerify>,
}

/// `multipart`: how a large upload is cut into parts.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMultipart {
    /// The size of every part but the last: 5 MiB to 5 GiB. Default 5 MiB (as Uppy cuts parts). An upload too large
    /// for 10,000 parts of this size gets larger parts.
    #[serde(default)]
    pub part_size: Option<RawByteSize>,
    /// How long an upload may take from its start to `complete`, like `24h`. Default `24h`, at
    /// most `7d`. Each part URL is valid for the profile's `expires_in`.
    #[serde(default)]
    #[schemars(regex(pattern = r"^\s*[0-9]+\s*[a-zA-Z]+(\s*[0-9]+\s*[a-zA-Z]+)*\s*$"))]
    pub expires_in: Option<String>,
}

/// `verify`: what completing an upload checks and does.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawVerify {
    /// Read the object's first bytes and refuse it when they are not what its content type says
    /// (an HTML page stored as `image/png`). Needs a `content_type` rule.
    #[serde(default)]
    pub sniff: bool,
    /// Upload to this prefix + the key; `complete` copies the checked object to the key and
    /// removes the staged one, so what was checked cannot be swapped afterwards. Ends in `/`.
    #[serde(default)]
    pub staging: Option<String>,
    /// On a violation, move the object under this prefix (+ its key) instead of deleting it.
    /// Ends in `/`.
    #[serde(default)]
    pub quarantine: Option<String>,
    /// How long after the signature expires an upload may still be completed, like `1h`.
    /// Default `1h`, at most `7d`.
    #[serde(default)]
    #[schemars(regex(pattern = r"^\s*[0-9]+\s*[a-zA-Z]+(\s*[0-9]+\s*[a-zA-Z]+)*\s*$"))]
    pub within: Option<String>,
}

/// `apps`: the names of the apps that may use the profile, or `all`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawApps {
    /// `all`: every app.
    Every(RawEveryApp),
    /// These apps only.
    List(Vec<String>),
}

/// The word `all`.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawEveryApp {
    All,
}

/// Who names the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawFilename {
    /// The request names the file; the whole key is signed.
    Request,
    /// A POST form may leave `${filename}` to the store.
    Store,
}

/// The checksum rule.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawChecksum {
    /// Whether every request must declare a checksum; default `true` when `checksum` is given.
    #[serde(default)]
    pub required: Option<bool>,
    /// The algorithms a request may use; default all of them.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub algorithms: Option<Vec<crate::profile::ChecksumAlgorithm>>,
}

/// A var: a value supplied per request.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawVar {
    /// A regular expression the whole value must match. Default `[A-Za-z0-9_-]{1,64}`.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Shown to apps.
    #[serde(default)]
    pub description: Option<String>,
    /// Takes its value from this claim of the end user's verified ID token (`sub`, or a custom
    /// claim such as `tenant`); the request may then not supply it. The value still has to match
    /// `pattern`.
    #[serde(default)]
    #[schemars(length(min = 1, max = 256))]
    pub claim: Option<String>,
}

/// The size range of an upload.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSize {
    /// Smallest accepted size; default 0.
    #[serde(default)]
    pub min: Option<RawByteSize>,
    /// Largest accepted size; at most 5 GiB (one POST upload).
    pub max: RawByteSize,
}

/// A byte count: a number, or a string with a unit such as `5MiB`, `10 MB`, `1GiB`.
#[derive(Debug, Clone)]
pub enum RawByteSize {
    Bytes(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawByteSize;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte count: a whole number of bytes, or a size with a unit such as `5MiB`")
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawByteSize, E> {
                Ok(RawByteSize::Bytes(v))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawByteSize, E> {
                u64::try_from(v)
                    .map(RawByteSize::Bytes)
                    .map_err(|_| E::custom(format!("a size cannot be negative (got {v})")))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<RawByteSize, E> {
                Err(E::custom(format!(
                    "a size is a whole number of bytes or has a unit such as `5MiB` (got {v})"
                )))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawByteSize, E> {
                Ok(RawByteSize::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for RawByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A byte count: a number, or a string with a unit such as `5MiB`, `10 MB`, `1GiB`.",
            "oneOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*([kKmMgGtT]i?[bB]?|[bB])?\s*$" }
            ]
        })
    }
}

/// The content-type rule. Exactly one key.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct RawContentType {
    /// Types starting with this (e.g. `image/`); narrowed to exact when the request names a type.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub prefix: Option<String>,
    /// The request must name one of these; it is signed exact.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub one_of: Option<Vec<String>>,
    /// Always this type.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub exact: Option<String>,
}

/// A metadata rule: a template string (a fixed value), or a rule for a value supplied per request.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawMetadata {
    /// A fixed value; placeholders allowed (not `${filename}`).
    Fixed(String),
    /// A value supplied per request.
    Rule(RawMetadataRule),
}

/// A metadata value supplied per request: `one_of` or `pattern`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMetadataRule {
    /// The value must be one of these.
    #[serde(default)]
    pub one_of: Option<Vec<String>>,
    /// A regular expression the whole value must match.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Whether the request must supply it; default true.
    #[serde(default)]
    pub required: Option<bool>,
    /// Shown to apps.
    #[serde(default)]
    pub description: Option<String>,
}

/// Reads a map that refuses a repeated key. serde keeps the last of two equal keys, so a profile
/// that declares `user` twice would be signed with whichever came last: neither reader nor author
/// could tell from the file which rule holds.
fn unique_keys<'de, D, V>(deserializer: D) -> Result<IndexMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct UniqueKeys<V>(PhantomData<V>);

    impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueKeys<V> {
        type Value = IndexMap<String, V>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = IndexMap::new();
            while let Some(key) = map.next_key::<String>()? {
                if out.contains_key(&key) {
                    return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
                }
                let value = map.next_value()?;
                out.insert(key, value);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_map(UniqueKeys(PhantomData))
}
