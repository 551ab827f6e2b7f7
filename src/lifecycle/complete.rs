//! After the grant: part URLs, the store's part list, abort, and `complete`, which checks the
//! stored object against what was signed and promotes, quarantines or deletes it, acting only on
//! an object that carries this upload's marker.

use std::sync::Arc;

use time::OffsetDateTime;

use super::notify::{self, EventReport, Heard};
use super::{Code, Failure, Uploads};
use crate::events::{Delivery, EventType};
use crate::profile::Profile;
use crate::profile::plan::MARKER_NAME;
use crate::profile::plan::put_header;
use crate::registry::Snapshot;
use crate::sign::multipart::{PartTarget, part_url};
use crate::sign::{Store, format_rfc3339};
use crate::store::{Completion, StoreClient, StoreError};
use crate::upload::verify::SNIFF_BYTES;
use crate::upload::{
    Carry, Claims, ListedPart, ObjectHead, PartPlan, TokenError, TokenKeys, check_object, check_parts, sniff,
};

/// Opens a token at `now`. `app`: the token must be that app's; `sub`: the caller's end user,
/// when a verified ID token came with the call: a token granted to an end user is refused for
/// another (the app's own key, without a user, may finish its users' uploads).
pub fn open_token(
    tokens: &TokenKeys,
    token: &str,
    app: Option<&str>,
    sub: Option<&str>,
    now: OffsetDateTime,
) -> Result<Claims, Failure> {
    let claims = tokens.open(token.trim(), now).map_err(|error| {
        let code = match error {
            TokenError::Expired(_) => Code::TokenExpired,
            _ => Code::TokenInvalid,
        };
        Failure::new(code, error.to_string())
    })?;
    if let Some(app) = app
        && claims.app != app
    {
        return Err(Failure::new(
            Code::TokenAppMismatch,
            format!("this token was issued to app `{}`, not `{app}`", claims.app),
        ));
    }
    if let (Some(granted), Some(caller)) = (claims.sub.as_deref(), sub)
        && granted != caller
    {
        return Err(Failure::new(
            Code::TokenUserMismatch,
            "this token was granted to another end user of the app",
        ));
    }
    Ok(claims)
}

/// The token's profile (still served and still allowing the token's app: revoking a profile or
/// an app's access stops its uploads) and store, in `snapshot`.
pub fn upload_context<'s>(
    snapshot: &'s Snapshot,
    claims: &Claims,
) -> Result<(&'s Arc<Profile>, &'s Arc<Store>), Failure> {
    let profile = match snapshot.get(&claims.profile) {
        Some(profile) if profile.allows_app(&claims.app) => profile,
        Some(_) => {
            return Err(Failure::new(
                Code::Forbidden,
                format!("profile `{}` no longer allows app `{}`", claims.profile, claims.app),
            ));
        }
        None => {
            return Err(Failure::new(
                Code::UnknownProfile,
                format!("profile `{}` of this upload is no longer served", claims.profile),
            ));
        }
    };
    // The upload lives where it was granted: the profile's store, unless the profile has moved
    // to another store since.
    if claims.store == profile.profile().store() {
        return Ok((profile.profile(), profile.signing_store()));
    }
    let store = snapshot.stores.get(&claims.store).ok_or_else(|| {
        Failure::new(
            Code::StoreUnavailable,
            format!("store `{}` of this upload is no longer configured", claims.store),
        )
    })?;
    Ok((profile.profile(), store))
}

/// A multipart token's upload ID and part plan.
pub fn multipart_of(claims: &Claims) -> Result<(&str, &PartPlan), Failure> {
    match (&claims.upload_id, &claims.parts) {
        (Some(id), Some(plan)) if claims.carry == Carry::Multipart => Ok((id, plan)),
        _ => Err(Failure::new(
            Code::NotMultipart,
            "this upload token is for a single POST or PUT upload; only `complete` takes it",
        )),
    }
}

/// The most part URLs one call signs.
pub const MAX_PARTS_PER_CALL: usize = 1000;

/// One signed part URL.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SignedPart {
    pub part_number: u32,
    /// The part's exact size: send exactly this many bytes.
    pub size: u64,
    pub url: String,
    pub expires_at: String,
}

/// Presigned UploadPart URLs for `numbers`, each signing its part's exact `Content-Length`.
pub fn sign_parts(
    snapshot: &Snapshot,
    claims: &Claims,
    numbers: &[u32],
    now: OffsetDateTime,
) -> Result<Vec<SignedPart>, Failure> {
    let (profile, store) = upload_context(snapshot, claims)?;
    let (upload_id, plan) = multipart_of(claims)?;
    if numbers.is_empty() || numbers.len() > MAX_PARTS_PER_CALL {
        return Err(Failure::new(
            Code::PartInvalid,
            format!(
                "name 1 to {MAX_PARTS_PER_CALL} parts in `part_numbers`; this upload has {}",
                plan.part_count
            ),
        ));
    }
    let signer = store.signer(now).map_err(|e| Failure::credentials(&e))?;
    let target = PartTarget {
        bucket: &claims.bucket,
        key: &claims.bounds.key,
        upload_id,
        expires_in: profile.expires_in(),
        not_after: OffsetDateTime::from_unix_timestamp(claims.expires_at).unwrap_or(now),
    };
    let mut parts = Vec::with_capacity(numbers.len());
    for &number in numbers {
        let Some(size) = plan.size_of(number) else {
            return Err(Failure::new(
                Code::PartInvalid,
                format!(
                    "part {number} is not in this upload's plan of {} part(s)",
                    plan.part_count
                ),
            ));
        };
        let url = part_url(&signer, &target, number, size, now);
        parts.push(SignedPart {
            part_number: number,
            size,
            url: url.url,
            expires_at: format_rfc3339(url.expires_at),
        });
    }
    Ok(parts)
}

/// What the store holds of a multipart upload, and its plan.
#[derive(Debug, Clone)]
pub struct Listed {
    pub parts: Vec<ListedPart>,
    pub plan: PartPlan,
}

/// The parts the store holds (to resume an upload).
pub async fn list_parts(client: &StoreClient, snapshot: &Snapshot, claims: &Claims) -> Result<Listed, Failure> {
    let (_, store) = upload_context(snapshot, claims)?;
    let (upload_id, plan) = multipart_of(claims)?;
    let parts = client
        .list_parts(store, &claims.bucket, &claims.bounds.key, upload_id)
        .await
        .map_err(Failure::store)?;
    Ok(Listed { parts, plan: *plan })
}

/// Aborts the token's multipart upload: only its own upload ID, so only its own parts. An
/// upload already gone (aborted, completed) is aborted. Then `upload.aborted` is announced (a
/// retried abort announces it again, under the same ID).
pub async fn abort(uploads: &Uploads, snapshot: &Snapshot, claims: &Claims) -> Result<(), Failure> {
    let (_, store) = upload_context(snapshot, claims)?;
    let (upload_id, _) = multipart_of(claims)?;
    match uploads
        .client
        .abort_multipart(store, &claims.bucket, &claims.bounds.key, upload_id)
        .await
    {
        Ok(()) => {}
        Err(StoreError::Refused { code, .. }) if code == "NoSuchUpload" => {
            // Completed rather than aborted: the app was told `upload.completed`.
            let head = uploads
                .client
                .head(store, &claims.bucket, &claims.bounds.key)
                .await
                .map_err(Failure::store)?;
            if head.is_some_and(|head| carries_marker(&head, claims)) {
                return Ok(());
            }
        }
        Err(error) => return Err(Failure::store(error)),
    }
    let facts = notify::facts(claims, &claims.bounds.key, None);
    notify::announce(uploads, snapshot, EventType::Aborted, &facts).await?;
    Ok(())
}

/// How far sniffing got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Sniff {
    /// The profile does not sniff.
    Off,
    /// The first bytes are recognisably the declared type.
    Matched,
    /// The declared type is not one the sniffer recognises (text, CSV, JSON), and the bytes are
    /// not recognisably another: nothing was proven.
    NotRecognised,
}

/// A verified upload.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Completed {
    pub key: String,
    pub bucket: String,
    pub size: u64,
    pub etag: Option<String>,
    pub content_type: Option<String>,
    pub metadata: std::collections::BTreeMap<String, String>,
    /// The checksum the store reports for the declared algorithm, if any.
    pub checksum: Option<String>,
    /// `verify.staging`: the staging key the object was promoted from (now removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<String>,
    /// Whether the first bytes were proven to be the declared type (`sniff: matched`).
    pub sniffed: bool,
    pub sniff: Sniff,
    pub profile: String,
    /// `post`, `put` or `multipart`.
    #[schema(value_type = String)]
    pub method: Carry,
    /// The app's JSON answer to `upload.completed`, delivered within this call (`delivery: sync`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub app_answer: Option<serde_json::Value>,
    /// The `upload.completed` event sent to the app, when it takes events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<EventReport>,
}

/// One store and bucket, the client that calls them, and who hears of the upload.
struct Place<'a> {
    client: &'a StoreClient,
    store: &'a Store,
    bucket: &'a str,
    uploads: &'a Uploads,
    snapshot: &'a Snapshot,
}

/// Completes (multipart) and verifies one upload; removes it on a violation; promotes it from
/// its staging key. Acts only on an object carrying the token's marker: any other object at the
/// key is another principal's and is answered `NotThisUpload`, untouched. Idempotent: a second
/// call finds the upload completed (or promoted) by its marker and verifies it again.
///
/// The app's endpoint hears of the outcome before it is carried out: `upload.completed` before
/// the promotion (sync: its 4xx refuses the upload; queue: after it), `upload.refused` before the
/// removal. An event that cannot be sent fails the call (503) with nothing carried out. The
/// outcome is written to the audit log, with the `client` address.
pub async fn complete(
    uploads: &Uploads,
    snapshot: &Snapshot,
    claims: &Claims,
    filename: Option<&str>,
    client: Option<&str>,
) -> Result<Completed, Failure> {
    let outcome = complete_checked(uploads, snapshot, claims, filename).await;
    notify::audit_complete(uploads, claims, &outcome, client);
    outcome
}

async fn complete_checked(
    uploads: &Uploads,
    snapshot: &Snapshot,
    claims: &Claims,
    filename: Option<&str>,
) -> Result<Completed, Failure> {
    let (profile, store) = upload_context(snapshot, claims)?;
    if claims.bounds.marker.is_empty() {
        return Err(Failure::new(
            Code::TokenInvalid,
            "this upload token predates per-upload markers; sign the upload again",
        ));
    }
    let place = Place {
        client: &uploads.client,
        store,
        bucket: &claims.bucket,
        uploads,
        snapshot,
    };
    let key = uploaded_key(claims, filename)?;
    if claims.carry == Carry::Multipart {
        complete_multipart(&place, profile, claims, &key).await?;
    }
    let head = place.head_with_retry(&key).await?;
    let ours = |head: &Option<ObjectHead>| head.as_ref().is_some_and(|h| carries_marker(h, claims));
    if ours(&head) {
        let head = head.unwrap_or_default();
        return verify(&place, profile, claims, &key, head, None).await;
    }
    // Promoted by an earlier call: the object at the final key carries the marker.
    if let Some(final_key) = claims.bounds.promote_to.as_deref() {
        let promoted = place.head(final_key).await?;
        if ours(&promoted) {
            let head = promoted.unwrap_or_default();
            return verify(&place, profile, claims, final_key, head, Some(&key)).await;
        }
    }
    Err(match head {
        None => Failure::new(
            Code::UploadNotFound,
            format!("no object at `{key}` yet: upload first, then complete (nothing was deleted)"),
        ),
        Some(_) => Failure::new(
            Code::NotThisUpload,
            format!(
                "the object at `{key}` was not written with this upload's signature (its marker differs); it was left untouched"
            ),
        ),
    })
}

/// Whether the object carries the token's marker: then its bytes were written with this
/// grant's signature (or by this upload's own promotion or completion).
fn carries_marker(head: &ObjectHead, claims: &Claims) -> bool {
    head.metadata.get(MARKER_NAME) == Some(&claims.bounds.marker)
}

/// Checks this upload's object at `key` (size, type, metadata, checksum, first bytes); removes
/// it on a violation, promotes it from the staging key when it passes (`promoted_from`: an
/// earlier call promoted it from there). The app hears first.
async fn verify(
    place: &Place<'_>,
    profile: &Profile,
    claims: &Claims,
    key: &str,
    head: ObjectHead,
    promoted_from: Option<&str>,
) -> Result<Completed, Failure> {
    let mut violation = check_object(&claims.bounds, &head).err();
    if violation.is_none() && place.store.kind == crate::sign::Kind::Azure {
        // A SAS signs no header: what the client had to send is checked here.
        violation = crate::upload::verify::check_unsigned(&claims.bounds, &head, profile.fields()).err();
    }
    let mut sniffed = Sniff::Off;
    if violation.is_none() && profile.verify().sniff {
        let declared = head.content_type.clone().unwrap_or_default();
        // The bytes of the version just checked; another version means the client is writing
        // to the key while it is checked.
        let first = place
            .client
            .first_bytes(place.store, place.bucket, key, SNIFF_BYTES, head.etag.as_deref())
            .await
            .map_err(changed_or_store)?;
        match sniff(&declared, &first) {
            Ok(true) => sniffed = Sniff::Matched,
            Ok(false) => sniffed = Sniff::NotRecognised,
            Err(found) => violation = Some(found),
        }
    }
    if let Some(violation) = violation {
        let planned = planned_removal(profile, claims, key);
        notify::announce_refusal(
            place.uploads,
            place.snapshot,
            claims,
            key,
            Some(&head),
            &violation,
            &planned,
        )
        .await?;
        let removed = remove(place, profile, claims, key, &head).await?;
        tracing::warn!(profile = claims.profile.as_str(), app = claims.app.as_str(), key = %key, %violation, removed = %removed, "upload refused at complete");
        return Err(Failure::violation(&violation, &removed));
    }
    let final_key = claims
        .bounds
        .promote_to
        .as_deref()
        .filter(|final_key| *final_key != key);
    let mut facts = notify::facts(claims, final_key.unwrap_or(key), Some(&head));
    facts.verified = notify::verified(&claims.bounds, sniffed == Sniff::Matched);
    facts.promoted_from = final_key.map(|_| key).or(promoted_from).map(str::to_owned);
    if final_key.is_some() {
        // The staging object's version, not the promoted one's.
        facts.version_id = None;
    }
    let delivery = notify::delivery(place.snapshot, &facts, EventType::Completed);
    let mut heard = Heard::Nobody;
    if delivery == Some(Delivery::Sync) {
        heard = notify::announce(place.uploads, place.snapshot, EventType::Completed, &facts).await?;
        if let Heard::Refused { status } = heard {
            return Err(refused_by_app(place, profile, claims, key, &head, promoted_from.is_some(), status).await);
        }
    }
    if let Some(final_key) = final_key {
        promote(place, profile, key, final_key, &head).await?;
    }
    if delivery == Some(Delivery::Queue) {
        heard = notify::announce(place.uploads, place.snapshot, EventType::Completed, &facts).await?;
    }
    let mut completed = completed(claims, profile, &facts.key, head, facts.promoted_from.clone(), sniffed);
    completed.event = heard.report();
    if let Heard::Delivered { answer, .. } = heard {
        completed.app_answer = answer;
    }
    Ok(completed)
}

/// The app's endpoint refused the upload: removed, unless an earlier call promoted it (the app
/// took it then, and it is kept).
async fn refused_by_app(
    place: &Place<'_>,
    profile: &Profile,
    claims: &Claims,
    key: &str,
    head: &ObjectHead,
    promoted_before: bool,
    status: u16,
) -> Failure {
    let app = &claims.app;
    if promoted_before {
        return Failure::new(
            Code::EventRefused,
            format!(
                "app `{app}` refused this upload (its event endpoint answered {status}), but it had taken it when an earlier call promoted it; the object was kept"
            ),
        );
    }
    match remove(place, profile, claims, key, head).await {
        Ok(removed) => {
            tracing::warn!(profile = claims.profile.as_str(), app = app.as_str(), key = %key, status, removed = %removed, "upload refused by the app's event endpoint");
            Failure::new(
                Code::EventRefused,
                format!(
                    "app `{app}` refused this upload (its event endpoint answered {status}); the object was {removed}"
                ),
            )
        }
        Err(failure) => failure,
    }
}

/// What `remove` will do with a refused object, said before it is done.
fn planned_removal(profile: &Profile, claims: &Claims, key: &str) -> String {
    match &profile.verify().quarantine {
        Some(prefix) => format!("quarantined as {}", quarantine_key(prefix, &claims.bounds.marker, key)),
        None => "deleted".to_owned(),
    }
}

/// Copies the checked version of the staged object to its key, then deletes the staged one.
async fn promote(
    place: &Place<'_>,
    profile: &Profile,
    key: &str,
    final_key: &str,
    head: &ObjectHead,
) -> Result<(), Failure> {
    // Copy the version that was checked, and only it: the client may still hold a valid URL
    // for the staging key.
    let quoted = head.etag.as_deref().map(|e| format!("\"{e}\""));
    let mut headers = copy_headers(profile, true);
    if let Some(quoted) = &quoted {
        headers.push(("x-amz-copy-source-if-match", quoted));
    }
    let azure = place.store.kind == crate::sign::Kind::Azure;
    if azure && !profile.overwrite() {
        headers.push(("If-None-Match", "*"));
    }
    // An earlier call copied it and could not delete the staged one: only the delete is left.
    let marker = head.metadata.get(MARKER_NAME);
    let promoted = match azure {
        true => place
            .head(final_key)
            .await?
            .is_some_and(|f| f.metadata.get(MARKER_NAME) == marker),
        false => false,
    };
    if promoted {
        return place.delete(key).await;
    }
    match place
        .client
        .copy(place.store, place.bucket, key, final_key, &headers)
        .await
    {
        Ok(()) => {}
        // Azure's answer to `If-None-Match: *` on the destination: the key is taken, and this
        // staged upload can never be promoted.
        Err(StoreError::Refused { code, .. }) if azure && code == "ConditionNotMet" => {
            place.delete(key).await?;
            return Err(Failure::new(
                Code::ObjectExists,
                format!(
                    "an object is already stored at `{final_key}` and the profile does not overwrite; this upload was deleted"
                ),
            ));
        }
        Err(error) => return Err(changed_or_store(error)),
    }
    // Stores that ignore the precondition: a single-part object keeps its ETag in a copy (on
    // S3 stores; Azure gives a copy its own ETag and honours `x-ms-source-if-match`).
    let copied = place.head(final_key).await?;
    if let (Some(checked), Some(copied)) = (&head.etag, copied.as_ref().and_then(|c| c.etag.as_ref()))
        && place.store.kind == crate::sign::Kind::S3
        && !checked.contains('-')
        && checked != copied
    {
        place.delete(final_key).await?;
        return Err(Failure::new(
            Code::UploadChanged,
            format!(
                "the staged object changed while it was checked; nothing was promoted to `{final_key}`: complete again"
            ),
        ));
    }
    place.delete(key).await
}

fn completed(
    claims: &Claims,
    profile: &Profile,
    key: &str,
    head: ObjectHead,
    promoted_from: Option<String>,
    sniff: Sniff,
) -> Completed {
    let checksum = claims
        .bounds
        .checksum
        .as_ref()
        .and_then(|(algorithm, _)| head.checksums.iter().find(|(a, _)| a == algorithm))
        .map(|(_, value)| value.clone());
    Completed {
        key: key.to_owned(),
        bucket: claims.bucket.clone(),
        size: head.size,
        etag: head.etag,
        content_type: head.content_type,
        metadata: head.metadata,
        checksum,
        promoted_from,
        sniffed: sniff == Sniff::Matched,
        sniff,
        profile: profile.name().as_str().to_owned(),
        method: claims.carry,
        app_answer: None,
        event: None,
    }
}

/// Lists the parts, checks them against the plan, and completes from the store's own list. On
/// a violation this upload (its own upload ID) is aborted. An upload the store no longer knows
/// counts as completed only when the object at the key carries the token's marker.
async fn complete_multipart(place: &Place<'_>, profile: &Profile, claims: &Claims, key: &str) -> Result<(), Failure> {
    let (upload_id, plan) = multipart_of(claims)?;
    let client = place.client;
    let gone = || async {
        match place.head(key).await? {
            Some(head) if carries_marker(&head, claims) => Ok(()),
            _ => Err(Failure::new(
                Code::UploadNotFound,
                "the store no longer knows this multipart upload (aborted, or completed and since replaced); nothing was deleted",
            )),
        }
    };
    let listed = match client.list_parts(place.store, place.bucket, key, upload_id).await {
        Ok(listed) => listed,
        Err(error) if error.code() == Some("NoSuchUpload") => return gone().await,
        Err(error) => return Err(Failure::store(error)),
    };
    // s3s-fs answers an upload it no longer knows with an empty list.
    if listed.is_empty() && gone().await.is_ok() {
        return Ok(());
    }
    let parts = match check_parts(plan, &listed) {
        Ok(parts) => parts,
        Err(violation) => {
            notify::announce_refusal(place.uploads, place.snapshot, claims, key, None, &violation, "aborted").await?;
            match place.abort(key, upload_id).await {
                Ok(()) => {}
                // Nothing listed and the abort refused: the store no longer knows the upload
                // (s3s-fs lists an unknown upload as empty).
                Err(failure) if listed.is_empty() && failure.code == Code::StoreRefused => return gone().await,
                Err(failure) => return Err(failure),
            }
            return Err(Failure::violation(&violation, "aborted"));
        }
    };
    let completion = Completion {
        object_size: plan.total(),
        no_overwrite: claims.bounds.no_overwrite,
        headers: object_headers(profile, claims),
    };
    match client
        .complete_multipart(place.store, place.bucket, key, upload_id, &parts, completion)
        .await
    {
        Ok(_) => Ok(()),
        // Completed by a concurrent call or an earlier attempt of this one: the marker decides.
        Err(StoreError::Refused { code, .. }) if code == "NoSuchUpload" => gone().await,
        // Azure says `ConditionNotMet`.
        Err(StoreError::Refused { code, .. }) if code == "PreconditionFailed" || code == "ConditionNotMet" => {
            if gone().await.is_ok() {
                return Ok(());
            }
            place.abort(key, upload_id).await?;
            Err(Failure::new(
                Code::ObjectExists,
                format!(
                    "an object is already stored at `{key}` and the profile does not overwrite; this upload was aborted"
                ),
            ))
        }
        // The parts themselves are refused: nothing can complete this upload.
        Err(error @ StoreError::Refused { .. })
            if matches!(
                error.code(),
                Some("InvalidPart" | "InvalidPartOrder" | "EntityTooSmall" | "InvalidBlockList")
            ) =>
        {
            let _ = place.abort(key, upload_id).await;
            Err(Failure::new(
                Code::CompletionRefused,
                format!("{error}; the upload was aborted"),
            ))
        }
        // Anything else (credentials, a store bug): the upload is kept for another attempt.
        Err(error) => Err(Failure::store(error)),
    }
}

/// The object's headers as the token and the profile fix them, in S3's names (the type, the
/// metadata with the marker, the pinned fields): what a store that sets them only when the
/// upload is committed (Azure) is given then.
fn object_headers(profile: &Profile, claims: &Claims) -> Vec<(String, String)> {
    let bounds = &claims.bounds;
    let mut headers = Vec::new();
    if let Some(crate::profile::TypeBound::Exact(content_type)) = &bounds.content_type {
        headers.push(("Content-Type".to_owned(), content_type.clone()));
    }
    for (name, value) in &bounds.metadata {
        headers.push((format!("x-amz-meta-{name}"), value.clone()));
    }
    headers.push((crate::profile::plan::MARKER_FIELD.to_owned(), bounds.marker.clone()));
    for (field, value) in profile.fields() {
        if let Some(header) = put_header(field) {
            headers.push((header.to_owned(), value.clone()));
        }
    }
    headers
}

/// A store refusal of a precondition (`If-Match`, `x-amz-copy-source-if-match`) means the object
/// changed under `complete`; anything else as `Failure::store`.
fn changed_or_store(error: StoreError) -> Failure {
    match &error {
        StoreError::Refused { status: 412, .. } => Failure::new(
            Code::UploadChanged,
            "the object changed while it was checked (written again with a still valid URL); complete again",
        ),
        _ => Failure::store(error),
    }
}

impl Place<'_> {
    async fn head(&self, key: &str) -> Result<Option<ObjectHead>, Failure> {
        self.client
            .head(self.store, self.bucket, key)
            .await
            .map_err(Failure::store)
    }

    /// HEAD, retrying a not-found briefly (a store may list an object a moment after its upload).
    async fn head_with_retry(&self, key: &str) -> Result<Option<ObjectHead>, Failure> {
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            if let Some(head) = self.head(key).await? {
                return Ok(Some(head));
            }
        }
        Ok(None)
    }

    async fn delete(&self, key: &str) -> Result<(), Failure> {
        self.client
            .delete(self.store, self.bucket, key)
            .await
            .map_err(Failure::store)
    }

    async fn abort(&self, key: &str, upload_id: &str) -> Result<(), Failure> {
        match self
            .client
            .abort_multipart(self.store, self.bucket, key, upload_id)
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::Refused { code, .. }) if code == "NoSuchUpload" => Ok(()),
            Err(error) => Err(Failure::store(error)),
        }
    }
}

/// Removes this upload's refused object: copied (the checked version only) under the profile's
/// quarantine prefix and the upload's marker, so it never replaces another quarantined object,
/// then deleted. Returns what happened (`deleted`, `quarantined as <key>`).
async fn remove(
    place: &Place<'_>,
    profile: &Profile,
    claims: &Claims,
    key: &str,
    head: &ObjectHead,
) -> Result<String, Failure> {
    let removed = match &profile.verify().quarantine {
        Some(prefix) => {
            let target = quarantine_key(prefix, &claims.bounds.marker, key);
            let quoted = head.etag.as_deref().map(|e| format!("\"{e}\""));
            let mut headers = copy_headers(profile, false);
            if let Some(quoted) = &quoted {
                headers.push(("x-amz-copy-source-if-match", quoted));
            }
            match place
                .client
                .copy(place.store, place.bucket, key, &target, &headers)
                .await
            {
                Ok(()) => format!("quarantined as {target}"),
                Err(error @ StoreError::Refused { status: 412, .. }) => return Err(changed_or_store(error)),
                // A refused copy (a key too long, say) must not leave the object where it is.
                Err(error @ StoreError::Refused { .. }) => {
                    format!("deleted (the quarantine copy was refused: {error})")
                }
                Err(error) => return Err(Failure::store(error)),
            }
        }
        None => "deleted".to_owned(),
    };
    // The object may have been written again while the app was asked: delete only the version
    // that was checked.
    match place.head(key).await? {
        Some(now) if now.etag != head.etag || !carries_marker(&now, claims) => {
            return Err(Failure::new(
                Code::UploadChanged,
                format!("the object at `{key}` changed while it was checked; it was not deleted: complete again"),
            ));
        }
        Some(_) => place.delete(key).await?,
        None => {}
    }
    Ok(removed)
}

/// Where a refused object is quarantined: `<prefix><marker>/<key>`, one place per upload.
pub fn quarantine_key(prefix: &str, marker: &str, key: &str) -> String {
    format!("{prefix}{marker}/{key}")
}

/// The pinned `x-amz-*` headers a copy does not carry over (metadata, type and the other
/// object headers it does): every one for a promotion; for a quarantine copy only encryption
/// (a refused object gets no public ACL, object lock or redirect from the profile).
fn copy_headers(profile: &Profile, promotion: bool) -> Vec<(&'static str, &str)> {
    profile
        .fields()
        .iter()
        .filter_map(|(field, value)| Some((put_header(field)?, value.as_str())))
        .filter(|(header, _)| {
            header.starts_with("x-amz-") && (promotion || header.starts_with("x-amz-server-side-encryption"))
        })
        .collect()
}

/// The key the upload went to; a POST key left to the store is completed with the filename.
fn uploaded_key(claims: &Claims, filename: Option<&str>) -> Result<String, Failure> {
    let key = &claims.bounds.key;
    let Some(prefix) = key.strip_suffix("${filename}") else {
        return Ok(key.clone());
    };
    match filename {
        // The same rules as at admission, and the name must already be what they make of it.
        Some(name) if crate::profile::admit::sanitize_filename(name).as_deref() == Ok(name) => {
            Ok(format!("{prefix}{name}"))
        }
        _ => Err(Failure::new(
            Code::FilenameRequired,
            "this upload's key left `${filename}` to the store: send the uploaded file's name as `filename` (one path segment)",
        )),
    }
}
