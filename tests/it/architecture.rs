//! The dependency rules of ARCHITECTURE.md, checked on the source text.

use std::path::Path;

use crate::repo_path;

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(repo_path("")).unwrap().display().to_string();
            out.push((relative, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

#[test]
fn dependencies_point_one_way() {
    let mut files = Vec::new();
    sources(&repo_path("src"), &mut files);
    assert!(files.len() > 10);
    for (path, text) in &files {
        if text.contains("actix_web") || text.contains("actix_cors") {
            assert!(
                path.starts_with("src/http/") || path == "src/gateway.rs",
                "{path} imports actix: only src/http/ (and the binary's wiring) may"
            );
        }
        if path.starts_with("src/profile/") {
            for module in ["sign", "registry", "http", "config", "metrics", "auth", "dev"] {
                assert!(
                    !text.contains(&format!("crate::{module}")),
                    "{path} depends on {module}"
                );
            }
            for effect in ["std::fs", "now_utc()", "now_v7()", "std::env"] {
                assert!(!text.contains(effect), "{path} does IO or reads the clock ({effect})");
            }
        }
        if path.starts_with("src/sign/") {
            for module in ["registry", "http", "config", "metrics"] {
                assert!(
                    !text.contains(&format!("crate::{module}")),
                    "{path} depends on {module}"
                );
            }
            for effect in ["std::fs", "now_utc()", "std::env"] {
                assert!(!text.contains(effect), "{path} does IO or reads the clock ({effect})");
            }
        }
        if path == "src/ratelimit.rs" {
            for module in ["registry", "http", "config", "metrics", "profile", "sign"] {
                assert!(
                    !text.contains(&format!("crate::{module}")),
                    "{path} depends on {module}"
                );
            }
        }
        if path.starts_with("src/upload/") {
            for module in ["store", "registry", "http", "config", "metrics", "dev"] {
                assert!(
                    !text.contains(&format!("crate::{module}")),
                    "{path} depends on {module}"
                );
            }
            for effect in ["std::fs", "now_utc()", "now_v7()", "std::env", "reqwest", "tokio"] {
                assert!(!text.contains(effect), "{path} does IO or reads the clock ({effect})");
            }
        }
        if path.starts_with("src/store/") {
            for module in ["registry", "http", "config", "metrics"] {
                assert!(
                    !text.contains(&format!("crate::{module}")),
                    "{path} depends on {module}"
                );
            }
        }
        if path.starts_with("src/sign/") || path.starts_with("src/profile/") {
            for module in ["store", "upload"] {
                assert!(
                    !text.contains(&format!("crate::{module}")),
                    "{path} depends on {module}"
                );
            }
        }
        if text.contains("reqwest") {
            assert!(
                path.starts_with("src/store/")
                    || path == "src/identity.rs"
                    || path == "src/transport.rs"
                    || path == "src/events/deliver.rs"
                    || path == "src/probe/send.rs",
                "{path} makes HTTP calls: only src/store/ (S3), src/identity.rs (JWKS), src/events/deliver.rs \
                 (webhooks) and src/probe/send.rs (the probe's uploads) may"
            );
        }
        // The probe signs and calls the store; it knows no edge, registry, lifecycle or config.
        if path.starts_with("src/probe/") {
            for module in ["http", "registry", "lifecycle", "config", "events"] {
                assert!(
                    !text.contains(&format!("crate::{module}")),
                    "{path} depends on {module}"
                );
            }
        }
        // Events know the wire format and the queue, not the lifecycle, the registry or the edge;
        // the Standard Webhooks signer is pure.
        if path.starts_with("src/events/") {
            for module in ["lifecycle", "registry", "http", "store", "profile", "sign"] {
                assert!(
                    !text.contains(&format!("crate::{module}")),
                    "{path} depends on {module}"
                );
            }
        }
        if path == "src/events/webhook.rs" {
            for effect in ["std::fs", "now_utc()", "std::env", "reqwest", "tokio"] {
                assert!(!text.contains(effect), "{path} does IO or reads the clock ({effect})");
            }
        }
        if path == "src/identity.rs" || path == "src/credentials.rs" {
            for module in ["registry", "http", "store", "upload", "profile", "lifecycle"] {
                assert!(
                    !text.contains(&format!("crate::{module}")),
                    "{path} depends on {module}"
                );
            }
        }
        // The lifecycle decides, the edge translates: no actix and no status code below `http`,
        // and no store call inside it.
        if path.starts_with("src/lifecycle/") {
            for banned in ["crate::http", "actix_web", "StatusCode"] {
                assert!(!text.contains(banned), "{path} knows the HTTP edge ({banned})");
            }
        }
        if path.starts_with("src/http/") {
            for call in [".client.", "StoreClient", "check_object", "check_parts"] {
                assert!(
                    !text.contains(call),
                    "{path} calls the store or decides an object ({call})"
                );
            }
        }
        if path.starts_with("src/registry/") {
            assert!(!text.contains("crate::http"), "{path} depends on http");
        }
        if path.starts_with("src/config/") {
            for module in ["registry", "http"] {
                assert!(
                    !text.contains(&format!("crate::{module}")),
                    "{path} depends on {module}"
                );
            }
        }
    }
}

/// `text` and `vocabulary` are leaves every floor may import; the log writer imports only `text`.
#[test]
fn leaves_import_nothing_of_the_crate() {
    for path in ["src/text.rs", "src/vocabulary.rs"] {
        let text = std::fs::read_to_string(repo_path(path)).unwrap();
        assert!(!text.contains("crate::"), "{path} imports from the crate");
        assert!(
            !text.contains("super::") || text.contains("use super::*;"),
            "{path} imports from the crate"
        );
    }
    let logs = std::fs::read_to_string(repo_path("src/logs.rs")).unwrap();
    for line in logs.lines().filter(|l| l.contains("crate::")) {
        assert!(
            line.contains("crate::text::"),
            "src/logs.rs imports an upper floor: {line}"
        );
    }
}

/// The modules of one folder (files, or subfolders with their files) as a graph of which names
/// which, ignoring the folder's own `mod.rs` and test modules.
fn sibling_imports(folder: &Path) -> Vec<(String, Vec<String>)> {
    let mut modules: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap().flatten() {
        let path = entry.path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let mut files = Vec::new();
        if path.is_dir() {
            sources(&path, &mut files);
        } else if name != "mod" && path.extension().is_some_and(|e| e == "rs") {
            files.push((String::new(), std::fs::read_to_string(&path).unwrap()));
        }
        let text: String = files
            .iter()
            .map(|(_, text)| text.split("#[cfg(test)]").next().unwrap_or_default())
            .collect();
        if !text.is_empty() {
            modules.push((name, text));
        }
    }
    let crate_path = format!(
        "crate::{}::",
        folder
            .strip_prefix(repo_path("src"))
            .unwrap()
            .display()
            .to_string()
            .replace('/', "::")
    );
    let names: Vec<String> = modules.iter().map(|(name, _)| name.clone()).collect();
    modules
        .iter()
        .map(|(name, text)| {
            let named = names
                .iter()
                .filter(|other| *other != name)
                .filter(|other| {
                    [format!("super::{other}::"), format!("{crate_path}{other}::")]
                        .iter()
                        .any(|needle| text.contains(needle.as_str()))
                        || text.contains(&format!("super::{other}}}"))
                        || text.contains(&format!("super::{{{other}"))
                })
                .cloned()
                .collect();
            (name.clone(), named)
        })
        .collect()
}

/// No two files of a folder import each other, directly or around a circle: a folder's modules
/// stack into floors.
#[test]
fn no_import_circles_inside_a_folder() {
    let mut folders = vec![repo_path("src")];
    let mut checked = 0;
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            if entry.path().is_dir() {
                folders.push(entry.path());
            }
        }
        if folder == repo_path("src") {
            continue;
        }
        let graph = sibling_imports(&folder);
        checked += graph.len();
        for (start, _) in &graph {
            // Depth-first from `start`: reaching `start` again is a circle.
            let mut stack: Vec<Vec<&str>> = vec![vec![start.as_str()]];
            while let Some(path) = stack.pop() {
                let last = path[path.len() - 1];
                let next = graph.iter().find(|(name, _)| name == last).map(|(_, n)| n).unwrap();
                for module in next {
                    assert_ne!(
                        module,
                        start,
                        "{}: import circle {} → {start}",
                        folder.strip_prefix(repo_path("")).unwrap().display(),
                        path.join(" → ")
                    );
                    if !path.contains(&module.as_str()) {
                        let mut longer = path.clone();
                        longer.push(module);
                        stack.push(longer);
                    }
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} modules found");
}

/// ARCHITECTURE.md stays a map a reader takes in at once: at most 25,000 bytes.
#[test]
fn architecture_md_stays_short() {
    let bytes = std::fs::metadata(repo_path("ARCHITECTURE.md")).unwrap().len();
    assert!(
        bytes <= 25_000,
        "ARCHITECTURE.md is {bytes} bytes; keep it at most 25,000"
    );
}
