//! Upload tokens: any text opens to an error or to claims a key sealed, never a panic; any claims
//! that parse seal and open back to themselves; a sealed token with one byte changed never opens.
//!
//! Input: `JSON` claims (sealed, opened, then each byte of the token changed once), or any other
//! text, opened as a token as a client might send it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postgate::secret::Secret;
use postgate::upload::{Claims, TokenKeys};
use time::OffsetDateTime;

fuzz_target!(|data: &[u8]| {
    let keys = TokenKeys::new(
        "k1",
        vec![
            ("k1".into(), Secret::new("fuzz-token-key-1-0123456789abcdef")),
            ("k0".into(), Secret::new("fuzz-token-key-0-0123456789abcdef")),
        ],
    )
    .expect("valid keys");
    let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("a time");
    let text = String::from_utf8_lossy(data);
    let _ = keys.open(&text, now);
    let Ok(claims) = serde_json::from_slice::<Claims>(data) else {
        return;
    };
    let token = keys.seal(&claims);
    match keys.open(&token, now) {
        Ok(opened) => assert_eq!(opened, claims, "a sealed token opens to other claims"),
        Err(error) => assert!(
            matches!(error, postgate::upload::TokenError::Expired(_)),
            "a fresh token is refused: {error}"
        ),
    }
    // Changing the payload or the MAC never opens (the prefix and key id may fail otherwise).
    let start = token.find('.').unwrap_or(0) + 1;
    let start = start + token[start..].find('.').unwrap_or(0) + 1;
    for i in (start..token.len()).step_by(7) {
        let mut bytes = token.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8_lossy(&bytes).into_owned();
        if changed != token {
            assert!(keys.open(&changed, now).is_err(), "a changed token opened");
        }
    }
});
