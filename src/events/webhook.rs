//! The Standard Webhooks wire format (<https://www.standardwebhooks.com>), pure: secrets
//! (`whsec_<base64>`), the stable message ID of an event, and the `webhook-signature` header —
//! `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one per secret, space-separated, so a
//! receiver holding either secret during a rotation accepts.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// The fewest key bytes a secret may hold (Standard Webhooks: 24 to 64).
pub const MIN_SECRET_BYTES: usize = 24;
/// The most key bytes a secret may hold.
pub const MAX_SECRET_BYTES: usize = 64;

/// One signing secret: the key bytes of a `whsec_…` value.
#[derive(Clone)]
pub struct WebhookSecret {
    key: Secret,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(redacted)")
    }
}

impl WebhookSecret {
    /// Parses `whsec_<base64>`. The error never quotes the value.
    pub fn parse(text: &str) -> Result<WebhookSecret, String> {
        let Some(encoded) = text.trim().strip_prefix(SECRET_PREFIX) else {
            return Err(format!(
                "a secret must start with `{SECRET_PREFIX}` (the Standard Webhooks format)"
            ));
        };
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| format!("a secret's part after `{SECRET_PREFIX}` must be base64"))?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(format!(
                "a secret must hold {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes once decoded; this one holds {}",
                key.len()
            ));
        }
        // The key bytes are arbitrary; `Secret` holds text, so they are kept base64-encoded.
        Ok(WebhookSecret {
            key: Secret::new(encoded.to_owned()),
        })
    }

    /// Several secrets separated by spaces, commas or newlines (a variable or a file's lines).
    pub fn parse_list(text: &str) -> Result<Vec<WebhookSecret>, String> {
        let secrets = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(WebhookSecret::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if secrets.is_empty() {
            return Err("no secret given".into());
        }
        Ok(secrets)
    }

    /// `v1,<base64 signature>` of one message.
    fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let key = STANDARD.decode(self.key.expose()).unwrap_or_default();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header of one attempt: a signature per secret, space-separated.
pub fn signature_header(secrets: &[WebhookSecret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| secret.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The message ID of one event of one upload: `msg_` and 32 hex characters derived from the
/// upload's marker and the event type, so every retry — also of a retried `complete` — sends
/// the same ID and a receiver can drop repeats.
pub fn event_id(marker: &str, event_type: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"postgate-event\0")
        .chain_update(marker.as_bytes())
        .chain_update(b"\0")
        .chain_update(event_type.as_bytes())
        .finalize();
    format!("msg_{}", hex::encode(&digest[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification and its reference libraries' tests.
    #[test]
    fn the_specifications_example_signs_to_its_known_answer() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let header = signature_header(
            &[secret],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn every_secret_signs_and_bad_secrets_are_named_not_quoted() {
        let secrets = WebhookSecret::parse_list(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, whsec_dGhpcy1pcy1hLXNlY29uZC1zZWNyZXQtMzJi\n",
        )
        .unwrap();
        let header = signature_header(&secrets, "msg_1", 1, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(header.split(' ').all(|s| s.starts_with("v1,")));
        for bad in ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!", "whsec_c2hvcnQ=", ""] {
            let error = WebhookSecret::parse_list(bad).unwrap_err();
            assert!(!bad.is_empty() && !error.contains(bad) || bad.is_empty(), "{error}");
        }
        assert!(!format!("{:?}", secrets[0]).contains("MfKQ"));
    }

    #[test]
    fn event_ids_are_stable_per_upload_and_type() {
        let a = event_id("0192f7e0-marker", "upload.completed");
        assert_eq!(a, event_id("0192f7e0-marker", "upload.completed"));
        assert_ne!(a, event_id("0192f7e0-marker", "upload.refused"));
        assert_ne!(a, event_id("0192f7e0-other", "upload.completed"));
        assert!(a.starts_with("msg_") && a.len() == 36);
    }
}
