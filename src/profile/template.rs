//! Templates with `${name}` placeholders: the object key and fixed metadata values.
//!
//! Parsing happens once, at compile time; rendering is a walk over prepared parts. Rendering never
//! fails: every value it is given has already been admitted (see `admit`).

use std::fmt;

/// One placeholder, resolved at compile time to what supplies its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// S3's own `${filename}`: the name of the uploaded file.
    Filename,
    /// A fresh UUID v7 per signature.
    Uuid,
    /// The signing day, UTC, `YYYY-MM-DD`.
    Date,
    /// The app that requested the signature.
    App,
    /// The declared var at this index of the profile's var list.
    Var(usize),
}

/// A part of a template: literal text or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    Placeholder(Placeholder, String),
}

/// A parsed template. `Display` shows it as written, placeholders included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// The values placeholders take in one signature.
pub struct Values<'a> {
    pub vars: &'a [&'a str],
    pub filename: Option<&'a str>,
    pub uuid: &'a str,
    pub date: &'a str,
    pub app: &'a str,
}

/// Why a template could not be parsed. `name` is the placeholder's text between `${` and `}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    Unclosed,
    BadName(String),
    Unknown(String),
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::Unclosed => write!(f, "`${{` is not closed by `}}`"),
            TemplateError::BadName(name) => write!(
                f,
                "`${{{name}}}` is not a placeholder name; names are lowercase letters, digits and `_`"
            ),
            TemplateError::Unknown(name) => write!(
                f,
                "`${{{name}}}` is neither built in (filename, uuid, date, app) nor declared under `vars`"
            ),
        }
    }
}

impl Template {
    /// Parses `text`, resolving each placeholder name with `resolve` (built-ins first).
    pub fn parse(text: &str, var_names: &[String]) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or(TemplateError::Unclosed)?;
            let name = &after[..end];
            if !crate::vocabulary::PLACEHOLDER_NAME.admits(name) {
                return Err(TemplateError::BadName(name.to_owned()));
            }
            let placeholder = match name {
                "filename" => Placeholder::Filename,
                "uuid" => Placeholder::Uuid,
                "date" => Placeholder::Date,
                "app" => Placeholder::App,
                _ => match var_names.iter().position(|v| v == name) {
                    Some(index) => Placeholder::Var(index),
                    None => return Err(TemplateError::Unknown(name.to_owned())),
                },
            };
            parts.push(Part::Placeholder(placeholder, name.to_owned()));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    pub fn placeholders(&self) -> impl Iterator<Item = Placeholder> + '_ {
        self.parts.iter().filter_map(|part| match part {
            Part::Placeholder(p, _) => Some(*p),
            Part::Literal(_) => None,
        })
    }

    pub fn uses(&self, placeholder: Placeholder) -> bool {
        self.placeholders().any(|p| p == placeholder)
    }

    /// True when the last part is `${filename}`.
    pub fn ends_with_filename(&self) -> bool {
        matches!(self.parts.last(), Some(Part::Placeholder(Placeholder::Filename, _)))
    }

    /// The text before the first placeholder.
    pub fn literal_prefix(&self) -> &str {
        match self.parts.first() {
            Some(Part::Literal(text)) => text,
            _ => "",
        }
    }

    /// Total length of the literal parts, in bytes.
    pub fn literal_len(&self) -> usize {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Literal(text) => text.len(),
                Part::Placeholder(..) => 0,
            })
            .sum()
    }

    /// Renders into `out`. A `${filename}` without a value is written literally, as S3 expects it
    /// in the `key` field.
    pub fn render_into(&self, values: &Values<'_>, out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Placeholder(placeholder, _) => out.push_str(match placeholder {
                    Placeholder::Filename => values.filename.unwrap_or("${filename}"),
                    Placeholder::Uuid => values.uuid,
                    Placeholder::Date => values.date,
                    Placeholder::App => values.app,
                    Placeholder::Var(index) => values.vars[*index],
                }),
            }
        }
    }

    pub fn render(&self, values: &Values<'_>) -> String {
        let mut out = String::with_capacity(128);
        self.render_into(values, &mut out);
        out
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Literal(text) => f.write_str(text)?,
                Part::Placeholder(_, name) => write!(f, "${{{name}}}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vec<String> {
        vec!["user".to_owned(), "tenant".to_owned()]
    }

    #[test]
    fn parse_and_render_round_trip() {
        let cases = [
            ("a/${user}/${uuid}/${filename}", "a/alice/U/${filename}"),
            ("${tenant}/${date}/x-${app}", "acme/2026-11-21/x-web"),
            ("plain/key.txt", "plain/key.txt"),
            ("cost$5/${user}", "cost$5/alice"),
        ];
        for (text, expect) in cases {
            let template = Template::parse(text, &vars()).unwrap();
            assert_eq!(template.to_string(), text);
            let values = Values {
                vars: &["alice", "acme"],
                filename: None,
                uuid: "U",
                date: "2026-11-21",
                app: "web",
            };
            assert_eq!(template.render(&values), expect, "{text}");
        }
    }

    #[test]
    fn parse_errors() {
        let cases = [
            ("a/${user", TemplateError::Unclosed),
            ("a/${User}", TemplateError::BadName("User".into())),
            ("a/${}", TemplateError::BadName(String::new())),
            ("a/${nobody}", TemplateError::Unknown("nobody".into())),
        ];
        for (text, expect) in cases {
            assert_eq!(Template::parse(text, &vars()), Err(expect), "{text}");
        }
    }

    #[test]
    fn prefix_and_filename_position() {
        let template = Template::parse("a/${user}/${filename}", &vars()).unwrap();
        assert_eq!(template.literal_prefix(), "a/");
        assert!(template.ends_with_filename());
        let template = Template::parse("${user}/x", &vars()).unwrap();
        assert_eq!(template.literal_prefix(), "");
        assert!(!template.ends_with_filename());
    }
}
