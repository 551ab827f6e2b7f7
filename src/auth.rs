//! App authentication: API keys are kept only as SHA-256 hashes and compared in constant time.
//!
//! App keys are long random tokens (`postgate hash-key --generate`), not passwords, so one
//! SHA-256 is the right hash: a slow password hash would add nothing but latency. Pure: the
//! config edge reads keys from files and the environment and hands them here.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// The prefix of a stored key hash.
pub const HASH_PREFIX: &str = "sha256:";
/// Raw keys shorter than this are refused.
pub const MIN_KEY_LEN: usize = 16;

/// The apps and the hashes of their valid keys (two or more during a rotation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppKeys {
    apps: Vec<(String, Vec<[u8; 32]>)>,
}

impl AppKeys {
    pub fn new() -> AppKeys {
        AppKeys::default()
    }

    /// Adds a key for `app`: either a stored hash (`sha256:<64 hex>`) or a raw key, hashed here.
    /// A key listed under another app is refused: it would authenticate as whichever came last.
    pub fn add(&mut self, app: &str, key_or_hash: &str) -> Result<(), String> {
        let hash = parse_key_or_hash(key_or_hash)?;
        if let Some((other, _)) = self
            .apps
            .iter()
            .find(|(name, hashes)| name != app && hashes.contains(&hash))
        {
            return Err(format!(
                "the same key is listed under app `{other}`; a key belongs to one app"
            ));
        }
        match self.apps.iter_mut().find(|(name, _)| name == app) {
            Some((_, hashes)) => hashes.push(hash),
            None => self.apps.push((app.to_owned(), vec![hash])),
        }
        Ok(())
    }

    /// Makes sure `app` is known even with no key (it then cannot authenticate).
    pub fn declare(&mut self, app: &str) {
        if !self.apps.iter().any(|(name, _)| name == app) {
            self.apps.push((app.to_owned(), Vec::new()));
        }
    }

    /// The app a presented key belongs to. Every stored hash is compared, in constant time, so
    /// the answer's timing says nothing about which app or how much of a hash matched.
    pub fn authenticate(&self, presented: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (name, hashes) in &self.apps {
            for hash in hashes {
                if bool::from(hash.ct_eq(&digest)) {
                    found = Some(name.as_str());
                }
            }
        }
        found
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.apps.iter().map(|(name, _)| name.as_str())
    }

    pub fn key_count(&self, app: &str) -> usize {
        self.apps.iter().find(|(n, _)| n == app).map_or(0, |(_, h)| h.len())
    }

    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// A stable digest of the key set, for change detection.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for (name, hashes) in &self.apps {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            for hash in hashes {
                hasher.update(hash);
            }
            hasher.update([1]);
        }
        hasher.finalize().into()
    }
}

/// `sha256:<hex>` of a key: what the config stores.
pub fn hash_key(key: &Secret) -> String {
    format!("{HASH_PREFIX}{}", hex::encode(Sha256::digest(key.expose().as_bytes())))
}

/// A new random app key: `pg_` and 64 hex characters (244 random bits from two UUID v4s).
pub fn generate_key() -> Secret {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    Secret::new(format!("pg_{}{}", a.simple(), b.simple()))
}

fn parse_key_or_hash(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    if let Some(hex_text) = text.strip_prefix(HASH_PREFIX) {
        let bytes = hex::decode(hex_text).map_err(|_| "a `sha256:` hash must be 64 hex characters".to_owned())?;
        return bytes
            .try_into()
            .map_err(|_| "a `sha256:` hash must be 64 hex characters".to_owned());
    }
    if text.len() < MIN_KEY_LEN {
        return Err(format!(
            "a key must be at least {MIN_KEY_LEN} characters; make one with `postgate hash-key --generate`"
        ));
    }
    Ok(Sha256::digest(text.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_raw_keys_authenticate_the_same_app() {
        let key = Secret::new("pg_0123456789abcdef0123456789abcdef");
        let mut keys = AppKeys::new();
        keys.add("web", &hash_key(&key)).unwrap();
        keys.add("mobile", "another-long-enough-key").unwrap();
        assert_eq!(keys.authenticate(key.expose()), Some("web"));
        assert_eq!(keys.authenticate("another-long-enough-key"), Some("mobile"));
        assert_eq!(keys.authenticate("pg_0123456789abcdef0123456789abcdeX"), None);
        assert_eq!(keys.authenticate(""), None);
    }

    #[test]
    fn rotation_keeps_both_keys_valid() {
        let mut keys = AppKeys::new();
        keys.add("web", "old-key-0123456789").unwrap();
        keys.add("web", "new-key-0123456789").unwrap();
        assert_eq!(keys.authenticate("old-key-0123456789"), Some("web"));
        assert_eq!(keys.authenticate("new-key-0123456789"), Some("web"));
        assert_eq!(keys.key_count("web"), 2);
    }

    #[test]
    fn bad_keys_are_refused() {
        let mut keys = AppKeys::new();
        assert!(keys.add("web", "short").is_err());
        assert!(keys.add("web", "sha256:abcd").is_err());
        assert!(keys.add("web", "sha256:zz").is_err());
    }

    #[test]
    fn generated_keys_are_long_and_distinct() {
        let a = generate_key();
        let b = generate_key();
        assert_eq!(a.expose().len(), 67);
        assert_ne!(a, b);
    }
}
