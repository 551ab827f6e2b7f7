//! The integration tests: one binary, themed modules.

mod admit;
mod cli;
mod compile;
mod e2e;
mod registry;
mod schema;
mod vectors;

use std::path::PathBuf;

/// A path inside the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}
