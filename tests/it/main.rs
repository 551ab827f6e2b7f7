//! The integration tests: one binary, themed modules.

mod admit;
mod architecture;
mod audit;
mod azure;
mod canary;
mod cardinality;
mod cli;
mod compile;
pub mod coverage;
mod credentials;
pub mod e2e;
mod events;
mod form_fields;
mod gcs_vectors;
mod hostile;
mod hostile_yaml;
mod http;
mod jwt;
mod lifecycle;
mod probe;
mod properties;
mod ratelimit;
mod registry;
mod reload;
mod revocation;
mod schema;
mod serve;
mod shared_ratelimit;
mod sigv4_suite;
mod slow_bodies;
mod store_kinds;
pub mod support;
mod uploads;
mod vectors;

pub use support::{repo_path, sample, shared_vectors, wait_until};
