//! `schema/profile.schema.json` is exactly what `postgate schema` prints.

use crate::repo_path;

#[test]
fn checked_in_schema_is_fresh() {
    let path = repo_path("schema/profile.schema.json");
    let generated = postgate::profile_schema();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "schema/profile.schema.json is stale: run `UPDATE_SCHEMA=1 cargo test schema` or `cargo run -- schema > schema/profile.schema.json`"
    );
}
