//! Ingestion: workers claim unprocessed outbox rows of their channel, insert the messages into
//! `discord_messages` and mark the rows processed, all in one transaction.
//!
//! `FOR UPDATE SKIP LOCKED` lets any number of workers, in any number of processes, share one
//! outbox without waiting on each other; the message-id primary key with `ON CONFLICT DO
//! NOTHING` makes a second delivery of the same message a no-op, reported as `duplicate`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::event::{ContractError, Envelope};
use crate::store::{error_chain, is_connection_error, Identifier, StoreError, MAX_ATTEMPTS};
use crate::trace::{IngestOutcome, Stage, Trace};

/// Rows one worker claims per transaction at most.
pub const DEFAULT_BATCH: usize = 500;

/// Wakes every ingestion worker; a wake-up that arrives while a worker is busy is kept, so
/// none is lost between "nothing left" and "waiting".
#[derive(Clone, Default)]
pub struct IngestWaker {
    workers: Arc<Vec<Arc<Notify>>>,
}

impl IngestWaker {
    fn new(workers: usize) -> (Self, Vec<Arc<Notify>>) {
        let notifies: Vec<Arc<Notify>> = (0..workers).map(|_| Arc::new(Notify::new())).collect();
        (
            IngestWaker {
                workers: Arc::new(notifies.clone()),
            },
            notifies,
        )
    }

    pub fn wake(&self) {
        for n in self.workers.iter() {
            n.notify_one();
        }
    }
}

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub channel: Identifier,
    pub batch: usize,
    /// Workers also look for work this often, for rows whose NOTIFY never came (published
    /// while down, or a retry after a failure).
    pub sweep: Duration,
}

impl IngestConfig {
    pub fn new(channel: Identifier) -> Self {
        IngestConfig {
            channel,
            batch: DEFAULT_BATCH,
            sweep: Duration::from_secs(1),
        }
    }
}

pub fn spawn_workers(
    pool: Pool,
    config: IngestConfig,
    workers: usize,
    trace: Trace,
    shutdown: CancellationToken,
) -> (IngestWaker, Vec<JoinHandle<()>>) {
    let (waker, notifies) = IngestWaker::new(workers.max(1));
    let config = Arc::new(config);
    let tasks = notifies
        .into_iter()
        .map(|notify| {
            tokio::spawn(worker(
                pool.clone(),
                config.clone(),
                trace.clone(),
                notify,
                shutdown.clone(),
            ))
        })
        .collect();
    (waker, tasks)
}

async fn worker(
    pool: Pool,
    config: Arc<IngestConfig>,
    trace: Trace,
    notify: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut database_up = true;
    let mut batch = config.batch.max(1);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            () = notify.notified() => {}
            () = tokio::time::sleep(config.sweep) => {}
        }
        loop {
            match ingest_batch(&pool, &config, &trace, batch).await {
                Ok(BatchResult { claimed, failed }) => {
                    database_up = true;
                    if failed && batch > 1 {
                        // One row broke the batch: go one row at a time so the others pass.
                        batch = 1;
                        continue;
                    }
                    if claimed == 0 || failed {
                        batch = config.batch.max(1);
                        break;
                    }
                }
                Err(e) => {
                    let error = error_chain(&e);
                    tracing::error!(channel = %config.channel, %error, "ingestion cannot reach the database");
                    if database_up {
                        database_up = false;
                        trace.emit(None, Stage::DatabaseDown { error });
                    }
                    break;
                }
            }
            if shutdown.is_cancelled() {
                return;
            }
        }
    }
}

struct BatchResult {
    claimed: usize,
    /// The insert failed and the claimed rows were marked for retry.
    failed: bool,
}

struct Claimed {
    outbox_id: i64,
    published_at: DateTime<Utc>,
    envelope: Result<Envelope, ContractError>,
}

async fn ingest_batch(
    pool: &Pool,
    config: &IngestConfig,
    trace: &Trace,
    limit: usize,
) -> Result<BatchResult, StoreError> {
    let mut client = pool.get().await?;
    let claim = client
        .prepare_cached(
            "SELECT id, payload::text, published_at FROM event_outbox \
             WHERE channel = $1 AND processed_at IS NULL AND attempts < $2 \
             ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED",
        )
        .await?;
    let insert = client
        .prepare_cached(
            "INSERT INTO discord_messages \
               (message_id, channel_id, guild_id, author_id, author_name, content, created_at, \
                event_id, synthetic) \
             SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::text[], \
                                  $6::text[], $7::timestamptz[], $8::uuid[], $9::bool[]) \
             ON CONFLICT (message_id) DO NOTHING \
             RETURNING message_id",
        )
        .await?;
    let done = client
        .prepare_cached(
            "UPDATE event_outbox SET processed_at = clock_timestamp(), attempts = attempts + 1 \
             WHERE id = ANY($1)",
        )
        .await?;
    let rejected = client
        .prepare_cached(
            "UPDATE event_outbox o SET attempts = $1, last_error = u.err \
             FROM UNNEST($2::int8[], $3::text[]) AS u(id, err) WHERE o.id = u.id",
        )
        .await?;

    let tx = client.transaction().await?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = tx
        .query(&claim, &[&config.channel.as_str(), &MAX_ATTEMPTS, &limit])
        .await?;
    if rows.is_empty() {
        return Ok(BatchResult {
            claimed: 0,
            failed: false,
        });
    }
    let claimed: Vec<Claimed> = rows
        .iter()
        .map(|row| {
            let payload: String = row.get(1);
            Claimed {
                outbox_id: row.get(0),
                published_at: row.get(2),
                envelope: Envelope::from_json(&payload),
            }
        })
        .collect();

    let good: Vec<(&Claimed, &Envelope)> = claimed
        .iter()
        .filter_map(|c| c.envelope.as_ref().ok().map(|e| (c, e)))
        .collect();
    let bad: Vec<(i64, String)> = claimed
        .iter()
        .filter_map(|c| {
            c.envelope
                .as_ref()
                .err()
                .map(|e| (c.outbox_id, e.to_string()))
        })
        .collect();

    let messages: Vec<_> = good.iter().map(|(_, e)| &e.message).collect();
    let message_ids: Vec<i64> = messages.iter().map(|m| m.message_id.as_i64()).collect();
    let channel_ids: Vec<i64> = messages.iter().map(|m| m.channel_id.as_i64()).collect();
    let guild_ids: Vec<Option<i64>> = messages
        .iter()
        .map(|m| m.guild_id.map(|g| g.as_i64()))
        .collect();
    let author_ids: Vec<i64> = messages.iter().map(|m| m.author_id.as_i64()).collect();
    let author_names: Vec<&str> = messages.iter().map(|m| m.author_name.as_str()).collect();
    let contents: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
    let created: Vec<DateTime<Utc>> = messages.iter().map(|m| m.created_at).collect();
    let event_ids: Vec<uuid::Uuid> = good.iter().map(|(_, e)| e.event_id).collect();
    let synthetic: Vec<bool> = messages.iter().map(|m| m.synthetic).collect();

    let inserted = tx
        .query(
            &insert,
            &[
                &message_ids,
                &channel_ids,
                &guild_ids,
                &author_ids,
                &author_names,
                &contents,
                &created,
                &event_ids,
                &synthetic,
            ],
        )
        .await;
    let inserted: HashSet<i64> = match inserted {
        Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
        Err(e) if !is_connection_error(&e) => {
            drop(tx);
            let ids: Vec<i64> = claimed.iter().map(|c| c.outbox_id).collect();
            record_failure(&client, trace, &ids, &error_chain(&e)).await?;
            return Ok(BatchResult {
                claimed: claimed.len(),
                failed: true,
            });
        }
        Err(e) => return Err(e.into()),
    };

    let good_ids: Vec<i64> = good.iter().map(|(c, _)| c.outbox_id).collect();
    tx.execute(&done, &[&good_ids]).await?;
    if !bad.is_empty() {
        let (ids, errors): (Vec<i64>, Vec<String>) = bad.iter().cloned().unzip();
        tx.execute(&rejected, &[&MAX_ATTEMPTS, &ids, &errors])
            .await?;
    }
    tx.commit().await?;

    let now = Utc::now();
    let mut first_seen = inserted;
    for (c, e) in &good {
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
            Stage::Ingested {
                outbox_id: c.outbox_id,
                outcome,
                latency_ms: latency_ms.max(0.0),
            },
        );
    }
    for (outbox_id, error) in bad {
        tracing::error!(outbox_id, %error, "outbox row breaks the contract; kept as a dead letter");
        trace.emit(
            None,
            Stage::IngestFailed {
                outbox_id,
                error,
                attempts: MAX_ATTEMPTS,
                permanent: true,
            },
        );
    }
    Ok(BatchResult {
        claimed: claimed.len(),
        failed: false,
    })
}

/// Counts a failed attempt on each row, keeping the error; rows that reach the limit stop
/// being claimed.
async fn record_failure(
    client: &tokio_postgres::Client,
    trace: &Trace,
    outbox_ids: &[i64],
    error: &str,
) -> Result<(), StoreError> {
    let rows = client
        .query(
            "UPDATE event_outbox SET attempts = attempts + 1, last_error = $2 \
             WHERE id = ANY($1) RETURNING id, attempts, message_id",
            &[&outbox_ids, &error],
        )
        .await?;
    for row in rows {
        let outbox_id: i64 = row.get(0);
        let attempts: i32 = row.get(1);
        let message_id: Option<i64> = row.get(2);
        tracing::error!(outbox_id, attempts, %error, "ingestion failed");
        trace.emit(
            message_id.and_then(crate::event::Snowflake::from_i64),
            Stage::IngestFailed {
                outbox_id,
                error: error.to_owned(),
                attempts,
                permanent: attempts >= MAX_ATTEMPTS,
            },
        );
    }
    Ok(())
}
