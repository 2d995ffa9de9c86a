//! The kinds of test message the simulated source makes (keys, `send`, demo traffic).

use serde::{Deserialize, Serialize};

/// Messages in a `burst`.
pub const BURST_SIZE: usize = 100;

/// The kinds of test message the simulated source makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SimKind {
    /// An ordinary guild message.
    Message,
    /// Written by the bot itself (skipped: own message).
    Own,
    /// Written by another bot (skipped: author is a bot).
    Bot,
    /// Sent through a webhook (skipped: webhook).
    Webhook,
    /// A guild message with empty content, as without the MESSAGE_CONTENT intent.
    Empty,
    /// 16 KB of multi-byte text (published by reference).
    Long,
    /// 100 ordinary messages at once.
    Burst,
    /// A Discord system message (skipped: system message).
    System,
    /// A direct message to the bot.
    Dm,
}

impl SimKind {
    /// How many messages one request of this kind makes.
    pub fn count(self) -> usize {
        match self {
            SimKind::Burst => BURST_SIZE,
            _ => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SimKind::Message => "message",
            SimKind::Own => "own",
            SimKind::Bot => "bot",
            SimKind::Webhook => "webhook",
            SimKind::Empty => "empty",
            SimKind::Long => "long",
            SimKind::Burst => "burst",
            SimKind::System => "system",
            SimKind::Dm => "dm",
        }
    }
}

/// The author of `doctor`'s round-trip probe. Ingestion takes its outbox row through the
/// same insert statement as any message (so the probe meets the same grants and locks) but
/// never puts it in the user's table, and deletes the row instead of marking it: the probe
/// leaves nothing behind. In the simulated range, like the other test authors.
pub const DOCTOR_PROBE_AUTHOR: crate::contract::Snowflake =
    crate::contract::Snowflake(200_000_000_000_000_007);
