//! `postgate probe`: what a store really enforces. With the store's own credentials, under
//! `postgate-probe/<run>/` in the bucket, it signs real uploads by every method the store takes
//! and tries each change of `cases::CASES` on a fresh signature, recording whether the store
//! refused it, took it, or wrote the bytes and then refused. It reads the bucket's CORS and
//! lifecycle rules, and lists which served profiles rely on something the store does not enforce.
//! It removes everything it wrote, and first what an earlier, interrupted run left.

pub mod bucket;
pub mod cases;
mod send;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::profile::enforcement::{self, CaseResult, Enforcement, Gap, ProbeMethod, Verdict};
use crate::profile::{ChecksumAlgorithm, ChecksumRequest, Context, Method, Profile, ProfileName, UploadRequest};
use crate::sign::{FieldStyle, Signed, Store};
use crate::store::{BucketConfig, StoreClient, StoreError};
use cases::{CASES, Case, Change};
use send::{Answered, Attempt};

/// Every key the probe writes starts with this; nothing else in the bucket is touched.
pub const PREFIX: &str = "postgate-probe/";
/// The metadata every probe upload carries, its run's id: no case changes it. An object at a
/// probe key carrying another run's id is not this probe's doing, and stays.
const RUN_METADATA: &str = "probe-run";
/// The body every upload carries (16 bytes: inside the probe profiles' 10–20 byte range).
const BODY: &[u8] = b"postgate probe.\n";
/// How long after signing the expired cases are sent (their signatures last 1 s).
const EXPIRED_AFTER: Duration = Duration::from_millis(2100);

/// What the probe is asked to look at beyond the store itself.
#[derive(Debug, Default)]
pub struct Scope<'a> {
    pub bucket: String,
    /// The served profiles on this store and bucket (their gaps are reported).
    pub profiles: Vec<&'a Profile>,
    /// The origins browsers upload from (the apps' `cors_origins`).
    pub origins: Vec<String>,
}

/// What one run found.
#[derive(Debug, Serialize)]
pub struct Report {
    pub store: String,
    pub bucket: String,
    /// One row per case: `stores.<name>.probe` reads this member.
    pub cases: Vec<CaseResult>,
    pub cors: bucket::Audit,
    pub lifecycle: bucket::Audit,
    /// Each served profile with what it relies on that this store does not enforce.
    pub profiles: BTreeMap<String, Vec<Gap>>,
    pub cleanup: Cleanup,
}

impl Report {
    pub fn enforcement(&self) -> Enforcement {
        Enforcement {
            cases: self.cases.clone(),
        }
    }

    /// Whether a served profile relies on a constraint the store does not enforce.
    pub fn has_gaps(&self) -> bool {
        self.profiles.values().any(|gaps| !gaps.is_empty())
    }

    /// The report as the command prints it without `--json`.
    pub fn text(&self) -> String {
        let mut out = format!("store `{}`, bucket `{}`\n\n", self.store, self.bucket);
        out.push_str(&format!(
            "{:<28} {:<17} {:<20} {}\n",
            "case", "constraint", "verdict", "store answered"
        ));
        for case in &self.cases {
            let answered = match (case.status, &case.code) {
                (0, _) => "connection closed".to_owned(),
                (status, Some(code)) => format!("{status} {code}"),
                (status, None) => status.to_string(),
            };
            out.push_str(&format!(
                "{:<28} {:<17} {:<20} {}\n",
                case.case,
                case.constraint.name(),
                case.verdict.name(),
                answered
            ));
        }
        for (name, audit) in [("CORS", &self.cors), ("lifecycle", &self.lifecycle)] {
            out.push_str(&format!("\nbucket {name}: {}", audit.status));
            if let Some(code) = &audit.code {
                out.push_str(&format!(" ({code})"));
            }
            out.push('\n');
            for line in &audit.missing {
                out.push_str(&format!("  missing: {line}\n"));
            }
            if let Some(apply) = &audit.apply {
                out.push_str(&format!("  apply: {apply}\n"));
            }
        }
        out.push('\n');
        for (profile, gaps) in &self.profiles {
            for gap in gaps {
                out.push_str(&format!(
                    "profile `{profile}` ({}): relies on {}, {} here: {}\n",
                    gap.method.name(),
                    gap.constraint.name(),
                    gap.verdict.name(),
                    gap.advice
                ));
            }
        }
        if !self.has_gaps() {
            out.push_str("no served profile relies on a constraint this store does not enforce\n");
        }
        out.push_str(&format!(
            "cleanup: removed {} objects, aborted {} uploads, left {} objects the probe did not write{}\n",
            self.cleanup.removed,
            self.cleanup.aborted,
            self.cleanup.left,
            self.cleanup
                .note
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        ));
        out
    }
}

/// What the probe removed: this run's objects and what earlier runs left.
#[derive(Debug, Default, Serialize)]
pub struct Cleanup {
    pub removed: usize,
    pub aborted: usize,
    /// Objects under `postgate-probe/` the probe did not write (no run metadata matching their
    /// key), left where they are.
    pub left: usize,
    /// Why pending multipart uploads could not be listed, when they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Runs every case against `store` and audits the bucket. A store call that fails outright (the
/// store down, credentials refused) ends the run with that error, after cleaning up.
pub async fn run(client: &StoreClient, store: &Store, scope: &Scope<'_>) -> Result<Report, ProbeError> {
    if store.kind != crate::sign::Kind::S3 {
        return Err(ProbeError::Kind(store.kind.name()));
    }
    let probe = Probe::new(client, store, &scope.bucket)?;
    let mut cleanup = probe.clean(PREFIX).await?;
    let outcome = probe.cases().await;
    let own = probe.clean(&probe.prefix()).await;
    let (cases, own) = (outcome?, own?);
    cleanup.removed += own.removed;
    cleanup.aborted += own.aborted;
    cleanup.left += own.left;
    cleanup.note = cleanup.note.or(own.note);

    let mut needs = bucket::BrowserNeeds {
        origins: scope.origins.clone(),
        ..bucket::BrowserNeeds::default()
    };
    let mut multipart_prefixes = Vec::new();
    let mut days = 1u64;
    let (mut post, mut put) = (scope.profiles.is_empty() && store.post, scope.profiles.is_empty());
    for profile in &scope.profiles {
        bucket::browser_headers(profile, &mut needs.headers);
        post |= store.post && profile.plan().allows(Method::Post);
        put |= profile.plan().allows(Method::Put) || profile.multipart().is_some();
        if let Some(rule) = profile.multipart() {
            multipart_prefixes.push(profile.key().literal_prefix().to_owned());
            days = days.max(rule.expires_in.as_secs().div_ceil(86_400) + 1);
        }
    }
    needs.headers.sort();
    needs.headers.dedup();
    needs.methods = [("POST", post), ("PUT", put)]
        .into_iter()
        .filter_map(|(method, used)| used.then_some(method))
        .collect();
    let cors = match client.bucket_config(store, &scope.bucket, BucketConfig::Cors).await {
        Ok(document) => bucket::audit_cors(document.as_deref(), &needs),
        Err(error) => bucket::Audit::unreadable(error.code().unwrap_or("Unavailable")),
    };
    let lifecycle = match client
        .bucket_config(store, &scope.bucket, BucketConfig::Lifecycle)
        .await
    {
        Ok(document) => bucket::audit_lifecycle(document.as_deref(), &multipart_prefixes, days as u32),
        Err(error) => bucket::Audit::unreadable(error.code().unwrap_or("Unavailable")),
    };
    let enforcement = Enforcement { cases };
    let profiles = scope
        .profiles
        .iter()
        .map(|p| (p.name().as_str().to_owned(), enforcement::gaps(p, &enforcement)))
        .collect();
    Ok(Report {
        store: store.name.clone(),
        bucket: scope.bucket.clone(),
        cases: enforcement.cases,
        cors,
        lifecycle,
        profiles,
        cleanup,
    })
}

/// Why a probe did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The bucket cannot be signed for (its name), said as the compiler says it.
    #[error("{0}")]
    Bucket(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The probe tries S3's enforcement; another kind's is fixed (README, "Store kinds").
    #[error(
        "the probe tries what an S3 store enforces; a {0} store's is fixed by its kind (README, \"Store kinds\"): GCS enforces what its V4 policy and signed headers carry, Azure's SAS only the blob, permission and time, the rest checked by `complete`"
    )]
    Kind(&'static str),
}

/// The probe profiles, compiled from YAML: `post` and `put` (with a required SHA-256, the PUT
/// with `overwrite: false`), `expired` (1 s signatures), `multipart`. Only the bucket comes from
/// outside, quoted; a name the compiler refuses is `ProbeError::Bucket`.
fn probe_profile(bucket: &str, kind: &str) -> Result<Profile, ProbeError> {
    let bucket = serde_json::to_string(bucket).unwrap_or_default();
    let extra = match kind {
        "post" => "checksum: { algorithms: [sha256] }\n",
        "put" => "checksum: { algorithms: [sha256] }\noverwrite: false\n",
        "expired" => "",
        _ => "multipart: { part_size: 5MiB }\n",
    };
    let expires_in = if kind == "expired" { "1s" } else { "5m" };
    let yaml = format!(
        "bucket: {bucket}\napps: all\nkey: \"{PREFIX}${{run}}/${{case}}/${{uuid}}.txt\"\n\
         vars:\n  run: {{ pattern: \"[0-9a-f]{{32}}\" }}\n  case: {{ pattern: \"[a-z0-9-]{{1,40}}\" }}\n\
         expires_in: {expires_in}\nsize: {{ min: 10, max: 20 }}\ncontent_type: {{ exact: text/plain }}\n\
         metadata:\n  purpose: probe\n  {RUN_METADATA}: \"${{run}}\"\n{extra}"
    );
    crate::profile::parse(
        &ProfileName::new(&format!("probe-{kind}")).expect("a valid name"),
        &yaml,
    )
    .map_err(|diags| {
        let errors: Vec<String> = diags.iter().filter(|d| d.is_error()).map(|d| d.to_string()).collect();
        ProbeError::Bucket(errors.join("; "))
    })
}

struct Probe<'a> {
    client: &'a StoreClient,
    store: &'a Store,
    bucket: &'a str,
    http: send::Sender,
    run: String,
    profiles: BTreeMap<&'static str, Profile>,
}

/// A signed attempt with the key it was signed for.
struct Signed1 {
    attempt: Attempt,
    key: String,
    /// Multipart: the upload the part belongs to.
    upload_id: Option<String>,
}

impl<'a> Probe<'a> {
    fn new(client: &'a StoreClient, store: &'a Store, bucket: &'a str) -> Result<Probe<'a>, ProbeError> {
        let profiles = ["post", "put", "expired", "multipart"]
            .into_iter()
            .map(|kind| Ok((kind, probe_profile(bucket, kind)?)))
            .collect::<Result<_, ProbeError>>()?;
        Ok(Probe {
            client,
            store,
            bucket,
            http: send::client(),
            run: Uuid::now_v7().simple().to_string(),
            profiles,
        })
    }

    fn prefix(&self) -> String {
        format!("{PREFIX}{}/", self.run)
    }

    /// Deletes the objects under `prefix` at keys only a probe writes
    /// (`postgate-probe/<run>/<case>/<uuid>.txt`, see `probe_run_of`), unless they carry another
    /// run's `probe-run` (a store may keep the bytes of a refused upload without its metadata),
    /// and aborts the multipart uploads pending at such keys. Anything else under the prefix is
    /// someone else's and is left.
    async fn clean(&self, prefix: &str) -> Result<Cleanup, StoreError> {
        let mut cleanup = Cleanup::default();
        match self.client.list_multipart(self.store, self.bucket, prefix).await {
            Ok(uploads) => {
                for upload in uploads.into_iter().filter(|u| probe_run_of(&u.key).is_some()) {
                    self.client
                        .abort_multipart(self.store, self.bucket, &upload.key, &upload.upload_id)
                        .await?;
                    cleanup.aborted += 1;
                }
            }
            Err(StoreError::Refused { code, .. }) => {
                cleanup.note = Some(format!("pending multipart uploads not listed: {code}"));
            }
            Err(error) => return Err(error),
        }
        for key in self.client.list_keys(self.store, self.bucket, prefix).await? {
            let Some(run) = probe_run_of(&key) else {
                cleanup.left += 1;
                continue;
            };
            let head = self.client.head(self.store, self.bucket, &key).await?;
            let written_by = head.as_ref().and_then(|h| h.metadata.get(RUN_METADATA));
            if written_by.is_none_or(|by| by == run) {
                self.client.delete(self.store, self.bucket, &key).await?;
                cleanup.removed += 1;
            } else {
                cleanup.left += 1;
            }
        }
        Ok(cleanup)
    }

    /// Every case, method by method: a method whose unchanged upload fails is untested.
    async fn cases(&self) -> Result<Vec<CaseResult>, StoreError> {
        let mut results = Vec::new();
        let mut copy_source = None;
        for method in [ProbeMethod::Post, ProbeMethod::Put, ProbeMethod::Multipart] {
            let group: Vec<&Case> = CASES.iter().filter(|c| c.method == method).collect();
            let control = if method == ProbeMethod::Post && !self.store.post {
                Err(Answered {
                    status: 0,
                    code: Some("PostNotTaken".into()),
                })
            } else {
                self.control(method).await?
            };
            let control_key = match control {
                Ok(key) => key,
                Err(answered) => {
                    results.extend(group.iter().map(|c| result(c, Verdict::Untested, &answered)));
                    continue;
                }
            };
            if method == ProbeMethod::Put {
                copy_source = Some(format!("{}/{control_key}", self.bucket));
            }
            // The expired cases are signed first and sent once their signatures are over.
            let signed_at = std::time::Instant::now();
            let mut expired = Vec::new();
            for case in group.iter().filter(|c| c.change == Change::Expired) {
                expired.push((*case, self.sign(case, "expired", BODY)?));
            }
            for case in group.iter().filter(|c| c.change != Change::Expired) {
                results.push(self.try_case(case, copy_source.as_deref()).await?);
            }
            tokio::time::sleep(EXPIRED_AFTER.saturating_sub(signed_at.elapsed())).await;
            for (case, signed) in expired {
                results.push(self.observe(case, signed).await?);
            }
        }
        // Report in the table's order.
        results.sort_by_key(|r| CASES.iter().position(|c| c.id == r.case));
        Ok(results)
    }

    /// The unchanged upload of `method`; `Ok(Err(answer))` when the store refuses it.
    async fn control(&self, method: ProbeMethod) -> Result<Result<String, Answered>, StoreError> {
        let case = Case {
            id: match method {
                ProbeMethod::Post => "post-control",
                ProbeMethod::Put => "put-control",
                ProbeMethod::Multipart => "part-control",
            },
            method,
            constraint: enforcement::Constraint::Key,
            change: Change::Set("x-probe-control", ""),
        };
        let signed = self.sign_any(&case, BODY).await?;
        let answered = send::send(&self.http, &signed.attempt).await;
        if let Some(upload_id) = &signed.upload_id {
            self.client
                .abort_multipart(self.store, self.bucket, &signed.key, upload_id)
                .await?;
        }
        Ok(if answered.is_success() {
            Ok(signed.key)
        } else {
            Err(answered)
        })
    }

    /// Signs `case` afresh, applies its change, sends it and judges what the store did.
    async fn try_case(&self, case: &Case, copy_source: Option<&str>) -> Result<CaseResult, StoreError> {
        let body = match (case.method, case.change) {
            // A POST over or under the range: 21 and 9 bytes; a PUT or part one byte off.
            (ProbeMethod::Post, Change::BodyLonger) => [BODY, b"xxxxx"].concat(),
            (ProbeMethod::Post, Change::BodyShorter) => BODY[..9].to_vec(),
            _ => BODY.to_vec(),
        };
        let mut signed = self.sign_any(case, &body).await?;
        let attempt = &mut signed.attempt;
        match case.change {
            Change::BodyLonger if case.method != ProbeMethod::Post => attempt.body.push(b'x'),
            Change::BodyShorter if case.method != ProbeMethod::Post => {
                attempt.body.pop();
            }
            Change::Set(name, value) => set(attempt, name, Some(value)),
            Change::Drop(name) => set(attempt, name, None),
            Change::Before(name, value) => {
                let at = attempt
                    .fields
                    .iter()
                    .position(|(n, _)| n.eq_ignore_ascii_case(name))
                    .unwrap_or(attempt.fields.len());
                let value = if name == "key" {
                    format!("{}{}/{}/elsewhere.txt", PREFIX, self.run, case.id)
                } else {
                    value.to_owned()
                };
                attempt.fields.insert(at, (name.to_owned(), value));
            }
            Change::Overwrite => {
                let first = send::send(&self.http, attempt).await;
                if !first.is_success() {
                    return Ok(result(case, Verdict::Untested, &first));
                }
            }
            Change::CopySource => {
                let source = copy_source.unwrap_or_default().to_owned();
                set(attempt, "x-amz-copy-source", Some(&source));
            }
            Change::OtherKey => {
                let other = Uuid::now_v7().to_string();
                let old = signed
                    .key
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches(".txt")
                    .to_owned();
                if attempt.post {
                    set(attempt, "key", Some(&signed.key.replace(&old, &other)));
                } else {
                    attempt.url = attempt.url.replacen(&old, &other, 1);
                }
            }
            Change::OtherMarker => {
                let marker = Uuid::now_v7().to_string();
                set(attempt, crate::profile::plan::MARKER_FIELD, Some(&marker));
            }
            Change::BodyLonger | Change::BodyShorter | Change::WrongChecksum | Change::Expired => {}
        }
        self.observe(case, signed).await
    }

    /// Sends the attempt and judges it by its answer and by what the case's prefix then holds.
    async fn observe(&self, case: &Case, signed: Signed1) -> Result<CaseResult, StoreError> {
        let case_prefix = format!("{}{}/", self.prefix(), case.id);
        let before = self.client.list_keys(self.store, self.bucket, &case_prefix).await?;
        let answered = send::send(&self.http, &signed.attempt).await;
        let after = self.client.list_keys(self.store, self.bucket, &case_prefix).await?;
        let mut written = after.iter().any(|k| !before.contains(k));
        if let Some(upload_id) = &signed.upload_id {
            let parts = self
                .client
                .list_parts(self.store, self.bucket, &signed.key, upload_id)
                .await
                .unwrap_or_default();
            written = parts.iter().any(|p| p.size != BODY.len() as u64);
            self.client
                .abort_multipart(self.store, self.bucket, &signed.key, upload_id)
                .await?;
        }
        let verdict = if answered.is_success() {
            let as_signed = case.constraint == enforcement::Constraint::DuplicateFields
                && after.iter().all(|k| *k == signed.key)
                && self.stored_as_signed(&signed.key).await?;
            if as_signed {
                Verdict::Enforced
            } else {
                Verdict::NotEnforced
            }
        } else if written {
            Verdict::WroteThenRefused
        } else {
            Verdict::Enforced
        };
        Ok(result(case, verdict, &answered))
    }

    /// Whether the object at `key` has the signed type and metadata.
    async fn stored_as_signed(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self
            .client
            .head(self.store, self.bucket, key)
            .await?
            .is_some_and(|head| {
                head.content_type.as_deref() == Some("text/plain")
                    && head.metadata.get("purpose").map(String::as_str) == Some("probe")
            }))
    }

    /// The request every probe upload makes: the run's and the case's prefix, `text/plain`.
    fn request(&self, case: &Case) -> UploadRequest {
        UploadRequest {
            vars: [
                ("run".to_owned(), self.run.clone()),
                ("case".to_owned(), case.id.to_owned()),
            ]
            .into_iter()
            .collect(),
            content_type: Some("text/plain".into()),
            ..UploadRequest::default()
        }
    }

    /// A fresh signature for `case` by its method: a form, a PUT URL, or a started multipart
    /// upload and the URL of its one part.
    async fn sign_any(&self, case: &Case, body: &[u8]) -> Result<Signed1, StoreError> {
        if case.method != ProbeMethod::Multipart {
            return self.sign(case, kind_of(case.method), body);
        }
        let profile = &self.profiles["multipart"];
        let now = OffsetDateTime::now_utc();
        let request = UploadRequest {
            size: Some(BODY.len() as u64),
            ..self.request(case)
        };
        let ctx = Context {
            app: "probe",
            now,
            uuid: Uuid::now_v7(),
        };
        let filled = crate::profile::admit_multipart(profile, &request, &ctx)
            .unwrap_or_else(|refusals| panic!("the probe's own request is admitted: {refusals:?}"));
        let key = filled.bounds().key;
        let headers = crate::sign::multipart::create_headers(&filled);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_ref(), v.as_ref())).collect();
        let upload_id = self
            .client
            .create_multipart(self.store, self.bucket, &key, &headers)
            .await?;
        let signer = self.store.signer(now).map_err(StoreError::NoCredentials)?;
        let target = crate::sign::multipart::PartTarget {
            bucket: self.bucket,
            key: &key,
            upload_id: &upload_id,
            expires_in: Duration::from_secs(300),
            not_after: now + Duration::from_secs(300),
        };
        let part = crate::sign::multipart::part_url(&signer, &target, 1, BODY.len() as u64, now);
        Ok(Signed1 {
            attempt: Attempt {
                url: part.url,
                fields: Vec::new(),
                headers: Vec::new(),
                body: body.to_vec(),
                post: false,
            },
            key,
            upload_id: Some(upload_id),
        })
    }

    /// A fresh signature of the `kind` profile for `case`, as a client would send it.
    fn sign(&self, case: &Case, kind: &str, body: &[u8]) -> Result<Signed1, StoreError> {
        let profile = &self.profiles[kind];
        let now = OffsetDateTime::now_utc();
        let signer = self.store.signer(now).map_err(StoreError::NoCredentials)?;
        let digest_of: &[u8] = if case.change == Change::WrongChecksum {
            b"other bytes"
        } else {
            body
        };
        let method = match case.method {
            ProbeMethod::Post => Method::Post,
            _ => Method::Put,
        };
        let request = UploadRequest {
            size: (method == Method::Put).then_some(body.len() as u64),
            method: Some(method),
            checksum: profile.checksum().required.then(|| ChecksumRequest {
                algorithm: ChecksumAlgorithm::Sha256,
                value: sha256_b64(digest_of),
            }),
            ..self.request(case)
        };
        let ctx = Context {
            app: "probe",
            now,
            uuid: Uuid::now_v7(),
        };
        let signed = crate::sign::sign(profile, &signer, &request, &ctx, FieldStyle::Botocore)
            .unwrap_or_else(|refusals| panic!("the probe's own request is admitted: {refusals:?}"));
        Ok(match signed {
            Signed::Post(post) => Signed1 {
                attempt: Attempt {
                    url: post.url,
                    fields: post
                        .fields
                        .into_iter()
                        .map(|(n, v)| (n.into_owned(), v.into_owned()))
                        .collect(),
                    headers: Vec::new(),
                    body: body.to_vec(),
                    post: true,
                },
                key: post.key,
                upload_id: None,
            },
            Signed::Put(put) => Signed1 {
                attempt: Attempt {
                    headers: put
                        .client_headers()
                        .map(|(n, v)| (n.to_owned(), v.to_owned()))
                        .collect(),
                    url: put.url,
                    fields: Vec::new(),
                    body: body.to_vec(),
                    post: false,
                },
                key: put.key,
                upload_id: None,
            },
        })
    }
}

/// The run id of a key only the probe writes, `None` for any other key:
/// `postgate-probe/<run: a UUID v7, 32 hex>/<a case id or a control>/<a UUID>.txt` (or
/// `elsewhere.txt`, the key a duplicated `key` field names).
fn probe_run_of(key: &str) -> Option<&str> {
    let parts: Vec<&str> = key.strip_prefix(PREFIX)?.split('/').collect();
    let [run, case, file] = parts[..] else {
        return None;
    };
    let run_id = Uuid::try_parse(run)
        .ok()
        .filter(|u| u.get_version_num() == 7 && run.len() == 32);
    let probe_case =
        CASES.iter().any(|c| c.id == case) || ["post-control", "put-control", "part-control"].contains(&case);
    let name = file.strip_suffix(".txt").unwrap_or_default();
    let probe_file = name == "elsewhere" || Uuid::try_parse(name).is_ok();
    (run_id.is_some() && probe_case && probe_file).then_some(run)
}

fn kind_of(method: ProbeMethod) -> &'static str {
    match method {
        ProbeMethod::Post => "post",
        ProbeMethod::Put => "put",
        ProbeMethod::Multipart => "multipart",
    }
}

/// Sets (or with `None` drops) a form field or header, matched case-insensitively.
fn set(attempt: &mut Attempt, name: &str, value: Option<&str>) {
    let list = if attempt.post {
        &mut attempt.fields
    } else {
        &mut attempt.headers
    };
    list.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    if let Some(value) = value {
        list.push((name.to_owned(), value.to_owned()));
    }
}

fn result(case: &Case, verdict: Verdict, answered: &Answered) -> CaseResult {
    CaseResult {
        case: case.id.to_owned(),
        method: case.method,
        constraint: case.constraint,
        verdict,
        status: answered.status,
        code: answered.code.clone(),
    }
}

fn sha256_b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::probe_run_of;

    #[test]
    fn only_keys_of_the_probes_own_shape_are_its_own() {
        let run = "01a249b9887b7719ac4f7e6ae461440d";
        let file = "01a249b9-88e2-73a0-8d30-3af8a2a9596d.txt";
        for key in [
            format!("postgate-probe/{run}/put-overwrite/{file}"),
            format!("postgate-probe/{run}/post-control/{file}"),
            format!("postgate-probe/{run}/post-key-twice/elsewhere.txt"),
        ] {
            assert_eq!(probe_run_of(&key), Some(run), "{key}");
        }
        for key in [
            "postgate-probe/notes.txt".to_owned(),
            format!("postgate-probe/{run}/not-a-case/{file}"),
            format!("postgate-probe/{run}/put-overwrite/theirs.txt"),
            format!("postgate-probe/{run}/put-overwrite/deeper/{file}"),
            // A v4 UUID is no run id; nor is the hyphenated form.
            format!("postgate-probe/0123456789ab4def8123456789abcdef/put-overwrite/{file}"),
            format!("postgate-probe/01a249b9-887b-7719-ac4f-7e6ae461440d/put-overwrite/{file}"),
            format!("elsewhere/{run}/put-overwrite/{file}"),
        ] {
            assert_eq!(probe_run_of(&key), None, "{key}");
        }
    }
}
