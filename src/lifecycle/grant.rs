//! `grant`: the one way a signature is given, with its upload token. Owns the context, the
//! store's signer, the plan fill, and the token seal; pure but for `start_multipart`, which
//! asks the store for an upload ID.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{Failure, Uploads};
use crate::profile::{Bounds, Context, Method, Profile, Refusal, RefusalKind, UploadRequest, admit_multipart};
use crate::registry::{Served, Snapshot};
use crate::sign::multipart::create_headers;
use crate::sign::{FieldStyle, Signed, Store, format_rfc3339, sign_upload};
use crate::upload::{Carry, Claims, PartPlan, TokenKeys};

/// Who is granted, and when: the app, the end user's `sub` when a verified ID token came with
/// the request (the token is then bound to it), the time and the grant's UUID (`${uuid}` and
/// the per-upload marker).
#[derive(Debug, Clone, Copy)]
pub struct Grant<'a> {
    pub app: &'a str,
    pub sub: Option<&'a str>,
    pub now: OffsetDateTime,
    pub uuid: Uuid,
    /// The client's address, for the audit log.
    pub client: Option<&'a str>,
}

impl<'a> Grant<'a> {
    /// A grant made now, with a fresh UUID.
    pub fn now(app: &'a str, sub: Option<&'a str>) -> Grant<'a> {
        Grant {
            app,
            sub,
            now: OffsetDateTime::now_utc(),
            uuid: Uuid::now_v7(),
            client: None,
        }
    }

    /// The same grant, to a client at `address` (the audit log names it).
    pub fn from_client(self, address: Option<&'a str>) -> Grant<'a> {
        Grant {
            client: address,
            ..self
        }
    }

    fn context(&self) -> Context<'a> {
        Context {
            app: self.app,
            now: self.now,
            uuid: self.uuid,
        }
    }
}

/// A signed upload and, with `upload_tokens` configured, its token.
#[derive(Debug)]
pub struct Granted<'p> {
    pub signed: Signed<'p>,
    pub upload_token: Option<String>,
    /// What the signature allows (the token's, the audit line's).
    pub bounds: Bounds,
    pub carry: Carry,
}

/// `grant`, then its audit line: with `audit.fail_closed`, nothing is granted unless the line
/// was written.
pub fn grant_recorded<'p>(
    uploads: &Uploads,
    snapshot: &Snapshot,
    served: &'p Served,
    request: &UploadRequest,
    grant: &Grant<'_>,
    style: FieldStyle,
) -> Result<Granted<'p>, Failure> {
    let granted = self::grant(uploads.tokens.as_deref(), served, request, grant, style)?;
    let expires_at = granted.signed.expires_at();
    super::audit_grant(
        uploads,
        snapshot,
        served.profile(),
        grant,
        &granted.bounds,
        granted.carry,
        expires_at,
        None,
    )?;
    Ok(granted)
}

/// Signs one upload (a POST form or a PUT URL, as `sign::choose_method` decides) and seals its
/// token with `tokens` when given.
pub fn grant<'p>(
    tokens: Option<&TokenKeys>,
    served: &'p Served,
    request: &UploadRequest,
    grant: &Grant<'_>,
    style: FieldStyle,
) -> Result<Granted<'p>, Failure> {
    grant_on(tokens, served.signing_store(), served.profile(), request, grant, style)
}

/// `grant` on a given store (`postgate sign`, which resolves the store with its credentials
/// itself).
pub fn grant_on<'p>(
    tokens: Option<&TokenKeys>,
    store: &Store,
    profile: &'p Profile,
    request: &UploadRequest,
    grant: &Grant<'_>,
    style: FieldStyle,
) -> Result<Granted<'p>, Failure> {
    let signer = store.signer(grant.now).map_err(|e| Failure::credentials(&e))?;
    let (signed, bounds) = sign_upload(profile, &signer, request, &grant.context(), style)
        .map_err(|refusals| Failure::refused(profile.name().as_str(), refusals))?;
    let carry = match signed.method() {
        Method::Post => Carry::Post,
        Method::Put => Carry::Put,
    };
    // The bounds go into the token's claims and come back out of them: no copy on this path.
    let (upload_token, bounds) = match tokens {
        Some(tokens) => {
            let expires_at = signed.expires_at() + profile.verify().within;
            let claims = claims_for(profile, grant, bounds, carry, expires_at);
            (Some(tokens.seal(&claims)), claims.bounds)
        }
        None => (None, bounds),
    };
    Ok(Granted {
        signed,
        upload_token,
        bounds,
        carry,
    })
}

/// A started multipart upload.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MultipartStarted {
    pub upload_id: String,
    pub key: String,
    pub bucket: String,
    pub size: u64,
    pub part_size: u64,
    pub part_count: u32,
    pub last_part_size: u64,
    pub upload_token: String,
    /// When the token stops working: complete before then.
    pub expires_at: String,
    pub profile: String,
    pub generation: u64,
}

/// Starts a multipart upload: admitted like a PUT, the object's headers (the marker among them)
/// set by CreateMultipartUpload, the part plan and upload ID sealed in the token.
pub async fn start_multipart(
    uploads: &Uploads,
    snapshot: &Snapshot,
    served: &Served,
    request: &UploadRequest,
    grant: &Grant<'_>,
) -> Result<MultipartStarted, Failure> {
    let tokens = uploads.tokens()?;
    let (profile, store) = (served.profile(), served.signing_store());
    let name = profile.name().as_str();
    let filled =
        admit_multipart(profile, request, &grant.context()).map_err(|refusals| Failure::refused(name, refusals))?;
    // Admission refuses a profile without `multipart` (`multipart_unavailable`).
    let Some(rule) = profile.multipart().copied() else {
        return Err(Failure::refused(name, vec![unavailable()]));
    };
    let size = filled.max_size;
    let Some(plan) = PartPlan::new(size, rule.part_size) else {
        let refusal = Refusal {
            kind: RefusalKind::SizeOutOfRange,
            field: "size".into(),
            message: "a multipart upload needs at least 1 byte; send an empty file with a PUT".into(),
        };
        return Err(Failure::refused(name, vec![refusal]));
    };
    let headers = create_headers(&filled);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_ref(), v.as_ref())).collect();
    let upload_id = uploads
        .client
        .create_multipart(store, profile.bucket(), &filled.key, &headers)
        .await
        .map_err(Failure::store)?;
    let expires_at = grant.now + rule.expires_in;
    let mut claims = claims_for(profile, grant, filled.bounds(), Carry::Multipart, expires_at);
    claims.upload_id = Some(upload_id.clone());
    claims.parts = Some(plan);
    let recorded = super::audit_grant(
        uploads,
        snapshot,
        profile,
        grant,
        &claims.bounds,
        Carry::Multipart,
        expires_at,
        Some(&upload_id),
    );
    if let Err(failure) = recorded {
        // Nothing is granted: the upload just created goes.
        let _ = uploads
            .client
            .abort_multipart(store, profile.bucket(), &filled.key, &upload_id)
            .await;
        return Err(failure);
    }
    tracing::info!(app = grant.app, profile = name, key = %filled.key, parts = plan.part_count, "multipart upload started");
    Ok(MultipartStarted {
        upload_id,
        key: filled.key.clone(),
        bucket: profile.bucket().to_owned(),
        size,
        part_size: plan.part_size,
        part_count: plan.part_count,
        last_part_size: plan.last_part_size,
        upload_token: tokens.seal(&claims),
        expires_at: format_rfc3339(expires_at),
        profile: name.to_owned(),
        generation: snapshot.generation,
    })
}

/// A token's claims for `bounds`, granted to `grant`'s app (and end user).
pub fn claims_for(
    profile: &Profile,
    grant: &Grant<'_>,
    bounds: Bounds,
    carry: Carry,
    expires_at: OffsetDateTime,
) -> Claims {
    Claims {
        profile: profile.name().as_str().to_owned(),
        app: grant.app.to_owned(),
        sub: grant.sub.map(str::to_owned),
        store: profile.store().to_owned(),
        bucket: profile.bucket().to_owned(),
        carry,
        bounds,
        upload_id: None,
        parts: None,
        issued_at: grant.now.unix_timestamp(),
        expires_at: expires_at.unix_timestamp(),
    }
}

fn unavailable() -> Refusal {
    Refusal {
        kind: RefusalKind::MethodUnavailable,
        field: "method".into(),
        message: "this profile takes no multipart uploads".into(),
    }
}
