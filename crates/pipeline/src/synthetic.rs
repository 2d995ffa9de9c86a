//! Synthetic Discord messages: test events from `send`, keys and demo traffic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use chrono::Utc;

use crate::filter::IncomingMessage;
use notifyscope_model::contract::{MessageRecord, Snowflake, DISCORD_EPOCH_MS};
use notifyscope_model::trace::Source;

/// Ids of the simulated guild, channel and user; real Discord ids of these values are from
/// 2016 and cannot collide with today's messages.
pub const SIM_GUILD: Snowflake = Snowflake(200_000_000_000_000_001);
pub const SIM_CHANNEL: Snowflake = Snowflake(200_000_000_000_000_002);
pub const SIM_AUTHOR: Snowflake = Snowflake(200_000_000_000_000_003);
pub const SIM_AUTHOR_NAME: &str = "notifyscope-sim";
/// The simulated bot's own user id, used when no real bot has said READY.
pub const SIM_BOT: Snowflake = Snowflake(200_000_000_000_000_004);
pub const SIM_OTHER_BOT: Snowflake = Snowflake(200_000_000_000_000_005);
pub const SIM_WEBHOOK: Snowflake = Snowflake(200_000_000_000_000_006);

/// Bytes of a `long` message: twice NOTIFY's payload limit, so it travels by reference.
pub const LONG_MESSAGE_BYTES: usize = 16 * 1024;

pub use notifyscope_model::sim::{SimKind, BURST_SIZE};

/// One message of `kind` with the given id; `bot_user_id` is the bot's own id (for `own`).
pub fn incoming(
    kind: SimKind,
    message_id: Snowflake,
    bot_user_id: Snowflake,
    seq: usize,
) -> IncomingMessage {
    let mut msg = message(format!("test {} message {}", kind.as_str(), seq + 1));
    msg.message.message_id = message_id;
    match kind {
        SimKind::Message | SimKind::Burst => {}
        SimKind::Own => {
            msg.message.author_id = bot_user_id;
            msg.message.author_name = "notifyscope-bot".into();
            msg.message.author_is_bot = true;
        }
        SimKind::Bot => {
            msg.message.author_id = SIM_OTHER_BOT;
            msg.message.author_name = "other-bot".into();
            msg.message.author_is_bot = true;
        }
        SimKind::Webhook => {
            msg.message.author_id = SIM_WEBHOOK;
            msg.message.author_name = "webhook".into();
            msg.message.author_is_bot = true;
            msg.webhook_id = Some(SIM_WEBHOOK);
        }
        SimKind::Empty => msg.message.content.clear(),
        SimKind::Long => msg.message.content = long_text(LONG_MESSAGE_BYTES),
        SimKind::System => {
            msg.is_system = true;
            msg.message.content.clear();
        }
        SimKind::Dm => msg.message.guild_id = None,
    }
    msg
}

/// Text of exactly `bytes` bytes mixing one-, two-, three- and four-byte characters.
pub fn long_text(bytes: usize) -> String {
    const PIECE: &str = "Grüße ✓ 🦀 ";
    let mut s = String::with_capacity(bytes);
    while s.len() + PIECE.len() <= bytes {
        s.push_str(PIECE);
    }
    while s.len() < bytes {
        s.push('.');
    }
    s
}

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
        message: MessageRecord {
            message_id: next_snowflake(),
            channel_id: SIM_CHANNEL,
            guild_id: Some(SIM_GUILD),
            author_id: SIM_AUTHOR,
            author_name: SIM_AUTHOR_NAME.into(),
            author_is_bot: false,
            content: content.into(),
            created_at: Utc::now(),
            synthetic: true,
        },
        webhook_id: None,
        is_system: false,
        mentions_bot: false,
        has_media: false,
        source: Source::Simulated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_exact_and_multibyte() {
        let t = long_text(LONG_MESSAGE_BYTES);
        assert_eq!(t.len(), LONG_MESSAGE_BYTES);
        assert!(t.chars().count() < LONG_MESSAGE_BYTES);
    }

    #[test]
    fn snowflakes_increase_and_carry_the_time() {
        let a = next_snowflake();
        let b = next_snowflake();
        assert!(b > a);
        let t = a.timestamp().expect("time");
        assert!((Utc::now() - t).num_seconds().abs() < 5);
    }
}
