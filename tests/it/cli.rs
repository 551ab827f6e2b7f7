//! The command line, run as a process: exit codes and what it prints.

use std::process::{Command, Output};

use crate::repo_path;

fn postgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_postgate"))
        .args(args)
        .current_dir(repo_path(""))
        .env_remove("POSTGATE_CONFIG")
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn check_passes_on_the_example_policies() {
    let out = postgate(&["check", "--deny-warnings"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let profiles = std::fs::read_dir(repo_path("policies"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .count();
    assert!(profiles > 0);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("policies: {profiles} profiles ok, 0 warnings\n")
    );
}

#[test]
fn check_fails_with_every_diagnostic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_path("tests/data/compile/bad-many-errors.yaml"),
        dir.path().join("many.yaml"),
    )
    .unwrap();
    let out = postgate(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().count() >= 8, "{stderr}");
    assert!(
        stderr.contains("many.yaml: size.max: 9 GiB is above 5 GiB, the most a single POST or PUT upload carries"),
        "{stderr}"
    );
}

#[test]
fn deny_warnings_fails_on_warnings() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_path("tests/data/compile/warn-svg-renders-inline.yaml"),
        dir.path().join("svg.yaml"),
    )
    .unwrap();
    assert!(postgate(&["check", dir.path().to_str().unwrap()]).status.success());
    let out = postgate(&["check", "--deny-warnings", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn schema_prints_the_checked_in_schema() {
    let out = postgate(&["schema"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), postgate::profile_schema());
}

#[test]
fn sign_prints_a_form_and_refuses_bad_input() {
    let out = postgate(&[
        "sign",
        "avatars",
        "--var",
        "user=alice",
        "--meta",
        "purpose=avatar",
        "--filename",
        "me.png",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let form: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(form["url"], "https://user-content.s3.us-east-1.amazonaws.com/");
    assert!(form["key"].as_str().unwrap().ends_with("/me.png"));
    assert_eq!(form["fields"]["x-amz-algorithm"], "AWS4-HMAC-SHA256");

    let out = postgate(&["sign", "avatars", "--var", "user=../x"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("vars.user: contains a path separator"), "{stderr}");
    assert!(stderr.contains("metadata.purpose: missing"), "{stderr}");

    let out = postgate(&["explain", "nope"]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no profile `nope`; profiles: attachments, avatars, datasets, documents, invoices")
    );
}

#[test]
fn sign_without_credentials_says_what_to_set() {
    let out = Command::new(env!("CARGO_BIN_EXE_postgate"))
        .args(["sign", "invoices", "--var", "supplier=acme"])
        .current_dir(repo_path(""))
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("store `default`: cannot fetch credentials: no credentials from the AWS provider chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,")
    );
}

/// A `POSTGATE_*` variable naming no setting (an image's `POSTGATE_VERSION`) is ignored with a
/// warning naming it; a typo below a setting is refused like the same typo in the file.
#[test]
fn variables_naming_no_setting_warn_and_typos_below_a_setting_refuse() {
    let run = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_postgate"))
            .args(["check"])
            .current_dir(repo_path(""))
            .env_remove("POSTGATE_CONFIG")
            .env(name, "1.2.3")
            .output()
            .unwrap()
    };
    let out = run("POSTGATE_VERSION");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("warning: POSTGATE_VERSION name"), "{stderr}");
    assert!(!stderr.contains("1.2.3"), "a value is never shown: {stderr}");

    let out = run("POSTGATE_STORES__DEFAULT__REGOIN");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("regoin"), "{stderr}");
}

/// `check`, `explain` and `sign` see a store as the config shapes it: an Azure store refuses
/// the profiles it cannot serve, stages the others (`sign` hands out a create-only SAS for a
/// staged blob, never the final key), and `explain` says what the kind enforces.
#[test]
fn commands_shape_stores_by_their_kind() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("postgate.yaml");
    std::fs::write(
        &config,
        "stores:\n  default:\n    kind: azure\n    account: devstoreaccount1\n    endpoint: http://127.0.0.1:10100/devstoreaccount1\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_postgate"))
            .args(["--config", config.to_str().unwrap()])
            .args(args)
            .current_dir(repo_path(""))
            .env(
                "AZURE_STORAGE_KEY",
                "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
            )
            .output()
            .unwrap()
    };
    let out = run(&["check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("datasets.yaml: store: store `default` (azure) cannot serve this profile: fields.acl"),
        "{stderr}"
    );
    let invoices = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_path("policies/invoices.yaml"),
        invoices.path().join("invoices.yaml"),
    )
    .unwrap();
    let dir_arg = invoices.path().to_str().unwrap().to_owned();
    let out = run(&["explain", "invoices", "--dir", &dir_arg]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("store kind   an Azure store signs a SAS"),
        "{stdout}"
    );
    let out = run(&[
        "sign",
        "invoices",
        "--dir",
        &dir_arg,
        "--var",
        "supplier=acme",
        "--size",
        "10",
        "--content-type",
        "application/pdf",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("/finance-inbox/postgate-staging/") && stdout.contains("sp=c"),
        "{stdout}"
    );
}
