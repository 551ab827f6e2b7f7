//! Loading a policies directory: which files count, all-or-nothing, diagnostics per file.

use std::fs;

use postgate::registry;

const GOOD: &str = "bucket: user-content\nkey: \"u/${uuid}\"\nsize: { max: 1MiB }\n";

fn stores() -> std::sync::Arc<registry::Stores> {
    std::sync::Arc::new(registry::unsigned_stores(&["default"]))
}

fn messages(diags: &[postgate::profile::Diagnostic], dir: &std::path::Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    let mut out: Vec<String> = diags.iter().map(|d| d.to_string().replace(&prefix, "")).collect();
    out.sort();
    out
}

#[test]
fn only_top_level_non_dot_yaml_files_count() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    fs::write(p.join("a.yaml"), GOOD).unwrap();
    fs::write(p.join("b.yml"), GOOD).unwrap();
    fs::write(p.join(".hidden.yaml"), "not: [valid").unwrap();
    fs::write(p.join("notes.txt"), "not: [valid").unwrap();
    fs::write(p.join("c.yaml.bak"), "not: [valid").unwrap();
    fs::create_dir(p.join(".git")).unwrap();
    fs::write(p.join(".git/x.yaml"), "not: [valid").unwrap();
    fs::create_dir(p.join("sub")).unwrap();
    fs::write(p.join("sub/d.yaml"), "not: [valid").unwrap();
    // Kubernetes ConfigMap layout: name.yaml -> ..data/name.yaml -> ..2026_11_21/name.yaml
    fs::create_dir(p.join("..2026_11_21")).unwrap();
    fs::write(p.join("..2026_11_21/e.yaml"), GOOD).unwrap();
    std::os::unix::fs::symlink("..2026_11_21", p.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/e.yaml", p.join("e.yaml")).unwrap();

    let snapshot = registry::load(p, &stores()).unwrap();
    let names: Vec<&str> = snapshot.profiles.keys().map(String::as_str).collect();
    assert_eq!(names, ["a", "b", "e"]);
    assert_eq!(snapshot.content_hash.len(), 64);
}

#[test]
fn one_bad_file_refuses_the_whole_set() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    fs::write(p.join("good.yaml"), GOOD).unwrap();
    fs::write(p.join("twice.yaml"), GOOD).unwrap();
    fs::write(p.join("twice.yml"), GOOD).unwrap();
    fs::write(p.join("Bad Name.yaml"), GOOD).unwrap();
    fs::write(p.join("elsewhere.yaml"), format!("{GOOD}store: archive\n")).unwrap();
    fs::write(p.join("binary.yaml"), [0xff, 0xfe, 0x00, 0x01]).unwrap();
    fs::write(p.join("huge.yaml"), "#".repeat(300 * 1024)).unwrap();
    let diags = registry::load(p, &stores()).unwrap_err();
    insta::assert_snapshot!(messages(&diags, p).join("\n"));
}

#[test]
fn same_content_same_hash() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    fs::write(one.path().join("a.yaml"), GOOD).unwrap();
    fs::write(two.path().join("a.yaml"), GOOD).unwrap();
    let h1 = registry::load(one.path(), &stores()).unwrap().content_hash;
    let h2 = registry::load(two.path(), &stores()).unwrap().content_hash;
    assert_eq!(h1, h2);
    fs::write(two.path().join("a.yaml"), format!("{GOOD}# edited\n")).unwrap();
    let h3 = registry::load(two.path(), &stores()).unwrap().content_hash;
    assert_ne!(h1, h3);
}

#[test]
fn missing_directory_is_a_diagnostic() {
    let diags = registry::load(std::path::Path::new("/nonexistent/policies"), &stores()).unwrap_err();
    assert!(
        diags[0].to_string().contains("cannot read the policies directory"),
        "{diags:?}"
    );
}
