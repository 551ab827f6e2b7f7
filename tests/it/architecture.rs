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
                path.starts_with("src/store/") || path == "src/identity.rs" || path == "src/transport.rs",
                "{path} makes HTTP calls: only src/store/ (S3) and src/identity.rs (JWKS) may"
            );
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
