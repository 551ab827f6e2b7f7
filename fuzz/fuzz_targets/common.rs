//! What both targets share: a fixed request context.

use postgate::profile::Context;
use time::OffsetDateTime;
use uuid::Uuid;

/// Fixed, so that a crash replays exactly.
pub fn context() -> Context<'static> {
    Context {
        app: "web",
        now: now(),
        uuid: Uuid::from_u128(0x019a_9f3c_0000_7000_8000_0000_0000_0001),
    }
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_763_683_200).expect("a valid timestamp")
}
