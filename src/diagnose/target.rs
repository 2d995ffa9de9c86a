//! What an action on a check would act on: named by the rule that found it, carried by the
//! check, and chosen from by the screen.

use serde::{Deserialize, Serialize};

/// What an action on a check acts on (the screen's `a` key, after a confirmation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CheckTarget {
    /// A session that holds the pipeline up: the holder of a lock the pipeline waits for, or
    /// a session idle in a transaction that keeps the NOTIFY queue from draining.
    Backend {
        pid: i32,
        application_name: String,
        user: String,
    },
    /// Outbox rows of the channel waiting, retrying or given up.
    StuckRows,
    /// Rejected notifications and outbox rows given up.
    DeadLetters,
}
