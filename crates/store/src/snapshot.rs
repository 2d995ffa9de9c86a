//! The small queries a second, in independent parts so that a lock on one table blinds one
//! part only: the server's part (NOTIFY queue usage, the backends that LISTEN, sit idle in a
//! transaction or wait on a lock), the outbox part (backlog, rows of other channels), and
//! which overdue messages reached `discord_messages`. Each part runs in a transaction of its
//! own with a short `lock_timeout` and `statement_timeout`, so a locked table makes its part
//! say "waited on a lock" instead of stalling the diagnosis. Who blocks a waiting backend
//! (`pg_blocking_pids`, which holds the lock manager for a moment) is asked only while one of
//! the watched backends waits on a lock; who queues for the NOTIFY lock (`pg_locks`) only
//! while a backend waits for it. Also what may be read from another session's statement
//! text.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    base_application_name, error_chain, ErrorClass, Identifier, APP_NAME, LISTENER_APP_NAME,
    PENDING,
};
use notifyscope_model::contract::Snowflake;

/// How long a part waits for a lock, and how long it may run.
pub const PART_LOCK_TIMEOUT: Duration = Duration::from_millis(500);
pub const PART_STATEMENT_TIMEOUT: Duration = Duration::from_secs(2);

/// A backend of `pg_stat_activity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backend {
    pub pid: i32,
    pub application_name: String,
    pub state: String,
    pub query: String,
    pub seconds_in_state: f64,
}

/// A part of the snapshot that failed, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct PartError {
    pub class: ErrorClass,
    pub error: String,
    /// It waited on a lock past the part's `lock_timeout` (55P03), as opposed to running past
    /// its statement timeout: either way the database answers.
    pub lock_wait: bool,
}

impl PartError {
    fn of(e: &tokio_postgres::Error) -> Self {
        PartError {
            class: crate::errors::class_of(e),
            error: error_chain(e),
            lock_wait: e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE),
        }
    }

    /// For a check that could not be judged: `waited on a lock: …`, `timed out: …` or the
    /// error.
    pub fn describe(&self) -> String {
        if self.lock_wait {
            format!("waited on a lock: {}", self.error)
        } else if self.class == ErrorClass::Timeout {
            format!("timed out: {}", self.error)
        } else {
            self.error.clone()
        }
    }
}

/// A backend of the pipeline waiting for a lock on one of the watched tables, and the
/// session that holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct LockWait {
    pub pid: i32,
    pub application_name: String,
    /// The lock mode it asks for, e.g. `RowExclusiveLock`.
    pub mode: String,
    pub relation: String,
    /// How long it has waited for the lock.
    pub waiting_s: f64,
    pub blocker: Blocker,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Blocker {
    pub pid: i32,
    pub application_name: String,
    pub user: String,
    pub state: String,
    /// The first word of its statement only: statements may hold secrets.
    pub statement: String,
    /// Since its transaction (or, outside one, its state) began.
    pub seconds: f64,
}

impl std::fmt::Display for Blocker {
    /// `pid N (application, user U, state for S s, statement X)`, as the lock check and
    /// doctor name the session that holds a lock.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let or_none = |t: &str| {
            if t.is_empty() {
                "none".to_owned()
            } else {
                t.to_owned()
            }
        };
        write!(
            f,
            "pid {} ({}, user {}, {} for {:.0} s, statement {})",
            self.pid,
            or_none(&self.application_name),
            or_none(&self.user),
            or_none(&self.state),
            self.seconds,
            if self.statement.is_empty() {
                "unknown"
            } else {
                &self.statement
            },
        )
    }
}

/// Which lock waits matter: waits for these tables, by our own backends (`ours_only`, by
/// application name) or by anyone (a pipeline someone else runs).
#[derive(Debug, Clone, PartialEq)]
pub struct LockScope {
    pub tables: Vec<Identifier>,
    pub ours_only: bool,
}

impl LockScope {
    /// notifyscope's own pipeline: its three tables, its own backends.
    pub fn pipeline() -> Self {
        LockScope {
            tables: ["event_outbox", "discord_messages", "dead_letters"]
                .into_iter()
                .map(Identifier::fixed)
                .collect(),
            ours_only: true,
        }
    }
}

/// What the queries of one tick saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub at: Option<DateTime<Utc>>,
    /// The server's part failed: the database is unreachable (or refused even that). Nothing
    /// is known then.
    pub error: Option<String>,
    /// The kind of that error.
    pub error_class: Option<ErrorClass>,
    /// The outbox part failed (a lock, a grant): backlog and other channels are unknown.
    pub outbox_error: Option<PartError>,
    /// The look-up of overdue messages failed.
    pub found_error: Option<PartError>,
    /// Asking who blocks a waiting backend failed.
    pub lock_error: Option<PartError>,
    /// Unprocessed outbox rows of the channel; `None` without an outbox (watch mode).
    pub backlog: Option<i64>,
    pub oldest_age_s: Option<f64>,
    /// Unprocessed outbox rows of other channels: published where nobody ingests.
    pub other_channels: Vec<(String, i64)>,
    /// Messages of the channel given up: outbox rows no longer tried and dead letters.
    /// `None` without an outbox, or when they could not be read (`given_up_error`).
    pub given_up: Option<GivenUp>,
    pub given_up_error: Option<PartError>,
    /// `pg_notification_queue_usage()`, 0..1.
    pub queue_usage: f64,
    /// Backends whose last query is a LISTEN on the channel.
    pub listeners: Vec<Backend>,
    /// notifyscope listeners whose last query does not name the channel (other channels).
    pub other_listeners: Vec<Backend>,
    pub idle_in_transaction: Vec<Backend>,
    /// Watched backends waiting for a lock on a watched table, with their blockers.
    pub lock_waits: Vec<LockWait>,
    /// Backends of the database that sit idle while writing to their client: listeners
    /// whose process does not read the notifications sent to it.
    pub unread: Vec<Unread>,
    /// Commits that wait for the NOTIFY lock, in the whole cluster (the lock is one for all
    /// databases): as `pg_stat_activity` counts them (`Lock:object`), and each by `pg_locks`
    /// while any waits.
    pub notify_waiting: i64,
    pub notify_waiters: Vec<NotifyWaiter>,
    /// Reading `pg_locks` for them failed: the count stands, the waiters are unknown.
    pub notify_lock_error: Option<PartError>,
    /// Transactions committed in this database so far (`pg_stat_database.xact_commit`), for a
    /// rate between two snapshots.
    pub commits: Option<i64>,
    /// Of the ids asked about, those in `discord_messages`.
    pub found: Vec<Snowflake>,
}

/// An idle backend blocked writing to its client. Idle, a backend writes only what it is
/// sent unasked (notifications, mostly): its client's process does not read its socket.
#[derive(Debug, Clone, PartialEq)]
pub struct Unread {
    pub pid: i32,
    pub application_name: String,
    pub user: String,
    /// `address:port` of the client, or `local` for a Unix socket: where to find the process.
    pub client: String,
    /// Its last statement, as [`statement_shown`] shows it.
    pub query: String,
    /// Seconds since it went idle (its last statement ended).
    pub idle_s: f64,
}

/// A commit waiting for the NOTIFY lock (`pg_locks`: the `object` lock of database 0 on
/// `pg_database`, class 1262, object 0), which every NOTIFYing transaction takes at commit.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyWaiter {
    pub pid: i32,
    pub application_name: String,
    pub database: String,
    /// How long it has waited.
    pub waiting_s: f64,
}

/// Messages of the channel that will not be tried again until someone acts: outbox rows
/// given up (`dead_at` set) and rejected notifications kept in `dead_letters`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GivenUp {
    pub outbox_rows: i64,
    pub dead_letters: i64,
    /// Seconds since the oldest of either was given up.
    pub oldest_age_s: Option<f64>,
    /// The error of the latest given-up outbox row, or else of the latest dead letter.
    pub last_error: Option<String>,
}

impl GivenUp {
    pub fn total(&self) -> i64 {
        self.outbox_rows + self.dead_letters
    }
}

/// What may be shown of another session's last statement: a LISTEN in full (it names a
/// channel), anything else only by its first word, since its text may hold secrets.
pub fn statement_shown(query: &str) -> String {
    let q = query.trim();
    if q.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("listen")) {
        return q.to_owned();
    }
    match q.split_whitespace().next() {
        Some(word) => format!("{} …", word.to_uppercase()),
        None => String::new(),
    }
}

/// Whether a `LISTEN …` statement listens on `channel`, with PostgreSQL's folding: an unquoted
/// name is lower-cased, a quoted one is taken as written.
pub fn listens_on(query: &str, channel: &str) -> bool {
    let q = query.trim().trim_end_matches(';').trim();
    let Some(rest) = q
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case("listen"))
        .map(|_| q[6..].trim())
    else {
        return false;
    };
    let name = match rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => rest.to_lowercase(),
    };
    name == channel
}

/// The backends worth knowing about, from one read of `pg_stat_activity`: listeners,
/// sessions idle in a transaction, backends waiting for a lock on a row or table (`$2`:
/// only ours, by application name); idle backends of the database blocked writing to their
/// client; commits of any database queued for the NOTIFY lock; and this database's commits
/// so far. The lock waits that `pg_blocking_pids` can name are those on a relation, a tuple
/// or a transaction: a queue for the NOTIFY lock never calls it.
const BACKENDS: &str = "WITH a AS MATERIALIZED (SELECT pid, datname, application_name, usename, \
        state, query, state_change, wait_event_type, wait_event, client_addr, client_port \
      FROM pg_stat_activity WHERE pid <> pg_backend_pid()), \
    here AS (SELECT * FROM a WHERE datname = current_database()) \
    SELECT pg_notification_queue_usage(), \
    (SELECT coalesce(json_agg(json_build_array(pid, coalesce(application_name, ''), \
        coalesce(state, ''), coalesce(query, ''), \
        coalesce(extract(epoch FROM now() - state_change), 0)::float8)), '[]') \
     FROM here \
     WHERE split_part(application_name, ' ', 1) = $1 OR query ILIKE 'listen%' OR state LIKE 'idle in transaction%')::text, \
    (SELECT coalesce(array_agg(pid), '{}') FROM here \
     WHERE wait_event_type = 'Lock' AND wait_event IN ('relation', 'tuple', 'transactionid') \
       AND (NOT $2 OR split_part(application_name, ' ', 1) = ANY($3::text[]))), \
    (SELECT coalesce(json_agg(json_build_array(pid, coalesce(application_name, ''), \
        coalesce(usename::text, ''), \
        coalesce(host(client_addr) || ':' || client_port, 'local'), coalesce(query, ''), \
        coalesce(extract(epoch FROM clock_timestamp() - state_change), 0)::float8)), '[]') \
     FROM here WHERE state = 'idle' AND wait_event = 'ClientWrite')::text, \
    (SELECT count(*) FROM a WHERE wait_event_type = 'Lock' AND wait_event = 'object'), \
    pg_stat_get_db_xact_commit((SELECT oid FROM pg_database WHERE datname = current_database()))";

/// The commits waiting for the NOTIFY lock, longest first.
const NOTIFY_WAITERS: &str = "SELECT l.pid, coalesce(a.application_name, ''), \
        coalesce(a.datname::text, ''), \
        coalesce(extract(epoch FROM clock_timestamp() - l.waitstart), 0)::float8 \
    FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
    WHERE l.locktype = 'object' AND l.database = 0 AND l.classid = 1262 AND l.objid = 0 \
      AND NOT l.granted \
    ORDER BY l.waitstart NULLS LAST";

/// Who blocks the waiting backends `$1`, for their ungranted lock on one of the tables `$2`,
/// or (`$3`, our own backends) on a row (a `transactionid` lock: another session writes or
/// locks the same row). `waitstart` is when the wait began (PostgreSQL 14 and later).
const BLOCKERS: &str = "SELECT w.pid, coalesce(w.application_name, ''), l.mode, \
        coalesce(l.relation::regclass::text, 'a row'), \
        coalesce(extract(epoch FROM now() - coalesce(l.waitstart, w.query_start)), 0)::float8, \
        b.pid, coalesce(b.application_name, ''), coalesce(b.usename::text, ''), \
        coalesce(b.state, ''), coalesce(b.query, ''), \
        coalesce(extract(epoch FROM now() - coalesce(b.xact_start, b.state_change)), 0)::float8 \
    FROM unnest($1::int4[]) AS wp(pid) \
    JOIN pg_stat_activity w ON w.pid = wp.pid \
    JOIN LATERAL (SELECT locktype, mode, relation, waitstart FROM pg_locks \
                  WHERE pid = wp.pid AND NOT granted LIMIT 1) AS l ON true \
    CROSS JOIN LATERAL unnest(pg_blocking_pids(wp.pid)) AS bp(pid) \
    JOIN pg_stat_activity b ON b.pid = bp.pid \
    WHERE l.relation = ANY(ARRAY(SELECT to_regclass(t)::oid FROM unnest($2::text[]) AS t)) \
       OR ($3 AND l.locktype = 'transactionid') \
    ORDER BY w.pid, b.pid";

/// Runs `query` in a transaction of its own with the part's lock and statement timeouts, so
/// that a locked table or a slow statement fails this part quickly instead of stalling.
async fn part<T>(
    client: &tokio_postgres::Client,
    query: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, tokio_postgres::Error> {
    let begin = format!(
        "BEGIN; SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{}ms'",
        PART_LOCK_TIMEOUT.as_millis(),
        PART_STATEMENT_TIMEOUT.as_millis()
    );
    let (began, result) = futures_util::future::join(client.batch_execute(&begin), query).await;
    // COMMIT of a failed transaction rolls it back; either way the connection is clean.
    let ended = client.batch_execute("COMMIT").await;
    began?;
    let value = result?;
    ended?;
    Ok(value)
}

/// The queries of one tick: the server's part always; with an outbox its part and the
/// look-up of `look_up` in `discord_messages`; who blocks whom only when a watched backend
/// waits on a lock.
pub async fn snapshot(
    client: &tokio_postgres::Client,
    channel: &Identifier,
    with_outbox: bool,
    look_up: &[Snowflake],
    locks: &LockScope,
) -> Snapshot {
    let now = Utc::now();
    let ours: Vec<&str> = vec![APP_NAME, LISTENER_APP_NAME];
    let server = part(
        client,
        client.query_one(BACKENDS, &[&LISTENER_APP_NAME, &locks.ours_only, &ours]),
    )
    .await;
    let row = match server {
        Ok(row) => row,
        Err(e) => {
            return Snapshot {
                at: Some(now),
                error: Some(error_chain(&e)),
                error_class: Some(crate::errors::class_of(&e)),
                ..Snapshot::default()
            }
        }
    };
    let mut snap = Snapshot {
        at: Some(now),
        queue_usage: row.get(0),
        ..Snapshot::default()
    };
    sort_backends(&mut snap, row.get::<_, &str>(1), channel);
    snap.unread = unread(row.get::<_, &str>(3));
    snap.notify_waiting = row.get(4);
    snap.commits = row.get(5);
    if snap.notify_waiting > 0 {
        match notify_waiters(client).await {
            Ok(waiters) => snap.notify_waiters = waiters,
            Err(e) => snap.notify_lock_error = Some(PartError::of(&e)),
        }
    }
    let waiting: Vec<i32> = row.get(2);
    if !waiting.is_empty() {
        match blockers(client, &waiting, locks).await {
            Ok(waits) => snap.lock_waits = waits,
            Err(e) => snap.lock_error = Some(PartError::of(&e)),
        }
    }
    if with_outbox {
        match outbox(client, channel).await {
            Ok((backlog, oldest, others)) => {
                snap.backlog = Some(backlog);
                snap.oldest_age_s = oldest;
                snap.other_channels = others;
            }
            Err(e) => snap.outbox_error = Some(PartError::of(&e)),
        }
        match given_up(client, channel).await {
            Ok(given_up) => snap.given_up = Some(given_up),
            Err(e) => snap.given_up_error = Some(PartError::of(&e)),
        }
        if !look_up.is_empty() {
            let ids: Vec<i64> = look_up.iter().map(|id| id.as_i64()).collect();
            let found = part(
                client,
                client.query_one(
                    "SELECT coalesce(array_agg(message_id), '{}') FROM discord_messages \
                     WHERE message_id = ANY($1)",
                    &[&ids],
                ),
            )
            .await;
            match found {
                Ok(row) => {
                    snap.found = row
                        .get::<_, Vec<i64>>(0)
                        .into_iter()
                        .filter_map(Snowflake::from_i64)
                        .collect()
                }
                Err(e) => snap.found_error = Some(PartError::of(&e)),
            }
        }
    }
    snap
}

/// The outbox part: backlog, age of the oldest waiting row, rows of other channels.
async fn outbox(
    client: &tokio_postgres::Client,
    channel: &Identifier,
) -> Result<(i64, Option<f64>, Vec<(String, i64)>), tokio_postgres::Error> {
    let sql = format!(
        "SELECT (SELECT count(*) FROM event_outbox WHERE channel = $1 AND {PENDING}), \
           (SELECT extract(epoch FROM now() - min(published_at))::float8 FROM event_outbox \
              WHERE channel = $1 AND {PENDING}), \
           (SELECT coalesce(json_agg(json_build_array(channel, n)), '[]') FROM \
              (SELECT channel, count(*) AS n FROM event_outbox \
                WHERE channel <> $1 AND {PENDING} AND published_at < now() - interval '1 second' \
                GROUP BY channel ORDER BY 2 DESC LIMIT 5) AS o)::text"
    );
    let row = part(client, client.query_one(&sql, &[&channel.as_str()])).await?;
    Ok((
        row.get(0),
        row.get(1),
        serde_json::from_str(row.get::<_, &str>(2)).unwrap_or_default(),
    ))
}

/// The given-up part: outbox rows of the channel given up (but doctor's probes, which are
/// its own to remove) and the channel's dead letters.
async fn given_up(
    client: &tokio_postgres::Client,
    channel: &Identifier,
) -> Result<GivenUp, tokio_postgres::Error> {
    let sql = format!(
        "WITH dead AS (SELECT dead_at, last_error FROM event_outbox \
             WHERE channel = $1 AND processed_at IS NULL AND dead_at IS NOT NULL \
               AND (payload #>> '{{message,author_id}}') IS DISTINCT FROM '{probe}'), \
         letters AS (SELECT received_at, error FROM dead_letters WHERE channel = $1) \
         SELECT (SELECT count(*) FROM dead), (SELECT count(*) FROM letters), \
           extract(epoch FROM now() - least((SELECT min(dead_at) FROM dead), \
                                             (SELECT min(received_at) FROM letters)))::float8, \
           coalesce((SELECT last_error FROM dead ORDER BY dead_at DESC LIMIT 1), \
                    (SELECT error FROM letters ORDER BY received_at DESC LIMIT 1))",
        probe = notifyscope_model::sim::DOCTOR_PROBE_AUTHOR.as_i64()
    );
    let row = part(client, client.query_one(&sql, &[&channel.as_str()])).await?;
    Ok(GivenUp {
        outbox_rows: row.get(0),
        dead_letters: row.get(1),
        oldest_age_s: row.get(2),
        last_error: row.get(3),
    })
}

/// Who blocks the `waiting` backends on the scope's tables.
async fn blockers(
    client: &tokio_postgres::Client,
    waiting: &[i32],
    locks: &LockScope,
) -> Result<Vec<LockWait>, tokio_postgres::Error> {
    let tables: Vec<String> = locks.tables.iter().map(|t| t.quoted()).collect();
    let rows = part(
        client,
        client.query(BLOCKERS, &[&waiting, &tables, &locks.ours_only]),
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| LockWait {
            pid: r.get(0),
            application_name: r.get(1),
            mode: r.get(2),
            relation: r.get(3),
            waiting_s: r.get(4),
            blocker: Blocker {
                pid: r.get(5),
                application_name: r.get(6),
                user: r.get(7),
                state: r.get(8),
                statement: statement_shown(r.get::<_, &str>(9)),
                seconds: r.get(10),
            },
        })
        .collect())
}

/// Who waits for the NOTIFY lock. `pg_locks` holds the lock manager for a moment: asked only
/// while `pg_stat_activity` shows a commit waiting for it.
async fn notify_waiters(
    client: &tokio_postgres::Client,
) -> Result<Vec<NotifyWaiter>, tokio_postgres::Error> {
    let rows = part(client, client.query(NOTIFY_WAITERS, &[])).await?;
    Ok(rows
        .iter()
        .map(|r| NotifyWaiter {
            pid: r.get(0),
            application_name: r.get(1),
            database: r.get(2),
            waiting_s: r.get(3),
        })
        .collect())
}

/// The idle backends blocked writing to their client, from the query's JSON array.
fn unread(json: &str) -> Vec<Unread> {
    let rows: Vec<(i32, String, String, String, String, f64)> =
        serde_json::from_str(json).unwrap_or_default();
    rows.into_iter()
        .map(
            |(pid, application_name, user, client, query, idle_s)| Unread {
                pid,
                application_name,
                user,
                client,
                query: statement_shown(&query),
                idle_s,
            },
        )
        .collect()
}

/// Sorts the backends of the query (a JSON array) into listeners of `channel`, our listeners
/// on other channels, and sessions idle in a transaction.
fn sort_backends(snap: &mut Snapshot, json: &str, channel: &Identifier) {
    let backends: Vec<(i32, String, String, String, f64)> =
        serde_json::from_str(json).unwrap_or_default();
    for (pid, application_name, state, query, seconds_in_state) in backends {
        let b = Backend {
            pid,
            application_name,
            state,
            query: statement_shown(&query),
            seconds_in_state,
        };
        if b.state.starts_with("idle in transaction") {
            snap.idle_in_transaction.push(b.clone());
        }
        if listens_on(&b.query, channel.as_str()) {
            snap.listeners.push(b);
        } else if base_application_name(&b.application_name) == LISTENER_APP_NAME {
            snap.other_listeners.push(b);
        }
    }
}
