//! One batch of ingestion in one transaction: claim unprocessed rows of the channel, insert
//! their messages and mark the rows, trace what each row came to; or, when the database
//! refuses, charge the rows an attempt by the retry schedule.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures_util::future::{join, join3};
use std::sync::LazyLock;

use tokio_postgres::types::{ToSql, Type};

use super::IngestConfig;
use notifyscope_model::contract::{ContractError, Envelope};
use notifyscope_model::sim::DOCTOR_PROBE_AUTHOR;
use notifyscope_model::trace::{IngestOutcome, Trace, TraceKind};
use notifyscope_store::deadline::on_pooled;
use notifyscope_store::statement::Prepared;
use notifyscope_store::{error_chain, ErrorClass, Sql, StoreError, Transactions, PENDING};

pub(super) struct BatchResult {
    pub(super) claimed: usize,
    /// The insert failed and was rolled back: the claimed rows stay for another try.
    pub(super) failure: Option<Failure>,
}

pub(super) enum Failure {
    /// Several rows were claimed; which one broke the insert is unknown, so none is charged
    /// an attempt.
    Batch,
    /// The only row claimed broke the insert; it was charged an attempt.
    Row(i64),
    /// The database refused the insert for a reason that is not the rows' own (a lock, a
    /// grant, a missing table): every claimed row was charged an attempt and rescheduled.
    Rescheduled,
}

struct Claimed {
    outbox_id: i64,
    /// The row's own column: a payload that breaks the contract may not name its message.
    message_id: Option<notifyscope_model::contract::Snowflake>,
    /// Failed attempts when claimed: a failure is charged only while it still holds.
    attempts: i32,
    published_at: DateTime<Utc>,
    envelope: Result<Envelope, ContractError>,
}

pub(super) async fn ingest_batch(
    pool: &Pool,
    config: &IngestConfig,
    trace: &Trace,
    limit: usize,
    skip: &[i64],
) -> Result<BatchResult, StoreError> {
    let client = pool.get().await?;
    // A batch whose answer never comes leaves its rows claimed by a silent session until
    // the server ends that session's transaction (idle_in_transaction_session_timeout); then
    // another batch claims them. The insert is idempotent, so a commit that did happen is
    // not repeated.
    let transactions = &config.transactions;
    on_pooled(
        pool,
        client,
        transactions.deadline(),
        transactions.target(),
        "ingestion batch",
        async |client| {
            let result = claim_and_ingest(client, config, trace, limit, skip).await;
            if result.is_err() {
                // Never hand a connection back to the pool inside a transaction: one left
                // aborted would fail every later batch. Harmless when none is open.
                let _ = client.batch_execute("ROLLBACK").await;
            }
            result
        },
    )
    .await
}

/// Up to `$2` unprocessed rows of channel `$1` that are due, except `$3`, locked.
static CLAIM: LazyLock<Sql> = LazyLock::new(|| {
    Sql::new(
        format!(
            "SELECT id, payload::text, published_at, attempts, message_id FROM event_outbox \
             WHERE channel = $1 AND {PENDING} \
               AND (next_attempt_at IS NULL OR next_attempt_at <= now()) \
               AND id <> ALL($3::int8[]) \
             ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"
        ),
        &[Type::TEXT, Type::INT8, Type::INT8_ARRAY],
    )
});

/// The rows and the outbox marks in one statement: one round trip per batch. Doctor's probe
/// goes through the same insert (its grants and locks) but never into the table, and its
/// outbox row ($11) is deleted rather than marked.
static INSERT: LazyLock<Sql> = LazyLock::new(|| {
    Sql::new(
        format!(
            "WITH inserted AS ( \
               INSERT INTO discord_messages \
                 (message_id, channel_id, guild_id, author_id, author_name, content, \
                  created_at, event_id, synthetic) \
               SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[], \
                                    $5::text[], $6::text[], $7::timestamptz[], $8::uuid[], \
                                    $9::bool[]) \
                 AS m(message_id, channel_id, guild_id, author_id, author_name, content, \
                      created_at, event_id, synthetic) \
               WHERE m.author_id <> {probe} \
               ON CONFLICT (message_id) DO NOTHING \
               RETURNING message_id), \
             done AS ( \
               UPDATE event_outbox \
               SET processed_at = clock_timestamp(), attempts = attempts + 1 \
               WHERE id = ANY($10)), \
             probes AS ( \
               DELETE FROM event_outbox WHERE id = ANY($11)) \
             SELECT message_id FROM inserted",
            probe = DOCTOR_PROBE_AUTHOR.as_i64()
        ),
        &[
            Type::INT8_ARRAY,
            Type::INT8_ARRAY,
            Type::INT8_ARRAY,
            Type::INT8_ARRAY,
            Type::TEXT_ARRAY,
            Type::TEXT_ARRAY,
            Type::TIMESTAMPTZ_ARRAY,
            Type::UUID_ARRAY,
            Type::BOOL_ARRAY,
            Type::INT8_ARRAY,
            Type::INT8_ARRAY,
        ],
    )
});

/// A payload that breaks the contract is given up at once: no retry changes it.
static REJECTED: LazyLock<Sql> = LazyLock::new(|| {
    Sql::new(
        "UPDATE event_outbox o SET attempts = attempts + 1, last_error = u.err, \
           error_class = 'contract', next_attempt_at = NULL, dead_at = clock_timestamp() \
         FROM UNNEST($1::int8[], $2::text[]) AS u(id, err) WHERE o.id = u.id",
        &[Type::INT8_ARRAY, Type::TEXT_ARRAY],
    )
});

/// The statements of one batch: prepared once per connection where sessions last.
struct Statements<'a> {
    claim: Prepared<'a>,
    insert: Prepared<'a>,
    rejected: Prepared<'a>,
}

impl Statements<'static> {
    async fn prepare(
        client: &deadpool_postgres::Client,
        transactions: &Transactions,
    ) -> Result<Self, StoreError> {
        Ok(Statements {
            claim: CLAIM.prepare(client, transactions).await?,
            insert: INSERT.prepare(client, transactions).await?,
            rejected: REJECTED.prepare(client, transactions).await?,
        })
    }
}

/// One batch in two round trips: BEGIN goes out with the claim, and COMMIT with the insert
/// (tokio-postgres pipelines requests that are awaited together, and sends them in order).
async fn claim_and_ingest(
    client: &deadpool_postgres::Client,
    config: &IngestConfig,
    trace: &Trace,
    limit: usize,
    skip: &[i64],
) -> Result<BatchResult, StoreError> {
    let statements = Statements::prepare(client, &config.transactions).await?;
    let claimed = claim(client, &statements.claim, config, limit, skip).await?;
    if claimed.is_empty() {
        client.batch_execute("COMMIT").await?;
        return Ok(BatchResult {
            claimed: 0,
            failure: None,
        });
    }
    let good: Vec<(&Claimed, &Envelope)> = claimed
        .iter()
        .filter_map(|c| c.envelope.as_ref().ok().map(|e| (c, e)))
        .collect();
    let bad: Vec<(&Claimed, String)> = claimed
        .iter()
        .filter_map(|c| c.envelope.as_ref().err().map(|e| (c, e.to_string())))
        .collect();
    let columns = Columns::of(&good);
    let (bad_ids, bad_errors): (Vec<i64>, Vec<String>) =
        bad.iter().map(|(c, e)| (c.outbox_id, e.clone())).unzip();
    let rejected_params: [&(dyn ToSql + Sync); 2] = [&bad_ids, &bad_errors];
    // After a failed statement PostgreSQL turns the COMMIT into a rollback, so the claimed
    // rows are unlocked and unchanged whichever statement failed.
    let (inserted, marked, committed) = join3(
        statements.insert.query(client, &columns.params()),
        async {
            if bad.is_empty() {
                Ok(0)
            } else {
                statements.rejected.execute(client, &rejected_params).await
            }
        },
        client.batch_execute("COMMIT"),
    )
    .await;
    let inserted: HashSet<i64> = match inserted {
        // A probe passed the insert as any message would have: it counts as inserted.
        Ok(rows) => rows
            .iter()
            .map(|r| r.get(0))
            .chain(columns.probe_messages.iter().copied())
            .collect(),
        Err(e) if notifyscope_store::errors::class_of(&e) != ErrorClass::Connection => {
            let failure = insert_failed(client, config, trace, &claimed, &e).await?;
            return Ok(BatchResult {
                claimed: claimed.len(),
                failure: Some(failure),
            });
        }
        Err(e) => return Err(e.into()),
    };
    marked?;
    committed?;
    report(trace, &good, inserted, bad);
    Ok(BatchResult {
        claimed: claimed.len(),
        failure: None,
    })
}

/// BEGIN and the claim of up to `limit` unprocessed rows of the channel, except `skip`.
async fn claim(
    client: &deadpool_postgres::Client,
    statement: &Prepared<'_>,
    config: &IngestConfig,
    limit: usize,
    skip: &[i64],
) -> Result<Vec<Claimed>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let channel = config.channel.as_str();
    let params: [&(dyn ToSql + Sync); 3] = [&channel, &limit, &skip];
    let (began, rows) = join(
        client.batch_execute(config.transactions.begin()),
        statement.query(client, &params),
    )
    .await;
    began?;
    Ok(rows?
        .iter()
        .map(|row| {
            let payload: String = row.get(1);
            Claimed {
                outbox_id: row.get(0),
                attempts: row.get(3),
                published_at: row.get(2),
                message_id: row
                    .get::<_, Option<i64>>(4)
                    .and_then(notifyscope_model::contract::Snowflake::from_i64),
                envelope: Envelope::from_json(&payload),
            }
        })
        .collect())
}

/// The claimed messages as the columns of the insert.
struct Columns<'a> {
    message_ids: Vec<i64>,
    channel_ids: Vec<i64>,
    guild_ids: Vec<Option<i64>>,
    author_ids: Vec<i64>,
    author_names: Vec<&'a str>,
    contents: Vec<&'a str>,
    created: Vec<DateTime<Utc>>,
    event_ids: Vec<uuid::Uuid>,
    synthetic: Vec<bool>,
    /// The outbox rows to mark processed: all but the probes'.
    outbox_ids: Vec<i64>,
    /// Doctor's probes: their outbox rows are deleted, their messages never stored.
    probe_rows: Vec<i64>,
    probe_messages: Vec<i64>,
}

impl<'a> Columns<'a> {
    fn of(good: &[(&Claimed, &'a Envelope)]) -> Self {
        let messages = || good.iter().map(|(_, e)| &e.message);
        Columns {
            message_ids: messages().map(|m| m.message_id.as_i64()).collect(),
            channel_ids: messages().map(|m| m.channel_id.as_i64()).collect(),
            guild_ids: messages().map(|m| m.guild_id.map(|g| g.as_i64())).collect(),
            author_ids: messages().map(|m| m.author_id.as_i64()).collect(),
            author_names: messages().map(|m| m.author_name.as_str()).collect(),
            contents: messages().map(|m| m.content.as_str()).collect(),
            created: messages().map(|m| m.created_at).collect(),
            event_ids: good.iter().map(|(_, e)| e.event_id).collect(),
            synthetic: messages().map(|m| m.synthetic).collect(),
            outbox_ids: good
                .iter()
                .filter(|(_, e)| !is_probe(e))
                .map(|(c, _)| c.outbox_id)
                .collect(),
            probe_rows: good
                .iter()
                .filter(|(_, e)| is_probe(e))
                .map(|(c, _)| c.outbox_id)
                .collect(),
            probe_messages: messages()
                .filter(|m| m.author_id == DOCTOR_PROBE_AUTHOR)
                .map(|m| m.message_id.as_i64())
                .collect(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 11] {
        [
            &self.message_ids,
            &self.channel_ids,
            &self.guild_ids,
            &self.author_ids,
            &self.author_names,
            &self.contents,
            &self.created,
            &self.event_ids,
            &self.synthetic,
            &self.outbox_ids,
            &self.probe_rows,
        ]
    }
}

fn is_probe(envelope: &Envelope) -> bool {
    envelope.message.author_id == DOCTOR_PROBE_AUTHOR
}

/// The database refused the insert (the transaction is rolled back by now). For a reason
/// of its own (a lock, a grant, a missing table) every claimed row is charged an attempt and
/// rescheduled; for a reason of a row's own, a single row is charged, and in a batch, whose
/// culprit is unknown, the rows are taken one at a time next.
async fn insert_failed(
    client: &deadpool_postgres::Client,
    config: &IngestConfig,
    trace: &Trace,
    claimed: &[Claimed],
    e: &tokio_postgres::Error,
) -> Result<Failure, StoreError> {
    let error = error_chain(e);
    let class = notifyscope_store::errors::class_of(e);
    if class.is_transient() {
        tracing::error!(
            channel = %config.channel, rows = claimed.len(), %class, %error,
            "the database refused ingestion: {}; the rows wait for their next attempt",
            class.describe()
        );
        record_failure(client, trace, config, claimed, &error, class).await?;
        return Ok(Failure::Rescheduled);
    }
    Ok(match claimed {
        [only] => {
            record_failure(
                client,
                trace,
                config,
                std::slice::from_ref(only),
                &error,
                class,
            )
            .await?;
            Failure::Row(only.outbox_id)
        }
        _ => {
            tracing::warn!(
                channel = %config.channel, rows = claimed.len(), %error,
                "a row broke the batch; ingesting its rows one at a time"
            );
            Failure::Batch
        }
    })
}

/// Traces what a committed batch did: each message inserted or a duplicate, each row that
/// broke the contract kept as a dead letter.
fn report(
    trace: &Trace,
    good: &[(&Claimed, &Envelope)],
    mut first_seen: HashSet<i64>,
    bad: Vec<(&Claimed, String)>,
) {
    let now = Utc::now();
    for (c, e) in good {
        let id = e.message.message_id;
        // The first row carrying a message id inserted it; later ones in the batch are repeats.
        let outcome = if first_seen.remove(&id.as_i64()) {
            IngestOutcome::Inserted
        } else {
            IngestOutcome::Duplicate
        };
        let latency_ms = (now - c.published_at).num_microseconds().unwrap_or(0) as f64 / 1e3;
        tracing::debug!(message_id = %id, outbox_id = c.outbox_id, ?outcome, "processing message");
        trace.emit(
            Some(id),
            TraceKind::Ingested {
                outbox_id: c.outbox_id,
                outcome,
                latency_ms: latency_ms.max(0.0),
            },
        );
    }
    for (c, error) in bad {
        let outbox_id = c.outbox_id;
        tracing::error!(outbox_id, %error, "outbox row breaks the contract; kept as a dead letter");
        trace.emit(
            c.message_id,
            TraceKind::IngestFailed {
                outbox_id,
                error,
                attempts: 1,
                permanent: true,
                class: None,
                next_attempt_at: None,
            },
        );
    }
}

/// Counts a failed attempt on each row, keeping the error and its class, and sets its next
/// attempt by the schedule; a row out of attempts for that class is given up (`dead_at`).
async fn record_failure(
    client: &tokio_postgres::Client,
    trace: &Trace,
    config: &IngestConfig,
    failed: &[Claimed],
    error: &str,
    class: ErrorClass,
) -> Result<(), StoreError> {
    // What this failure means for each row, by the schedule: the wait before its next
    // attempt, or that it is given up.
    let schedule = &config.retry;
    let limit = schedule.attempts_for(Some(class));
    let outbox_ids: Vec<i64> = failed.iter().map(|c| c.outbox_id).collect();
    let attempts_seen: Vec<i32> = failed.iter().map(|c| c.attempts).collect();
    let waits_s: Vec<f64> = failed
        .iter()
        .map(|c| {
            schedule
                .delay_after(c.attempts.saturating_add(1))
                .as_secs_f64()
        })
        .collect();
    let given_up: Vec<bool> = failed
        .iter()
        .map(|c| c.attempts.saturating_add(1) >= limit)
        .collect();
    // The claim's transaction is over, so another worker may have claimed the row since,
    // failed too and charged it, or even ingested it: a row is charged only while still
    // pending, free, and with the attempts it was claimed with, so one round of attempts is
    // charged once.
    let charge = format!(
        "UPDATE event_outbox o SET attempts = o.attempts + 1, last_error = $2, \
                   error_class = $3, \
                   next_attempt_at = CASE WHEN u.given_up THEN NULL \
                     ELSE clock_timestamp() + make_interval(secs => u.wait_s) END, \
                   dead_at = CASE WHEN u.given_up THEN clock_timestamp() END \
                 FROM UNNEST($1::int8[], $4::int4[], $5::float8[], $6::bool[]) \
                   AS u(id, seen, wait_s, given_up) \
                 WHERE o.id = u.id AND o.attempts = u.seen \
                   AND o.id IN (SELECT id FROM event_outbox WHERE id = ANY($1) AND {PENDING} \
                                FOR UPDATE SKIP LOCKED) \
                 RETURNING o.id, o.attempts, o.message_id, o.next_attempt_at"
    );
    let class_name = class.as_str();
    // A transaction of its own, in one round trip: behind a transaction pooler only a
    // transaction carries the search path.
    let (began, charged, committed) = join3(
        client.batch_execute(config.transactions.begin()),
        client.query_typed(
            &charge,
            &[
                (&outbox_ids, Type::INT8_ARRAY),
                (&error, Type::TEXT),
                (&class_name, Type::TEXT),
                (&attempts_seen, Type::INT4_ARRAY),
                (&waits_s, Type::FLOAT8_ARRAY),
                (&given_up, Type::BOOL_ARRAY),
            ],
        ),
        client.batch_execute("COMMIT"),
    )
    .await;
    began?;
    let rows = charged?;
    committed?;
    for row in rows {
        let outbox_id: i64 = row.get(0);
        let attempts: i32 = row.get(1);
        let message_id: Option<i64> = row.get(2);
        let next_attempt_at: Option<DateTime<Utc>> = row.get(3);
        let permanent = next_attempt_at.is_none();
        if permanent {
            tracing::error!(outbox_id, attempts, %class, %error, "ingestion failed; the row is given up as a dead letter");
        } else {
            tracing::warn!(outbox_id, attempts, %class, %error, "ingestion failed; the row is tried again later");
        }
        trace.emit(
            message_id.and_then(notifyscope_model::contract::Snowflake::from_i64),
            TraceKind::IngestFailed {
                outbox_id,
                error: error.to_owned(),
                attempts,
                permanent,
                class: Some(class),
                next_attempt_at,
            },
        );
    }
    Ok(())
}
