//! End users' ID tokens (JWTs from the app's identity provider): which app a token is for, and
//! whether it is valid, with keys from the issuer's JWKS.
//!
//! `TokenApps` is plain data read from the config (compared to detect changes); `Identities` is
//! what a snapshot serves: the rules of each app and its JWKS cache, carried over a reload when
//! the JWKS source is unchanged. A JWKS is fetched when first needed, again in the background
//! once it is older than `max_age`, and again for an unknown `kid` at most once per
//! `refetch_interval` (a flood of made-up `kid`s costs the issuer one fetch per interval). A
//! fetch replaces the whole set, so keys the issuer dropped leave the cache with it.
//! Only asymmetric algorithms are accepted; `alg: none` and HMAC never are.
//!
//! A verified token is remembered (`VerifiedTokens`, by its SHA-256) so a client that sends the
//! same token with every upload pays for its signature check once. A remembered verification is
//! used only while the token has not expired (the same `exp` and leeway rule), and only while
//! the JWKS still holds the very key that verified it: a refetch that drops or replaces the key
//! ends it at once. A reload of the apps' settings starts an empty memory; refused tokens are
//! never remembered.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::metrics::Metrics;

/// Algorithms a token may be signed with (asymmetric only).
pub const ACCEPTED_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];
/// The largest JWKS read.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// The longest JWT read.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// How long one JWKS fetch may take.
pub const JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// How an app proves who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// An app key (`Authorization: Bearer <app key>`). The default without `end_user_tokens`.
    Key,
    /// An end user's token only (`Authorization: Bearer <ID token>`): browsers calling directly.
    Token,
    /// Either. The default with `end_user_tokens`.
    Either,
    /// Both: the app key in `Authorization`, the user's token in `End-User-Token` (a backend
    /// acting for a signed-in user).
    Both,
}

/// Where a JWKS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    Url(String),
    File(PathBuf),
}

/// One app's token rules, as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRules {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    pub jwks: JwksSource,
    pub refetch_interval: Duration,
    pub max_age: Duration,
}

/// One app's identity settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AppIdentity {
    pub app: String,
    pub mode: AuthMode,
    pub tokens: Option<TokenRules>,
    /// Origins a browser may call from with this app's credentials; empty: the global list only.
    pub cors_origins: Vec<String>,
}

/// Every app's identity settings, as configured (plain data).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenApps {
    pub apps: Vec<AppIdentity>,
}

impl TokenApps {
    /// A stable digest, for change detection.
    pub fn fingerprint(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        Sha256::digest(format!("{self:?}").as_bytes()).into()
    }

    pub fn get(&self, app: &str) -> Option<&AppIdentity> {
        self.apps.iter().find(|a| a.app == app)
    }
}

/// Why a token is refused; each has its own problem code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a JWT: {0}")]
    Malformed(String),
    #[error("{0}")]
    Algorithm(String),
    #[error("no app accepts tokens from issuer `{0}`")]
    Issuer(String),
    #[error("the token's audience is not one this app accepts")]
    Audience,
    #[error("{0}")]
    UnknownKey(String),
    #[error("the token's signature is not valid")]
    Signature,
    #[error("the token expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("{0}")]
    ClaimInvalid(String),
    /// The detail (URLs, paths) goes to the log; clients get the fact.
    #[error("the identity provider's keys cannot be fetched yet")]
    JwksUnavailable(String),
}

impl TokenError {
    /// The word for the metric's `result` label.
    pub fn label(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed",
            TokenError::Algorithm(_) => "algorithm",
            TokenError::Issuer(_) => "issuer",
            TokenError::Audience => "audience",
            TokenError::UnknownKey(_) => "unknown_key",
            TokenError::Signature => "signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::ClaimInvalid(_) => "claim_invalid",
            TokenError::JwksUnavailable(_) => "jwks_unavailable",
        }
    }
}

/// A verified token: the app it is for and its claims.
#[derive(Debug, Clone)]
pub struct Verified {
    pub app: String,
    pub claims: Arc<Map<String, Value>>,
}

/// Verified tokens remembered per snapshot.
pub const REMEMBERED_TOKENS: usize = 4096;

/// One remembered verification.
struct Remembered {
    verified: Verified,
    /// The last second the token is valid (`exp` + leeway).
    valid_through: u64,
    kid: Option<String>,
    /// The key that verified it; the memory holds only while the JWKS still serves this key.
    key: Arc<DecodingKey>,
}

/// A remembered token's name: the SHA-256 of the token, and the app an app key pinned.
type TokenId = ([u8; 32], Option<String>);

/// Tokens this snapshot verified.
#[derive(Default)]
struct VerifiedTokens {
    entries: Mutex<HashMap<TokenId, Arc<Remembered>>>,
}

impl VerifiedTokens {
    fn get(&self, id: &TokenId) -> Option<Arc<Remembered>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    fn remember(&self, id: TokenId, entry: Remembered, now_unix: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= REMEMBERED_TOKENS {
            entries.retain(|_, e| e.valid_through >= now_unix);
            if entries.len() >= REMEMBERED_TOKENS {
                entries.clear();
            }
        }
        entries.insert(id, Arc::new(entry));
    }

    fn forget(&self, id: &TokenId) {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }
}

/// The keys of one JWKS fetch.
#[derive(Default)]
struct KeySet {
    keys: HashMap<String, (Arc<DecodingKey>, Option<Algorithm>)>,
    /// Keys without a `kid` (used only when the token names none).
    unnamed: Vec<(Arc<DecodingKey>, Option<Algorithm>)>,
    fetched_at: Option<Instant>,
}

/// One app's JWKS, cached.
pub struct JwksCache {
    app: String,
    source: JwksSource,
    refetch_interval: Duration,
    max_age: Duration,
    keys: ArcSwap<KeySet>,
    last_attempt: Mutex<Option<Instant>>,
    fetching: tokio::sync::Mutex<()>,
    /// A background refresh is queued or running.
    refreshing: AtomicBool,
    http: reqwest::Client,
}

impl JwksCache {
    fn new(app: &str, rules: &TokenRules, http: reqwest::Client) -> JwksCache {
        JwksCache {
            app: app.to_owned(),
            source: rules.jwks.clone(),
            refetch_interval: rules.refetch_interval,
            max_age: rules.max_age,
            keys: ArcSwap::from_pointee(KeySet::default()),
            last_attempt: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
            http,
        }
    }

    fn same_source(&self, rules: &TokenRules) -> bool {
        self.source == rules.jwks && self.refetch_interval == rules.refetch_interval && self.max_age == rules.max_age
    }

    fn lookup(&self, kid: Option<&str>) -> Option<(Arc<DecodingKey>, Option<Algorithm>)> {
        let set = self.keys.load();
        match kid {
            Some(kid) => set.keys.get(kid).cloned(),
            None if set.unnamed.len() + set.keys.len() == 1 => set
                .unnamed
                .first()
                .cloned()
                .or_else(|| set.keys.values().next().cloned()),
            None => None,
        }
    }

    /// The key for `kid`: from the cache, or after a fetch if the interval allows one.
    async fn key(
        self: &Arc<Self>,
        kid: Option<&str>,
        metrics: &Arc<Metrics>,
    ) -> Result<(Arc<DecodingKey>, Option<Algorithm>), TokenError> {
        let fetched_at = self.keys.load().fetched_at;
        if let Some(found) = self.lookup(kid) {
            // One background refresh at a time, however many requests see the set stale.
            if fetched_at.is_some_and(|at| at.elapsed() > self.max_age) && !self.refreshing.swap(true, Ordering::AcqRel)
            {
                let cache = self.clone();
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    {
                        let _guard = cache.fetching.lock().await;
                        if cache.claim_attempt() {
                            let _ = cache.fetch(&metrics).await;
                        }
                    }
                    cache.refreshing.store(false, Ordering::Release);
                });
            }
            return Ok(found);
        }
        let fetched = {
            let _guard = self.fetching.lock().await;
            // Whoever held the lock may have fetched what this request needs.
            if let Some(found) = self.lookup(kid) {
                return Ok(found);
            }
            if self.claim_attempt() {
                // In a task of its own: a client that goes away does not cancel the fetch it
                // started (and used the interval's attempt for).
                let (cache, metrics) = (self.clone(), metrics.clone());
                let fetch = tokio::spawn(async move { cache.fetch(&metrics).await });
                Some(fetch.await.unwrap_or_else(|e| Err(e.to_string())))
            } else {
                None
            }
        };
        if let Some(found) = self.lookup(kid) {
            return Ok(found);
        }
        match (fetched, self.keys.load().fetched_at) {
            (Some(Err(error)), None) => Err(TokenError::JwksUnavailable(error)),
            (None, None) => Err(TokenError::JwksUnavailable(
                "the last fetch failed; the next is allowed within the refetch interval".into(),
            )),
            _ => Err(TokenError::UnknownKey(match kid {
                Some(kid) => format!("the issuer's keys have no key `{}`", kid.escape_debug()),
                None => "the token names no key (`kid`) and the issuer has several".into(),
            })),
        }
    }

    /// Takes the right to fetch now: false within `refetch_interval` of the last attempt.
    fn claim_attempt(&self) -> bool {
        let mut last = self.last_attempt.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < self.refetch_interval) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Fetches and publishes the set; on failure the old set stays.
    async fn fetch(&self, metrics: &Metrics) -> Result<(), String> {
        let result = self.read().await.and_then(|text| parse_jwks(&text));
        metrics.jwks_fetch(&self.app, result.is_ok());
        match result {
            Ok(set) => {
                tracing::info!(app = %self.app, keys = set.keys.len() + set.unnamed.len(), "JWKS fetched");
                self.keys.store(Arc::new(set));
                Ok(())
            }
            Err(error) => {
                tracing::warn!(app = %self.app, %error, "cannot fetch the JWKS");
                Err(error)
            }
        }
    }

    async fn read(&self) -> Result<String, String> {
        match &self.source {
            JwksSource::File(path) => read_jwks_file(path).await,
            JwksSource::Url(url) => {
                let response = self
                    .http
                    .get(url)
                    .timeout(JWKS_TIMEOUT)
                    .send()
                    .await
                    .map_err(|e| format!("GET {url}: {}", crate::transport::describe(e)))?;
                let mut response = response;
                let status = response.status();
                if !status.is_success() {
                    return Err(format!("GET {url}: {status}"));
                }
                let too_large = || format!("GET {url}: larger than {MAX_JWKS_BYTES} bytes");
                if response.content_length().is_some_and(|n| n > MAX_JWKS_BYTES as u64) {
                    return Err(too_large());
                }
                // Read with a cap: a hostile or broken endpoint cannot make the gateway buffer more.
                let mut bytes = Vec::new();
                while let Some(chunk) = response.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
                    if bytes.len() + chunk.len() > MAX_JWKS_BYTES {
                        return Err(too_large());
                    }
                    bytes.extend_from_slice(&chunk);
                }
                String::from_utf8(bytes).map_err(|_| format!("GET {url}: not UTF-8"))
            }
        }
    }
}

/// A JWKS document as keys. Each key is read on its own, and skipped when it cannot verify
/// signatures: an unreadable or unsupported key (`crv: secp256k1`, an unknown `kty`), an HMAC
/// key, a key for encryption (`use` other than `sig`), or one naming a non-signing `alg`.
fn parse_jwks(text: &str) -> Result<KeySet, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<Value>,
    }
    let document: Document = serde_json::from_str(text).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = KeySet {
        fetched_at: Some(Instant::now()),
        ..KeySet::default()
    };
    for raw in document.keys {
        if raw.get("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let alg = match raw.get("alg").and_then(Value::as_str) {
            None => None,
            Some(name) => match Algorithm::from_str(name) {
                Ok(alg) if ACCEPTED_ALGORITHMS.contains(&alg) => Some(alg),
                _ => continue,
            },
        };
        let Ok(jwk) = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(raw) else {
            continue;
        };
        if matches!(jwk.algorithm, jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else { continue };
        let entry = (Arc::new(key), alg);
        match &jwk.common.key_id {
            Some(kid) => {
                keys.keys.insert(kid.clone(), entry);
            }
            None => keys.unnamed.push(entry),
        }
    }
    Ok(keys)
}

/// What a snapshot serves: each app's settings and JWKS cache.
#[derive(Default)]
pub struct Identities {
    pub config: TokenApps,
    caches: HashMap<String, Arc<JwksCache>>,
    verified: VerifiedTokens,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Identities {
    /// Builds from `config`, keeping the caches of `previous` whose source is unchanged.
    pub fn build(config: &TokenApps, previous: &Identities) -> Identities {
        static HTTP: std::sync::LazyLock<reqwest::Client> = std::sync::LazyLock::new(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                // A JWKS URL is configured exact; a redirect could leave https.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default()
        });
        let http = &*HTTP;
        let mut caches = HashMap::new();
        for app in &config.apps {
            let Some(rules) = &app.tokens else { continue };
            let cache = match previous.caches.get(&app.app) {
                Some(cache) if cache.same_source(rules) => cache.clone(),
                _ => Arc::new(JwksCache::new(&app.app, rules, http.clone())),
            };
            caches.insert(app.app.clone(), cache);
        }
        Identities {
            config: config.clone(),
            caches,
            verified: VerifiedTokens::default(),
        }
    }

    pub fn app(&self, app: &str) -> Option<&AppIdentity> {
        self.config.get(app)
    }

    /// Whether `origin` is one an app lists.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.config
            .apps
            .iter()
            .any(|a| a.cors_origins.iter().any(|o| o == origin))
    }

    /// Verifies `token`; `for_app` (from an app key) pins the app, else the token's issuer and
    /// audience pick it. A token verified before is taken from memory while it is unexpired and
    /// its key is still served.
    pub async fn verify(
        &self,
        token: &str,
        for_app: Option<&str>,
        now_unix: u64,
        metrics: &Arc<Metrics>,
    ) -> Result<Verified, (Option<String>, TokenError)> {
        use sha2::Digest;
        let id: TokenId = (
            sha2::Sha256::digest(token.as_bytes()).into(),
            for_app.map(str::to_owned),
        );
        if let Some(entry) = self.verified.get(&id) {
            if let Some(cache) = self.caches.get(&entry.verified.app)
                && now_unix <= entry.valid_through
                && let Ok((key, _)) = cache.key(entry.kid.as_deref(), metrics).await
                && Arc::ptr_eq(&key, &entry.key)
            {
                return Ok(entry.verified.clone());
            }
            // Expired, or its key left the JWKS: verified afresh below (and refused if so).
            self.verified.forget(&id);
        }
        let (verified, remembered) = self.verify_signature(token, for_app, now_unix, metrics).await?;
        if let Some(entry) = remembered {
            self.verified.remember(id, entry, now_unix);
        }
        Ok(verified)
    }

    /// The app a bare ID token names by its unverified issuer and audience, if exactly one
    /// does: for the rate limit counted before the signature is checked. Nothing else may be
    /// decided from it.
    pub fn app_of(&self, token: &str) -> Option<String> {
        let (_, payload) = peek(token).ok()?;
        let issuer = payload.get("iss").and_then(Value::as_str)?;
        let audiences: Vec<&str> = match payload.get("aud") {
            Some(Value::String(one)) => vec![one],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let mut apps = self.config.apps.iter().filter(|a| {
            a.tokens.as_ref().is_some_and(|rules| {
                rules.issuer == issuer && rules.audiences.iter().any(|aud| audiences.contains(&aud.as_str()))
            })
        });
        let app = apps.next()?;
        apps.next().is_none().then(|| app.app.clone())
    }

    /// `verify` without the memory: every check, every time (the benchmarks compare the two).
    pub async fn verify_fully(
        &self,
        token: &str,
        for_app: Option<&str>,
        now_unix: u64,
        metrics: &Arc<Metrics>,
    ) -> Result<Verified, (Option<String>, TokenError)> {
        Ok(self.verify_signature(token, for_app, now_unix, metrics).await?.0)
    }

    /// The full check: app, algorithm, key, signature, claims.
    async fn verify_signature(
        &self,
        token: &str,
        for_app: Option<&str>,
        now_unix: u64,
        metrics: &Arc<Metrics>,
    ) -> Result<(Verified, Option<Remembered>), (Option<String>, TokenError)> {
        let (header, payload) = peek(token).map_err(|e| (for_app.map(str::to_owned), e))?;
        let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or_default();
        let issuer = payload.get("iss").and_then(Value::as_str).unwrap_or_default();
        let audiences: Vec<&str> = match payload.get("aud") {
            Some(Value::String(one)) => vec![one],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let candidates: Vec<(&AppIdentity, &TokenRules)> = self
            .config
            .apps
            .iter()
            .filter(|a| for_app.is_none_or(|name| a.app == name))
            .filter_map(|a| a.tokens.as_ref().map(|rules| (a, rules)))
            .filter(|(_, rules)| rules.issuer == issuer)
            .collect();
        if candidates.is_empty() {
            return Err((
                for_app.map(str::to_owned),
                TokenError::Issuer(issuer.escape_debug().to_string()),
            ));
        }
        let Some((app, rules)) = candidates
            .iter()
            .find(|(_, rules)| rules.audiences.iter().any(|a| audiences.contains(&a.as_str())))
        else {
            let app = (candidates.len() == 1).then(|| candidates[0].0.app.clone());
            return Err((app, TokenError::Audience));
        };
        let fail = |error: TokenError| (Some(app.app.clone()), error);
        let algorithm = Algorithm::from_str(alg_name)
            .ok()
            .filter(|a| rules.algorithms.contains(a))
            .ok_or_else(|| {
                fail(TokenError::Algorithm(format!(
                    "tokens signed with `{}` are not accepted; this app takes {}",
                    alg_name.escape_debug(),
                    rules
                        .algorithms
                        .iter()
                        .map(|a| format!("{a:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            })?;
        let cache = self
            .caches
            .get(&app.app)
            .ok_or_else(|| fail(TokenError::JwksUnavailable("no JWKS is configured".into())))?;
        let kid = header.get("kid").and_then(Value::as_str);
        let (key, key_alg) = cache.key(kid, metrics).await.map_err(fail)?;
        if key_alg.is_some_and(|a| a != algorithm) {
            return Err(fail(TokenError::Algorithm(format!(
                "the key `{}` is for {:?}, the token says {algorithm:?}",
                kid.unwrap_or_default().escape_debug(),
                key_alg.unwrap_or(algorithm)
            ))));
        }
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.leeway = rules.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&rules.issuer]);
        validation.set_audience(&rules.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| fail(map_error(&e)))?;
        // `iat` in the future beyond the leeway: a clock or forgery problem either way.
        match data.claims.get("iat") {
            None => {}
            Some(iat) => match iat.as_f64() {
                Some(at) if at > (now_unix + rules.leeway.as_secs()) as f64 => {
                    return Err(fail(TokenError::NotYetValid));
                }
                Some(_) => {}
                None => {
                    return Err(fail(TokenError::ClaimInvalid(
                        "the token's `iat` is not a number".into(),
                    )));
                }
            },
        }
        // An ID token, not an access token that happens to name the client: `typ: at+jwt`
        // (RFC 9068) is refused, and an authorized party (`azp`) must be one of the audiences.
        if header
            .get("typ")
            .and_then(Value::as_str)
            .is_some_and(|typ| typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt"))
        {
            return Err(fail(TokenError::ClaimInvalid(
                "an access token (`typ: at+jwt`) is not an ID token".into(),
            )));
        }
        if let Some(azp) = data.claims.get("azp")
            && !azp.as_str().is_some_and(|azp| rules.audiences.iter().any(|a| a == azp))
        {
            return Err(fail(TokenError::Audience));
        }
        let verified = Verified {
            app: app.app.clone(),
            claims: Arc::new(data.claims),
        };
        // `exp` was required and checked; a verification is remembered through its last second.
        let remembered = verified
            .claims
            .get("exp")
            .and_then(Value::as_u64)
            .map(|exp| Remembered {
                verified: verified.clone(),
                valid_through: exp.saturating_add(rules.leeway.as_secs()),
                kid: kid.map(str::to_owned),
                key: key.clone(),
            });
        Ok((verified, remembered))
    }
}

fn map_error(error: &jsonwebtoken::errors::Error) -> TokenError {
    use jsonwebtoken::errors::ErrorKind as K;
    match error.kind() {
        K::ExpiredSignature => TokenError::Expired,
        K::ImmatureSignature => TokenError::NotYetValid,
        K::InvalidSignature => TokenError::Signature,
        K::InvalidIssuer => TokenError::Issuer(String::new()),
        K::InvalidAudience => TokenError::Audience,
        K::InvalidAlgorithm | K::MissingAlgorithm => {
            TokenError::Algorithm("the token's algorithm does not fit its key".into())
        }
        K::MissingRequiredClaim(claim) => TokenError::ClaimInvalid(format!("the token has no `{claim}` claim")),
        K::InvalidClaimFormat(claim) => TokenError::ClaimInvalid(format!("the token's `{claim}` claim is malformed")),
        K::InvalidToken | K::Base64(_) | K::Json(_) | K::Utf8(_) => TokenError::Malformed("cannot decode it".into()),
        _ => TokenError::Signature,
    }
}

/// The header and payload of a JWT, unverified (to pick the app and key; nothing else is
/// trusted before the signature is checked).
fn peek(token: &str) -> Result<(Claims, Claims), TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed(format!("longer than {MAX_TOKEN_BYTES} bytes")));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed("a JWT has three dot-separated parts".into()));
    };
    let decode = |part: &str, what: &str| -> Result<Map<String, Value>, TokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| TokenError::Malformed(format!("its {what} is not base64url")))?;
        serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed(format!("its {what} is not a JSON object")))
    };
    Ok((decode(header, "header")?, decode(payload, "payload")?))
}

/// A JSON object: a JWT's header or payload.
type Claims = Map<String, Value>;

/// Whether a bearer credential looks like a JWT rather than an app key.
pub fn looks_like_jwt(credential: &str) -> bool {
    credential.starts_with("eyJ") && credential.bytes().filter(|&b| b == b'.').count() == 2
}

/// Whether `url` may serve a JWKS: https, or http to a loopback address (tests, sidecars).
pub fn check_jwks_url(url: &str) -> Result<(), String> {
    use crate::transport::UrlProblem;
    crate::transport::check_own_url(url).map_err(|problem| match problem {
        UrlProblem::NotAUrl(e) => format!("`{}` is not a URL: {e}", url.escape_debug()),
        UrlProblem::Credentials => "the JWKS URL must not carry credentials".into(),
        UrlProblem::NotHttps => "the JWKS must come over https (http only on loopback)".into(),
    })
}

/// Makes the RustCrypto provider jsonwebtoken's default (it panics at first use when feature
/// unification enables two backends and none is chosen).
pub fn install_crypto() {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

/// A `jwks_file`, with the bound of a fetch: a regular file only (a FIFO or a device would
/// stall or never end), read through `take`, so a file that grows after it was measured is
/// still read no further than `MAX_JWKS_BYTES`.
async fn read_jwks_file(path: &std::path::Path) -> Result<String, String> {
    use tokio::io::AsyncReadExt as _;
    let shown = path.display();
    let metadata = tokio::fs::metadata(path)
        .await
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !metadata.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_JWKS_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(format!("{shown} is larger than {MAX_JWKS_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| format!("{shown} is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwts_and_app_keys_are_told_apart() {
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(!looks_like_jwt("pg_0123456789abcdef"));
        assert!(!looks_like_jwt("eyJ.only-two"));
    }

    #[test]
    fn jwks_urls_are_https_or_loopback() {
        for good in [
            "https://idp.example.com/jwks",
            "http://127.0.0.1:8080/jwks",
            "http://[::1]/j",
            "http://localhost/j",
        ] {
            assert_eq!(check_jwks_url(good), Ok(()), "{good}");
        }
        for bad in [
            "http://idp.example.com/jwks",
            "http://localhost.evil.example/jwks",
            "http://localhost@evil.example/jwks",
            "https://user:pw@idp.example.com/",
            "ftp://127.0.0.1/",
            "not a url",
        ] {
            assert!(check_jwks_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn jwks_keep_the_signing_keys_and_skip_the_rest() {
        // RFC 7517 A.1's P-256 key, as a signing key and in forms that must be skipped.
        let ec = |extra: serde_json::Value| {
            let mut key = serde_json::json!({
                "kty": "EC", "crv": "P-256",
                "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
                "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM",
            });
            key.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            key
        };
        let document = serde_json::json!({"keys": [
            ec(serde_json::json!({"kid": "sig", "use": "sig", "alg": "ES256"})),
            ec(serde_json::json!({"kid": "no-alg"})),
            ec(serde_json::json!({"kid": "enc", "use": "enc"})),
            ec(serde_json::json!({"kid": "oaep", "alg": "RSA-OAEP"})),
            {"kid": "k1", "kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"},
            {"kid": "hmac", "kty": "oct", "k": "c2VjcmV0"},
            {"kid": "odd", "kty": "nonsense"},
        ]});
        let set = parse_jwks(&document.to_string()).unwrap();
        let mut kids: Vec<&str> = set.keys.keys().map(String::as_str).collect();
        kids.sort();
        assert_eq!(kids, ["no-alg", "sig"]);
        assert_eq!(set.keys["sig"].1, Some(Algorithm::ES256));
        assert!(parse_jwks("{\"keys\": 1}").is_err());
    }

    #[test]
    fn peeking_refuses_what_is_not_a_jwt() {
        assert!(matches!(peek("a.b"), Err(TokenError::Malformed(_))));
        assert!(matches!(peek("!!.e30.x"), Err(TokenError::Malformed(_))));
        let (header, payload) = peek("eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.").unwrap();
        assert_eq!(header["alg"], "none");
        assert_eq!(payload["iss"], "x");
    }
}
