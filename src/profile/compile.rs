//! The compiler: `RawProfile` → `Profile`, refusing unsafe profiles.
//!
//! Every problem is collected, never just the first, each with the dotted path of what is wrong
//! and what would be right. Pure: no IO, no clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use regex::{Regex, RegexBuilder};

use super::plan::{ChecksumRule, Method, Plan};
use super::raw::{
    RawApps, RawByteSize, RawContentType, RawFilename, RawMetadata, RawMetadataRule, RawMultipart, RawProfile,
    RawVerify,
};
use super::template::{Part, Placeholder, Template};
use super::{
    ContentTypeRule, DEFAULT_EXPIRES_IN, DEFAULT_MULTIPART_EXPIRES_IN, DEFAULT_PART_BYTES, DEFAULT_VAR_PATTERN,
    DEFAULT_VERIFY_WITHIN, Diagnostic, MAX_EXPIRES_IN, MAX_KEY_BYTES, MAX_METADATA_BYTES, MAX_OBJECT_BYTES,
    MAX_PART_BYTES, MAX_UPLOAD_BYTES, MIN_PART_BYTES, MetadataRule, MetadataValue, MultipartRule, Profile, ProfileName,
    SizeRange, Var, VerifyRule,
};
use crate::text::format_bytes;
use crate::vocabulary::{
    BUILT_INS, INLINE_RENDERED, KNOWN_FIELDS, METADATA_NAME, NAME, PRIVATE_ACLS, PUBLIC_ACLS, VAR_NAME, is_media_type,
};

/// Whether browsers render `media_type` inline (parameters ignored).
fn renders_inline(media_type: &str) -> bool {
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    INLINE_RENDERED.contains(&essence.as_str()) || essence.ends_with("+xml")
}

/// Above this a POST policy document is worth a warning (forms carry it base64-encoded): 1 KiB
/// of the profile's own conditions, plus the per-upload marker's (~70 bytes) every form carries.
const POLICY_WARN_BYTES: usize = 1024 + 128;

/// Compiled patterns by source, shared while compiling a set of profiles: sets repeat the same
/// few patterns, and building a regex (`.{0,200}` is ~1 ms) dwarfs everything else a compile does.
#[derive(Debug, Default)]
pub struct RegexCache {
    compiled: HashMap<String, Result<Arc<Regex>, String>>,
}

impl RegexCache {
    /// Compiles `pattern` as a full-match regex with a bounded size, once per cache. Profiles
    /// share the one `Regex` (an `Arc`): a `Regex` clone carries its own match-cache pool,
    /// ~730 bytes, which at 10,000 profiles of four patterns was 29 MB.
    fn full_match(&mut self, pattern: &str) -> Result<Arc<Regex>, String> {
        if let Some(result) = self.compiled.get(pattern) {
            return result.clone();
        }
        let result = full_match_regex(pattern).map(Arc::new);
        self.compiled.insert(pattern.to_owned(), result.clone());
        result
    }
}

/// Compiles a raw profile. On success the profile carries its warnings; on failure the list
/// holds every error and warning.
pub fn compile(name: ProfileName, raw: RawProfile) -> Result<Profile, Vec<Diagnostic>> {
    compile_cached(name, raw, &mut RegexCache::default())
}

/// `compile` with a regex cache shared across profiles.
pub fn compile_cached(name: ProfileName, raw: RawProfile, cache: &mut RegexCache) -> Result<Profile, Vec<Diagnostic>> {
    let mut diags = Vec::new();

    check_bucket(&raw.bucket, &mut diags);
    let store = compile_store(raw.store.as_deref(), &mut diags);

    let vars = compile_vars(&raw, cache, &mut diags);
    let var_names: Vec<String> = raw.vars.keys().cloned().collect();
    let key = compile_key(&raw.key, &var_names, &mut diags);
    let expires_in = compile_expires_in(raw.expires_in.as_deref(), &mut diags);
    let size = compile_size(&raw, &mut diags);
    let content_type = raw
        .content_type
        .as_ref()
        .and_then(|rule| compile_content_type(rule, &mut diags));
    let metadata = compile_metadata(&raw, &var_names, cache, &mut diags);
    let fields = compile_fields(&raw, &mut diags);

    let apps = compile_apps(raw.apps.as_ref(), &mut diags);

    let checksum = compile_checksum(&raw, &mut diags);
    let overwrite = raw.overwrite.unwrap_or(true);
    if let Some(key) = &key {
        warn_unused_vars(&var_names, &vars, key, &metadata, &mut diags);
        warn_key_shape(key, &var_names, overwrite, raw.filename, &mut diags);
    }
    if let Some(rule) = &content_type {
        warn_inline_rendering(rule, &fields, &mut diags);
    }

    let multipart = raw
        .multipart
        .as_ref()
        .and_then(|rule| compile_multipart(rule, &mut diags));
    let verify = compile_verify(&raw, size.as_ref(), content_type.is_some(), &mut diags);
    let (Some(key), Some(size), Some(expires_in)) = (key, size, expires_in) else {
        return Err(sorted(diags));
    };
    if diags.iter().any(Diagnostic::is_error) {
        return Err(sorted(diags));
    }

    let mut profile = Profile {
        name,
        description: raw.description,
        bucket: raw.bucket,
        store,
        key,
        vars,
        expires_in,
        size,
        content_type,
        metadata,
        fields,
        apps,
        checksum,
        filename_required: raw.filename == Some(RawFilename::Request),
        overwrite,
        multipart,
        verify: verify.unwrap_or_default(),
        plan: Plan::default(),
        warnings: Vec::new(),
    };
    profile.plan = Plan::build(&profile, raw.methods.as_deref());
    check_plan(&profile, raw.methods.as_deref(), raw.multipart.is_some(), &mut diags);
    if diags.iter().any(Diagnostic::is_error) {
        return Err(sorted(diags));
    }
    profile.warnings = sorted(diags);
    Ok(profile)
}

fn compile_store(store: Option<&str>, diags: &mut Vec<Diagnostic>) -> String {
    let store = store.unwrap_or("default").to_owned();
    if !NAME.admits(&store) {
        diags.push(Diagnostic::error(
            "store",
            format!("`{store}` is not a store name: {}", NAME.rule),
        ));
    }
    store
}

fn compile_apps(raw: Option<&RawApps>, diags: &mut Vec<Diagnostic>) -> Option<Vec<String>> {
    let apps = match raw {
        None => {
            diags.push(Diagnostic::warning(
                "apps",
                "not given, so every app may use this profile; list the apps, or write `apps: all` to mean every app",
            ));
            None
        }
        Some(RawApps::Every(_)) => None,
        Some(RawApps::List(apps)) => Some(apps.clone()),
    };
    if let Some(apps) = &apps {
        for (i, app) in apps.iter().enumerate() {
            if !NAME.admits(app) {
                diags.push(Diagnostic::error(
                    format!("apps[{i}]"),
                    format!("`{app}` is not an app name: {}", NAME.rule),
                ));
            }
        }
        if apps.is_empty() {
            diags.push(Diagnostic::warning(
                "apps",
                "the list is empty, so no app may use this profile; write `apps: all` to allow every app",
            ));
        }
    }

    apps
}

/// What only the built plan can tell: the methods and multipart it carries, and the size of its
/// POST policy (errors stop before the estimate).
fn check_plan(profile: &Profile, methods: Option<&[Method]>, multipart: bool, diags: &mut Vec<Diagnostic>) {
    check_methods(profile, methods, diags);
    if multipart && let Some(reason) = profile.plan.multipart_unavailable() {
        diags.push(Diagnostic::error("multipart", reason.to_owned()));
    }
    if diags.iter().any(Diagnostic::is_error) {
        return;
    }
    let policy_bytes = estimated_policy_bytes(profile);
    if policy_bytes > POLICY_WARN_BYTES {
        diags.push(Diagnostic::warning(
            "",
            format!(
                "the POST policy document is about {policy_bytes} bytes (over {POLICY_WARN_BYTES}); forms carry it base64-encoded in every upload"
            ),
        ));
    }
}

fn sorted(mut diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    // Errors first; otherwise the order the compiler found them in, which follows the file.
    diags.sort_by_key(|d| d.severity);
    diags
}

/// S3 general-purpose bucket naming rules.
fn check_bucket(bucket: &str, diags: &mut Vec<Diagnostic>) {
    let mut problems = Vec::new();
    if !(3..=63).contains(&bucket.len()) {
        problems.push("must be 3 to 63 characters long");
    }
    if !bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
    {
        problems.push("may contain only lowercase letters, digits, `.` and `-`");
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !edge_ok(bucket.chars().next()) || !edge_ok(bucket.chars().last()) {
        problems.push("must begin and end with a letter or digit");
    }
    if bucket.contains("..") || bucket.contains(".-") || bucket.contains("-.") {
        problems.push("must not contain `..`, `.-` or `-.`");
    }
    if bucket.split('.').count() == 4 && bucket.split('.').all(|p| p.parse::<u8>().is_ok()) {
        problems.push("must not be formatted as an IP address");
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if bucket.starts_with(prefix) {
            problems.push("must not start with a prefix S3 reserves (`xn--`, `sthree-`, `amzn-s3-demo-`)");
        }
    }
    for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if bucket.ends_with(suffix) {
            problems.push(
                "must not end with a suffix S3 reserves (`-s3alias`, `--ol-s3`, `.mrap`, `--x-s3`, `--table-s3`)",
            );
        }
    }
    for problem in problems {
        diags.push(Diagnostic::error(
            "bucket",
            format!("`{bucket}` is not a valid S3 bucket name: it {problem}"),
        ));
    }
}

/// Compiles `pattern` as a full-match regex with a bounded size. The pattern is parsed on its own
/// first: `[a-z]{1,8})|(?:.*` is not a pattern, but wrapped in `^(?:…)$` it would compile to one
/// that matches everything.
fn full_match_regex(pattern: &str) -> Result<Regex, String> {
    if let Err(error) = regex_syntax::Parser::new().parse(pattern) {
        let text = error.to_string();
        let reason = text.lines().last().unwrap_or("invalid").trim();
        let reason = reason.strip_prefix("error: ").unwrap_or(reason);
        return Err(format!(
            "`{pattern}` is not a valid regular expression on its own: {reason}"
        ));
    }
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|error| {
            // The regex crate's message spans several lines; keep the last (the reason).
            let text = error.to_string();
            let reason = text.lines().last().unwrap_or("invalid").trim();
            let reason = reason.strip_prefix("error: ").unwrap_or(reason).to_owned();
            format!("`{pattern}` is not a valid regular expression: {reason}")
        })
}

fn compile_vars(raw: &RawProfile, cache: &mut RegexCache, diags: &mut Vec<Diagnostic>) -> Vec<Var> {
    let mut vars = Vec::new();
    for (name, raw_var) in &raw.vars {
        let path = format!("vars.{name}");
        if let Err(why) = VAR_NAME.check(name) {
            diags.push(Diagnostic::error(&path, why));
            continue;
        }
        if BUILT_INS.contains(&name.as_str()) {
            diags.push(Diagnostic::error(
                &path,
                format!("`${{{name}}}` is built in and cannot be declared as a var"),
            ));
            continue;
        }
        if let Some(claim) = &raw_var.claim
            && (claim.is_empty() || claim.len() > 256 || claim.chars().any(char::is_control))
        {
            diags.push(Diagnostic::error(
                format!("{path}.claim"),
                "a claim name is 1 to 256 characters without control characters, like `sub` or `tenant`",
            ));
            continue;
        }
        let source = raw_var.pattern.as_deref().unwrap_or(DEFAULT_VAR_PATTERN);
        match cache.full_match(source) {
            Ok(pattern) if pattern.is_match("") && source.is_empty() => diags.push(Diagnostic::error(
                format!("{path}.pattern"),
                "an empty pattern matches only the empty value, which is never accepted",
            )),
            Ok(pattern) => vars.push(Var {
                name: name.clone(),
                pattern,
                pattern_source: source.to_owned(),
                description: raw_var.description.clone(),
                claim: raw_var.claim.clone(),
            }),
            Err(message) => diags.push(Diagnostic::error(format!("{path}.pattern"), message)),
        }
    }
    vars
}

fn compile_key(text: &str, var_names: &[String], diags: &mut Vec<Diagnostic>) -> Option<Template> {
    let before = diags.len();
    if text.is_empty() {
        diags.push(Diagnostic::error("key", "the key is empty"));
    }
    if text.starts_with('/') {
        diags.push(Diagnostic::error(
            "key",
            "a key must not start with `/`: S3 would store an empty first segment",
        ));
    }
    let template = match Template::parse(text, var_names) {
        Ok(template) => template,
        Err(error) => {
            diags.push(Diagnostic::error("key", error.to_string()));
            return None;
        }
    };
    let parts = template.parts();
    let filename_count = template.placeholders().filter(|p| *p == Placeholder::Filename).count();
    if filename_count > 1 {
        diags.push(Diagnostic::error("key", "`${filename}` may appear only once"));
    }
    for (i, part) in parts.iter().enumerate() {
        if let Part::Placeholder(Placeholder::Filename, _) = part {
            let after_slash = i > 0 && matches!(&parts[i - 1], Part::Literal(text) if text.ends_with('/'));
            if i + 1 != parts.len() || !after_slash {
                diags.push(Diagnostic::error(
                    "key",
                    "`${filename}` is allowed only at the end of the key, right after a `/` (like `uploads/${user}/${filename}`)",
                ));
            }
        }
    }
    // Placeholder values are never empty and never contain `/`, so the segments a key can have
    // are decided by its literal text: check them with each placeholder standing for "x".
    let shape: String = parts
        .iter()
        .map(|part| match part {
            Part::Literal(text) => text.as_str(),
            Part::Placeholder(..) => "x",
        })
        .collect();
    let segments: Vec<&str> = shape.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if *segment == "." || *segment == ".." {
            diags.push(Diagnostic::error(
                "key",
                format!("the key has a `{segment}` segment; use a name"),
            ));
        } else if segment.is_empty() && i > 0 && !last {
            diags.push(Diagnostic::error("key", "the key has an empty segment (`//`)"));
        } else if segment.is_empty() && last && !shape.is_empty() {
            diags.push(Diagnostic::error(
                "key",
                "the key ends with `/`; end it with a name or `${filename}`",
            ));
        }
    }
    if let Err(why) = forbidden_char(text) {
        diags.push(Diagnostic::error("key", format!("the key {why}")));
    }
    if template.literal_len() >= MAX_KEY_BYTES {
        diags.push(Diagnostic::error(
            "key",
            format!(
                "the key's fixed text is {} bytes; S3 keys are at most {MAX_KEY_BYTES}",
                template.literal_len()
            ),
        ));
    }
    (diags.len() == before).then_some(template)
}

/// Why `text` may not be used: it contains a control, format or bidirectional character (which
/// make a key display as something it is not, or hide part of it). Phrased to follow "the value"
/// or a field name.
pub(crate) fn forbidden_char(text: &str) -> Result<(), String> {
    match text.chars().find(|c| is_forbidden_char(*c)) {
        Some(bad) => Err(format!(
            "contains the invisible control or format character U+{:04X}",
            bad as u32
        )),
        None => Ok(()),
    }
}

/// Characters no value, key or field may contain: controls (Cc), format characters (Cf: the
/// bidirectional overrides, zero-width spaces and joiners, the soft hyphen, tag characters, …),
/// the line and paragraph separators, and the other characters Unicode says to show as nothing
/// (default-ignorable: combining grapheme joiner, Hangul fillers, variation selectors).
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || is_format_char(c)
        || matches!(
            c,
            '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FFA0}'
                | '\u{E0100}'..='\u{E01EF}'
        )
}

/// Unicode general category Cf (Unicode 16.0, DerivedGeneralCategory.txt).
fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

fn compile_expires_in(text: Option<&str>, diags: &mut Vec<Diagnostic>) -> Option<Duration> {
    compile_duration(text, "expires_in", DEFAULT_EXPIRES_IN, diags)
}

/// A duration setting at `path`: whole seconds, 1 s to 7 days (the longest a SigV4 signature
/// may be valid); `default` when omitted.
fn compile_duration(
    text: Option<&str>,
    path: &str,
    default: Duration,
    diags: &mut Vec<Diagnostic>,
) -> Option<Duration> {
    let Some(text) = text else {
        return Some(default);
    };
    match humantime::parse_duration(text.trim()) {
        Ok(duration) if duration.is_zero() => {
            diags.push(Diagnostic::error(path, "zero is useless; use at least `1s`"));
            None
        }
        Ok(duration) if duration > MAX_EXPIRES_IN => {
            diags.push(Diagnostic::error(
                path,
                format!("`{text}` is above 7 days, the longest a SigV4 signature may be valid"),
            ));
            None
        }
        Ok(duration) if duration.subsec_nanos() != 0 => {
            diags.push(Diagnostic::error(
                path,
                format!("`{text}` is not a whole number of seconds"),
            ));
            None
        }
        Ok(duration) => Some(duration),
        Err(error) => {
            diags.push(Diagnostic::error(
                path,
                format!("`{text}` is not a duration ({error}); write it like `10m`, `1h`, `2days`"),
            ));
            None
        }
    }
}

fn compile_multipart(raw: &RawMultipart, diags: &mut Vec<Diagnostic>) -> Option<MultipartRule> {
    let part_size = match raw.part_size.as_ref().map(parse_byte_size) {
        None => Some(DEFAULT_PART_BYTES),
        Some(Ok(bytes)) if (MIN_PART_BYTES..=MAX_PART_BYTES).contains(&bytes) => Some(bytes),
        Some(Ok(bytes)) => {
            diags.push(Diagnostic::error(
                "multipart.part_size",
                format!(
                    "{} is outside 5 MiB..=5 GiB, the part sizes S3 takes (only the last part may be smaller)",
                    format_bytes(bytes)
                ),
            ));
            None
        }
        Some(Err(message)) => {
            diags.push(Diagnostic::error("multipart.part_size", message));
            None
        }
    };
    let expires_in = compile_duration(
        raw.expires_in.as_deref(),
        "multipart.expires_in",
        DEFAULT_MULTIPART_EXPIRES_IN,
        diags,
    );
    Some(MultipartRule {
        part_size: part_size?,
        expires_in: expires_in?,
    })
}

fn compile_verify(
    raw: &RawProfile,
    size: Option<&SizeRange>,
    has_content_type: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<VerifyRule> {
    let rule = raw.verify.as_ref()?;
    let within = compile_duration(rule.within.as_deref(), "verify.within", DEFAULT_VERIFY_WITHIN, diags);
    if rule.sniff && !has_content_type {
        diags.push(Diagnostic::error(
            "verify.sniff",
            "sniffing checks the bytes against the content type rule, and this profile has none; add `content_type`",
        ));
    }
    // A quarantine copies the refused object with one CopyObject, which stops at 5 GiB. (A
    // promotion copies only single uploads, at most 5 GiB: multipart uploads write the key.)
    let copies_too_much = size.is_some_and(|s| s.max > MAX_UPLOAD_BYTES);
    for (path, prefix) in [
        ("verify.staging", &rule.staging),
        ("verify.quarantine", &rule.quarantine),
    ] {
        let Some(prefix) = prefix else { continue };
        if let Err(why) = check_prefix(prefix) {
            diags.push(Diagnostic::error(path, why));
        }
        if copies_too_much && path == "verify.quarantine" {
            diags.push(Diagnostic::error(
                path,
                "moving an object takes one CopyObject, which stops at 5 GiB; keep `size.max` at 5 GiB or less",
            ));
        }
    }
    check_verification_sticks(raw, rule, diags);
    Some(VerifyRule {
        sniff: rule.sniff,
        staging: rule.staging.clone(),
        quarantine: rule.quarantine.clone(),
        within: within?,
        stage_multipart: false,
    })
}

/// `complete` must find the object it checks, and what it checked must stay: no still valid
/// signature may put unchecked bytes where the checked ones are.
fn check_verification_sticks(raw: &RawProfile, rule: &RawVerify, diags: &mut Vec<Diagnostic>) {
    // A key the store completes (`${filename}` left to a POST form) may hold any name, slashes
    // included, and `complete` is told one path segment: it could never find what it must check.
    if raw.filename != Some(RawFilename::Request) && raw.key.ends_with("${filename}") {
        diags.push(Diagnostic::error(
            "verify",
            "`complete` checks the object at the exact key, and this key leaves `${filename}` to the store, which may write any name; set `filename: request`",
        ));
    }
    // Verification must stick: after `complete`, a still valid URL must not put unchecked bytes
    // where the checked ones are. With staging the client only ever writes the staging key;
    // with `overwrite: false` every method signs `If-None-Match: *` (on stores that honour it).
    if (rule.sniff || rule.quarantine.is_some()) && rule.staging.is_none() && raw.overwrite != Some(false) {
        let what = if rule.sniff {
            "verify.sniff"
        } else {
            "verify.quarantine"
        };
        diags.push(Diagnostic::error(
            what,
            "a still valid URL could replace the checked bytes after `complete`; add `verify.staging` (the client then writes only a staging key and `complete` copies what it checked), or set `overwrite: false` (PUT and multipart only, on stores that honour `If-None-Match`)",
        ));
    }
    if rule.staging.is_some() && raw.overwrite == Some(false) {
        diags.push(Diagnostic::error(
            "verify.staging",
            "promotion copies the checked object to its key, and a copy cannot be made conditional on every store; drop `overwrite: false` or `verify.staging`",
        ));
    }
    if let (Some(staging), Some(quarantine)) = (&rule.staging, &rule.quarantine)
        && (staging.starts_with(quarantine.as_str()) || quarantine.starts_with(staging.as_str()))
    {
        diags.push(Diagnostic::error(
            "verify.quarantine",
            "overlaps `verify.staging`; use two separate prefixes",
        ));
    }
}

/// A key prefix set by the profile (`staging/`): ends in `/`, no `${`, no leading `/`, printable.
fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || !prefix.ends_with('/') || prefix.starts_with('/') {
        return Err(format!(
            "`{}` must be a key prefix ending in `/`, like `staging/`",
            prefix.escape_debug()
        ));
    }
    if prefix.contains("${") || prefix.contains("//") || prefix.split('/').any(|s| s == "." || s == "..") {
        return Err(format!(
            "`{}` holds `${{`, `//`, `.` or `..`; use a plain prefix",
            prefix.escape_debug()
        ));
    }
    if prefix.chars().any(|c| c.is_control() || c == '\\') || prefix.len() > 256 {
        return Err("must be printable, without `\\`, and at most 256 bytes".into());
    }
    Ok(())
}

/// Parses a byte count: a number, or a number with a unit (`5MiB`, `10 MB`).
pub(crate) fn parse_byte_size(value: &RawByteSize) -> Result<u64, String> {
    match value {
        RawByteSize::Bytes(bytes) => Ok(*bytes),
        RawByteSize::Text(text) => text
            .trim()
            .parse::<bytesize::ByteSize>()
            .map(|size| size.as_u64())
            .map_err(|_| format!("`{text}` is not a byte size; write it like `5MiB`, `10 MB` or a number of bytes")),
    }
}

fn compile_size(raw: &RawProfile, diags: &mut Vec<Diagnostic>) -> Option<SizeRange> {
    let Some(size) = &raw.size else {
        diags.push(Diagnostic::error(
            "size",
            "missing: every profile needs a size range, like `size: { min: 1, max: 5MiB }`",
        ));
        return None;
    };
    let mut ok = true;
    let mut parse = |value: Option<&RawByteSize>, path: &str| match value.map(parse_byte_size) {
        None => Some(0),
        Some(Ok(bytes)) => Some(bytes),
        Some(Err(message)) => {
            diags.push(Diagnostic::error(path, message));
            ok = false;
            None
        }
    };
    let min = parse(size.min.as_ref(), "size.min");
    let max = parse(Some(&size.max), "size.max");
    let (Some(min), Some(max)) = (min, max) else {
        return None;
    };
    if max > MAX_UPLOAD_BYTES && raw.multipart.is_none() {
        diags.push(Diagnostic::error(
            "size.max",
            format!(
                "{} is above 5 GiB, the most a single POST or PUT upload carries; add `multipart:` to take larger files",
                format_bytes(max)
            ),
        ));
        ok = false;
    } else if max > MAX_OBJECT_BYTES {
        diags.push(Diagnostic::error(
            "size.max",
            format!("{} is above 5 TiB, the largest object S3 stores", format_bytes(max)),
        ));
        ok = false;
    }
    if min > max {
        diags.push(Diagnostic::error(
            "size.min",
            format!("{} is above size.max ({})", format_bytes(min), format_bytes(max)),
        ));
        ok = false;
    }
    ok.then_some(SizeRange { min, max })
}

fn compile_content_type(rule: &RawContentType, diags: &mut Vec<Diagnostic>) -> Option<ContentTypeRule> {
    let given = [rule.prefix.is_some(), rule.one_of.is_some(), rule.exact.is_some()]
        .iter()
        .filter(|g| **g)
        .count();
    if given != 1 {
        diags.push(Diagnostic::error(
            "content_type",
            "give exactly one of `prefix`, `one_of`, `exact`",
        ));
        return None;
    }
    if let Some(prefix) = &rule.prefix {
        if prefix.is_empty() {
            diags.push(Diagnostic::error(
                "content_type.prefix",
                "an empty prefix makes `starts-with` match any content type; name a type like `image/`, or omit `content_type`",
            ));
            return None;
        }
        let (kind, sub) = prefix.split_once('/').unwrap_or((prefix, "x"));
        if !is_media_type(&format!("{kind}/{}", if sub.is_empty() { "x" } else { sub })) {
            diags.push(Diagnostic::error(
                "content_type.prefix",
                format!("`{prefix}` is not the start of a media type like `image/`"),
            ));
            return None;
        }
        if !prefix.contains('/') {
            diags.push(Diagnostic::warning(
                "content_type.prefix",
                format!("`{prefix}` also admits types like `{prefix}x/...`; end the prefix with `/`"),
            ));
        }
        return Some(ContentTypeRule::Prefix(prefix.clone()));
    }
    if let Some(types) = &rule.one_of {
        if types.is_empty() {
            diags.push(Diagnostic::error(
                "content_type.one_of",
                "the list is empty; name at least one type",
            ));
            return None;
        }
        let mut ok = true;
        for (i, t) in types.iter().enumerate() {
            if !is_media_type(t) {
                diags.push(Diagnostic::error(
                    format!("content_type.one_of[{i}]"),
                    format!("`{t}` is not a media type like `image/png`"),
                ));
                ok = false;
            }
        }
        return ok.then(|| ContentTypeRule::OneOf(types.clone()));
    }
    let exact = rule.exact.as_deref().unwrap_or_default();
    if !is_media_type(exact) {
        diags.push(Diagnostic::error(
            "content_type.exact",
            format!("`{exact}` is not a media type like `application/pdf`"),
        ));
        return None;
    }
    Some(ContentTypeRule::Exact(exact.to_owned()))
}

fn compile_metadata(
    raw: &RawProfile,
    var_names: &[String],
    cache: &mut RegexCache,
    diags: &mut Vec<Diagnostic>,
) -> Vec<MetadataRule> {
    let mut rules = Vec::new();
    let mut fixed_bytes = 0;
    for (name, raw_rule) in &raw.metadata {
        let path = format!("metadata.{name}");
        if let Err(why) = METADATA_NAME.check(name) {
            diags.push(Diagnostic::error(&path, why));
            continue;
        }
        if name == super::plan::MARKER_NAME {
            diags.push(Diagnostic::error(
                &path,
                format!("`{name}` is the gateway's own per-upload marker; choose another name"),
            ));
            continue;
        }
        let (value, required, description) = match raw_rule {
            RawMetadata::Fixed(text) => {
                let Some(template) = compile_fixed_metadata(text, var_names, &path, diags) else {
                    continue;
                };
                fixed_bytes += name.len() + template.literal_len();
                (MetadataValue::Fixed(template), true, None)
            }
            RawMetadata::Rule(rule) => {
                let Some(value) = compile_metadata_rule(rule, &path, cache, diags) else {
                    continue;
                };
                (value, rule.required.unwrap_or(true), rule.description.clone())
            }
        };
        rules.push(MetadataRule {
            field: format!("x-amz-meta-{name}"),
            name: name.clone(),
            value,
            required,
            description,
        });
    }
    // Every upload also carries the per-upload marker.
    fixed_bytes += super::plan::MARKER_NAME.len() + super::plan::MARKER_BYTES;
    if fixed_bytes > MAX_METADATA_BYTES {
        diags.push(Diagnostic::error(
            "metadata",
            format!("the fixed metadata is {fixed_bytes} bytes; S3 allows {MAX_METADATA_BYTES} bytes of user metadata"),
        ));
    }
    rules
}

/// A fixed metadata value: a template of vars and built-ins (not `${filename}`).
fn compile_fixed_metadata(
    text: &str,
    var_names: &[String],
    path: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Template> {
    let template = match Template::parse(text, var_names) {
        Ok(template) => template,
        Err(error) => {
            diags.push(Diagnostic::error(path, error.to_string()));
            return None;
        }
    };
    if template.uses(Placeholder::Filename) {
        diags.push(Diagnostic::error(
            path,
            "`${filename}` is substituted by S3 only in the key; it cannot be used in metadata",
        ));
        return None;
    }
    if let Err(why) = forbidden_char(text) {
        diags.push(Diagnostic::error(path, format!("the value {why}")));
        return None;
    }
    Some(template)
}

/// A per-request metadata value: `one_of` a list, or matching a `pattern`.
fn compile_metadata_rule(
    rule: &RawMetadataRule,
    path: &str,
    cache: &mut RegexCache,
    diags: &mut Vec<Diagnostic>,
) -> Option<MetadataValue> {
    match (&rule.one_of, &rule.pattern) {
        (Some(_), Some(_)) => {
            diags.push(Diagnostic::error(path, "give `one_of` or `pattern`, not both"));
            None
        }
        (None, None) => {
            diags.push(Diagnostic::error(
                path,
                "give `one_of` or `pattern` for a value supplied per request, or a string for a fixed value",
            ));
            None
        }
        (Some(values), None) if values.is_empty() => {
            diags.push(Diagnostic::error(format!("{path}.one_of"), "the list is empty"));
            None
        }
        (Some(values), None) => {
            let bad = values
                .iter()
                .enumerate()
                .find_map(|(i, v)| forbidden_char(v).err().map(|why| (i, why)));
            if let Some((i, why)) = bad {
                diags.push(Diagnostic::error(
                    format!("{path}.one_of[{i}]"),
                    format!("the value {why}"),
                ));
                return None;
            }
            Some(MetadataValue::OneOf(values.clone()))
        }
        (None, Some(pattern)) => match cache.full_match(pattern) {
            Ok(regex) => Some(MetadataValue::Pattern(regex, pattern.clone())),
            Err(message) => {
                diags.push(Diagnostic::error(format!("{path}.pattern"), message));
                None
            }
        },
    }
}

/// What to use instead of a field the gateway owns, or `None` when the field is not owned.
fn owned_field_hint(lower: &str) -> Option<&'static str> {
    match lower {
        "key" => Some("use the profile's `key`"),
        "bucket" => Some("use the profile's `bucket`"),
        "content-type" => Some("use `content_type`"),
        "x-amz-checksum-algorithm" => Some("use `checksum`"),
        _ if lower.starts_with("x-amz-checksum-") => Some("use `checksum`; the request declares the value"),
        "policy"
        | "x-amz-algorithm"
        | "x-amz-credential"
        | "x-amz-date"
        | "x-amz-signature"
        | "x-amz-security-token"
        | "awsaccesskeyid"
        | "signature" => Some("the gateway signs the form itself"),
        "file" => Some("the file is the form's last part, sent by the client"),
        _ if lower.starts_with("x-amz-meta-") => Some("use `metadata`"),
        _ => None,
    }
}

fn compile_fields(raw: &RawProfile, diags: &mut Vec<Diagnostic>) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for (name, value) in &raw.fields {
        let path = format!("fields.{name}");
        let lower = name.to_ascii_lowercase();
        if let Some(hint) = owned_field_hint(&lower) {
            diags.push(Diagnostic::error(
                &path,
                format!("`{name}` is set by the gateway; {hint}"),
            ));
            continue;
        }
        let Some(canonical) = KNOWN_FIELDS.iter().find(|k| k.eq_ignore_ascii_case(name)) else {
            diags.push(Diagnostic::error(
                &path,
                format!(
                    "`{name}` is not an S3 POST form field; known fields: {}",
                    KNOWN_FIELDS.join(", ")
                ),
            ));
            continue;
        };
        if fields.iter().any(|(n, _)| n == canonical) {
            diags.push(Diagnostic::error(&path, format!("`{canonical}` is given twice")));
            continue;
        }
        if let Err(why) = forbidden_char(value) {
            diags.push(Diagnostic::error(&path, format!("the value {why}")));
            continue;
        }
        match *canonical {
            "acl" if PUBLIC_ACLS.contains(&value.as_str()) && !raw.public => {
                diags.push(Diagnostic::error(
                    &path,
                    format!("`{value}` makes every upload public; set `public: true` to mean it, or use `private`"),
                ));
                continue;
            }
            "acl" if !PRIVATE_ACLS.contains(&value.as_str()) && !PUBLIC_ACLS.contains(&value.as_str()) => {
                diags.push(Diagnostic::error(
                    &path,
                    format!("`{value}` is not a canned ACL; use one of {}", PRIVATE_ACLS.join(", ")),
                ));
                continue;
            }
            "success_action_status" if !["200", "201", "204"].contains(&value.as_str()) => {
                diags.push(Diagnostic::error(
                    &path,
                    format!("`{value}` is not one of 200, 201, 204"),
                ));
                continue;
            }
            "success_action_redirect" if !(value.starts_with("https://") || value.starts_with("http://")) => {
                diags.push(Diagnostic::error(
                    &path,
                    format!("`{value}` is not an absolute http(s) URL"),
                ));
                continue;
            }
            _ => {}
        }
        fields.push(((*canonical).to_owned(), value.clone()));
    }
    fields
}

fn warn_unused_vars(
    var_names: &[String],
    vars: &[Var],
    key: &Template,
    metadata: &[MetadataRule],
    diags: &mut Vec<Diagnostic>,
) {
    for (index, name) in var_names.iter().enumerate() {
        if !vars.iter().any(|v| &v.name == name) {
            continue; // already reported as an error
        }
        let used = key.uses(Placeholder::Var(index))
            || metadata
                .iter()
                .any(|m| matches!(&m.value, MetadataValue::Fixed(t) if t.uses(Placeholder::Var(index))));
        if !used {
            diags.push(Diagnostic::warning(
                format!("vars.{name}"),
                format!("`{name}` is declared but neither the key nor metadata uses `${{{name}}}`"),
            ));
        }
    }
}

fn warn_inline_rendering(rule: &ContentTypeRule, fields: &[(String, String)], diags: &mut Vec<Diagnostic>) {
    let attachment = fields
        .iter()
        .any(|(n, v)| n == "Content-Disposition" && v.trim_start().to_ascii_lowercase().starts_with("attachment"));
    if attachment {
        return;
    }
    if let ContentTypeRule::Prefix(prefix) = rule {
        // Unnamed, the type is the uploader's to finish: `video/mp4,text/html` starts with
        // `video/`, and browsers may read the last type of such a list.
        diags.push(Diagnostic::warning(
            "content_type.prefix",
            format!(
                "a form signed without a named type lets the uploader send any type starting with `{prefix}` (like `{prefix}x,text/html`), which a browser may render; add `Content-Disposition: attachment` under `fields`, or use `one_of`"
            ),
        ));
        return;
    }
    let types: &[String] = match rule {
        ContentTypeRule::OneOf(types) => types,
        ContentTypeRule::Exact(exact) => std::slice::from_ref(exact),
        ContentTypeRule::Prefix(_) => &[],
    };
    let admitted: Vec<&str> = types.iter().map(String::as_str).filter(|t| renders_inline(t)).collect();
    if !admitted.is_empty() {
        diags.push(Diagnostic::warning(
            "content_type",
            format!(
                "admits {}, which browsers render inline (stored script); add `Content-Disposition: attachment` under `fields` or narrow the rule",
                admitted.join(", ")
            ),
        ));
    }
}

/// The size of the profile's POST policy document with placeholders shown and typical
/// credentials, close enough to warn about.
fn estimated_policy_bytes(profile: &Profile) -> usize {
    // expiration, bucket, algorithm, credential (20-char key id), date: measured on a real form.
    const FIXED: usize = 230;
    // The signing conditions as `explain` shows them (algorithm, credential, date, token).
    const SIGNING: usize = 201;
    if !profile.plan.allows(super::Method::Post) {
        return FIXED;
    }
    let explained: usize = super::conditions::shown(profile)
        .iter()
        .filter_map(|c| c.condition.as_ref())
        .map(|c| c.to_json().len() + 2)
        .sum();
    FIXED + SIGNING + explained
}

fn compile_checksum(raw: &RawProfile, diags: &mut Vec<Diagnostic>) -> ChecksumRule {
    let Some(rule) = &raw.checksum else {
        return ChecksumRule::default();
    };
    let mut algorithms = rule
        .algorithms
        .clone()
        .unwrap_or_else(|| ChecksumRule::default().algorithms);
    if algorithms.is_empty() {
        diags.push(Diagnostic::error(
            "checksum.algorithms",
            "the list is empty; name at least one of crc32, crc32c, crc64nvme, sha1, sha256, or omit it",
        ));
    }
    for (i, algorithm) in algorithms.iter().enumerate() {
        if algorithms[..i].contains(algorithm) {
            diags.push(Diagnostic::error(
                format!("checksum.algorithms[{i}]"),
                format!("`{}` is listed twice", algorithm.name()),
            ));
        }
    }
    algorithms.dedup();
    ChecksumRule {
        required: rule.required.unwrap_or(true),
        algorithms,
    }
}

/// A profile must be servable by at least one method, and every method it lists must be able to
/// carry its rules.
fn check_methods(profile: &Profile, listed: Option<&[Method]>, diags: &mut Vec<Diagnostic>) {
    let plan = profile.plan();
    if let Some(listed) = listed {
        for (i, method) in listed.iter().enumerate() {
            if listed[..i].contains(method) {
                diags.push(Diagnostic::error(
                    format!("methods[{i}]"),
                    format!("{method} is listed twice"),
                ));
            } else if let Some(reason) = plan.unavailable(*method) {
                diags.push(Diagnostic::error(format!("methods[{i}]"), reason.to_owned()));
            }
        }
        if listed.is_empty() {
            diags.push(Diagnostic::error(
                "methods",
                "the list is empty; name `post`, `put` or both",
            ));
        }
    }
    if plan.methods().is_empty() && listed.is_none_or(|l| !l.is_empty()) && !diags.iter().any(Diagnostic::is_error) {
        let reasons: Vec<&str> = Method::ALL.iter().filter_map(|m| plan.unavailable(*m)).collect();
        diags.push(Diagnostic::error(
            "",
            format!("no method can carry this profile: {}", reasons.join("; ")),
        ));
    }
}

/// Keys whose uploads can collide: two variable placeholders in one segment (`${tenant}-${user}`
/// with `-` allowed in both renders `a-b` + `c` and `a` + `b-c` alike), a key without `${uuid}`
/// (a second upload with the same values replaces the first), and `${filename}` left to the
/// store (the uploader then chooses the whole rest of the key).
fn warn_key_shape(
    key: &Template,
    var_names: &[String],
    overwrite: bool,
    filename: Option<RawFilename>,
    diags: &mut Vec<Diagnostic>,
) {
    let mut segment: Vec<&str> = Vec::new();
    let flush = |segment: &mut Vec<&str>, diags: &mut Vec<Diagnostic>| {
        if segment.len() > 1 {
            let names: Vec<String> = segment.iter().map(|n| format!("`${{{n}}}`")).collect();
            diags.push(Diagnostic::warning(
                "key",
                format!(
                    "{} share one key segment, so different values can render the same key (`a-b` + `c` and `a` + `b-c`); give each its own segment, like `${{{}}}/${{{}}}`",
                    names.join(" and "),
                    segment[0],
                    segment[1]
                ),
            ));
        }
        segment.clear();
    };
    for part in key.parts() {
        match part {
            Part::Literal(text) if text.contains('/') => {
                flush(&mut segment, diags);
            }
            Part::Literal(_) => {}
            Part::Placeholder(Placeholder::Var(i), _) => segment.push(&var_names[*i]),
            Part::Placeholder(Placeholder::App, _) => segment.push("app"),
            Part::Placeholder(..) => {}
        }
    }
    flush(&mut segment, diags);
    if key.placeholders().next().is_none() {
        diags.push(Diagnostic::warning(
            "key",
            "the key has no placeholder, so every upload overwrites the same object; add `${uuid}` or `${filename}`",
        ));
    } else if !key.uses(Placeholder::Uuid) && overwrite {
        diags.push(Diagnostic::warning(
            "key",
            "the key has no `${uuid}`, so a second upload with the same values silently replaces the first; add `${uuid}`, or set `overwrite: false` (PUT only)",
        ));
    }
    match (key.ends_with_filename(), filename) {
        (true, None) => diags.push(Diagnostic::warning(
            "key",
            "a form signed without a `filename` lets the uploader choose everything after the prefix (any number of segments, `..`, any character S3 takes); write `filename: request` to have every request name the file (checked and signed exact), or `filename: store` to accept it",
        )),
        (false, Some(_)) => diags.push(Diagnostic::error(
            "filename",
            "the key does not end in `${filename}`, so there is no file name to decide; remove `filename`",
        )),
        _ => {}
    }
}
