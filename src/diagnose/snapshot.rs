//! The one small query a second: NOTIFY queue usage, the backends that LISTEN or sit idle in
//! a transaction, and (with an outbox) the backlog, rows of other channels, and which
//! overdue messages reached `discord_messages`. Also what may be read from another
//! session's statement text.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::contract::Snowflake;
use crate::store::{error_chain, ErrorClass, Identifier, LISTENER_APP_NAME, PENDING};

/// A backend of `pg_stat_activity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backend {
    pub pid: i32,
    pub application_name: String,
    pub state: String,
    pub query: String,
    pub seconds_in_state: f64,
}

/// What the once-a-second query saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub at: Option<DateTime<Utc>>,
    /// The query failed: the database is unreachable (or the query broken).
    pub error: Option<String>,
    /// The kind of that error.
    pub error_class: Option<ErrorClass>,
    /// Unprocessed outbox rows of the channel; `None` without an outbox (watch mode).
    pub backlog: Option<i64>,
    pub oldest_age_s: Option<f64>,
    /// Unprocessed outbox rows of other channels: published where nobody ingests.
    pub other_channels: Vec<(String, i64)>,
    /// `pg_notification_queue_usage()`, 0..1.
    pub queue_usage: f64,
    /// Backends whose last query is a LISTEN on the channel.
    pub listeners: Vec<Backend>,
    /// notifyscope listeners whose last query does not name the channel (other channels).
    pub other_listeners: Vec<Backend>,
    pub idle_in_transaction: Vec<Backend>,
    /// Of the ids asked about, those in `discord_messages`.
    pub found: Vec<Snowflake>,
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

/// The backends worth knowing about: listeners and sessions idle in a transaction.
const BACKENDS: &str = "(SELECT coalesce(json_agg(json_build_array(pid, coalesce(application_name, ''), \
        coalesce(state, ''), coalesce(query, ''), \
        coalesce(extract(epoch FROM now() - state_change), 0)::float8)), '[]') \
    FROM pg_stat_activity \
    WHERE datname = current_database() AND pid <> pg_backend_pid() \
      AND (application_name = $1 OR query ILIKE 'listen%' OR state LIKE 'idle in transaction%'))::text";

/// One small query a second: queue usage, listening and idle backends, and (with an outbox)
/// the backlog, the rows of other channels, and which of `look_up` are in `discord_messages`.
pub async fn snapshot(
    client: &tokio_postgres::Client,
    channel: &Identifier,
    with_outbox: bool,
    look_up: &[Snowflake],
) -> Snapshot {
    let now = Utc::now();
    let pending = PENDING;
    let sql = if with_outbox {
        format!(
            "SELECT pg_notification_queue_usage(), {BACKENDS}, \
               (SELECT count(*) FROM event_outbox WHERE channel = $2 AND {pending}), \
               (SELECT extract(epoch FROM now() - min(published_at))::float8 FROM event_outbox \
                  WHERE channel = $2 AND {pending}), \
               (SELECT coalesce(json_agg(json_build_array(channel, n)), '[]') FROM \
                  (SELECT channel, count(*) AS n FROM event_outbox \
                    WHERE channel <> $2 AND {pending} AND published_at < now() - interval '1 second' \
                    GROUP BY channel ORDER BY 2 DESC LIMIT 5) AS o)::text, \
               (SELECT coalesce(array_agg(message_id), '{{}}') FROM discord_messages \
                  WHERE message_id = ANY($3))"
        )
    } else {
        format!("SELECT pg_notification_queue_usage(), {BACKENDS}")
    };
    let look_up: Vec<i64> = look_up.iter().map(|id| id.as_i64()).collect();
    let row = if with_outbox {
        client
            .query_one(&sql, &[&LISTENER_APP_NAME, &channel.as_str(), &look_up])
            .await
    } else {
        client.query_one(&sql, &[&LISTENER_APP_NAME]).await
    };
    let row = match row {
        Ok(row) => row,
        Err(e) => {
            return Snapshot {
                at: Some(now),
                error: Some(error_chain(&e)),
                error_class: Some(ErrorClass::of(&e)),
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
    if with_outbox {
        snap.backlog = Some(row.get(2));
        snap.oldest_age_s = row.get(3);
        snap.other_channels = serde_json::from_str(row.get::<_, &str>(4)).unwrap_or_default();
        snap.found = row
            .get::<_, Vec<i64>>(5)
            .into_iter()
            .filter_map(Snowflake::from_i64)
            .collect();
    }
    snap
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
        } else if b.application_name == LISTENER_APP_NAME {
            snap.other_listeners.push(b);
        }
    }
}
