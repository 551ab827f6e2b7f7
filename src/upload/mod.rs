//! After the signature: what `complete` and the multipart calls need to check an upload without
//! keeping state. An *upload token* (`token`) seals what one signature allowed; the *part plan*
//! (`parts`) fixes how a multipart upload is cut; `verify` decides whether a stored object is
//! what was allowed.
//!
//! Pure: no IO, no clock (`now` is a parameter). The store calls live in the store client, the
//! routes at the HTTP edge.

pub mod parts;
pub mod token;
pub mod verify;

pub use parts::{ListedPart, PartPlan};
pub use token::{Carry, Claims, TokenError, TokenKeys};
pub use verify::{ObjectHead, Violation, check_object, check_parts, sniff};
