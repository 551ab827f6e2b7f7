//! Admission and key rendering, data-driven: tests/data/admit.yaml lists requests against the
//! golden profiles; the outcome of each (rendered form fields or refusals) is one snapshot.

use indexmap::IndexMap;
use postgate::profile::{self, Context, ProfileName, UploadRequest, admit};
use serde::Deserialize;
use time::macros::datetime;
use uuid::Uuid;

use crate::repo_path;

#[derive(Deserialize)]
struct Case {
    profile: String,
    #[serde(default)]
    app: Option<String>,
    request: UploadRequest,
}

fn load_profile(name: &str) -> profile::Profile {
    let path = ["policies", "tests/data/compile"]
        .iter()
        .map(|dir| repo_path(dir).join(format!("{name}.yaml")))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no profile {name}"));
    profile::parse(
        &ProfileName::new(name).unwrap(),
        &std::fs::read_to_string(path).unwrap(),
    )
    .unwrap()
}

fn outcome(case: &Case) -> String {
    let profile = load_profile(&case.profile);
    let ctx = Context {
        app: case.app.as_deref().unwrap_or("web"),
        now: datetime!(2026-11-21 12:34:56 UTC),
        uuid: Uuid::parse_str("019a9f3c-0000-7000-8000-000000000001").unwrap(),
    };
    match admit(&profile, &case.request, &ctx) {
        Ok(upload) => {
            let mut out = format!("ok (max_size {})\n", upload.max_size);
            for (name, value) in &upload.fields {
                out.push_str(&format!("  field {name} = {value:?}\n"));
            }
            for condition in &upload.conditions {
                out.push_str(&format!("  condition {}\n", condition.to_json()));
            }
            out
        }
        Err(refusals) => {
            let mut out = "refused\n".to_owned();
            for refusal in refusals {
                out.push_str(&format!("  {:?} {}\n", refusal.kind, refusal));
            }
            out
        }
    }
}

#[test]
fn admission_cases() {
    let text = std::fs::read_to_string(repo_path("tests/data/admit.yaml")).unwrap();
    let cases: IndexMap<String, Case> = serde_yaml::from_str(&text).unwrap();
    let mut all = String::new();
    for (name, case) in &cases {
        all.push_str(&format!("## {name}\n{}\n", outcome(case)));
    }
    insta::assert_snapshot!(all);
}

/// Every field an admitted upload returns is covered by a condition on the same field.
#[test]
fn every_field_is_covered() {
    let text = std::fs::read_to_string(repo_path("tests/data/admit.yaml")).unwrap();
    let cases: IndexMap<String, Case> = serde_yaml::from_str(&text).unwrap();
    let ctx = Context {
        app: "web",
        now: datetime!(2026-11-21 12:34:56 UTC),
        uuid: Uuid::nil(),
    };
    let mut checked = 0;
    for case in cases.values() {
        let profile = load_profile(&case.profile);
        let Ok(upload) = admit(&profile, &case.request, &ctx) else {
            continue;
        };
        for (field, _) in &upload.fields {
            let covered = upload.conditions.iter().any(|c| match c {
                profile::conditions::Condition::Eq { field: f, .. }
                | profile::conditions::Condition::StartsWith { field: f, .. } => f.eq_ignore_ascii_case(field),
                profile::conditions::Condition::ContentLengthRange { .. } => false,
            });
            assert!(covered, "{field} is not covered");
        }
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} admitted cases");
}
