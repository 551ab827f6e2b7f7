//! The words postgate's files and requests use, each defined once: the name grammars (each a
//! pattern that checks a value in Rust and is the JSON Schema's `pattern`), the form fields a
//! profile may pin and how a PUT carries them, canned ACLs, and the built-in placeholders.
//! Depends on nothing in the crate; `tests/it/schema.rs` checks the schema carries every grammar.

use std::sync::LazyLock;

use regex::Regex;

/// A grammar for one kind of name: an anchored pattern, valid both for Rust's `regex` and for
/// the ECMA-262 dialect JSON Schema validators use, and the rule in words for diagnostics.
pub struct Grammar {
    /// What the value is: `a var name`.
    pub what: &'static str,
    /// The anchored pattern (`^…$`), as the JSON Schema carries it.
    pub pattern: &'static str,
    /// The rule in words: `use 1 to 32 of a-z, 0-9, `_`, starting with a letter or `_``.
    pub rule: &'static str,
    regex: LazyLock<Regex>,
}

impl Grammar {
    pub fn admits(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }

    /// `Ok`, or why `value` is refused: "`x y` is not a var name: use …".
    pub fn check(&self, value: &str) -> Result<(), String> {
        if self.admits(value) {
            Ok(())
        } else {
            Err(format!(
                "`{}` is not {}: {}",
                value.escape_debug(),
                self.what,
                self.rule
            ))
        }
    }
}

impl std::fmt::Debug for Grammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Grammar({})", self.pattern)
    }
}

macro_rules! grammar {
    ($(#[$doc:meta])* $name:ident, $what:literal, $pattern:literal, $rule:literal) => {
        $(#[$doc])*
        pub static $name: Grammar = Grammar {
            what: $what,
            pattern: $pattern,
            rule: $rule,
            regex: LazyLock::new(|| Regex::new($pattern).expect("a grammar's pattern compiles")),
        };
    };
}

grammar!(
    /// A profile's name (its file stem), an app's and a store's: they reach keys (`${app}`),
    /// metric labels and paths.
    NAME,
    "a name",
    "^[a-z0-9][a-z0-9_-]{0,62}$",
    "use 1 to 63 of a-z, 0-9, `_`, `-`, starting with a letter or digit"
);

grammar!(
    /// A var declared under `vars` (a placeholder of the key and metadata templates).
    VAR_NAME,
    "a var name",
    "^[a-z_][a-z0-9_]{0,31}$",
    "use up to 32 lowercase letters, digits and `_`, starting with a letter or `_`"
);

grammar!(
    /// What a template may name between `${` and `}` (a var or a built-in).
    PLACEHOLDER_NAME,
    "a placeholder name",
    "^[a-z0-9_]+$",
    "names are lowercase letters, digits and `_`"
);

grammar!(
    /// A metadata name under `metadata` (without `x-amz-meta-`; S3 lowercases them).
    METADATA_NAME,
    "a metadata name",
    "^[a-z0-9-]+$",
    "use lowercase letters, digits and `-` (S3 lowercases them)"
);

grammar!(
    /// The shape of an S3 general-purpose bucket name (the compiler adds S3's other rules: no
    /// `..`, not an IP address, no reserved prefix or suffix).
    BUCKET,
    "a bucket name",
    "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
    "3 to 63 lowercase letters, digits, `.` and `-`, starting and ending with a letter or digit"
);

grammar!(
    /// The id of an upload-token key (it travels in every token).
    TOKEN_KEY_ID,
    "a token key id",
    "^[A-Za-z0-9_-]{1,32}$",
    "use 1 to 32 of A-Z, a-z, 0-9, `_`, `-`"
);

grammar!(
    /// A media type's essence, `type/subtype`, each an RFC 6838 restricted name (as tokens).
    MEDIA_TYPE,
    "a media type",
    "^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$",
    "write `type/subtype`, like `image/png`"
);

/// Every grammar, for the tests that tie them to the schema and to the fast checks.
pub static GRAMMARS: [&Grammar; 7] = [
    &NAME,
    &VAR_NAME,
    &PLACEHOLDER_NAME,
    &METADATA_NAME,
    &BUCKET,
    &TOKEN_KEY_ID,
    &MEDIA_TYPE,
];

/// A media type's essence (`MEDIA_TYPE`) without a regex: on the signing path, every named
/// content type is checked. `tests::fast_checks_agree_with_their_grammars` ties the two.
pub fn is_media_type(text: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&c))
    };
    matches!(text.split_once('/'), Some((kind, sub)) if token(kind) && token(sub))
}

/// The placeholders every template knows, besides the profile's vars.
pub const BUILT_INS: &[&str] = &["filename", "uuid", "date", "app"];

/// S3 POST form fields a profile may pin under `fields`, in their usual spelling.
pub const KNOWN_FIELDS: &[&str] = &[
    "acl",
    "Cache-Control",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Expires",
    "success_action_redirect",
    "success_action_status",
    "tagging",
    "x-amz-storage-class",
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-context",
    "x-amz-server-side-encryption-bucket-key-enabled",
    "x-amz-website-redirect-location",
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
];

/// Pinned fields that only a POST form knows, with why PUT cannot carry them.
pub const POST_ONLY_FIELDS: &[(&str, &str)] = &[
    (
        "success_action_redirect",
        "the store redirects a browser after a POST form; a PUT has no redirect",
    ),
    (
        "success_action_status",
        "it sets the status of a POST form's answer; a PUT always answers 200",
    ),
    (
        "tagging",
        "a POST form takes tags as an XML document and a PUT as `key=value&…`; one value cannot be both",
    ),
];

/// The header that carries a pinned form field in a PUT, `None` for POST-only fields: the
/// field's own name, but `acl`, which a PUT sends as `x-amz-acl`.
pub fn put_header(field: &str) -> Option<&'static str> {
    if POST_ONLY_FIELDS.iter().any(|(name, _)| *name == field) {
        return None;
    }
    match field {
        "acl" => Some("x-amz-acl"),
        _ => KNOWN_FIELDS.iter().find(|known| **known == field).copied(),
    }
}

/// Canned ACLs that keep an object private.
pub const PRIVATE_ACLS: &[&str] = &["private", "bucket-owner-read", "bucket-owner-full-control"];
/// Canned ACLs that publish an object; allowed only with `public: true`.
pub const PUBLIC_ACLS: &[&str] = &[
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
];

/// Types browsers render inline, where an uploaded file can run script in the bucket's origin
/// (besides every `+xml` type, which browsers render as XML).
pub const INLINE_RENDERED: &[&str] = &[
    "text/html",
    "text/xml",
    "application/xml",
    "text/xsl",
    "multipart/x-mixed-replace",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every string over a small alphabet up to a length, plus each grammar's length limits.
    fn corpus() -> Vec<String> {
        let alphabet = ["a", "Z", "0", "_", "-", ".", "/", " ", "+", "é", "$"];
        let mut out = vec![String::new()];
        let mut level = vec![String::new()];
        for _ in 0..3 {
            level = level
                .iter()
                .flat_map(|prefix| alphabet.iter().map(move |c| format!("{prefix}{c}")))
                .collect();
            out.extend(level.iter().cloned());
        }
        for len in [31, 32, 33, 62, 63, 64, 65] {
            out.push("a".repeat(len));
            out.push(format!("{}/{}", "a".repeat(len), "b"));
        }
        out
    }

    #[test]
    fn fast_checks_agree_with_their_grammars() {
        for value in corpus() {
            assert_eq!(is_media_type(&value), MEDIA_TYPE.admits(&value), "{value:?}");
        }
    }

    #[test]
    fn grammars_are_anchored_and_check_with_their_words() {
        for grammar in GRAMMARS {
            assert!(
                grammar.pattern.starts_with('^') && grammar.pattern.ends_with('$'),
                "{grammar:?}"
            );
            let refused = grammar.check("\u{0}").unwrap_err();
            assert!(
                refused.contains(grammar.what) && refused.contains(grammar.rule),
                "{refused}"
            );
        }
    }

    #[test]
    fn every_known_field_is_carried_by_put_or_says_why_not() {
        for field in KNOWN_FIELDS {
            let post_only = POST_ONLY_FIELDS.iter().any(|(name, _)| name == field);
            assert_ne!(put_header(field).is_some(), post_only, "{field}");
        }
        for (field, _) in POST_ONLY_FIELDS {
            assert!(KNOWN_FIELDS.contains(field), "{field}");
        }
    }
}
