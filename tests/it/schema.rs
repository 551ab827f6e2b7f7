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

/// `schema/openapi.json` is exactly what the gateway serves at `/openapi.json`.
#[test]
fn checked_in_openapi_is_fresh() {
    let path = repo_path("schema/openapi.json");
    let generated = postgate::http::openapi::document();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "schema/openapi.json is stale: run `UPDATE_SCHEMA=1 cargo test schema`"
    );
    // Every route the gateway answers is described, with its methods, and nothing else: the
    // document against the routes table the server is built from.
    let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut described: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let mut methods: Vec<String> = item.as_object().unwrap().keys().map(|m| m.to_uppercase()).collect();
            methods.sort();
            (path.clone(), methods.join(", "))
        })
        .collect();
    described.sort();
    let mut routes: Vec<(String, String)> = postgate::http::ROUTES
        .iter()
        .filter(|r| r.documented)
        .map(|r| {
            let mut methods: Vec<&str> = r.allow.split(", ").collect();
            methods.sort();
            (r.path.to_owned(), methods.join(", "))
        })
        .collect();
    routes.sort();
    assert_eq!(described, routes);
}

/// The profile schema's name patterns are the vocabulary's grammars, the ones the compiler
/// checks with: each place a name occurs carries its grammar's pattern exactly.
#[test]
fn schema_patterns_are_the_vocabulary() {
    use postgate::vocabulary::{BUCKET, Grammar, METADATA_NAME, NAME, VAR_NAME};
    let schema: serde_json::Value = serde_json::from_str(&postgate::profile_schema()).unwrap();
    let properties = &schema["properties"];
    let cases: [(&str, &serde_json::Value, &Grammar); 4] = [
        ("bucket", &properties["bucket"]["pattern"], &BUCKET),
        ("store", &properties["store"]["pattern"], &NAME),
        ("vars", &properties["vars"]["propertyNames"]["pattern"], &VAR_NAME),
        (
            "metadata",
            &properties["metadata"]["propertyNames"]["pattern"],
            &METADATA_NAME,
        ),
    ];
    for (place, pattern, grammar) in cases {
        assert_eq!(pattern.as_str(), Some(grammar.pattern), "{place}");
    }
    // The fields a profile may pin are the vocabulary's list, in its order.
    let fields = &properties["fields"]["propertyNames"]["enum"];
    assert_eq!(fields, &serde_json::json!(postgate::vocabulary::KNOWN_FIELDS));
}
