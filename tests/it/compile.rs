//! Golden compiler tests: every profile under tests/data/compile/ and policies/ with its compiled
//! condition list or its diagnostics, as insta snapshots. File names say what to expect:
//! `bad-*` must fail, `warn-*` must compile with warnings, everything else without.

use std::path::Path;

use postgate::explain::explain_text;
use postgate::profile::{self, ProfileName};

fn compiled(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let stem = path.file_stem().unwrap().to_str().unwrap();
    let file = path.file_name().unwrap().to_str().unwrap();
    let name = ProfileName::new(stem).unwrap();
    let diagnostics = |diags: &[profile::Diagnostic]| -> String {
        diags.iter().map(|d| format!("{}\n", d.clone().in_file(file))).collect()
    };
    match profile::parse(&name, &text) {
        Ok(profile) => {
            assert!(
                !stem.starts_with("bad-"),
                "{file} compiled but its name says it must fail"
            );
            assert_eq!(
                stem.starts_with("warn-"),
                !profile.warnings().is_empty(),
                "{file}: warnings {:?}",
                profile.warnings()
            );
            format!("{}\n{}", explain_text(&profile), diagnostics(profile.warnings()))
        }
        Err(diags) => {
            assert!(stem.starts_with("bad-"), "{file} failed: {diags:?}");
            assert!(diags.iter().any(|d| d.is_error()));
            diagnostics(&diags)
        }
    }
}

#[test]
fn golden_profiles() {
    insta::glob!("../data/compile", "*.yaml", |path| {
        insta::assert_snapshot!(compiled(path));
    });
}

#[test]
fn example_policies() {
    insta::glob!("../../policies", "*.yaml", |path| {
        insta::assert_snapshot!(compiled(path));
    });
}

/// The upload plan of every example profile, rule by rule: the value, its kind, whether the
/// request may leave it out, and what carries it in a POST form and in a PUT URL.
#[test]
fn example_plans() {
    use postgate::profile::plan::{Carrier, Method, Target};
    insta::glob!("../../policies", "*.yaml", |path| {
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let profile = profile::parse(
            &ProfileName::new(stem).unwrap(),
            &std::fs::read_to_string(path).unwrap(),
        )
        .unwrap();
        let plan = profile.plan();
        let target = |target: Target| match target {
            Target::Field(i) => format!("fields.{}", profile.fields()[i].0),
            Target::Metadata(i) => format!("metadata.{}", profile.metadata()[i].name),
            other => format!("{other:?}"),
        };
        let carrier = |carrier: Carrier, rule_target: Target| match carrier {
            Carrier::Named(name) => name.to_owned(),
            Carrier::ProfileNamed => match rule_target {
                Target::Field(i) => profile.fields()[i].0.clone(),
                Target::Metadata(i) => profile.metadata()[i].field.clone(),
                _ => "x-amz-checksum-<algorithm>".to_owned(),
            },
            other => format!("({other:?})"),
        };
        let mut out = String::new();
        for method in Method::ALL {
            match plan.unavailable(method) {
                None => out.push_str(&format!("{method}: yes\n")),
                Some(why) => out.push_str(&format!("{method}: no: {why}\n")),
            }
        }
        for rule in plan.rules() {
            out.push_str(&format!(
                "{:<28} {:<8} {:<9} POST {:<32} PUT {}\n",
                target(rule.target),
                rule.check.kind(),
                if rule.optional { "optional" } else { "" },
                carrier(rule.post, rule.target),
                carrier(rule.put, rule.target),
            ));
        }
        insta::assert_snapshot!(out);
    });
}
