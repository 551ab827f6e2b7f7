//! Golden compiler tests: every profile under tests/data/compile/ and policies/ with its compiled
//! condition list or its diagnostics, as insta snapshots. File names say what to expect:
//! `bad-*` must fail, `warn-*` must compile with warnings, everything else without.

use std::path::Path;

use postgate::profile::conditions::explain_text;
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
