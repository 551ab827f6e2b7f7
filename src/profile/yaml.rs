//! The YAML a profile may use beyond plain values, checked before the document is deserialized
//! into a profile: `[`/`{` nested at most `MAX_FLOW_DEPTH` deep, aliases expanding to at most
//! `MAX_EXPANDED_BYTES` of values, and no local tags (`!name`).
//!
//! serde_yaml bounds nesting (128 levels) and the number of alias jumps (100 per event of the
//! document), but neither bounds the work before it refuses:
//!
//! - libyaml scans the whole document before serde_yaml sees its depth, and its scanner spends
//!   time in proportion to the flow depth on every token: 100,000 `[` after `max: ` take a minute.
//! - One alias jump may replay a large anchor: a list of 40,000 values named by 6,000 aliases is
//!   240 million values, and deserializing them takes gigabytes. The walk here visits the document
//!   as serde_yaml replays it, allocates nothing per value, and stops at the budget, so the
//!   deserialization after it sees a document of bounded size. Without aliases a document's values
//!   are never larger than its text, so a profile file (at most 256 KiB in a policies directory)
//!   meets the budget only if aliases multiply it.
//!
//! A local tag (`key: !template "…"`) asks for processing postgate does not do; serde_yaml would
//! drop it silently and the profile would mean something other than its author expected.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};

use super::Diagnostic;

/// How deep `[` and `{` may nest; serde_yaml's own limit on any nesting is the same.
pub const MAX_FLOW_DEPTH: usize = 128;

/// The most a profile's values may add up to, once aliases are expanded: each value counts one
/// byte plus the length of its text.
pub const MAX_EXPANDED_BYTES: usize = 1024 * 1024;

/// Refuses `text` if it nests `[`/`{` deeper than `MAX_FLOW_DEPTH`, if its values (aliases
/// expanded) add up to more than `MAX_EXPANDED_BYTES`, or if it has a local tag. Every other
/// problem is left to the typed parse, which reports it with its path.
pub fn check(text: &str) -> Result<(), Diagnostic> {
    check_flow_depth(text)?;
    // Only `*name` makes an alias and only `!` a tag; most profiles have neither and skip the walk.
    if !text.contains(['*', '!']) {
        return Ok(());
    }
    let mut budget = Budget {
        remaining: MAX_EXPANDED_BYTES,
        refusal: None,
    };
    let result = (&mut budget).deserialize(serde_yaml::Deserializer::from_str(text));
    match (result, budget.refusal) {
        (Err(error), Some(refusal)) => {
            let mut diagnostic = Diagnostic::error("", refusal.message);
            if refusal.located {
                diagnostic.line_col = error.location().map(|l| (l.line(), l.column()));
            }
            Err(diagnostic)
        }
        _ => Ok(()),
    }
}

/// Every `[` and `{` counts, even in quotes, comments and block scalars: the count can only
/// exceed libyaml's depth, never fall short of it, so no quoting can hide a bracket from it. A file
/// it refuses wrongly would need more than 128 unclosed brackets in its text.
fn check_flow_depth(text: &str) -> Result<(), Diagnostic> {
    let mut depth = 0usize;
    for (at, byte) in text.bytes().enumerate() {
        match byte {
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => continue,
        }
        if depth > MAX_FLOW_DEPTH {
            let before = &text[..at];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            let mut diagnostic = Diagnostic::error(
                "",
                format!("`[` and `{{` nest more than {MAX_FLOW_DEPTH} deep; a profile needs a few levels"),
            );
            diagnostic.line_col = Some((line, column));
            return Err(diagnostic);
        }
    }
    Ok(())
}

struct Budget {
    remaining: usize,
    /// Why the walk stopped, when it stopped for one of this module's reasons.
    refusal: Option<Refusal>,
}

struct Refusal {
    message: String,
    /// Whether serde_yaml's location is the culprit's: it is for a tag; for the budget it is an
    /// enclosing collection, which would mislead.
    located: bool,
}

impl Budget {
    fn spend<E: de::Error>(&mut self, bytes: usize) -> Result<(), E> {
        match self.remaining.checked_sub(bytes.saturating_add(1)) {
            Some(left) => {
                self.remaining = left;
                Ok(())
            }
            None => Err(self.refuse(
                format!(
                    "the document's values add up to more than {MAX_EXPANDED_BYTES} bytes once aliases are expanded"
                ),
                false,
            )),
        }
    }

    fn refuse<E: de::Error>(&mut self, message: String, located: bool) -> E {
        let error = E::custom(&message);
        self.refusal = Some(Refusal { message, located });
        error
    }
}

impl<'de> DeserializeSeed<'de> for &mut Budget {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut Budget {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        self.spend(text.len())
    }
    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<(), E> {
        self.spend(bytes.len())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.spend::<D::Error>(0)?;
        self.deserialize(deserializer)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.spend::<D::Error>(0)?;
        self.deserialize(deserializer)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.spend::<A::Error>(0)?;
        while seq.next_element_seed(&mut *self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.spend::<A::Error>(0)?;
        while map.next_key_seed(&mut *self)?.is_some() {
            map.next_value_seed(&mut *self)?;
        }
        Ok(())
    }
    /// serde_yaml hands a value with a local tag (`!name value`) over as an enum.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let (tag, _) = data.variant::<String>()?;
        // serde_yaml drops the tag's `!`, except from the bare non-specific tag `!`.
        let tag = if tag == "!" { tag } else { format!("!{tag}") };
        Err(self.refuse(
            format!("the YAML tag `{tag}` is not supported; write the value without it"),
            true,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_within_the_budget_pass() {
        let text = "a: &rule { pattern: \"[a-z]+\" }\nb: *rule\nc: [*rule, *rule]\n";
        assert_eq!(check(text), Ok(()));
    }

    #[test]
    fn a_wide_alias_bomb_is_refused_at_the_budget() {
        let text = format!(
            "a: &a [{}]\nb: [{}]\n",
            vec!["x"; 1000].join(","),
            vec!["*a"; 1000].join(",")
        );
        let diagnostic = check(&text).unwrap_err();
        assert!(diagnostic.message.contains("once aliases are expanded"), "{diagnostic}");
        assert_eq!(diagnostic.line_col, None);
    }

    #[test]
    fn other_problems_are_left_to_the_typed_parse() {
        assert_eq!(check("a: *missing\n"), Ok(()));
        assert_eq!(check("a: [*x\n"), Ok(()));
        assert_eq!(check(&format!("*a{}", "[".repeat(100))), Ok(()));
        assert_eq!(check("description: Hello!\nkey: \"a/*\"\n"), Ok(()));
    }

    #[test]
    fn flow_nesting_is_bounded_by_counting_brackets() {
        let nested = |depth: usize| format!("max: {}{}\n", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(check(&nested(MAX_FLOW_DEPTH)), Ok(()));
        let diagnostic = check(&format!("a: 1\n{}", nested(100_000))).unwrap_err();
        assert_eq!(diagnostic.line_col, Some((2, 6 + MAX_FLOW_DEPTH)));
        // Balanced brackets in quoted text never add up.
        assert_eq!(check(&"p: \"[a-z]{1,8}\"\n".repeat(1000)), Ok(()));
    }

    #[test]
    fn a_local_tag_is_refused() {
        let diagnostic = check("bucket: b\nkey: !template \"u/${uuid}\"\n").unwrap_err();
        assert_eq!(
            diagnostic.message,
            "the YAML tag `!template` is not supported; write the value without it"
        );
        assert_eq!(diagnostic.line_col, Some((2, 6)));
    }
}
