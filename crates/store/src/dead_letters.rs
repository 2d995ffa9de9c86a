//! The notifications the listener rejected (`dead_letters`): read, re-sent on their channel,
//! deleted. Outbox rows given up are dead letters too; they are acted on through
//! [`crate::outbox`].

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{Client, Transaction};

use crate::action::{begin, finish, Apply, NotHandled, Selection, Why};
use crate::notify::notify;
use crate::{error_chain, ErrorClass, Identifier, StoreError};

/// A notification that broke the contract, as the listener kept it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    /// The backend that sent the NOTIFY.
    pub sender_pid: i32,
    /// Why the listener rejected it.
    pub error: String,
    pub payload: String,
}

/// Dead letters of `channel`, oldest first, at most `limit`.
pub async fn list(
    client: &Client,
    channel: &Identifier,
    limit: i64,
) -> Result<Vec<DeadLetter>, StoreError> {
    let rows = client
        .query(
            "SELECT id, received_at, sender_pid, error, payload FROM dead_letters \
             WHERE channel = $1 ORDER BY id LIMIT $2",
            &[&channel.as_str(), &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| DeadLetter {
            id: r.get(0),
            received_at: r.get(1),
            sender_pid: r.get(2),
            error: r.get(3),
            payload: r.get(4),
        })
        .collect())
}

/// How many dead letters `channel` has.
pub async fn count(client: &Client, channel: &Identifier) -> Result<i64, StoreError> {
    Ok(client
        .query_one(
            "SELECT count(*) FROM dead_letters WHERE channel = $1",
            &[&channel.as_str()],
        )
        .await?
        .get(0))
}

/// A dead letter re-sent (or deleted), as it was.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Handled {
    pub id: i64,
    pub sender_pid: i32,
    pub error: String,
    pub payload: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// Oldest first.
    pub handled: Vec<Handled>,
    pub not_handled: Vec<NotHandled>,
}

/// Re-sends each dead letter of `channel` in `selection` as a NOTIFY on the channel, oldest
/// first, where the listener judges it by the contract again.
///
/// Each letter is deleted in the transaction that sends it, so it is gone exactly when its
/// NOTIFY went out (a NOTIFY is sent at commit): a letter whose NOTIFY the server refuses
/// (a payload edited past 8000 bytes, a full NOTIFY queue) stays, and is reported. A payload
/// that still breaks the contract is rejected again and recorded again by the listener, as a
/// new row; keeping the old one as well would store it twice.
pub async fn resend(
    client: &mut Client,
    channel: &Identifier,
    selection: &Selection,
    apply: Apply,
) -> Result<Outcome, StoreError> {
    let ids = chosen(client, channel, selection).await?;
    let mut outcome = Outcome {
        handled: Vec::new(),
        not_handled: Vec::new(),
    };
    for (n, &id) in ids.iter().enumerate() {
        let tx = begin(client).await?;
        let Some(letter) = take(&tx, channel, id).await? else {
            outcome
                .not_handled
                .push(left_alone(&tx, channel, id).await?);
            continue;
        };
        let sent = async {
            notify(&tx, channel.as_str(), &letter.payload).await?;
            finish(tx, apply).await
        }
        .await;
        let e = match sent {
            Ok(()) => {
                outcome.handled.push(letter);
                continue;
            }
            Err(e) => e,
        };
        // Rolled back with its transaction: the letter stays.
        let why = Why::Refused {
            class: e.class(),
            error: error_chain(&e),
        };
        if e.class() != ErrorClass::Connection {
            outcome.not_handled.push(NotHandled { id, why });
            continue;
        }
        // Without a connection none of the rest can be sent either; say so for each.
        outcome
            .not_handled
            .extend(ids[n..].iter().map(|&id| NotHandled {
                id,
                why: why.clone(),
            }));
        break;
    }
    Ok(outcome)
}

/// Deletes the dead letters of `channel` in `selection`.
pub async fn delete(
    client: &mut Client,
    channel: &Identifier,
    selection: &Selection,
    apply: Apply,
) -> Result<Outcome, StoreError> {
    let tx = begin(client).await?;
    let rows = tx
        .query(
            "DELETE FROM dead_letters \
             WHERE channel = $1 AND ($2::int8[] IS NULL OR id = ANY($2)) \
             RETURNING id, sender_pid, error, payload",
            &[&channel.as_str(), &selection.named()],
        )
        .await?;
    let mut handled: Vec<Handled> = rows.iter().map(handled).collect();
    handled.sort_by_key(|h| h.id);
    let ids: Vec<i64> = handled.iter().map(|h| h.id).collect();
    let mut not_handled = Vec::new();
    for id in selection.missing(&ids) {
        not_handled.push(left_alone(&tx, channel, id).await?);
    }
    finish(tx, apply).await?;
    Ok(Outcome {
        handled,
        not_handled,
    })
}

/// The ids of `selection`: those named, or every dead letter of `channel`, oldest first.
async fn chosen(
    client: &Client,
    channel: &Identifier,
    selection: &Selection,
) -> Result<Vec<i64>, StoreError> {
    if let Some(ids) = selection.named() {
        return Ok(ids.to_vec());
    }
    let rows = client
        .query(
            "SELECT id FROM dead_letters WHERE channel = $1 ORDER BY id",
            &[&channel.as_str()],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Deletes the dead letter `id` of `channel` in `tx`; what it was, if there was one.
async fn take(
    tx: &Transaction<'_>,
    channel: &Identifier,
    id: i64,
) -> Result<Option<Handled>, StoreError> {
    Ok(tx
        .query_opt(
            "DELETE FROM dead_letters WHERE id = $1 AND channel = $2 \
             RETURNING id, sender_pid, error, payload",
            &[&id, &channel.as_str()],
        )
        .await?
        .as_ref()
        .map(handled))
}

fn handled(r: &tokio_postgres::Row) -> Handled {
    Handled {
        id: r.get(0),
        sender_pid: r.get(1),
        error: r.get(2),
        payload: r.get(3),
    }
}

/// Why the dead letter `id` is not one of `channel`'s.
async fn left_alone(
    tx: &Transaction<'_>,
    channel: &Identifier,
    id: i64,
) -> Result<NotHandled, StoreError> {
    let row = tx
        .query_opt("SELECT channel FROM dead_letters WHERE id = $1", &[&id])
        .await?;
    let why = match row {
        Some(r) if r.get::<_, &str>(0) != channel.as_str() => {
            Why::OtherChannel { channel: r.get(0) }
        }
        // Deleted by someone else meanwhile, or never there.
        _ => Why::NotFound,
    };
    Ok(NotHandled { id, why })
}
