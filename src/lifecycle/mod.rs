//! The upload lifecycle below the HTTP edge: `grant`, the one way a signature is given (presign,
//! multipart start, Uppy, the dev pages, `postgate sign`), and what comes after it: part URLs,
//! the store's part list, abort, and `complete`, which decides an object's fate (checked,
//! promoted, quarantined or deleted). Every function returns a domain value or a `Failure`;
//! actix and status codes live in `http`, which renders a `Failure` through its one table
//! (`http::problem`).
//!
//! An upload knows its own bytes: every grant signs a fresh marker into the object
//! (`x-amz-meta-postgate-upload`, `profile::plan::MARKER_FIELD`) and seals it in the upload
//! token; `complete` checks, removes or promotes only an object that carries it. Any other
//! object at the key is another principal's, left untouched and answered `not-this-upload`.
//!
//! Grants are pure (`now` and the UUID are parameters); the store calls of the later steps go
//! through `crate::store`, the only client of the store.

mod complete;
mod failure;
mod grant;
mod notify;

use std::sync::Arc;

pub use complete::{
    Completed, Listed, SignedPart, Sniff, abort, complete, list_parts, multipart_of, open_token, sign_parts,
    upload_context,
};
pub use failure::{Code, Failure};
pub use grant::{Grant, Granted, MultipartStarted, claims_for, grant, grant_on, grant_recorded, start_multipart};
pub use notify::{EventReport, audit_grant};

use crate::store::StoreClient;
use crate::upload::TokenKeys;

/// What the lifecycle needs beyond a snapshot: the keys that seal upload tokens and the store
/// client.
pub struct Uploads {
    /// `None`: `upload_tokens` is not configured; the steps after a grant are unavailable.
    pub tokens: Option<Arc<TokenKeys>>,
    pub client: StoreClient,
    /// The base of URLs that point back at the gateway; default: the request's scheme and host.
    pub public_url: Option<String>,
    /// Sends the apps' upload events.
    pub notifier: crate::events::Notifier,
    /// The audit log; off when `None`.
    pub audit: Option<Arc<crate::audit::Audit>>,
}

impl Uploads {
    /// The token keys, or why there are none.
    pub fn tokens(&self) -> Result<&TokenKeys, Failure> {
        self.tokens.as_deref().ok_or_else(|| {
            Failure::new(
                Code::TokensUnconfigured,
                "the gateway has no `upload_tokens` key, so it cannot issue or open upload tokens; its operator sets `upload_tokens` in postgate.yaml",
            )
        })
    }
}
