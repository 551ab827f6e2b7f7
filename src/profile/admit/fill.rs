//! Filling a plan for one request: the vars and the filename first (they feed the templates),
//! then the key, then every rule by its own check. Each step collects its refusals, naming the
//! request field at fault; nothing stops at the first.

use std::borrow::Cow;

use super::{ChecksumRequest, Refusal, RefusalKind, UploadRequest, Value};
use crate::profile::compile::forbidden_char;
use crate::profile::plan::{Check, ChecksumAlgorithm, MARKER_BYTES, MARKER_NAME, Method, Rule, Target};
use crate::profile::template::Values;
use crate::profile::{MAX_KEY_BYTES, MAX_METADATA_BYTES, MAX_UPLOAD_BYTES, MetadataValue, Profile, SizeRange};
use crate::text::format_bytes;

/// The refusals of one request, in the order the steps found them.
#[derive(Default)]
pub(super) struct Refusals(pub Vec<Refusal>);

impl Refusals {
    pub fn push(&mut self, kind: RefusalKind, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Refusal {
            kind,
            field: field.into(),
            message: message.into(),
        });
    }
}

/// The key as filled: where the upload goes, and the part a signature fixes.
pub(super) struct FilledKey {
    pub key: String,
    /// With staging: the final key `complete` promotes to.
    pub promote_to: Option<String>,
    /// A POST leaving `${filename}` to the store signs the key up to it, as a prefix.
    pub filename_left: bool,
}

impl FilledKey {
    /// The part of the key a signature fixes: all of it, or what precedes `${filename}`.
    pub fn signed_part(&self) -> &str {
        if self.filename_left {
            &self.key[..self.key.len() - "${filename}".len()]
        } else {
            &self.key
        }
    }
}

/// What every rule is filled from: the request and what the steps before the rules decided.
pub(super) struct Input<'a> {
    pub request: &'a UploadRequest,
    pub method: Method,
    pub multipart: bool,
    pub values: Values<'a>,
    pub key: &'a FilledKey,
}

/// A rule filled: the name its carrier takes from the profile (`ProfileNamed`), and its value.
pub(super) type Fill<'p> = Option<(&'p str, Value<'p>)>;

/// The method must carry the profile; a multipart upload takes no checksum of the whole file.
pub(super) fn check_method(
    profile: &Profile,
    input_checksum: bool,
    method: Method,
    multipart: bool,
    out: &mut Refusals,
) {
    let unavailable = if multipart {
        profile.plan.multipart_unavailable()
    } else {
        profile.plan.unavailable(method)
    };
    if let Some(reason) = unavailable {
        out.push(RefusalKind::MethodUnavailable, "method", reason);
    }
    if multipart && input_checksum {
        out.push(
            RefusalKind::ChecksumInvalid,
            "checksum",
            "a multipart upload takes no checksum of the whole file; omit it",
        );
    }
}

/// Every declared var present and valid, nothing undeclared. Returns the values in the order the
/// profile declares them (empty where refused).
pub(super) fn vars<'r>(profile: &Profile, request: &'r UploadRequest, out: &mut Refusals) -> Vec<&'r str> {
    for name in request.vars.keys() {
        if !profile.vars.iter().any(|v| &v.name == name) {
            let declared: Vec<&str> = profile.vars.iter().map(|v| v.name.as_str()).collect();
            out.push(
                RefusalKind::VarUnknown,
                format!("vars.{name}"),
                format!(
                    "this profile declares no var `{name}`; it takes: {}",
                    list_or_none(&declared)
                ),
            );
        }
    }
    let mut values = Vec::with_capacity(profile.vars.len());
    for var in &profile.vars {
        // Named only when refused: the happy path formats nothing.
        let field = || format!("vars.{}", var.name);
        let Some(value) = request.vars.get(&var.name) else {
            let why = format!("missing; `{}` must match `{}`", var.name, var.pattern_source);
            out.push(RefusalKind::VarMissing, field(), why);
            values.push("");
            continue;
        };
        if let Err(why) = check_value(value) {
            out.push(RefusalKind::VarInvalid, field(), why);
        } else if !var.pattern.is_match(value) {
            let why = format!("does not match `{}`", var.pattern_source);
            out.push(RefusalKind::VarInvalid, field(), why);
        }
        values.push(value);
    }
    values
}

/// The filename: only where the key ends in `${filename}`, reduced to its last path segment. A
/// PUT URL signs the whole key, so it needs the name.
pub(super) fn filename(profile: &Profile, request: &UploadRequest, put: bool, out: &mut Refusals) -> Option<String> {
    let ends_with_filename = profile.key.ends_with_filename();
    match &request.filename {
        None if ends_with_filename && (put || profile.filename_required) => {
            let why = if profile.filename_required {
                "required: this profile has the request name the file (`filename: request`)"
            } else {
                "required for a PUT: the URL signs the whole key, and this key ends in `${filename}`"
            };
            out.push(RefusalKind::FilenameRequired, "filename", why);
            None
        }
        None => None,
        Some(_) if !ends_with_filename => {
            out.push(
                RefusalKind::FilenameNotAccepted,
                "filename",
                "this profile's key has no `${filename}`, so it takes no filename",
            );
            None
        }
        Some(name) => sanitize_filename(name)
            .map_err(|why| out.push(RefusalKind::FilenameInvalid, "filename", why))
            .ok(),
    }
}

/// The key template filled. A single upload with staging goes to the staging prefix + the key,
/// which `complete` promotes; a multipart upload writes the key itself (its part URLs die with
/// its upload ID at completion, so nothing can be replayed over the checked object, and a copy
/// would stop at 5 GiB).
pub(super) fn key(profile: &Profile, values: &Values<'_>, multipart: bool, out: &mut Refusals) -> FilledKey {
    let mut key = profile.key.render(values);
    let staging = profile
        .verify
        .staging
        .as_ref()
        .filter(|_| !multipart || profile.verify.stage_multipart);
    let promote_to = staging.map(|staging| {
        let final_key = key.clone();
        // A store staging every upload (Azure) stages each under its own marker: an abandoned
        // upload never blocks the next one to the same key, and no upload's SAS reaches another's.
        if profile.verify.stage_multipart {
            key.insert_str(0, &format!("{}/", values.uuid));
        }
        key.insert_str(0, staging);
        final_key
    });
    let filled = FilledKey {
        key,
        promote_to,
        filename_left: values.filename.is_none() && profile.key.ends_with_filename(),
    };
    let signed_part = filled.signed_part();
    // Values never contain `${`, but two adjacent ones can splice one (`x$` + `{filename}`).
    if signed_part.contains("${") {
        out.push(
            RefusalKind::KeyInvalid,
            "key",
            "the vars would render a key containing `${`, which S3 would read as a placeholder; change the vars",
        );
    }
    // S3 substitutes at least one character for `${filename}`. A refused object may move to
    // `<quarantine><marker>/<key>`, which must still be a key S3 takes.
    let quarantine = profile
        .verify
        .quarantine
        .as_deref()
        .map_or(0, |prefix| prefix.len() + MARKER_BYTES + 1);
    let key_bytes = signed_part.len() + usize::from(filled.filename_left) + quarantine;
    if key_bytes > MAX_KEY_BYTES {
        out.push(
            RefusalKind::KeyTooLong,
            "key",
            format!(
                "the key would be {key_bytes} bytes; S3 keys are at most {MAX_KEY_BYTES}; shorten the vars or filename"
            ),
        );
    }
    filled
}

/// Fills one rule by its check.
pub(super) fn rule<'p>(profile: &'p Profile, rule: &'p Rule, input: &Input<'_>, out: &mut Refusals) -> Fill<'p> {
    let target = rule.target;
    let asked = requested(profile, target, input.request);
    let filled = match &rule.check {
        Check::Exact(exact) => exact_value(profile, exact, asked, out),
        Check::Key(_) => Some(("", key_value(input.key))),
        Check::Template(template) => Some(("", Value::Exact(Cow::Owned(template.render(&input.values))))),
        Check::OneOf(allowed) => one_of(profile, rule, allowed, asked, out),
        Check::Pattern(regex, source) => pattern(profile, rule, regex, source, asked, out),
        Check::Prefix(prefix) => prefix_value(profile, rule, prefix, asked, input.method, out),
        Check::Range(range) => Some(("", size(*range, input, out))),
        Check::Checksum(algorithms) => checksum(target, rule.optional, algorithms, input.request, out),
        Check::Fresh => Some(("", Value::Exact(Cow::Owned(input.values.uuid.to_owned())))),
        Check::Default(put_value) => default_value(target, put_value, asked, input.method, out),
    };
    let (_, value) = filled.as_ref()?;
    // A PUT carries metadata as headers, and header values are ASCII (`fetch` refuses others).
    if let (Target::Metadata(_), Method::Put, Value::Exact(text)) = (target, input.method, value)
        && !text.is_ascii()
    {
        out.push(
            RefusalKind::MetadataInvalid,
            field_of(profile, target),
            "is not ASCII, which a PUT header cannot carry; ask for a POST form, or use ASCII",
        );
    }
    // The profile's own name for a `ProfileNamed` carrier (a PUT names a field by its header,
    // `Carrier::Named`, resolved when the plan was built).
    let name = match target {
        Target::Field(i) => profile.fields[i].0.as_str(),
        Target::Metadata(i) => profile.metadata[i].field.as_str(),
        _ => filled.as_ref().map_or("", |(name, _)| name),
    };
    filled.map(|(_, value)| (name, value))
}

/// The request's value for a target, where the request may name one.
fn requested<'r>(profile: &Profile, target: Target, request: &'r UploadRequest) -> Option<&'r str> {
    match target {
        Target::ContentType => request.content_type.as_deref(),
        Target::Metadata(i) => request.metadata.get(&profile.metadata[i].name).map(String::as_str),
        _ => None,
    }
}

/// The request field a refusal names.
fn field_of(profile: &Profile, target: Target) -> String {
    match target {
        Target::ContentType => "content_type".into(),
        Target::Metadata(i) => format!("metadata.{}", profile.metadata[i].name),
        Target::Size => "size".into(),
        Target::Checksum | Target::ChecksumAlgorithm => "checksum".into(),
        Target::Key => "key".into(),
        _ => "request".into(),
    }
}

fn key_value(key: &FilledKey) -> Value<'static> {
    if key.filename_left {
        Value::Prefix(Cow::Owned(key.signed_part().to_owned()))
    } else {
        Value::Exact(Cow::Owned(key.key.clone()))
    }
}

/// A named content type must be one media type that the check admits.
fn admitted_type<'p>(
    profile: &Profile,
    rule_text: impl FnOnce() -> String,
    named: &str,
    admits: bool,
    out: &mut Refusals,
) -> Fill<'p> {
    if is_single_media_type(named) && admits {
        return Some(("", Value::Exact(Cow::Owned(named.to_owned()))));
    }
    out.push(
        RefusalKind::ContentTypeNotAllowed,
        field_of(profile, Target::ContentType),
        format!(
            "`{}` is not allowed; this profile accepts {} (one media type, like `image/png`)",
            named.escape_debug(),
            rule_text()
        ),
    );
    None
}

fn exact_value<'p>(profile: &Profile, exact: &'p str, asked: Option<&str>, out: &mut Refusals) -> Fill<'p> {
    match asked {
        Some(named) => admitted_type(profile, || format!("only `{exact}`"), named, named == exact, out),
        None => Some(("", Value::Exact(Cow::Borrowed(exact)))),
    }
}

/// A value the request must name (or may, when the rule is optional) and that the profile
/// cannot default: a missing one is refused by its target's kind.
fn missing<'p>(profile: &Profile, rule: &Rule, why: impl FnOnce() -> String, out: &mut Refusals) -> Fill<'p> {
    match rule.target {
        _ if rule.optional => {}
        Target::Metadata(_) => out.push(RefusalKind::MetadataMissing, field_of(profile, rule.target), why()),
        target => out.push(RefusalKind::ContentTypeRequired, field_of(profile, target), why()),
    }
    None
}

fn one_of<'p>(
    profile: &Profile,
    rule: &Rule,
    allowed: &'p [String],
    asked: Option<&str>,
    out: &mut Refusals,
) -> Fill<'p> {
    let list = || allowed.join(", ");
    let Some(named) = asked else {
        return match rule.target {
            Target::Metadata(_) => missing(profile, rule, || "missing; this profile requires it".into(), out),
            _ => missing(profile, rule, || format!("required; one of {}", list()), out),
        };
    };
    // The admitted value is the profile's own copy: nothing to allocate.
    let admitted = allowed.iter().find(|a| *a == named);
    match (rule.target, admitted) {
        (Target::ContentType, _) => {
            let fill = admitted_type(profile, || format!("one of {}", list()), named, admitted.is_some(), out);
            fill.and(admitted)
                .map(|value| ("", Value::Exact(Cow::Borrowed(value.as_str()))))
        }
        (_, Some(value)) => Some(("", Value::Exact(Cow::Borrowed(value.as_str())))),
        (target, None) => {
            out.push(
                RefusalKind::MetadataInvalid,
                field_of(profile, target),
                format!("must be one of {}", list()),
            );
            None
        }
    }
}

fn pattern<'p>(
    profile: &Profile,
    rule: &Rule,
    regex: &regex::Regex,
    source: &str,
    asked: Option<&str>,
    out: &mut Refusals,
) -> Fill<'p> {
    let Some(value) = asked else {
        return missing(profile, rule, || "missing; this profile requires it".into(), out);
    };
    let why = match forbidden_char(value) {
        Err(why) => why,
        Ok(()) if regex.is_match(value) => return Some(("", Value::Exact(Cow::Owned(value.to_owned())))),
        Ok(()) => format!("does not match `{source}`"),
    };
    out.push(RefusalKind::MetadataInvalid, field_of(profile, rule.target), why);
    None
}

/// A content-type prefix: narrowed to exact when the request names a type; a PUT signs it
/// exact, so it needs one.
fn prefix_value<'p>(
    profile: &Profile,
    rule: &Rule,
    prefix: &'p str,
    asked: Option<&str>,
    method: Method,
    out: &mut Refusals,
) -> Fill<'p> {
    match asked {
        Some(named) => admitted_type(
            profile,
            || format!("types starting with `{prefix}`"),
            named,
            named.starts_with(prefix),
            out,
        ),
        None if method == Method::Post => Some(("", Value::Prefix(Cow::Borrowed(prefix)))),
        None => missing(
            profile,
            rule,
            || format!("required for a PUT (the URL signs it exact); a type starting with `{prefix}`"),
            out,
        ),
    }
}

/// Without a rule: a POST names no type, a PUT signs `put_value`; a request naming one is refused.
fn default_value<'p>(
    target: Target,
    put_value: &'static str,
    asked: Option<&str>,
    method: Method,
    out: &mut Refusals,
) -> Fill<'p> {
    if asked.is_some() {
        out.push(
            RefusalKind::ContentTypeNotAllowed,
            "content_type",
            "this profile sets no content type; omit it",
        );
        return None;
    }
    (method == Method::Put && target == Target::ContentType).then_some(("", Value::Exact(Cow::Borrowed(put_value))))
}

/// The size: an exact length when named; a PUT signs `Content-Length`, so it needs one. One POST
/// or PUT carries at most 5 GiB; a multipart upload, the profile's whole range.
fn size(range: SizeRange, input: &Input<'_>, out: &mut Refusals) -> Value<'static> {
    let put = input.method == Method::Put;
    let carried = SizeRange {
        min: range.min,
        max: if input.multipart {
            range.max
        } else {
            range.max.min(MAX_UPLOAD_BYTES)
        },
    };
    let (min, max) = (carried.min, carried.max);
    let why = match input.request.size {
        Some(bytes) if (min..=max).contains(&bytes) => return Value::Range { min: bytes, max: bytes },
        None if !put => return Value::Range { min, max },
        None => (
            RefusalKind::SizeRequired,
            format!("required for a PUT (the URL signs the exact Content-Length); {min}..={max} bytes"),
        ),
        Some(bytes) if bytes > max && bytes <= range.max => (
            RefusalKind::SizeOutOfRange,
            format!(
                "{bytes} bytes is above 5 GiB, the most one {} carries; start a multipart upload",
                input.method
            ),
        ),
        Some(bytes) => (
            RefusalKind::SizeOutOfRange,
            format!("{bytes} bytes is outside {min}..={max} ({} at most)", format_bytes(max)),
        ),
    };
    out.push(why.0, "size", why.1);
    Value::Range { min, max }
}

/// The checksum's two rules: the algorithm (filled silently when the checksum is valid) and the
/// digest (which refuses).
fn checksum<'p>(
    target: Target,
    optional: bool,
    algorithms: &[ChecksumAlgorithm],
    request: &UploadRequest,
    out: &mut Refusals,
) -> Fill<'p> {
    let names = || algorithms.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ");
    let Some(declared) = &request.checksum else {
        if !optional && target == Target::Checksum {
            out.push(
                RefusalKind::ChecksumRequired,
                "checksum",
                format!("required: declare the file's checksum, one of {} (base64)", names()),
            );
        }
        return None;
    };
    let checked = check_checksum(algorithms, declared);
    match (target, checked) {
        (Target::ChecksumAlgorithm, Ok(())) => Some(("", Value::Exact(Cow::Borrowed(declared.algorithm.s3_name())))),
        (_, Ok(())) => Some((
            declared.algorithm.field(),
            Value::Exact(Cow::Owned(declared.value.clone())),
        )),
        (Target::ChecksumAlgorithm, Err(_)) => None,
        (_, Err(why)) => {
            out.push(RefusalKind::ChecksumInvalid, "checksum", why);
            None
        }
    }
}

/// Metadata names the request sends must be ones the profile takes from a request.
pub(super) fn metadata_names(profile: &Profile, request: &UploadRequest, out: &mut Refusals) {
    for name in request.metadata.keys() {
        match profile.metadata.iter().find(|m| &m.name == name) {
            None => {
                let declared: Vec<&str> = profile
                    .metadata
                    .iter()
                    .filter(|m| !matches!(m.value, MetadataValue::Fixed(_)))
                    .map(|m| m.name.as_str())
                    .collect();
                out.push(
                    RefusalKind::MetadataUnknown,
                    format!("metadata.{name}"),
                    format!(
                        "this profile takes no metadata `{name}`; it takes: {}",
                        list_or_none(&declared)
                    ),
                );
            }
            Some(rule) if matches!(rule.value, MetadataValue::Fixed(_)) => out.push(
                RefusalKind::MetadataUnknown,
                format!("metadata.{name}"),
                "is fixed by the profile; omit it",
            ),
            Some(_) => {}
        }
    }
}

/// S3's limit on metadata, the marker included, over the filled metadata entries.
pub(super) fn metadata_bytes<'a>(filled: impl Iterator<Item = (&'a str, usize)>, out: &mut Refusals) {
    let bytes = filled.map(|(name, len)| name.len() + len).sum::<usize>() + MARKER_NAME.len() + MARKER_BYTES;
    if bytes > MAX_METADATA_BYTES {
        out.push(
            RefusalKind::MetadataInvalid,
            "metadata",
            format!("{bytes} bytes of metadata; S3 allows {MAX_METADATA_BYTES}"),
        );
    }
}

/// One media type, `type/subtype` with optional `; name=value` parameters: never a list, so a
/// rule that admits `image/` cannot sign `image/png, text/html`.
pub fn is_single_media_type(text: &str) -> bool {
    if !text.chars().all(|c| c.is_ascii_graphic() || c == ' ') || text.contains(',') {
        return false;
    }
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or_default();
    if essence != essence.trim() || !crate::vocabulary::is_media_type(essence) {
        return false;
    }
    parts.all(|param| {
        let param = param.trim();
        let token = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c));
        matches!(param.split_once('='), Some((name, value)) if token(name)
            && (token(value) || (value.len() >= 2 && value.starts_with('"') && value.ends_with('"') && !value[1..value.len() - 1].contains('"'))))
    })
}

fn check_checksum(algorithms: &[ChecksumAlgorithm], checksum: &ChecksumRequest) -> Result<(), String> {
    use base64::Engine as _;
    let algorithm = checksum.algorithm;
    if !algorithms.contains(&algorithm) {
        let names: Vec<&str> = algorithms.iter().map(|a| a.name()).collect();
        return Err(format!(
            "`{}` is not taken by this profile; use one of {}",
            algorithm.name(),
            names.join(", ")
        ));
    }
    match base64::engine::general_purpose::STANDARD.decode(&checksum.value) {
        Ok(digest) if digest.len() == algorithm.digest_bytes() => Ok(()),
        Ok(digest) => Err(format!(
            "a {} digest is {} bytes; this one is {}",
            algorithm.name(),
            algorithm.digest_bytes(),
            digest.len()
        )),
        Err(_) => Err(format!(
            "`value` is not base64; send the {} digest base64-encoded, as S3's `{}` takes it",
            algorithm.name(),
            algorithm.field()
        )),
    }
}

/// The rules no var pattern can loosen. Returns why the value is refused.
pub fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("is empty".into());
    }
    if value == "." {
        return Err("is `.`, which is not a key segment".into());
    }
    if value.contains('/') || value.contains('\\') {
        return Err("contains a path separator (`/` or `\\`)".into());
    }
    if value.contains("..") {
        return Err("contains `..`".into());
    }
    if value.contains("${") {
        return Err("contains `${`".into());
    }
    forbidden_char(value)
}

/// The longest filename a request may name, in bytes (what common filesystems allow).
pub const MAX_FILENAME_BYTES: usize = 255;

/// Reduces a client's filename to its last path segment and checks it.
pub fn sanitize_filename(name: &str) -> Result<String, String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    if base.is_empty() {
        return Err("is empty (or ends with a path separator)".into());
    }
    if base == "." || base == ".." {
        return Err(format!("`{base}` is not a file name"));
    }
    if base.contains("${") {
        return Err("contains `${`".into());
    }
    forbidden_char(base)?;
    if base.len() > MAX_FILENAME_BYTES {
        return Err(format!("is {} bytes; at most {MAX_FILENAME_BYTES}", base.len()));
    }
    Ok(base.to_owned())
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
