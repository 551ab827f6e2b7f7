//! Upload tokens: what one signature allowed, sealed with HMAC-SHA256 so `complete` and the
//! multipart calls can trust it without state (any replica, after any restart).
//!
//! Format: `pgu1.<key id>.<base64url(JSON claims)>.<base64url(HMAC-SHA256)>`, the MAC over
//! everything before the last `.`. The key id names the secret that sealed it, so an operator
//! rotates by adding a new key as `current` and keeping the old one until its tokens expire.
//! Pure: `now` is a parameter.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::PartPlan;
use crate::profile::Bounds;
use crate::secret::Secret;

const PREFIX: &str = "pgu1";
/// The shortest token key accepted: 32 bytes.
pub const MIN_KEY_BYTES: usize = 32;
/// A token longer than this is refused before it is decoded.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// How the upload is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Carry {
    Post,
    Put,
    Multipart,
}

impl Carry {
    /// `post`, `put` or `multipart`, as tokens, events and the audit log name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Carry::Post => "post",
            Carry::Put => "put",
            Carry::Multipart => "multipart",
        }
    }
}

/// What a token binds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub profile: String,
    pub app: String,
    /// The end user (`sub` of the verified ID token) the upload was granted to; the token is
    /// refused for another end user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    pub store: String,
    pub bucket: String,
    pub carry: Carry,
    #[serde(flatten)]
    pub bounds: Bounds,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<PartPlan>,
    /// Unix seconds when the gateway signed the upload (for the logs; `complete` knows its
    /// object by the marker in `bounds`, not by time).
    #[serde(default)]
    pub issued_at: i64,
    /// Unix seconds after which the token is refused.
    pub expires_at: i64,
}

impl Claims {
    /// The claims as JSON, byte for byte what `serde_json` writes for them
    /// (`tests::claims_json_is_serdes`), without serde's `flatten` machinery: every presign seals
    /// one, and this takes about a third of serde's time. Values go through `serde_json` one by
    /// one, so strings are escaped exactly as it escapes them.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        let mut first = true;
        let mut member = |out: &mut Vec<u8>, name: &str, value: &dyn erased::Json| {
            out.push(if first { b'{' } else { b',' });
            first = false;
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            value.write(out);
        };
        let bounds = &self.bounds;
        member(&mut out, "profile", &self.profile);
        member(&mut out, "app", &self.app);
        if let Some(sub) = &self.sub {
            member(&mut out, "sub", sub);
        }
        member(&mut out, "store", &self.store);
        member(&mut out, "bucket", &self.bucket);
        member(&mut out, "carry", &self.carry);
        member(&mut out, "key", &bounds.key);
        if let Some(promote_to) = &bounds.promote_to {
            member(&mut out, "promote_to", promote_to);
        }
        member(&mut out, "min_size", &bounds.min_size);
        member(&mut out, "max_size", &bounds.max_size);
        if let Some(content_type) = &bounds.content_type {
            member(&mut out, "content_type", content_type);
        }
        if !bounds.metadata.is_empty() {
            member(&mut out, "metadata", &bounds.metadata);
        }
        if let Some(checksum) = &bounds.checksum {
            member(&mut out, "checksum", checksum);
        }
        if bounds.no_overwrite {
            member(&mut out, "no_overwrite", &true);
        }
        member(&mut out, "marker", &bounds.marker);
        if let Some(upload_id) = &self.upload_id {
            member(&mut out, "upload_id", upload_id);
        }
        if let Some(parts) = &self.parts {
            member(&mut out, "parts", parts);
        }
        member(&mut out, "issued_at", &self.issued_at);
        member(&mut out, "expires_at", &self.expires_at);
        out.push(b'}');
        out
    }
}

/// One JSON value written by `serde_json`, behind a `dyn` so `Claims::to_json` takes any.
mod erased {
    pub trait Json {
        fn write(&self, out: &mut Vec<u8>);
    }

    impl<T: serde::Serialize> Json for T {
        fn write(&self, out: &mut Vec<u8>) {
            serde_json::to_writer(&mut *out, self).expect("a claim serializes");
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the upload token is not one postgate issued (malformed)")]
    Malformed,
    #[error("the upload token was sealed with key `{0}`, which is not configured (any more)")]
    UnknownKey(String),
    #[error("the upload token's signature does not match: it was changed or forged")]
    BadSignature,
    #[error("the upload token expired at {0}")]
    Expired(String),
}

/// The keys that seal and open tokens: `current` seals, every key opens.
pub struct TokenKeys {
    current: String,
    keys: Vec<(String, Secret)>,
    /// Each key's HMAC state after its key block, in `keys` order: a MAC then clones it
    /// instead of hashing the key's two pads again.
    keyed: Vec<Hmac<Sha256>>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        write!(f, "TokenKeys {{ current: {}, keys: {ids:?} }}", self.current)
    }
}

impl TokenKeys {
    /// `keys`: key id → secret (at least 32 bytes); `current` must be one of them. Key ids are
    /// `[A-Za-z0-9_-]{1,32}`.
    pub fn new(current: &str, keys: Vec<(String, Secret)>) -> Result<TokenKeys, String> {
        for (id, secret) in &keys {
            crate::vocabulary::TOKEN_KEY_ID.check(id)?;
            if secret.expose().len() < MIN_KEY_BYTES {
                return Err(format!(
                    "token key `{id}` is {} bytes; use at least {MIN_KEY_BYTES} random bytes (`postgate hash-key --generate` makes one)",
                    secret.expose().len()
                ));
            }
        }
        if !keys.iter().any(|(id, _)| id == current) {
            return Err(format!(
                "`current` names token key `{}`, which is not listed",
                current.escape_debug()
            ));
        }
        let keyed = keys
            .iter()
            .map(|(_, secret)| {
                Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length")
            })
            .collect();
        Ok(TokenKeys {
            current: current.to_owned(),
            keys,
            keyed,
        })
    }

    /// Seals `claims` with the current key.
    pub fn seal(&self, claims: &Claims) -> String {
        let json = claims.to_json();
        let mut token = String::with_capacity(PREFIX.len() + self.current.len() + json.len() * 4 / 3 + 50);
        token.push_str(PREFIX);
        token.push('.');
        token.push_str(&self.current);
        token.push('.');
        base64_simd::URL_SAFE_NO_PAD.encode_append(&json, &mut token);
        let mac = self
            .mac(&self.current, token.as_bytes())
            .expect("the current key is listed");
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(mac, &mut token);
        token
    }

    /// Opens a token sealed by any configured key, refusing it after its expiry.
    pub fn open(&self, token: &str, now: OffsetDateTime) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let (sealed, mac) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let mut pieces = sealed.splitn(3, '.');
        let (Some(PREFIX), Some(id), Some(payload)) = (pieces.next(), pieces.next(), pieces.next()) else {
            return Err(TokenError::Malformed);
        };
        let given = URL_SAFE_NO_PAD.decode(mac).map_err(|_| TokenError::Malformed)?;
        let expected = self
            .mac(id, sealed.as_bytes())
            .ok_or_else(|| TokenError::UnknownKey(id.chars().take(32).collect()))?;
        if !bool::from(expected.as_slice().ct_eq(&given)) {
            return Err(TokenError::BadSignature);
        }
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if claims.expires_at < now.unix_timestamp() {
            let at = OffsetDateTime::from_unix_timestamp(claims.expires_at)
                .map(crate::sign::format_rfc3339)
                .unwrap_or_default();
            return Err(TokenError::Expired(at));
        }
        Ok(claims)
    }

    /// A MAC under the current key over `purpose` and `parts`, for capability URLs that point
    /// back at the gateway (the Uppy routes); checked by `verify_tag`.
    pub fn tag(&self, parts: &[&str]) -> String {
        let mac = self
            .mac(&self.current, &joined(parts))
            .expect("the current key is listed");
        let mut out = self.current.clone();
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(mac, &mut out);
        out
    }

    /// Whether `tag` is `tag(parts)` under any configured key.
    pub fn verify_tag(&self, parts: &[&str], tag: &str) -> bool {
        let Some((id, mac)) = tag.split_once('.') else {
            return false;
        };
        let (Some(expected), Ok(given)) = (self.mac(id, &joined(parts)), URL_SAFE_NO_PAD.decode(mac)) else {
            return false;
        };
        expected.as_slice().ct_eq(&given).into()
    }

    fn mac(&self, id: &str, data: &[u8]) -> Option<[u8; 32]> {
        let index = self.keys.iter().position(|(key_id, _)| key_id == id)?;
        let mut mac = self.keyed[index].clone();
        mac.update(data);
        Some(mac.finalize().into_bytes().into())
    }
}

/// Parts joined with NUL (which none of them holds), so `["a", "bc"]` and `["ab", "c"]` differ.
fn joined(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for part in parts {
        out.extend_from_slice(part.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    /// `Claims::to_json` writes what serde writes, for every optional member present and
    /// absent and for strings that need escapes.
    #[test]
    fn claims_json_is_serdes() {
        let base = claims();
        let mut cases = vec![base.clone()];
        let mut full = base.clone();
        full.sub = Some("user-\"quoted\"\u{8}\u{c}\n\u{1f}é".into());
        full.bounds.promote_to = Some("final/key".into());
        full.bounds.content_type = Some(crate::profile::TypeBound::Prefix("image/".into()));
        full.bounds.metadata = vec![("purpose".into(), "avatar".into()), ("caption".into(), "a\\b".into())];
        full.bounds.checksum = Some((crate::profile::ChecksumAlgorithm::Sha256, "abc=".into()));
        full.bounds.no_overwrite = true;
        full.upload_id = Some("2~upload".into());
        full.parts = Some(PartPlan {
            part_size: 5 << 20,
            part_count: 3,
            last_part_size: 7,
        });
        full.carry = Carry::Multipart;
        cases.push(full);
        for claims in cases {
            assert_eq!(
                String::from_utf8(claims.to_json()).unwrap(),
                serde_json::to_string(&claims).unwrap()
            );
        }
    }
    use crate::profile::TypeBound;

    fn keys(current: &str) -> TokenKeys {
        TokenKeys::new(
            current,
            vec![
                ("k1".into(), Secret::new("k1-secret-0123456789abcdef0123456789")),
                ("k2".into(), Secret::new("k2-secret-0123456789abcdef0123456789")),
            ],
        )
        .unwrap()
    }

    fn claims() -> Claims {
        Claims {
            profile: "photos".into(),
            sub: None,
            app: "web".into(),
            store: "default".into(),
            bucket: "b".into(),
            carry: Carry::Multipart,
            bounds: Bounds {
                key: "u/alice/1.png".into(),
                promote_to: None,
                min_size: 10,
                max_size: 10,
                content_type: Some(TypeBound::Exact("image/png".into())),
                metadata: vec![("purpose".into(), "avatar".into())],
                checksum: None,
                no_overwrite: true,
                marker: "01930000-0000-7000-8000-000000000000".into(),
            },
            upload_id: Some("up-1".into()),
            parts: PartPlan::new(10, 5 * 1024 * 1024),
            issued_at: datetime!(2026-12-01 10:00 UTC).unix_timestamp(),
            expires_at: datetime!(2026-12-01 12:00 UTC).unix_timestamp(),
        }
    }

    #[test]
    fn a_sealed_token_opens_with_any_listed_key_until_it_expires() {
        let before = datetime!(2026-12-01 11:00 UTC);
        let token = keys("k1").seal(&claims());
        assert!(token.starts_with("pgu1.k1."));
        assert_eq!(keys("k1").open(&token, before).unwrap(), claims());
        // Rotated: k2 seals now, k1's tokens still open.
        assert_eq!(keys("k2").open(&token, before).unwrap(), claims());
        assert!(matches!(
            keys("k1").open(&token, datetime!(2026-12-01 12:00:01 UTC)),
            Err(TokenError::Expired(at)) if at == "2026-12-01T12:00:00Z"
        ));
        let only_k2 = TokenKeys::new(
            "k2",
            vec![("k2".into(), Secret::new("k2-secret-0123456789abcdef0123456789"))],
        )
        .unwrap();
        assert_eq!(only_k2.open(&token, before), Err(TokenError::UnknownKey("k1".into())));
    }

    #[test]
    fn a_changed_token_is_refused() {
        let now = datetime!(2026-12-01 11:00 UTC);
        let keys = keys("k1");
        let token = keys.seal(&claims());
        let (sealed, mac) = token.rsplit_once('.').unwrap();
        let (head, payload) = sealed.rsplit_once('.').unwrap();
        // Another app, re-encoded, old MAC.
        let mut other = claims();
        other.app = "evil".into();
        let forged = format!(
            "{head}.{}.{mac}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap())
        );
        assert_eq!(keys.open(&forged, now), Err(TokenError::BadSignature));
        // One flipped character anywhere.
        for i in [5, head.len() + 3, head.len() + payload.len() / 2, token.len() - 2] {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let flipped = String::from_utf8(bytes).unwrap();
            assert!(keys.open(&flipped, now).is_err(), "{i}");
        }
        for junk in [
            "",
            "pgu1",
            "pgu1.k1..",
            "x.k1.e30.AAAA",
            &"a".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert!(keys.open(junk, now).is_err(), "{junk}");
        }
    }

    #[test]
    fn tags_bind_every_part() {
        let keys = keys("k1");
        let tag = keys.tag(&["complete", "tok", "123"]);
        assert!(keys.verify_tag(&["complete", "tok", "123"], &tag));
        assert!(!keys.verify_tag(&["abort", "tok", "123"], &tag));
        assert!(!keys.verify_tag(&["complete", "tok", "124"], &tag));
        assert!(!keys.verify_tag(&["completetok", "", "123"], &tag));
        assert!(!keys.verify_tag(&["complete", "tok", "123"], "k1.AAAA"));
    }

    #[test]
    fn short_keys_and_unknown_current_are_refused() {
        assert!(TokenKeys::new("a", vec![("a".into(), Secret::new("short"))]).is_err());
        assert!(TokenKeys::new("b", vec![("a".into(), Secret::new("a".repeat(32)))]).is_err());
        assert!(TokenKeys::new("a b", vec![("a b".into(), Secret::new("a".repeat(32)))]).is_err());
    }
}
