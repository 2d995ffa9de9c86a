//! The sources of `notifyscope watch`: a pipeline someone else runs, tapped without writing.
//! Its NOTIFYs (on the channel and the neighbours) and the new rows of its table are reported
//! on the trace as `notified` and `row_observed`, correlated by message id, like our own
//! pipeline's stages. Every connection is read-only.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::Notification;
use tokio_util::sync::CancellationToken;

use crate::listening::{Ended, ListeningConnection};
use notifyscope_model::contract::{self, NotifyPayload, Snowflake};
use notifyscope_model::present::shorten;
use notifyscope_model::trace::{Trace, TraceKind};
use notifyscope_store::deadline::{within, Silence};
use notifyscope_store::{error_chain, Database, ErrorClass, Identifier, StoreError, APP_NAME};

/// The table their ingestion writes, and its message-id column (BIGINT).
#[derive(Debug, Clone)]
pub struct WatchedTable {
    pub table: Identifier,
    pub id_column: Identifier,
}

/// Where watching starts: the highest message id in the table now, and whether
/// notifyscope's own outbox is in the schema.
pub async fn starting_point(
    database: &Database,
    watched: &WatchedTable,
) -> Result<(i64, bool), StoreError> {
    let client = database.connect_plain(APP_NAME).await?;
    let start_id: i64 = client
        .query_one(
            &format!(
                "SELECT coalesce(max({col})::int8, 0) FROM {table}",
                col = watched.id_column.quoted(),
                table = watched.table.quoted()
            ),
            &[],
        )
        .await?
        .get(0);
    let has_outbox: bool = client
        .query_one(
            // notifyscope's own outbox, not just any table of that name.
            "SELECT to_regclass('notifyscope_schema_history') IS NOT NULL \
                AND to_regclass('event_outbox') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    Ok((start_id, has_outbox))
}

/// How the watched table is looked at: for rows above `after`, every `idle_gap` while no row
/// is awaited, and promptly after each NOTIFY that announces one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Looks {
    pub after: i64,
    pub idle_gap: Duration,
}

impl Looks {
    /// Rows above `start_id`, at the idle pace of [`IDLE_GAP`].
    pub fn after(start_id: i64) -> Self {
        Looks {
            after: start_id,
            idle_gap: IDLE_GAP,
        }
    }
}

/// Taps the pipeline until `stop`: LISTEN on `channel` and `neighbours`, and new rows of the
/// table as `looks` says.
pub fn spawn(
    database: &Database,
    channel: &Identifier,
    neighbours: Vec<Identifier>,
    watched: WatchedTable,
    looks: Looks,
    trace: &Trace,
    stop: &CancellationToken,
) -> [JoinHandle<()>; 2] {
    let notified = Arc::new(Mutex::new(Notified::default()));
    let row_awaited = Arc::new(Notify::new());
    let listening = tokio::spawn(listen_loop(
        database.clone(),
        channel.clone(),
        neighbours,
        trace.clone(),
        (notified.clone(), row_awaited.clone()),
        stop.clone(),
    ));
    let polling = tokio::spawn(poll_rows(
        database.clone(),
        watched,
        looks,
        trace.clone(),
        (notified, row_awaited),
        stop.clone(),
    ));
    [listening, polling]
}

/// Notified ids remembered for latency, at most.
const REMEMBER: usize = 100_000;

/// How long after its NOTIFY a row is looked for promptly.
const PROMPT_FOR: Duration = Duration::from_secs(5);
/// The first prompt look follows the NOTIFY after this, the next ones at most
/// [`PROMPT_MAX_GAP`] apart, so a row is timed within a few milliseconds.
const PROMPT_FIRST_GAP: Duration = Duration::from_millis(1);
const PROMPT_MAX_GAP: Duration = Duration::from_millis(5);
/// How long the looks stay that close together; after that they back off.
const PROMPT_FAST_FOR: Duration = Duration::from_secs(1);
/// With no row awaited, new rows are looked for this often.
pub const IDLE_GAP: Duration = Duration::from_millis(500);

/// When each message id was notified, to time the row's arrival, and the notified ids whose
/// row has not appeared yet.
#[derive(Default)]
struct Notified {
    at: HashMap<Snowflake, DateTime<Utc>>,
    order: VecDeque<Snowflake>,
    awaited: HashMap<Snowflake, DateTime<Utc>>,
}

impl Notified {
    fn insert(&mut self, id: Snowflake, at: DateTime<Utc>) {
        if self.order.len() >= REMEMBER {
            if let Some(old) = self.order.pop_front() {
                self.at.remove(&old);
            }
        }
        if self.at.insert(id, at).is_none() {
            self.order.push_back(id);
            self.awaited.insert(id, at);
        }
    }

    /// Whether a notified row is still awaited (forgetting those awaited too long).
    fn awaiting(&mut self, now: DateTime<Utc>) -> bool {
        let limit = chrono::TimeDelta::from_std(PROMPT_FOR).unwrap_or(chrono::TimeDelta::MAX);
        self.awaited.retain(|_, at| now - *at < limit);
        !self.awaited.is_empty()
    }
}

/// The message id of a payload in our contract or, failing that, in any JSON that carries one
/// (`message.message_id`, `message_id` or `id`, as a string or a number).
fn message_id_of(payload: &str) -> Result<(Option<Snowflake>, Option<NotifyPayload>), String> {
    match contract::parse_notify(payload) {
        Ok(p) => Ok((p.message_id(), Some(p))),
        Err(contract) => {
            let value: Value = serde_json::from_str(payload).map_err(|_| contract.to_string())?;
            let id = [
                value.pointer("/message/message_id"),
                value.get("message_id"),
                value.get("id"),
            ]
            .into_iter()
            .flatten()
            .find_map(|v| match v {
                Value::String(s) => Snowflake::parse(s),
                Value::Number(n) => n.as_u64().and_then(|n| Snowflake::parse(&n.to_string())),
                _ => None,
            });
            Ok((id, None))
        }
    }
}

/// The notified ids, and the wake-up of the row poll when one is new.
type NotifiedShared = (Arc<Mutex<Notified>>, Arc<Notify>);

async fn listen_loop(
    database: Database,
    channel: Identifier,
    neighbours: Vec<Identifier>,
    trace: Trace,
    (notified, row_awaited): NotifiedShared,
    stop: CancellationToken,
) {
    let mut delay = Duration::from_millis(500);
    // The last connection went silent: said with its replacement.
    let mut silenced: Option<Silence> = None;
    loop {
        let session = async {
            let mut conn = ListeningConnection::open(&database, APP_NAME)
                .await
                .map_err(|e| Ended::Lost(error_chain(&e)))?;
            let listening = async {
                for c in std::iter::once(&channel).chain(neighbours.iter()) {
                    conn.listen(c).await?;
                }
                Ok(())
            };
            within(
                database.deadline(),
                &database.address(),
                "LISTEN",
                listening,
            )
            .await
            .map_err(|e| match e {
                StoreError::Silent(silence) => Ended::Silent(silence),
                e => Ended::Lost(error_chain(&e)),
            })?;
            tracing::info!(
                "watching channel {channel} (and {} neighbours)",
                neighbours.len()
            );
            if let Some(silence) = silenced.take() {
                crate::silence::report(&trace, "watch listener", &silence, true);
            }
            loop {
                let n = conn.next(&database, &channel).await?;
                if handle(&n, &channel, &trace, &notified) {
                    row_awaited.notify_one();
                }
            }
        };
        let ended: Result<(), Ended> = tokio::select! {
            () = stop.cancelled() => return,
            result = session => result,
        };
        let Err(ended) = ended else { return };
        let cause = ended.cause();
        if let Ended::Silent(silence) = ended {
            silenced = Some(silence);
        }
        tracing::warn!(%cause, "watch connection lost; reconnecting");
        database_down(&trace, cause);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// Traces the notification; true when it announced a message whose row is now awaited.
fn handle(
    n: &Notification,
    channel: &Identifier,
    trace: &Trace,
    notified: &Mutex<Notified>,
) -> bool {
    let payload = n.payload();
    if n.channel() != channel.as_str() {
        trace.emit(
            message_id_of(payload).ok().and_then(|(id, _)| id),
            TraceKind::NeighbourNotified {
                channel: n.channel().to_owned(),
                sender_pid: n.process_id(),
                bytes: payload.len(),
                payload: shorten(payload, 1024),
            },
        );
        return false;
    }
    match message_id_of(payload) {
        Ok((_, Some(NotifyPayload::Probe { .. }))) => false,
        Ok((id, parsed)) => {
            let awaited = match (id, notified.lock()) {
                (Some(id), Ok(mut map)) => {
                    map.insert(id, Utc::now());
                    true
                }
                _ => false,
            };
            trace.emit(
                id,
                TraceKind::Notified {
                    channel: n.channel().to_owned(),
                    sender_pid: n.process_id(),
                    outbox_id: parsed.as_ref().and_then(|p| p.outbox_id()),
                    by_ref: matches!(parsed, Some(NotifyPayload::Reference { .. })),
                    bytes: payload.len(),
                    payload: payload.to_owned(),
                },
            );
            awaited
        }
        Err(error) => {
            trace.emit(
                None,
                TraceKind::NotifyRejected {
                    channel: n.channel().to_owned(),
                    sender_pid: n.process_id(),
                    error,
                    payload: shorten(payload, 1024),
                },
            );
            false
        }
    }
}

/// How far below the highest id seen rows are still looked for: concurrent transactions
/// commit out of id order. Thirty seconds of Discord snowflakes.
const LATE_ROWS: i64 = 30_000 << 22;
/// Rows a poll reads per query; more pages follow while they come full.
const PAGE: i64 = 1000;

/// New rows of the table, reconnecting when the connection is lost: twice a second while no
/// row is awaited, and after a NOTIFY promptly (1 ms, then every few ms) until its row
/// appears or [`PROMPT_FOR`] passed, so that `row_observed` times the row within a few
/// milliseconds without loading an idle database.
async fn poll_rows(
    database: Database,
    watched: WatchedTable,
    looks: Looks,
    trace: Trace,
    (notified, row_awaited): NotifiedShared,
    stop: CancellationToken,
) {
    let WatchedTable { table, id_column } = watched;
    let Looks {
        after: start,
        idle_gap,
    } = looks;
    let sql = format!(
        "SELECT {col}::int8 FROM {table} WHERE {col} > $1 ORDER BY {col} LIMIT {PAGE}",
        col = id_column.quoted(),
        table = table.quoted()
    );
    let mut highest = start;
    let mut seen: std::collections::BTreeSet<i64> = std::collections::BTreeSet::new();
    let mut client: Option<tokio_postgres::Client> = None;
    let mut gap = idle_gap;
    let mut prompting_since: Option<Instant> = None;
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(gap) => {}
            // A new NOTIFY while the looks are slow (idle, or backing off from a row that
            // did not come) makes them prompt again.
            () = row_awaited.notified(), if gap > PROMPT_MAX_GAP => {
                tokio::time::sleep(PROMPT_FIRST_GAP).await;
                prompting_since = Some(Instant::now());
            }
        }
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            let connecting = database.connect_plain(APP_NAME);
            match within(
                database.deadline(),
                &database.address(),
                "connection setup",
                connecting,
            )
            .await
            {
                Ok(c) => client = Some(c),
                Err(e) => {
                    poll_failed(&trace, &mut failing, e.class(), error_chain(&e));
                    gap = idle_gap;
                    continue;
                }
            }
        }
        let Some(c) = client.as_ref() else { continue };
        // A prompt look asks only for rows above the highest seen; the rows that commit out
        // of id order, below it, are found by the next idle look.
        let prompt = prompting_since.is_some();
        let mut from = if prompt {
            highest
        } else {
            let lower = start.max(highest.saturating_sub(LATE_ROWS));
            seen = seen.split_off(&lower);
            lower
        };
        let now = Utc::now();
        let mut ok = true;
        let mut silent = false;
        for _ in 0..20 {
            let look = async { c.query(&sql, &[&from]).await.map_err(StoreError::Db) };
            let rows =
                match within(database.deadline(), &database.address(), "row look", look).await {
                    Ok(rows) => rows,
                    Err(StoreError::Silent(silence)) => {
                        crate::silence::report(&trace, "watch rows", &silence, true);
                        poll_failed(
                            &trace,
                            &mut failing,
                            ErrorClass::Connection,
                            silence.to_string(),
                        );
                        silent = true;
                        ok = false;
                        break;
                    }
                    Err(e) => {
                        poll_failed(&trace, &mut failing, e.class(), error_chain(&e));
                        ok = false;
                        break;
                    }
                };
            let full = rows.len() as i64 == PAGE;
            for row in rows {
                let id: i64 = row.get(0);
                from = id;
                highest = highest.max(id);
                if !seen.insert(id) {
                    continue;
                }
                let message_id = Snowflake::from_i64(id);
                let latency_ms = message_id
                    .and_then(|m| {
                        notified.lock().ok().and_then(|mut map| {
                            map.awaited.remove(&m);
                            map.at.get(&m).copied()
                        })
                    })
                    .map(|at| (now - at).num_microseconds().unwrap_or(0) as f64 / 1e3);
                trace.emit(
                    message_id,
                    TraceKind::RowObserved {
                        table: table.to_string(),
                        latency_ms,
                    },
                );
            }
            if !full {
                break;
            }
        }
        if ok {
            failing = false;
        }
        if silent {
            // Dropped: the next look connects anew.
            client = None;
        }
        let awaiting = ok
            && notified
                .lock()
                .map(|mut map| map.awaiting(Utc::now()))
                .unwrap_or(false);
        // Every few milliseconds for the first second after a NOTIFY, then backing off
        // toward the idle pace: a row that does not come costs little.
        gap = match (awaiting, prompting_since) {
            (false, _) | (true, None) => idle_gap,
            (true, Some(since)) if since.elapsed() < PROMPT_FAST_FOR => {
                (gap * 2).min(PROMPT_MAX_GAP)
            }
            (true, Some(_)) => (gap * 2).min(idle_gap),
        };
        if gap == idle_gap {
            prompting_since = None;
        }
    }
}

/// A look for rows failed: a lost connection is said once per outage, as `database_down`;
/// any other refusal (no SELECT on their table, a lock) is a log line, once until it passes.
fn poll_failed(trace: &Trace, failing: &mut bool, class: ErrorClass, error: String) {
    if std::mem::replace(failing, true) {
        return;
    }
    if class == ErrorClass::Connection {
        database_down(trace, error);
    } else {
        tracing::warn!(%class, %error, "watch cannot read the watched table");
    }
}

fn database_down(trace: &Trace, error: String) {
    trace.emit(None, TraceKind::DatabaseDown { error });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_in_foreign_payloads() {
        assert_eq!(
            message_id_of(r#"{"message_id": 1234}"#).map(|(id, _)| id),
            Ok(Some(Snowflake(1234)))
        );
        assert_eq!(
            message_id_of(r#"{"message": {"message_id": "99"}}"#).map(|(id, _)| id),
            Ok(Some(Snowflake(99)))
        );
        assert_eq!(message_id_of(r#"{"x": 1}"#).map(|(id, _)| id), Ok(None));
        assert!(message_id_of("garbage").is_err());
    }
}
