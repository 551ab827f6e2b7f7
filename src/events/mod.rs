//! Upload events: what an app is told when an upload completes, is refused or is aborted, signed
//! in the Standard Webhooks format (`webhook`) and sent to the app's endpoint — within the
//! `complete` call (`sync`, `deliver`) or through a Redis stream that every replica drains
//! (`queue`). At least once: an event's ID is stable across every retry, and the lifecycle
//! records an event (delivered or queued) before it carries out the object's fate.

pub mod deliver;
pub mod queue;
pub mod webhook;
pub mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

pub use deliver::{Attempt, Notifier, Sent};
pub use webhook::{WebhookSecret, event_id, signature_header};

crate::listed_enum! {
/// The kinds of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// Verified (and promoted from staging).
    Completed,
    /// Refused at `complete`: its code, and where the object went.
    Refused,
    /// A multipart upload aborted through the gateway.
    Aborted,
}
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Completed => "upload.completed",
            EventType::Refused => "upload.refused",
            EventType::Aborted => "upload.aborted",
        }
    }

    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.iter().copied().find(|t| t.as_str() == name)
    }
}

/// How an app's events travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Inside `complete`, before it answers: the app's answer reaches the client, and an
    /// endpoint that cannot be reached makes `complete` answer 503.
    #[default]
    Sync,
    /// Queued in Redis; `complete` answers once the event is stored there.
    Queue,
}

/// One app's endpoint, resolved from its config (secrets read).
#[derive(Clone)]
pub struct Endpoint {
    pub app: String,
    pub url: String,
    pub secrets: Vec<WebhookSecret>,
    pub types: Vec<EventType>,
    /// `None`: every profile.
    pub profiles: Option<Vec<String>>,
    pub delivery: Delivery,
    /// One attempt, connect to answer.
    pub timeout: Duration,
    /// Attempts within one `complete` (sync).
    pub attempts: u32,
    /// Over the settings and secrets, for the snapshot's content hash.
    pub fingerprint: [u8; 32],
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a token, the secrets sign: neither is printed.
        f.debug_struct("Endpoint")
            .field("app", &self.app)
            .field("types", &self.types)
            .field("profiles", &self.profiles)
            .field("delivery", &self.delivery)
            .field("timeout", &self.timeout)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Whether events of `event_type` about `profile` go to this endpoint.
    pub fn wants(&self, event_type: EventType, profile: &str) -> bool {
        self.types.contains(&event_type) && self.profiles.as_ref().is_none_or(|p| p.iter().any(|n| n == profile))
    }
}

/// Every app's endpoint, by app.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    by_app: BTreeMap<String, Arc<Endpoint>>,
}

impl Endpoints {
    pub fn new(endpoints: Vec<Endpoint>) -> Endpoints {
        Endpoints {
            by_app: endpoints.into_iter().map(|e| (e.app.clone(), Arc::new(e))).collect(),
        }
    }

    /// The same with `endpoint` added (or replacing the app's).
    pub fn with(mut self, endpoint: Endpoint) -> Endpoints {
        self.by_app.insert(endpoint.app.clone(), Arc::new(endpoint));
        self
    }

    /// The endpoint that wants `event_type` of `app` about `profile`, if any.
    pub fn route(&self, app: &str, event_type: EventType, profile: &str) -> Option<&Arc<Endpoint>> {
        self.by_app.get(app).filter(|e| e.wants(event_type, profile))
    }

    pub fn get(&self, app: &str) -> Option<&Arc<Endpoint>> {
        self.by_app.get(app)
    }

    /// The apps whose events are queued.
    pub fn queued_apps(&self) -> impl Iterator<Item = &str> {
        self.by_app
            .values()
            .filter(|e| e.delivery == Delivery::Queue)
            .map(|e| e.app.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.by_app.is_empty()
    }

    pub fn fingerprint(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for endpoint in self.by_app.values() {
            hasher.update(endpoint.fingerprint);
        }
        hasher.finalize().into()
    }
}

/// A checksum the store reported.
#[derive(Debug, Clone, Serialize)]
pub struct ChecksumFact {
    pub algorithm: String,
    pub value: String,
}

/// Why an upload was refused, and what became of its object.
#[derive(Debug, Clone, Serialize)]
pub struct RefusalFact {
    pub code: &'static str,
    pub detail: String,
    /// `deleted`, `quarantined as <key>`, `aborted`.
    pub removed: String,
}

/// What an app needs to record an upload without another call: the `data` of an event.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UploadFacts {
    /// The upload's marker (`x-amz-meta-postgate-upload` of the object).
    pub upload_id: String,
    pub profile: String,
    pub app: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    pub store: String,
    pub bucket: String,
    /// Where the object is (completed: its final key).
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<ChecksumFact>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// `post`, `put` or `multipart`.
    pub method: &'static str,
    /// What `complete` checked against the signature.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verified: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<RefusalFact>,
}

/// One event, its body fixed when it happened: every attempt sends these bytes under this ID
/// (each attempt signs them with its own timestamp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub event_type: EventType,
    pub app: String,
    pub body: Vec<u8>,
}

impl Event {
    /// `{type, timestamp, data}`, the Standard Webhooks body.
    pub fn new(event_type: EventType, facts: &UploadFacts, now: OffsetDateTime) -> Event {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(rename = "type")]
            event_type: &'static str,
            timestamp: String,
            data: &'a UploadFacts,
        }
        let body = Body {
            event_type: event_type.as_str(),
            timestamp: crate::text::format_rfc3339(now),
            data: facts,
        };
        Event {
            id: event_id(&facts.upload_id, event_type.as_str()),
            event_type,
            app: facts.app.clone(),
            body: serde_json::to_vec(&body).expect("event bodies serialize"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_body_is_type_timestamp_and_data() {
        let facts = UploadFacts {
            upload_id: "m1".into(),
            profile: "avatars".into(),
            app: "web".into(),
            key: "a/b.png".into(),
            size: Some(3),
            method: "post",
            verified: vec!["size"],
            ..UploadFacts::default()
        };
        let event = Event::new(
            EventType::Completed,
            &facts,
            time::macros::datetime!(2026-12-06 01:02:03 UTC),
        );
        let body: serde_json::Value = serde_json::from_slice(&event.body).unwrap();
        assert_eq!(body["type"], "upload.completed");
        assert_eq!(body["timestamp"], "2026-12-06T01:02:03Z");
        assert_eq!(body["data"]["key"], "a/b.png");
        assert!(body["data"].get("sub").is_none());
        assert_eq!(event.id, event_id("m1", "upload.completed"));
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(*t));
        }
    }
}
