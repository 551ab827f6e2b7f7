//! Upload profiles: parse a YAML file into a `RawProfile`, compile it into a `Profile`, and admit
//! one upload request against it.
//!
//! Pure: no IO, no clock, no randomness. The caller passes file text in and `now`/UUIDs via
//! `admit::Context`. Nothing here knows HTTP, S3 endpoints or credentials.

pub mod admit;
pub mod compile;
pub mod conditions;
pub mod enforcement;
pub mod plan;
pub mod raw;
pub mod template;
pub mod yaml;

use std::fmt;
use std::time::Duration;

use regex::Regex;

pub use admit::{
    Bounds, ChecksumRequest, Context, Entry, Filled, Refusal, RefusalKind, TypeBound, UploadRequest, Value, admit,
    admit_multipart, bind_claims,
};
pub use compile::{RegexCache, compile, compile_cached};
pub use plan::{ChecksumAlgorithm, ChecksumRule, Method, Plan};
pub use raw::RawProfile;
pub use template::{Placeholder, Template};

/// The largest object one POST or PUT upload may carry (S3's single-upload limit).
pub const MAX_UPLOAD_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// The largest object S3 stores (a multipart upload).
pub const MAX_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024 * 1024;
/// The smallest part of a multipart upload but the last.
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// The largest part of a multipart upload.
pub const MAX_PART_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// The most parts a multipart upload may have.
pub const MAX_PARTS: u64 = 10_000;
/// `multipart.part_size` when a profile does not say.
pub const DEFAULT_PART_BYTES: u64 = 5 * 1024 * 1024;
/// `multipart.expires_in` when a profile does not say.
pub const DEFAULT_MULTIPART_EXPIRES_IN: Duration = Duration::from_secs(24 * 3600);
/// `verify.within` when a profile does not say.
pub const DEFAULT_VERIFY_WITHIN: Duration = Duration::from_secs(3600);
/// The longest key S3 accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// S3's limit on user metadata, names and values together, in bytes.
pub const MAX_METADATA_BYTES: usize = 2048;
/// The longest a SigV4 signature may stay valid.
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(7 * 24 * 3600);
/// `expires_in` when a profile does not say.
pub const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(600);
/// A var's pattern when a profile does not say.
pub const DEFAULT_VAR_PATTERN: &str = "[A-Za-z0-9_-]{1,64}";

/// A profile name: the file stem, `[a-z0-9][a-z0-9_-]{0,62}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProfileName(String);

impl ProfileName {
    pub fn new(name: &str) -> Result<ProfileName, String> {
        let grammar = &crate::vocabulary::NAME;
        if grammar.admits(name) {
            Ok(ProfileName(name.to_owned()))
        } else {
            Err(format!("`{name}` is not a profile name: {}", grammar.rule))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a profile: where it is and what would be right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The file, filled in by whoever read it.
    pub file: Option<String>,
    /// 1-based line and column, for YAML syntax errors.
    pub line_col: Option<(usize, usize)>,
    /// Dotted path inside the profile (`size.max`), empty for the whole file.
    pub path: String,
    pub message: String,
}

impl Diagnostic {
    pub fn error(path: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            file: None,
            line_col: None,
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn warning(path: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(path, message)
        }
    }

    pub fn in_file(mut self, file: impl Into<String>) -> Diagnostic {
        self.file = Some(file.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            f.write_str(file)?;
            if let Some((line, col)) = self.line_col {
                write!(f, ":{line}:{col}")?;
            }
            f.write_str(": ")?;
        }
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// A declared var, with its full-match pattern.
#[derive(Debug, Clone)]
pub struct Var {
    pub name: String,
    pub pattern: std::sync::Arc<Regex>,
    pub pattern_source: String,
    pub description: Option<String>,
    /// The end-user token claim the value comes from; such a var is never taken from a request.
    pub claim: Option<String>,
}

/// The accepted object size, in bytes, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRange {
    pub min: u64,
    pub max: u64,
}

/// Which `Content-Type` an upload may have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentTypeRule {
    Prefix(String),
    OneOf(Vec<String>),
    Exact(String),
}

impl ContentTypeRule {
    /// Whether `content_type` satisfies the rule.
    pub fn admits(&self, content_type: &str) -> bool {
        match self {
            ContentTypeRule::Prefix(prefix) => content_type.starts_with(prefix.as_str()),
            ContentTypeRule::OneOf(types) => types.iter().any(|t| t == content_type),
            ContentTypeRule::Exact(exact) => exact == content_type,
        }
    }

    /// An HTML `accept` attribute value for the rule.
    pub fn accept(&self) -> String {
        match self {
            ContentTypeRule::Prefix(prefix) if prefix.ends_with('/') => format!("{prefix}*"),
            ContentTypeRule::Prefix(prefix) => prefix.clone(),
            ContentTypeRule::OneOf(types) => types.join(","),
            ContentTypeRule::Exact(exact) => exact.clone(),
        }
    }
}

/// How a metadata value is decided.
#[derive(Debug, Clone)]
pub enum MetadataValue {
    /// Fixed by the profile (placeholders resolved per signature).
    Fixed(Template),
    /// Supplied per request, one of these.
    OneOf(Vec<String>),
    /// Supplied per request, matching this full-match pattern.
    Pattern(std::sync::Arc<Regex>, String),
}

/// One `x-amz-meta-*` rule.
#[derive(Debug, Clone)]
pub struct MetadataRule {
    /// The name without `x-amz-meta-`.
    pub name: String,
    /// The form field: `x-amz-meta-` + name.
    pub field: String,
    pub value: MetadataValue,
    pub required: bool,
    pub description: Option<String>,
}

/// `multipart`: how a large upload is cut into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultipartRule {
    /// The size of every part but the last (grown per upload when 10,000 parts would not do).
    pub part_size: u64,
    /// How long an upload may take from its start to `complete`.
    pub expires_in: Duration,
}

/// `verify`: what completing an upload checks and does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRule {
    /// Check the first bytes against the content type.
    pub sniff: bool,
    /// Uploads go to this prefix + the key; `complete` promotes them to the key.
    pub staging: Option<String>,
    /// A refused object moves under this prefix (+ its key) instead of being deleted.
    pub quarantine: Option<String>,
    /// How long after the signature expires `complete` is accepted.
    pub within: Duration,
    /// Multipart uploads are staged too (a store whose part URLs could write the whole key:
    /// Azure's block SAS allows a Put Blob).
    pub stage_multipart: bool,
}

impl Default for VerifyRule {
    fn default() -> VerifyRule {
        VerifyRule {
            sniff: false,
            staging: None,
            quarantine: None,
            within: DEFAULT_VERIFY_WITHIN,
            stage_multipart: false,
        }
    }
}

/// A compiled profile: valid by construction, with everything precomputed that can be.
#[derive(Debug, Clone)]
pub struct Profile {
    pub(crate) name: ProfileName,
    pub(crate) description: Option<String>,
    pub(crate) bucket: String,
    pub(crate) store: String,
    pub(crate) key: Template,
    pub(crate) vars: Vec<Var>,
    pub(crate) expires_in: Duration,
    pub(crate) size: SizeRange,
    pub(crate) content_type: Option<ContentTypeRule>,
    pub(crate) metadata: Vec<MetadataRule>,
    pub(crate) fields: Vec<(String, String)>,
    pub(crate) apps: Option<Vec<String>>,
    pub(crate) checksum: ChecksumRule,
    /// The request must name the file (`filename: request`).
    pub(crate) filename_required: bool,
    /// `false`: an upload must not replace an existing object.
    pub(crate) overwrite: bool,
    pub(crate) multipart: Option<MultipartRule>,
    pub(crate) verify: VerifyRule,
    pub(crate) plan: Plan,
    pub(crate) warnings: Vec<Diagnostic>,
}

impl Profile {
    pub fn name(&self) -> &ProfileName {
        &self.name
    }
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    pub fn bucket(&self) -> &str {
        &self.bucket
    }
    pub fn store(&self) -> &str {
        &self.store
    }
    pub fn key(&self) -> &Template {
        &self.key
    }
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }
    pub fn expires_in(&self) -> Duration {
        self.expires_in
    }
    pub fn size(&self) -> SizeRange {
        self.size
    }
    pub fn content_type(&self) -> Option<&ContentTypeRule> {
        self.content_type.as_ref()
    }
    pub fn metadata(&self) -> &[MetadataRule] {
        &self.metadata
    }
    /// Other form fields, pinned exact, in the order the profile lists them.
    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }
    /// The apps allowed to use the profile; `None` means every app.
    pub fn apps(&self) -> Option<&[String]> {
        self.apps.as_deref()
    }
    pub fn allows_app(&self, app: &str) -> bool {
        self.apps.as_ref().is_none_or(|apps| apps.iter().any(|a| a == app))
    }
    pub fn checksum(&self) -> &ChecksumRule {
        &self.checksum
    }
    /// Whether a request must name the file of a key ending in `${filename}`.
    pub fn filename_required(&self) -> bool {
        self.filename_required
    }
    pub fn overwrite(&self) -> bool {
        self.overwrite
    }
    /// `None`: the profile takes no multipart uploads.
    pub fn multipart(&self) -> Option<&MultipartRule> {
        self.multipart.as_ref()
    }
    /// The profile with every upload staged (a store whose signatures bound only the key,
    /// Azure): under its own `verify.staging`, else `prefix`; multipart uploads too.
    pub fn staged_under(&self, prefix: &str) -> Profile {
        let mut profile = self.clone();
        profile.verify.staging.get_or_insert_with(|| prefix.to_owned());
        profile.verify.stage_multipart = true;
        profile
    }

    pub fn verify(&self) -> &VerifyRule {
        &self.verify
    }
    /// The profile's constraints in form order, and the methods that can carry them.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }
}

/// Parses YAML text and compiles it. Every problem is reported, YAML errors with line and column.
/// A type error without the string it found: `invalid type: string "<a secret a symlink led
/// to>", expected …` becomes `invalid type: a string of 19 characters, expected …`. Diagnostics
/// reach logs and the admin answer; a file's content must not.
fn unquote_scalars(message: &str) -> String {
    for lead in ["invalid type: string \"", "invalid value: string \""] {
        if let Some(rest) = message.strip_prefix(lead)
            && let Some(end) = rest.rfind("\", expected")
        {
            let kind = &lead[..lead.len() - "string \"".len()];
            let shown = rest[..end].chars().count();
            return format!("{kind}a string of {shown} characters{}", &rest[end + 1..]);
        }
    }
    message.to_owned()
}

pub fn parse(name: &ProfileName, text: &str) -> Result<Profile, Vec<Diagnostic>> {
    parse_cached(name, text, &mut RegexCache::default())
}

/// `parse` with a regex cache shared across profiles.
pub fn parse_cached(name: &ProfileName, text: &str, cache: &mut RegexCache) -> Result<Profile, Vec<Diagnostic>> {
    if text.trim().is_empty() {
        return Err(vec![Diagnostic::error(
            "",
            "the file is empty; a profile needs at least `bucket`, `key` and `size`",
        )]);
    }
    // The YAML limits first: the typed parse would scan any depth and expand every alias before
    // another check could run.
    yaml::check(text).map_err(|diagnostic| vec![diagnostic])?;
    let deserializer = serde_yaml::Deserializer::from_str(text);
    let raw: RawProfile = match serde_path_to_error::deserialize(deserializer) {
        Ok(raw) => raw,
        Err(error) => {
            let path = error.path().to_string();
            let inner = error.into_inner();
            let mut message = inner.to_string();
            if message == "deserializing from YAML containing more than one document is not supported" {
                message = "the file holds more than one YAML document (`---`); a profile is one document".to_owned();
            }
            // serde_yaml appends "at line L column C"; the location is reported separately.
            if let Some(at) = message.find(" at line ") {
                message.truncate(at);
            }
            let path = if path == "." { String::new() } else { path };
            message = unquote_scalars(&message);
            // serde_yaml prefixes nested errors with the enclosing map's path; ours is complete.
            if let Some((prefix, rest)) = message.split_once(": ")
                && !prefix.contains(' ')
                && path.starts_with(prefix)
            {
                message = rest.to_owned();
            }
            let mut diagnostic = Diagnostic::error(path, message);
            diagnostic.line_col = inner.location().map(|l| (l.line(), l.column()));
            return Err(vec![diagnostic]);
        }
    };
    compile_cached(name.clone(), raw, cache)
}
