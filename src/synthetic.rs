//! Synthetic Discord messages: test events from `send`, keys and demo traffic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use chrono::Utc;

use crate::event::{Snowflake, DISCORD_EPOCH_MS};
use crate::filter::IncomingMessage;

/// Ids of the simulated guild, channel and user; real Discord ids of these values are from
/// 2016 and cannot collide with today's messages.
pub const SIM_GUILD: Snowflake = Snowflake(200_000_000_000_000_001);
pub const SIM_CHANNEL: Snowflake = Snowflake(200_000_000_000_000_002);
pub const SIM_AUTHOR: Snowflake = Snowflake(200_000_000_000_000_003);
pub const SIM_AUTHOR_NAME: &str = "notifyscope-sim";

/// A new message id: Discord's layout (milliseconds since the Discord epoch, then 22 bits),
/// strictly increasing within the process, with random worker bits so that two processes
/// sending at the same millisecond do not collide.
pub fn next_snowflake() -> Snowflake {
    static LAST: AtomicU64 = AtomicU64::new(0);
    static NODE: OnceLock<u64> = OnceLock::new();
    let node = *NODE.get_or_init(|| rand::random::<u64>() & 0x3ff);
    let ms = u64::try_from(Utc::now().timestamp_millis())
        .unwrap_or(0)
        .saturating_sub(DISCORD_EPOCH_MS);
    let candidate = (ms << 22) | (node << 12);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = candidate.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Snowflake(next),
            Err(seen) => last = seen,
        }
    }
}

/// An ordinary guild message by the simulated user.
pub fn message(content: impl Into<String>) -> IncomingMessage {
    IncomingMessage {
        message_id: next_snowflake(),
        channel_id: SIM_CHANNEL,
        guild_id: Some(SIM_GUILD),
        author_id: SIM_AUTHOR,
        author_name: SIM_AUTHOR_NAME.into(),
        author_is_bot: false,
        webhook_id: None,
        is_system: false,
        content: content.into(),
        created_at: Utc::now(),
        mentions_bot: false,
        synthetic: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snowflakes_increase_and_carry_the_time() {
        let a = next_snowflake();
        let b = next_snowflake();
        assert!(b > a);
        let t = a.timestamp().expect("time");
        assert!((Utc::now() - t).num_seconds().abs() < 5);
    }
}
