//! Admission and key rendering, data-driven: tests/data/admit.yaml lists requests against the
//! golden profiles; the outcome of each (rendered form fields or refusals) is one snapshot.

use indexmap::IndexMap;
use postgate::profile::{self, Context, Method, ProfileName, UploadRequest, admit};
use postgate::sign::{FieldStyle, sign};
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

fn context(case: &Case) -> Context<'_> {
    Context {
        app: case.app.as_deref().unwrap_or("web"),
        now: datetime!(2026-11-21 12:34:56 UTC),
        uuid: Uuid::parse_str("019a9f3c-0000-7000-8000-000000000001").unwrap(),
    }
}

/// The filled plan for each method, or the refusals.
fn outcome(case: &Case) -> String {
    let profile = load_profile(&case.profile);
    let mut out = String::new();
    for method in Method::ALL {
        match admit(&profile, &case.request, method, &context(case)) {
            Ok(filled) => {
                out.push_str(&format!("{method}: ok (max_size {})\n", filled.max_size));
                for entry in &filled.entries {
                    let name = entry.name.as_deref().unwrap_or("(url or length)");
                    out.push_str(&format!("  {:?} {name} {:?}\n", entry.target, entry.value));
                }
            }
            Err(refusals) => {
                out.push_str(&format!("{method}: refused\n"));
                for refusal in refusals {
                    out.push_str(&format!("  {:?} {}\n", refusal.kind, refusal));
                }
            }
        }
    }
    out
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

/// Every admitted case, signed by both renderers, passes the one coverage checker.
#[test]
fn every_signed_case_is_covered() {
    let text = std::fs::read_to_string(repo_path("tests/data/admit.yaml")).unwrap();
    let cases: IndexMap<String, Case> = serde_yaml::from_str(&text).unwrap();
    let store = crate::support::state::aws_store();
    let mut checked = [0, 0];
    for (name, case) in &cases {
        let profile = load_profile(&case.profile);
        for (i, method) in Method::ALL.into_iter().enumerate() {
            let request = UploadRequest {
                method: Some(method),
                ..case.request.clone()
            };
            let ctx = context(case);
            let Ok(signed) = sign(
                &profile,
                &store.signer(ctx.now).unwrap(),
                &request,
                &ctx,
                FieldStyle::Botocore,
            ) else {
                continue;
            };
            crate::coverage::check(&profile, &signed, ctx.now).unwrap_or_else(|e| panic!("{name} {method}: {e}"));
            checked[i] += 1;
        }
    }
    assert!(
        checked[0] >= 5 && checked[1] >= 3,
        "only {checked:?} signed cases (POST, PUT)"
    );
}

/// Every admitted case of a profile that takes multipart uploads, started as one: the create
/// headers and the part URLs (first, second, last) pass the coverage checker.
#[test]
fn every_multipart_case_is_covered() {
    use postgate::sign::multipart::{PartTarget, create_headers, part_url};
    let text = std::fs::read_to_string(repo_path("tests/data/admit.yaml")).unwrap();
    let cases: IndexMap<String, Case> = serde_yaml::from_str(&text).unwrap();
    let store = crate::support::state::aws_store();
    let mut checked = 0;
    for (name, case) in &cases {
        let profile = load_profile(&case.profile);
        let Some(rule) = profile.multipart().copied() else {
            continue;
        };
        let ctx = context(case);
        let request = UploadRequest {
            method: None,
            checksum: None,
            ..case.request.clone()
        };
        let Ok(filled) = postgate::profile::admit_multipart(&profile, &request, &ctx) else {
            continue;
        };
        let headers: Vec<(String, String)> = create_headers(&filled)
            .into_iter()
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
        let plan = postgate::upload::PartPlan::new(filled.max_size, rule.part_size).unwrap();
        let target = PartTarget {
            bucket: profile.bucket(),
            key: &filled.key,
            upload_id: "upload-1",
            expires_in: profile.expires_in(),
            not_after: ctx.now + rule.expires_in,
        };
        let mut numbers = vec![1, 2.min(plan.part_count), plan.part_count];
        numbers.dedup();
        let parts: Vec<(u32, u64, String)> = numbers
            .iter()
            .map(|&n| {
                let size = plan.size_of(n).unwrap();
                (
                    n,
                    size,
                    part_url(&store.signer(ctx.now).unwrap(), &target, n, size, ctx.now).url,
                )
            })
            .collect();
        crate::coverage::check_multipart(
            &profile,
            &filled.key,
            &headers,
            &parts,
            filled.max_size,
            plan.part_count,
        )
        .unwrap_or_else(|e| panic!("{name} multipart: {e}"));
        assert_eq!(plan.total(), filled.max_size, "{name}");
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} multipart cases");
}
