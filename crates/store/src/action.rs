//! What the actions on stored rows share (putting outbox rows back in the queue, deleting
//! them, re-sending and deleting dead letters): which rows they act on, whether the change is
//! kept or only worked out, and why a row named by id was left alone.

use serde::Serialize;
use tokio_postgres::{Client, Transaction};

use crate::RowState;
use crate::{ErrorClass, StoreError};

/// How long an action waits for a row lock (ingestion holds its batch's rows for a moment)
/// or a table lock before it gives up with a `timeout` error, rather than hang behind a
/// session that holds the table.
const LOCK_TIMEOUT: &str = "5s";

/// A transaction for an action.
pub(crate) async fn begin(client: &mut Client) -> Result<Transaction<'_>, StoreError> {
    let tx = client.transaction().await?;
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .await?;
    Ok(tx)
}

/// Keeps or undoes what `tx` did.
pub(crate) async fn finish(tx: Transaction<'_>, apply: Apply) -> Result<(), StoreError> {
    match apply {
        Apply::Commit => tx.commit().await?,
        Apply::Preview => tx.rollback().await?,
    }
    Ok(())
}

/// The rows an action is for: those named by id, or every row of the channel it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    /// Sorted, without repeats.
    Ids(Vec<i64>),
}

impl Selection {
    pub fn ids(ids: impl IntoIterator<Item = i64>) -> Self {
        let mut ids: Vec<i64> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        Selection::Ids(ids)
    }

    /// The ids named, or `None` for every row (as SQL takes it: `$n::int8[] IS NULL`).
    pub fn named(&self) -> Option<&[i64]> {
        match self {
            Selection::All => None,
            Selection::Ids(ids) => Some(ids),
        }
    }

    /// The named ids not in `handled`.
    pub(crate) fn missing(&self, handled: &[i64]) -> Vec<i64> {
        self.named()
            .unwrap_or_default()
            .iter()
            .copied()
            .filter(|id| !handled.contains(id))
            .collect()
    }
}

/// Whether an action's change is kept, or only worked out and rolled back: the second shows
/// exactly what the first would do, so that a person can be asked before it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    Preview,
    Commit,
}

/// A row named by id that the action left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotHandled {
    pub id: i64,
    #[serde(flatten)]
    pub why: Why,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Why {
    /// No row has this id.
    NotFound,
    /// The row belongs to another NOTIFY channel's pipeline.
    OtherChannel { channel: String },
    /// The outbox row is ingested already.
    Ingested,
    /// The outbox row is in a state this action does not take (e.g. waiting, for a retry).
    State { state: RowState },
    /// The database refused the action on this row.
    Refused { class: ErrorClass, error: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_ids_are_sorted_once_each() {
        let selection = Selection::ids([5, 3, 5, 1]);
        assert_eq!(selection.named(), Some(&[1, 3, 5][..]));
        assert_eq!(selection.missing(&[3]), vec![1, 5]);
        assert_eq!(Selection::All.named(), None);
        assert!(Selection::All.missing(&[]).is_empty());
    }

    #[test]
    fn a_row_left_alone_says_why_in_json() {
        let waiting = NotHandled {
            id: 4,
            why: Why::State {
                state: RowState::Waiting,
            },
        };
        assert_eq!(
            serde_json::to_value(&waiting).expect("serializes"),
            serde_json::json!({"id": 4, "reason": "state", "state": "waiting"})
        );
        let other = NotHandled {
            id: 5,
            why: Why::OtherChannel {
                channel: "Events".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&other).expect("serializes"),
            serde_json::json!({"id": 5, "reason": "other_channel", "channel": "Events"})
        );
    }
}
