//! postgate: YAML upload profiles compiled into S3 POST policies and signed with SigV4.
//!
//! The pipeline: YAML file → `profile::RawProfile` → `profile::Profile` → `registry::Snapshot`
//! (hot-swapped by `registry::Registry`) → `http` handler → admission (`profile::admit`) →
//! `sign::presign` → `{url, fields}`. See ARCHITECTURE.md.

/// An enum of unit variants with `ALL`, every variant in declaration order: a table or a test
/// that walks `ALL` cannot miss a variant added later.
macro_rules! listed_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$variant_meta:meta])* $variant:ident,)* }) => {
        $(#[$meta])*
        $vis enum $name {
            $($(#[$variant_meta])* $variant,)*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
        }
    };
}
pub(crate) use listed_enum;

pub mod audit;
pub mod auth;
pub mod config;
pub mod credentials;
#[cfg(feature = "dev-store")]
pub mod dev;
pub mod events;
pub mod explain;
pub mod http;
pub mod identity;
pub mod lifecycle;
pub mod logs;
pub mod metrics;
pub mod probe;
pub mod profile;
pub mod ratelimit;
pub mod registry;
pub mod secret;
pub mod shared_limits;
pub mod sign;
pub mod store;
pub mod text;
pub mod transport;
pub mod upload;
pub mod vocabulary;

/// `n` and the noun, singular for one: "1 error", "2 errors", "0 warnings".
pub fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The JSON Schema of a profile file, as `schema/profile.schema.json` holds it.
pub fn profile_schema() -> String {
    let mut schema = schemars::schema_for!(profile::RawProfile);
    // `size` is optional to serde only so that the compiler can report its absence together with
    // every other problem; to an editor it is required.
    if let Some(serde_json::Value::Array(required)) = schema.get_mut("required") {
        required.push(serde_json::Value::from("size"));
    }
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
}
