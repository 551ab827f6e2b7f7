//! The signers: a request + a profile + a `Store` + `now` → a signed upload. `sign` is the one way
//! in: it picks the method, admits the request against the profile's plan (`profile::admit`) and
//! renders the filled plan as a POST form (`post`) or a presigned PUT URL (`put`).
//!
//! Pure: `now` is a parameter; no IO.

pub mod azure;
pub mod gcs;
pub mod multipart;
pub mod post;
pub mod put;
pub mod sigv4;

use std::borrow::Cow;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use time::OffsetDateTime;

use crate::profile::{Bounds, Context, Method, Profile, Refusal, RefusalKind, UploadRequest, admit};
use crate::secret::Secret;
use crate::text::{push_digits, write_json_clean, write_json_string};

pub use post::{FieldStyle, PresignedPost, policy_document};
pub use put::PresignedPut;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Credentials a store signs with.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    /// When temporary credentials stop working; forms never outlive them.
    pub expires_at: Option<OffsetDateTime>,
}

/// Where a store's endpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// AWS S3's regional endpoint.
    Aws,
    /// Any S3-compatible endpoint, `scheme://host[:port]` without a trailing slash.
    Custom(String),
}

/// How the bucket appears in the form URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Addressing {
    /// Virtual-hosted on AWS (path-style for bucket names with dots); path-style elsewhere.
    #[default]
    Auto,
    Path,
    Virtual,
}

/// Which API a store speaks, and so how its uploads are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// S3 and S3-compatible stores: SigV4 (`AWS4-HMAC-SHA256`).
    #[default]
    S3,
    /// Google Cloud Storage's XML API: Google's V4 (`GOOG4-HMAC-SHA256` with HMAC keys,
    /// `GOOG4-RSA-SHA256` with a service account's key).
    Gcs,
    /// Azure Blob Storage: a create-only service SAS per blob under a staging prefix; `complete`
    /// checks and promotes.
    Azure,
}

impl Kind {
    /// What a signature of this kind enforces, said where a profile is explained; `None` for S3,
    /// whose store table is the probe's.
    pub fn note(self) -> Option<&'static str> {
        match self {
            Kind::S3 => None,
            Kind::Gcs => Some(
                "a GCS store signs with Google's V4 and names what it carries in its own words (x-goog-meta-*, x-goog-acl, x-goog-if-generation-match: 0 for If-None-Match: *); GCS enforces what is signed",
            ),
            Kind::Azure => Some(
                "an Azure store signs a SAS that bounds only the blob, its permission and its expiry; every other rule is checked by `complete`, which is mandatory: uploads are staged and promoted only once checked",
            ),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::S3 => "s3",
            Kind::Gcs => "gcs",
            Kind::Azure => "azure",
        }
    }
}

/// GCS's endpoint when a `kind: gcs` store names none.
pub const GCS_ENDPOINT: &str = "https://storage.googleapis.com";

/// Credentials closer to their expiry than this are not used: a request gets a clear 503
/// rather than a form that dies while its file is still being chosen.
pub const MIN_CREDENTIAL_LIFETIME: Duration = Duration::from_secs(30);

/// One set of credentials and the signing key of the day they last signed for.
pub struct Keys {
    pub credentials: Credentials,
    /// The derived signing key for one day, reused until the date changes.
    day_key: Mutex<Option<(String, [u8; 32])>>,
    /// A GCS service account's key, which signs instead of the HMAC chain.
    rsa: Option<ring::signature::RsaKeyPair>,
}

impl Keys {
    pub fn new(credentials: Credentials) -> Keys {
        Keys {
            credentials,
            day_key: Mutex::new(None),
            rsa: None,
        }
    }

    /// A service account's key: `client_email` signs as the credential's id.
    pub fn service_account(email: &str, key: ring::signature::RsaKeyPair) -> Keys {
        let credentials = Credentials {
            access_key_id: email.to_owned(),
            secret_access_key: Secret::new(""),
            session_token: None,
            expires_at: None,
        };
        Keys {
            rsa: Some(key),
            ..Keys::new(credentials)
        }
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The day's signing key is as good as the secret for a day: never printed.
        f.debug_struct("Keys")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// Why a store cannot sign now. `Display` names the store only (it reaches clients and
/// `/readyz`); `reason` (a provider's error chain: role ARNs, endpoints, a helper's stderr) is
/// for the log and the operator's CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsUnavailable {
    pub store: String,
    pub reason: String,
}

impl std::fmt::Display for CredentialsUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "store `{}` has no valid credentials", self.store)
    }
}

/// A named S3 endpoint with the credentials that sign for it. The credentials are swapped in
/// place when they are refreshed (`set_credentials`); every signature takes one set for all its
/// parts (`signer`).
pub struct Store {
    pub name: String,
    pub kind: Kind,
    pub region: String,
    pub endpoint: Endpoint,
    pub addressing: Addressing,
    /// Buckets served at their own origin (GCS's bucket-bound hostnames): `bucket → scheme://host`.
    pub bucket_origins: std::collections::BTreeMap<String, String>,
    /// Whether the store takes POST uploads (R2, B2 and Azure do not).
    pub post: bool,
    /// Where uploads wait for `complete` when a profile names no `verify.staging` (Azure,
    /// whose SAS bounds nothing but the blob: every upload is staged and checked).
    pub staging: Option<String>,
    /// What `postgate probe` found the store enforces (`stores.<name>.probe`), when given.
    pub enforcement: Option<Arc<crate::profile::enforcement::Enforcement>>,
    keys: ArcSwapOption<Keys>,
    /// Why the last attempt to get credentials failed, while it is the latest word.
    problem: ArcSwapOption<String>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("addressing", &self.addressing)
            .field("post", &self.post)
            .field("probed", &self.enforcement.is_some())
            .field("keys", &self.keys.load())
            .finish()
    }
}

impl Store {
    /// A store signing with fixed credentials.
    pub fn new(
        name: &str,
        region: &str,
        endpoint: Endpoint,
        addressing: Addressing,
        credentials: Credentials,
    ) -> Store {
        let store = Store::awaiting_credentials(name, region, endpoint, addressing);
        store.set_credentials(credentials);
        store
    }

    /// A store whose credentials come later (`set_credentials`); it cannot sign until then.
    pub fn awaiting_credentials(name: &str, region: &str, endpoint: Endpoint, addressing: Addressing) -> Store {
        Store {
            name: name.to_owned(),
            kind: Kind::S3,
            region: region.to_owned(),
            endpoint,
            addressing,
            bucket_origins: Default::default(),
            post: true,
            staging: None,
            enforcement: None,
            keys: ArcSwapOption::empty(),
            problem: ArcSwapOption::from_pointee("no credentials have been fetched yet".to_owned()),
        }
    }

    /// Publishes fresh credentials; signatures started before keep the set they took.
    pub fn set_credentials(&self, credentials: Credentials) {
        self.set_keys(Keys::new(credentials));
    }

    /// Publishes fresh keys (a GCS service account's, say).
    pub fn set_keys(&self, keys: Keys) {
        self.keys.store(Some(Arc::new(keys)));
        self.problem.store(None);
    }

    /// The store, speaking `kind`'s API.
    pub fn with_kind(mut self, kind: Kind) -> Store {
        self.kind = kind;
        self
    }

    /// The store, serving these buckets at their own origins.
    pub fn with_bucket_origins(mut self, origins: std::collections::BTreeMap<String, String>) -> Store {
        self.bucket_origins = origins;
        self
    }

    /// What this store cannot sign for `profile`, one sentence each (empty: it can serve it).
    pub fn problems(&self, profile: &Profile) -> Vec<String> {
        match self.kind {
            Kind::S3 => Vec::new(),
            Kind::Gcs => gcs::problems(profile),
            Kind::Azure => azure::problems(profile),
        }
    }

    /// How this store carries a plan entry named `name` (a PUT header, a form field): S3's
    /// names, or the kind's own.
    pub fn carried<'a>(&self, name: Cow<'a, str>, value: Cow<'a, str>) -> (Cow<'a, str>, Cow<'a, str>) {
        match self.kind {
            Kind::S3 => (name, value),
            Kind::Gcs => gcs::carried(name, value),
            Kind::Azure => azure::carried(name, value),
        }
    }

    /// The store, staging every upload under `prefix` unless its profile names one.
    pub fn with_staging(mut self, prefix: Option<String>) -> Store {
        self.staging = prefix;
        self
    }

    /// Records why credentials could not be had; the current ones serve until they expire.
    pub fn set_credentials_problem(&self, reason: String) {
        self.problem.store(Some(Arc::new(reason)));
    }

    /// The current credentials, whatever their expiry.
    pub fn credentials(&self) -> Option<Arc<Keys>> {
        self.keys.load_full()
    }

    /// The credentials to sign with at `now`: there, and with at least
    /// `MIN_CREDENTIAL_LIFETIME` left.
    pub fn signer(&self, now: OffsetDateTime) -> Result<Signer<'_>, CredentialsUnavailable> {
        let unavailable = |reason: String| CredentialsUnavailable {
            store: self.name.clone(),
            reason,
        };
        let problem = || {
            self.problem
                .load()
                .as_deref()
                .map(|p| format!("; the last refresh failed: {p}"))
                .unwrap_or_default()
        };
        let Some(keys) = self.keys.load_full() else {
            return Err(unavailable(
                self.problem
                    .load()
                    .as_deref()
                    .cloned()
                    .unwrap_or_else(|| "none yet".into()),
            ));
        };
        if let Some(expires_at) = keys.credentials.expires_at
            && expires_at - MIN_CREDENTIAL_LIFETIME <= now
        {
            return Err(unavailable(format!(
                "they expire at {}{}",
                format_rfc3339(expires_at),
                problem()
            )));
        }
        Ok(Signer { store: self, keys })
    }

    /// The store, taking POST uploads or not.
    pub fn with_post(mut self, post: bool) -> Store {
        self.post = post;
        self
    }

    pub fn with_enforcement(mut self, enforcement: Option<crate::profile::enforcement::Enforcement>) -> Store {
        self.enforcement = enforcement.map(Arc::new);
        self
    }

    /// Where an object is: the URL's `scheme://host` part, the `Host` header, and the
    /// URI-encoded path (with the bucket for path-style addressing).
    pub fn object_location(&self, bucket: &str, key: &str) -> (String, String, String) {
        match self.kind {
            Kind::Gcs => return self.gcs_object_location(bucket, key),
            Kind::Azure => return self.azure_object_location(bucket, key),
            Kind::S3 => {}
        }
        let mut path = String::with_capacity(bucket.len() + key.len() + 16);
        // AWS's forms are written directly (the signing path takes them); others from the URL.
        let origin = match (&self.endpoint, self.addressing) {
            (Endpoint::Aws, Addressing::Auto | Addressing::Virtual) if !bucket.contains('.') => {
                format!("https://{bucket}.s3.{}.amazonaws.com", self.region)
            }
            _ => {
                let bucket_url = self.bucket_url(bucket);
                let (scheme, rest) = bucket_url.split_once("://").unwrap_or(("https", &bucket_url));
                let (host, base) = match rest.find('/') {
                    Some(slash) => (&rest[..slash], &rest[slash..]),
                    None => (rest, ""),
                };
                path.push_str(base.trim_end_matches('/'));
                format!("{scheme}://{host}")
            }
        };
        path.push('/');
        sigv4::uri_encode(&mut path, key, true);
        let host = origin
            .split_once("://")
            .map_or(origin.as_str(), |(_, host)| host)
            .to_owned();
        (origin, host, path)
    }

    /// A GCS object's origin, signed host and path: the bucket's own origin if it has one, else
    /// the endpoint, virtual-hosted or (by default) path-style. The signed host is the origin's
    /// without its port, as Google's client libraries sign it.
    fn gcs_object_location(&self, bucket: &str, key: &str) -> (String, String, String) {
        let base = match &self.endpoint {
            Endpoint::Custom(base) => base.as_str(),
            Endpoint::Aws => GCS_ENDPOINT,
        };
        let (scheme, authority) = base.split_once("://").unwrap_or(("https", base));
        let mut path = String::with_capacity(bucket.len() + key.len() + 16);
        let origin = if let Some(origin) = self.bucket_origins.get(bucket) {
            origin.clone()
        } else if self.addressing == Addressing::Virtual {
            format!("{scheme}://{bucket}.{authority}")
        } else {
            path.push('/');
            sigv4::uri_encode(&mut path, bucket, false);
            base.to_owned()
        };
        path.push('/');
        sigv4::uri_encode(&mut path, key, true);
        let authority = origin.split_once("://").map_or(origin.as_str(), |(_, rest)| rest);
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => authority,
        };
        (origin.clone(), host.to_owned(), path)
    }

    /// An Azure blob's origin, host and path: `<endpoint>/<container>/<blob>` (the endpoint is
    /// `https://<account>.blob.core.windows.net`, or an emulator's with the account in its path).
    fn azure_object_location(&self, container: &str, blob: &str) -> (String, String, String) {
        let base = match &self.endpoint {
            Endpoint::Custom(base) => base.as_str(),
            Endpoint::Aws => "https://invalid",
        };
        let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
        let (authority, base_path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut path = String::with_capacity(base_path.len() + container.len() + blob.len() + 8);
        path.push_str(base_path);
        path.push('/');
        sigv4::uri_encode(&mut path, container, false);
        path.push('/');
        sigv4::uri_encode(&mut path, blob, true);
        (format!("{scheme}://{authority}"), authority.to_owned(), path)
    }

    /// The URL a form for `bucket` is posted to.
    pub fn bucket_url(&self, bucket: &str) -> String {
        if self.kind == Kind::Azure {
            let (origin, _, path) = self.azure_object_location(bucket, "");
            return format!("{origin}{path}");
        }
        if self.kind == Kind::Gcs {
            let (origin, _, path) = self.gcs_object_location(bucket, "");
            return format!("{origin}{path}");
        }
        match (&self.endpoint, self.addressing) {
            (Endpoint::Aws, Addressing::Path) => {
                format!("https://s3.{}.amazonaws.com/{bucket}", self.region)
            }
            // Dotted names break the wildcard TLS certificate of virtual-hosted URLs.
            (Endpoint::Aws, Addressing::Auto) if bucket.contains('.') => {
                format!("https://s3.{}.amazonaws.com/{bucket}", self.region)
            }
            (Endpoint::Aws, _) => format!("https://{bucket}.s3.{}.amazonaws.com/", self.region),
            (Endpoint::Custom(base), Addressing::Virtual) => match base.split_once("://") {
                Some((scheme, host)) => format!("{scheme}://{bucket}.{host}/"),
                None => format!("{base}/{bucket}"),
            },
            (Endpoint::Custom(base), _) => format!("{base}/{bucket}"),
        }
    }
}

/// Name–value pairs: a call's query parameters or headers.
type Pairs<'a> = &'a [(&'a str, &'a str)];

/// A store with the one set of credentials a signature uses from start to end.
pub struct Signer<'a> {
    store: &'a Store,
    keys: Arc<Keys>,
}

impl Deref for Signer<'_> {
    type Target = Store;

    fn deref(&self) -> &Store {
        self.store
    }
}

impl Signer<'_> {
    pub fn credentials(&self) -> &Credentials {
        &self.keys.credentials
    }

    /// Who signs a presigned URL for this store: its credentials, region, and the signing key of
    /// `amz_date`'s day.
    pub fn query_signer<'a>(
        &'a self,
        amz_date: &'a str,
        signing_key: &'a [u8; 32],
        expires_in: u64,
    ) -> sigv4::QuerySigner<'a> {
        let credentials = self.credentials();
        let (region, service) = match self.store.kind {
            Kind::Gcs => (sigv4::GOOG4_REGION, sigv4::GOOG4_SERVICE),
            _ => (self.store.region.as_str(), "s3"),
        };
        sigv4::QuerySigner {
            access_key_id: &credentials.access_key_id,
            session_token: credentials.session_token.as_ref().map(|t| t.expose()),
            key: self.key(signing_key),
            region,
            service,
            amz_date,
            expires_in,
        }
    }

    /// What signs for this store: the day's HMAC key in its dialect, or a service account's key.
    pub fn key<'a>(&'a self, day_key: &'a [u8; 32]) -> sigv4::Key<'a> {
        match (self.store.kind, &self.keys.rsa) {
            (Kind::Gcs, Some(pair)) => sigv4::Key::Goog4Rsa(pair),
            (Kind::Gcs, None) => sigv4::Key::Goog4Hmac(day_key),
            _ => sigv4::Key::Aws4(day_key),
        }
    }

    /// A presigned URL for an object (`origin/path?<SigV4 query>`, `UNSIGNED-PAYLOAD`), built in
    /// one buffer: the PUT renderer, part URLs and the gateway's own store calls all take it.
    #[allow(clippy::too_many_arguments)]
    pub fn presigned_object_url(
        &self,
        method: &str,
        bucket: &str,
        key: &str,
        params: &[(&str, &str)],
        headers: &[(&str, &str)],
        now: OffsetDateTime,
        expires_in: u64,
    ) -> String {
        let (origin, host, path) = self.object_location(bucket, key);
        let mut url = String::with_capacity(origin.len() + 2 * path.len() + 512);
        url.push_str(&origin);
        url.push_str(&path);
        url.push('?');
        if self.store.kind == Kind::Azure {
            self.append_sas(&mut url, method, (bucket, key), (params, headers), now, expires_in);
            return url;
        }
        let (amz_date, signing_key) = amz_date_now(self, now);
        sigv4::append_presigned_query(
            &mut url,
            &sigv4::QueryRequest {
                method,
                host: &host,
                path: &path,
                params,
                headers,
                payload_hash: sigv4::UNSIGNED_PAYLOAD,
            },
            &self.query_signer(&amz_date, &signing_key, expires_in),
        );
        url
    }

    /// The operation's parameters, then a create-only, read or delete SAS for one blob (by
    /// `method`) expiring `expires_in` seconds after `now`. Headers are the client's to send:
    /// a SAS signs none (they pick the permission of a copy).
    fn append_sas(
        &self,
        url: &mut String,
        method: &str,
        (container, blob): (&str, &str),
        (params, headers): (Pairs<'_>, Pairs<'_>),
        now: OffsetDateTime,
        expires_in: u64,
    ) {
        for (name, value) in azure::query_params(params) {
            sigv4::uri_encode(url, &name, false);
            url.push('=');
            sigv4::uri_encode(url, &value, false);
            url.push('&');
        }
        let credentials = self.credentials();
        let key = azure::account_key(credentials.secret_access_key.expose()).unwrap_or_default();
        let now = now.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).unwrap_or(now);
        let https = matches!(&self.store.endpoint, Endpoint::Custom(base) if base.starts_with("https://"));
        azure::Sas {
            account: &credentials.access_key_id,
            key: &key,
            container,
            blob,
            permissions: azure::permissions(method, params, headers),
            expiry: now + Duration::from_secs(expires_in),
            protocol: if https { "https" } else { "https,http" },
        }
        .append_query(url);
    }

    pub(crate) fn signing_key(&self, date: &str) -> [u8; 32] {
        if self.store.kind == Kind::Azure {
            // A SAS is signed with the account key itself; there is no key of the day.
            return [0; 32];
        }
        let mut cache = self.keys.day_key.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached_date, key)) = cache.as_ref()
            && cached_date == date
        {
            return *key;
        }
        let secret = self.keys.credentials.secret_access_key.expose();
        let key = match self.store.kind {
            Kind::Gcs => sigv4::goog4_signing_key(secret, date),
            _ => sigv4::signing_key(secret, date, &self.store.region, "s3"),
        };
        *cache = Some((date.to_owned(), key));
        key
    }
}

/// Form fields and query parameters that are secrets, or capabilities (a signature with its
/// policy or URL lets anyone upload): never printed by `Debug`.
const HIDDEN: &[&str] = &[
    "x-amz-security-token",
    "x-amz-signature",
    "x-goog-signature",
    "sig",
    "policy",
];

/// `value`, or `<redacted>` for a hidden field.
pub(crate) fn shown_value<'a>(name: &str, value: &'a str) -> &'a str {
    if HIDDEN.iter().any(|h| h.eq_ignore_ascii_case(name)) {
        "<redacted>"
    } else {
        value
    }
}

/// `url` with its hidden query parameters' values redacted.
pub(crate) fn shown_url(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => format!("{name}={}", shown_value(name, value)),
            None => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

pub use crate::text::format_rfc3339;

/// What every signed upload answers, around its `fields` or `headers`.
pub(crate) struct Answer<'a> {
    pub method: &'static str,
    pub url: &'a str,
    pub key: &'a str,
    pub expires_at: OffsetDateTime,
    pub max_size: u64,
}

/// Answer fields whose values hold no JSON escape by construction.
const CLEAN_FIELDS: [&str; 4] = ["policy", "x-amz-signature", "x-amz-date", "x-amz-algorithm"];

impl Answer<'_> {
    /// `"method", "url", "<pairs_name>": {pairs}, "key", "expires_at", "max_size"` as compact JSON
    /// members. (Hand-written: it is on the signing path.)
    pub fn write_json_members<'p>(
        &self,
        pairs_name: &str,
        pairs: impl Iterator<Item = (&'p str, &'p str)> + Clone,
        out: &mut String,
    ) {
        out.reserve(256 + pairs.clone().map(|(n, v)| n.len() + v.len() + 6).sum::<usize>());
        out.push_str("\"method\":");
        write_json_string(out, self.method);
        out.push_str(",\"url\":");
        write_json_string(out, self.url);
        out.push_str(",\"");
        out.push_str(pairs_name);
        out.push_str("\":{");
        for (i, (name, value)) in pairs.enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_string(out, name);
            out.push(':');
            // The policy (base64), the signature (hex), the date and the algorithm need no
            // escape, and they are most of a form's bytes.
            if CLEAN_FIELDS.iter().any(|clean| clean.eq_ignore_ascii_case(name)) {
                write_json_clean(out, value);
            } else {
                write_json_string(out, value);
            }
        }
        out.push_str("},\"key\":");
        write_json_string(out, self.key);
        out.push_str(",\"expires_at\":");
        write_json_string(out, &format_rfc3339(self.expires_at));
        out.push_str(",\"max_size\":");
        out.push_str(&self.max_size.to_string());
    }
}

/// A signed upload, carried one way or the other.
#[derive(Debug, Clone)]
pub enum Signed<'p> {
    Post(PresignedPost<'p>),
    Put(PresignedPut<'p>),
}

impl Signed<'_> {
    pub fn method(&self) -> Method {
        match self {
            Signed::Post(_) => Method::Post,
            Signed::Put(_) => Method::Put,
        }
    }

    /// True when the store's credentials expire before the profile's `expires_in`.
    pub fn expiry_clamped(&self) -> bool {
        match self {
            Signed::Post(post) => post.expiry_clamped,
            Signed::Put(put) => put.expiry_clamped,
        }
    }

    /// The signature (for a log fingerprint).
    pub fn signature(&self) -> &str {
        match self {
            Signed::Post(post) => post.fields.last().map(|(_, v)| v.as_ref()).unwrap_or_default(),
            Signed::Put(put) => put.url.rsplit('=').next().unwrap_or_default(),
        }
    }

    /// The members of the answer (`method`, `url`, `fields` or `headers`, `key`, `expires_at`,
    /// `max_size`) as compact JSON, without the braces, so an edge can add its own members.
    pub fn write_json_members(&self, out: &mut String) {
        match self {
            Signed::Post(post) => post.write_json_members(out),
            Signed::Put(put) => put.write_json_members(out),
        }
    }

    /// The answer as compact JSON.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        self.write_json_members(&mut out);
        out.push('}');
        out
    }

    /// A curl config (`curl -K`) that sends the upload; the caller adds the file (`-F file=@…`
    /// for a POST form, `-T …` for a PUT).
    pub fn curl_config(&self) -> String {
        let quote = |text: &str| text.replace('\\', "\\\\").replace('"', "\\\"");
        match self {
            Signed::Post(post) => {
                let mut out = format!("url = \"{}\"\n", quote(&post.url));
                for (name, value) in &post.fields {
                    out.push_str(&format!("form-string = \"{}={}\"\n", quote(name), quote(value)));
                }
                out
            }
            Signed::Put(put) => {
                let mut out = format!("url = \"{}\"\nrequest = \"PUT\"\n", quote(&put.url));
                for (name, value) in put.client_headers() {
                    out.push_str(&format!("header = \"{}: {}\"\n", quote(name), quote(value)));
                }
                out
            }
        }
    }
}

/// The method a request is carried with: the one it asks for, if the profile and the store
/// allow it; else POST where both do, else PUT.
pub fn choose_method(profile: &Profile, store: &Store, requested: Option<Method>) -> Result<Method, Refusal> {
    let refuse = |message: String| Refusal {
        kind: RefusalKind::MethodUnavailable,
        field: "method".into(),
        message,
    };
    let plan = profile.plan();
    let store_refuses_post = || {
        format!(
            "store `{}` does not take POST uploads (`post: false`); ask for `put`",
            store.name
        )
    };
    match requested {
        Some(method) => match plan.unavailable(method) {
            Some(reason) => Err(refuse(reason.to_owned())),
            None if method == Method::Post && !store.post => Err(refuse(store_refuses_post())),
            None => Ok(method),
        },
        None if plan.allows(Method::Post) && store.post => Ok(Method::Post),
        None if plan.allows(Method::Put) => Ok(Method::Put),
        None => Err(refuse(store_refuses_post())),
    }
}

/// Signs one request: the one way every caller (the API, the dev pages, `postgate sign`, the
/// benches) turns a request into a signed upload. `ctx.now` is the signing time.
pub fn sign<'p>(
    profile: &'p Profile,
    store: &Signer<'_>,
    request: &UploadRequest,
    ctx: &Context<'_>,
    style: FieldStyle,
) -> Result<Signed<'p>, Vec<Refusal>> {
    sign_upload(profile, store, request, ctx, style).map(|(signed, _)| signed)
}

/// `sign`, with what the signature allows the stored object to be (for its upload token).
pub fn sign_upload<'p>(
    profile: &'p Profile,
    store: &Signer<'_>,
    request: &UploadRequest,
    ctx: &Context<'_>,
    style: FieldStyle,
) -> Result<(Signed<'p>, Bounds), Vec<Refusal>> {
    let method = choose_method(profile, store, request.method).map_err(|refusal| vec![refusal])?;
    if store.kind != Kind::S3 && request.checksum.is_some() {
        return Err(vec![Refusal {
            kind: RefusalKind::ChecksumInvalid,
            field: "checksum".into(),
            message: format!(
                "store `{}` is {}, which takes no x-amz-checksum-*; send no checksum",
                store.name,
                match store.kind {
                    Kind::Gcs => "Google Cloud Storage",
                    _ => "Azure Blob Storage",
                }
            ),
        }]);
    }
    let filled = admit(profile, request, method, ctx)?;
    let bounds = filled.bounds();
    Ok(match (method, store.kind) {
        (Method::Post, Kind::Gcs) => (Signed::Post(gcs::post_form(filled, store, ctx.now)), bounds),
        // Azure takes no POST (`post: false`): `choose_method` never picks it there.
        (Method::Post, _) => (Signed::Post(post::post_form(filled, store, ctx.now, style)), bounds),
        (Method::Put, _) => (Signed::Put(put::put_url(filled, store, ctx.now)), bounds),
    })
}

impl Signed<'_> {
    /// When the signature stops working.
    pub fn expires_at(&self) -> OffsetDateTime {
        match self {
            Signed::Post(post) => post.expires_at,
            Signed::Put(put) => put.expires_at,
        }
    }
}

/// When a signature made at `now` for `expires_in` stops working: never after the store's
/// credentials expire. Returns the whole-second signing time, the expiry, and whether the
/// credentials cut it short.
pub(crate) fn validity(
    store: &Signer<'_>,
    now: OffsetDateTime,
    expires_in: Duration,
) -> (OffsetDateTime, OffsetDateTime, bool) {
    let now = now.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).unwrap_or(now);
    let expires_at = now + expires_in;
    match store.credentials().expires_at {
        Some(limit) if limit < expires_at => (now, limit.max(now), true),
        _ => (now, expires_at, false),
    }
}

/// The SigV4 date of `now` and the store's signing key for its day (for the gateway's own calls).
pub fn amz_date_now(store: &Signer<'_>, now: OffsetDateTime) -> (String, [u8; 32]) {
    let date = amz_date(now.to_offset(time::UtcOffset::UTC));
    let key = store.signing_key(&date[..8]);
    (date, key)
}

/// `YYYYMMDDTHHMMSSZ`, the SigV4 date.
pub(crate) fn amz_date(at: OffsetDateTime) -> String {
    let mut out = String::with_capacity(16);
    push_digits(&mut out, at.year().unsigned_abs(), 4);
    push_digits(&mut out, u8::from(at.month()).into(), 2);
    push_digits(&mut out, at.day().into(), 2);
    out.push('T');
    push_digits(&mut out, at.hour().into(), 2);
    push_digits(&mut out, at.minute().into(), 2);
    push_digits(&mut out, at.second().into(), 2);
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn response_json_is_valid_and_ordered() {
        let post = PresignedPost {
            url: "https://b.s3.eu-west-1.amazonaws.com/".into(),
            fields: vec![
                ("key".into(), "a/\"q\"/${filename}".into()),
                ("x-amz-meta-note".into(), "ünï\n".into()),
            ],
            key: "a/\"q\"/${filename}".into(),
            expires_at: datetime!(2026-01-02 03:04:05 UTC),
            max_size: 42,
            expiry_clamped: false,
            policy: String::new(),
        };
        let expected = serde_json::json!({
            "method": "POST",
            "url": "https://b.s3.eu-west-1.amazonaws.com/",
            "fields": {"key": "a/\"q\"/${filename}", "x-amz-meta-note": "ünï\n"},
            "key": "a/\"q\"/${filename}",
            "expires_at": "2026-01-02T03:04:05Z",
            "max_size": 42,
        });
        // Byte-equal to serde_json's compact output of the same object, key order included.
        assert_eq!(post.to_json(), serde_json::to_string(&expected).unwrap());
    }

    fn presign<'p>(profile: &'p crate::profile::Profile, store: &Store, now: OffsetDateTime) -> PresignedPost<'p> {
        let ctx = crate::profile::Context {
            app: "web",
            now,
            uuid: uuid::Uuid::nil(),
        };
        match sign(
            profile,
            &store.signer(now).unwrap(),
            &Default::default(),
            &ctx,
            FieldStyle::Botocore,
        )
        .unwrap()
        {
            Signed::Post(post) => post,
            Signed::Put(_) => panic!("a PUT"),
        }
    }

    fn profile(expires_in: &str) -> crate::profile::Profile {
        let yaml =
            format!("bucket: b-1\nkey: \"k/${{uuid}}\"\nsize: {{ max: 10 }}\nexpires_in: {expires_in}\napps: all\n");
        crate::profile::parse(&crate::profile::ProfileName::new("p").unwrap(), &yaml).unwrap()
    }

    fn store_with(session_token: Option<&str>, expires_at: Option<OffsetDateTime>) -> Store {
        let credentials = Credentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Secret::new("s"),
            session_token: session_token.map(Secret::new),
            expires_at,
        };
        Store::new("default", "eu-west-1", Endpoint::Aws, Addressing::Auto, credentials)
    }

    #[test]
    fn a_session_token_is_a_field_and_a_condition() {
        let profile = profile("10m");
        let now = datetime!(2026-11-21 12:00:00 UTC);
        let post = presign(&profile, &store_with(Some("TOKEN/123"), None), now);
        assert!(
            post.fields
                .contains(&("x-amz-security-token".into(), "TOKEN/123".into()))
        );
        assert!(
            post.policy.contains(r#"{"x-amz-security-token": "TOKEN/123"}"#),
            "{}",
            post.policy
        );
        let post = presign(&profile, &store_with(None, None), now);
        assert!(!post.fields.iter().any(|(n, _)| n == "x-amz-security-token"));
        assert!(!post.policy.contains("x-amz-security-token"));
    }

    #[test]
    fn forms_never_outlive_the_credentials() {
        let profile = profile("1h");
        let now = datetime!(2026-11-21 12:00:00.750 UTC);
        let post = presign(&profile, &store_with(None, None), now);
        assert_eq!(post.expires_at, datetime!(2026-11-21 13:00:00 UTC));
        assert!(!post.expiry_clamped);
        let soon = datetime!(2026-11-21 12:20:00 UTC);
        let post = presign(&profile, &store_with(Some("t"), Some(soon)), now);
        assert_eq!(post.expires_at, soon);
        assert!(post.expiry_clamped);
        assert!(
            post.policy
                .starts_with(r#"{"expiration": "2026-11-21T12:20:00Z", "conditions": ["#)
        );
    }

    #[test]
    fn dates() {
        let at = datetime!(2026-01-02 03:04:05.999 UTC);
        assert_eq!(amz_date(at), "20260102T030405Z");
        assert_eq!(format_rfc3339(at), "2026-01-02T03:04:05Z");
        let offset = datetime!(2026-01-02 03:04:05 +02:00);
        assert_eq!(format_rfc3339(offset), "2026-01-02T01:04:05Z");
    }

    #[test]
    fn bucket_urls() {
        let credentials = Credentials {
            access_key_id: "AK".into(),
            secret_access_key: Secret::new("s"),
            session_token: None,
            expires_at: None,
        };
        let store =
            |endpoint: Endpoint, addressing| Store::new("s", "eu-west-1", endpoint, addressing, credentials.clone());
        let custom = || Endpoint::Custom("http://127.0.0.1:9000".into());
        let cases = [
            (
                store(Endpoint::Aws, Addressing::Auto),
                "b1",
                "https://b1.s3.eu-west-1.amazonaws.com/",
            ),
            (
                store(Endpoint::Aws, Addressing::Auto),
                "my.bucket",
                "https://s3.eu-west-1.amazonaws.com/my.bucket",
            ),
            (
                store(Endpoint::Aws, Addressing::Path),
                "b1",
                "https://s3.eu-west-1.amazonaws.com/b1",
            ),
            (store(custom(), Addressing::Auto), "b1", "http://127.0.0.1:9000/b1"),
            (store(custom(), Addressing::Virtual), "b1", "http://b1.127.0.0.1:9000/"),
        ];
        for (store, bucket, url) in cases {
            assert_eq!(store.bucket_url(bucket), url);
            // An object's location is the bucket's URL and the encoded key, whichever way it
            // is built (AWS's virtual-hosted form is written directly).
            let (origin, host, path) = store.object_location(bucket, "a b/ü.png");
            assert_eq!(
                format!("{origin}{path}"),
                format!("{}/a%20b/%C3%BC.png", url.trim_end_matches('/'))
            );
            assert_eq!(origin.split_once("://").unwrap().1, host);
        }
        let virtual_dotted = store(Endpoint::Aws, Addressing::Virtual);
        assert_eq!(
            virtual_dotted.object_location("my.bucket", "k").0,
            "https://my.bucket.s3.eu-west-1.amazonaws.com"
        );
    }
}
