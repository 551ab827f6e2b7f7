//! What the lifecycle tells others: the upload events an app's endpoint receives (announced
//! before the object's fate is carried out, so an event is never lost to a failed call), and
//! the audit log's lines.

use time::OffsetDateTime;

use super::{Code, Failure, Uploads};
use crate::audit::{CompleteRecord, GrantRecord};
use crate::events::{ChecksumFact, Delivery, Event, EventType, RefusalFact, Sent, UploadFacts};
use crate::profile::{Bounds, Profile};
use crate::registry::Snapshot;
use crate::upload::{Carry, Claims, ObjectHead, Violation};

/// What became of an announced event.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Heard {
    /// No endpoint wants it.
    Nobody,
    /// The endpoint answered 2xx, with its JSON answer if any.
    Delivered {
        id: String,
        answer: Option<serde_json::Value>,
    },
    /// The app's endpoint answered 4xx.
    Refused { status: u16 },
    /// In the app's queue.
    Queued { id: String },
}

/// An event's `webhook-id` and how it travelled, as `complete` reports it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct EventReport {
    /// The `webhook-id` the app receives (the same on every retry).
    pub id: String,
    /// `delivered` (sync) or `queued`.
    pub delivery: &'static str,
}

impl Heard {
    pub(super) fn report(&self) -> Option<EventReport> {
        match self {
            Heard::Delivered { id, .. } => Some(EventReport {
                id: id.clone(),
                delivery: "delivered",
            }),
            Heard::Queued { id } => Some(EventReport {
                id: id.clone(),
                delivery: "queued",
            }),
            _ => None,
        }
    }
}

/// The facts every event of this upload carries, at `key`, with what `head` says.
pub(super) fn facts(claims: &Claims, key: &str, head: Option<&ObjectHead>) -> UploadFacts {
    let mut facts = UploadFacts {
        upload_id: claims.bounds.marker.clone(),
        profile: claims.profile.clone(),
        app: claims.app.clone(),
        sub: claims.sub.clone(),
        store: claims.store.clone(),
        bucket: claims.bucket.clone(),
        key: key.to_owned(),
        method: claims.carry.as_str(),
        ..UploadFacts::default()
    };
    if let Some(head) = head {
        facts.size = Some(head.size);
        facts.content_type = head.content_type.clone();
        facts.metadata = head.metadata.clone();
        facts.etag = head.etag.clone();
        facts.version_id = head.version_id.clone();
        facts.checksum = claims.bounds.checksum.as_ref().and_then(|(algorithm, _)| {
            head.checksums
                .iter()
                .find(|(a, _)| a == algorithm)
                .map(|(a, value)| ChecksumFact {
                    algorithm: a.name().to_owned(),
                    value: value.clone(),
                })
        });
    }
    facts
}

/// What `complete` checked of an upload that passed.
pub(super) fn verified(bounds: &Bounds, sniffed: bool) -> Vec<&'static str> {
    let mut checked = vec!["marker", "size"];
    if bounds.content_type.is_some() {
        checked.push("content_type");
    }
    if !bounds.metadata.is_empty() {
        checked.push("metadata");
    }
    if bounds.checksum.is_some() {
        checked.push("checksum");
    }
    if sniffed {
        checked.push("sniff");
    }
    checked
}

/// Whether `app`'s endpoint takes `event_type` of `profile` within `complete` (sync).
pub(super) fn delivery(snapshot: &Snapshot, facts: &UploadFacts, event_type: EventType) -> Option<Delivery> {
    snapshot
        .events
        .route(&facts.app, event_type, &facts.profile)
        .map(|endpoint| endpoint.delivery)
}

/// Sends the event of `facts` to the app's endpoint, if it wants it. An endpoint that cannot
/// be reached (sync) or a queue that cannot store it is a failure (503): the caller has
/// carried out nothing yet, and a retried call sends the same event.
pub(super) async fn announce(
    uploads: &Uploads,
    snapshot: &Snapshot,
    event_type: EventType,
    facts: &UploadFacts,
) -> Result<Heard, Failure> {
    let Some(endpoint) = snapshot.events.route(&facts.app, event_type, &facts.profile) else {
        return Ok(Heard::Nobody);
    };
    let event = Event::new(event_type, facts, OffsetDateTime::now_utc());
    match uploads.notifier.send(endpoint, &event).await {
        Sent::NotWanted => Ok(Heard::Nobody),
        Sent::Delivered { answer } => Ok(Heard::Delivered { id: event.id, answer }),
        Sent::Queued => Ok(Heard::Queued { id: event.id }),
        Sent::Refused { status } => Ok(Heard::Refused { status }),
        Sent::Undelivered { cause } => Err(Failure::new(
            Code::EventUndelivered,
            format!(
                "app `{}`'s event endpoint did not take the `{}` event ({cause}); nothing was carried out: complete again later (the same event is sent)",
                facts.app,
                event_type.as_str()
            ),
        )),
        Sent::QueueUnavailable { cause } => Err(Failure::new(
            Code::EventsUnavailable,
            format!(
                "the event queue could not store the `{}` event ({cause}); complete again later (the same event is queued)",
                event_type.as_str()
            ),
        )),
    }
}

/// Announces `upload.refused` for `violation`, saying what will be done with the object
/// (`removed`), before it is done.
pub(super) async fn announce_refusal(
    uploads: &Uploads,
    snapshot: &Snapshot,
    claims: &Claims,
    key: &str,
    head: Option<&ObjectHead>,
    violation: &Violation,
    removed: &str,
) -> Result<(), Failure> {
    let planned = Failure::violation(violation, removed);
    let mut facts = facts(claims, key, head);
    facts.refusal = Some(RefusalFact {
        code: planned.code.name(),
        detail: planned.detail,
        removed: removed.to_owned(),
    });
    announce(uploads, snapshot, EventType::Refused, &facts).await.map(drop)
}

/// Writes a grant's audit line; with `audit.fail_closed`, an unwritten line is a failure.
#[allow(clippy::too_many_arguments)]
pub fn audit_grant(
    uploads: &Uploads,
    snapshot: &Snapshot,
    profile: &Profile,
    grant: &super::Grant<'_>,
    bounds: &Bounds,
    carry: Carry,
    expires_at: OffsetDateTime,
    multipart_upload_id: Option<&str>,
) -> Result<(), Failure> {
    let Some(audit) = &uploads.audit else {
        return Ok(());
    };
    let name = profile.name().as_str();
    let prefix = bounds.key.strip_suffix("${filename}");
    let record = GrantRecord {
        app: grant.app,
        sub: grant.sub,
        profile: name,
        profile_digest: snapshot.digests.get(name).map(hex::encode).unwrap_or_default(),
        method: carry.as_str(),
        store: profile.store(),
        bucket: profile.bucket(),
        key: prefix.is_none().then_some(bounds.key.as_str()),
        key_prefix: prefix,
        size_min: bounds.min_size,
        size_max: bounds.max_size,
        expires_at: crate::text::format_rfc3339(expires_at),
        upload_id: &bounds.marker,
        multipart_upload_id,
        client: grant.client,
    };
    audit
        .grant(&record)
        .map_err(|e| Failure::new(Code::AuditUnavailable, format!("{e}; nothing was granted: retry later")))
}

/// Writes a `complete` outcome's audit line (never fails the call: its fate is decided).
pub(super) fn audit_complete(
    uploads: &Uploads,
    claims: &Claims,
    outcome: &Result<super::Completed, Failure>,
    client: Option<&str>,
) {
    let Some(audit) = &uploads.audit else { return };
    let (key, code, size) = match outcome {
        Ok(completed) => (completed.key.as_str(), "verified", Some(completed.size)),
        Err(failure) => (claims.bounds.key.as_str(), failure.code.name(), None),
    };
    let _ = audit.complete(&CompleteRecord {
        app: &claims.app,
        sub: claims.sub.as_deref(),
        profile: &claims.profile,
        method: claims.carry.as_str(),
        store: &claims.store,
        bucket: &claims.bucket,
        key,
        upload_id: &claims.bounds.marker,
        outcome: code,
        size,
        client,
    });
}
