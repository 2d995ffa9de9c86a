//! Nothing published is lost: not when PostgreSQL crashes mid-stream (ingestion commits
//! without waiting for the WAL flush, which is safe only because a lost ingestion commit
//! leaves its outbox row to be ingested again), and not when a batch fails part-way.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{is_inserted, is_stage, PipelineRig, TestSchema, WAIT};
use notifyscope::contract::Snowflake;
use notifyscope::pipeline::bot_path::Handled;
use notifyscope::pipeline::retry::RetrySchedule;
use notifyscope::pipeline::synthetic;
use notifyscope::pipeline::{Pipeline, PipelineConfig};
use notifyscope::store::embedded::EmbeddedPostgres;
use notifyscope::store::{Database, ErrorClass, Identifier};
use notifyscope::trace::{Trace, TraceEvent, TraceKind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Messages the senders of the crash test put through the bot path at most.
const CRASH_TEST_MESSAGES: usize = 30_000;

async fn start(config: PipelineConfig, trace: &Trace) -> Pipeline {
    common::start_pipeline(config, trace).await
}

/// What the crash test follows on the trace, read continuously by a task of its own so that
/// the stream never outruns it while the test waits for the server.
#[derive(Debug, Clone, Default)]
struct Progress {
    inserted: usize,
    /// Messages whose row was inserted a second time: their first ingestion commit was lost.
    inserted_again: usize,
    listener_up: usize,
    listener_down: usize,
    missed: u64,
}

fn follow(trace: &Trace) -> watch::Receiver<Progress> {
    let mut rx = trace.subscribe();
    let (tx, progress) = watch::channel(Progress::default());
    tokio::spawn(async move {
        let mut inserted = HashSet::new();
        while let Some(event) = rx.recv().await {
            tx.send_modify(|p| match &event.kind {
                TraceKind::Ingested { .. } if is_inserted(&event) => {
                    if inserted.insert(event.message_id) {
                        p.inserted += 1;
                    } else {
                        p.inserted_again += 1;
                    }
                }
                TraceKind::ListenerUp { .. } => p.listener_up += 1,
                TraceKind::ListenerDown { .. } => p.listener_down += 1,
                TraceKind::Lagged { missed } => p.missed += missed,
                _ => {}
            });
        }
    });
    progress
}

async fn wait_for(
    progress: &mut watch::Receiver<Progress>,
    what: &str,
    pred: impl FnMut(&Progress) -> bool,
) -> Progress {
    let reached = match tokio::time::timeout(WAIT, progress.wait_for(pred)).await {
        Ok(Ok(p)) => Some(p.clone()),
        Ok(Err(_)) => panic!("trace closed while waiting for {what}"),
        Err(_) => None,
    };
    reached.unwrap_or_else(|| panic!("timed out waiting for {what}: {:?}", *progress.borrow()))
}

/// `n` messages through the bot path at once; every one must be published.
async fn burst(pipeline: &Arc<Pipeline>, n: usize) -> Vec<Snowflake> {
    let sends: Vec<_> = (0..n)
        .map(|i| {
            let pipeline = pipeline.clone();
            tokio::spawn(async move {
                let msg = synthetic::message(format!("burst message {i}, just before a crash"));
                let id = msg.message.message_id;
                match pipeline.handle_message(msg).await {
                    Ok(Handled::Published(_)) => id,
                    other => panic!("burst message not published: {other:?}"),
                }
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(n);
    for send in sends {
        ids.push(send.await.expect("burst sender"));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_stop_mid_stream_loses_no_published_message() {
    // A private cluster: stopping the shared server would break every other test.
    common::require_server_binaries();
    let dir = tempfile::tempdir().expect("temporary directory");
    let pg = EmbeddedPostgres::start(Some(dir.path().to_path_buf()))
        .await
        .expect("embedded PostgreSQL starts");
    let url = pg.url().to_owned();
    let database = Database::new(&url, Identifier::schema("crash").expect("valid")).expect("URL");
    let trace = Trace::new();
    let mut progress = follow(&trace);
    let mut config = PipelineConfig::new(
        database.clone(),
        Identifier::channel("crash").expect("valid"),
    );
    config.control = false;
    // The point of the test: ingestion's relaxed commits lose nothing.
    config.ingest_async_commit = true;
    let pipeline = Arc::new(start(config, &trace).await);

    // Senders keep putting messages through the bot path, before, during and after the
    // crash; a message counts as sent when the bot path reported it published.
    let confirmed = Arc::new(Mutex::new(Vec::<Snowflake>::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let stop_sending = CancellationToken::new();
    let senders: Vec<_> = (0..16)
        .map(|_| {
            let (pipeline, confirmed, sent, stop) = (
                pipeline.clone(),
                confirmed.clone(),
                sent.clone(),
                stop_sending.clone(),
            );
            tokio::spawn(async move {
                while !stop.is_cancelled()
                    && sent.fetch_add(1, Ordering::Relaxed) < CRASH_TEST_MESSAGES
                {
                    let msg = synthetic::message("written before, during or after a crash");
                    let id = msg.message.message_id;
                    if let Ok(Handled::Published(_)) = pipeline.handle_message(msg).await {
                        confirmed.lock().expect("lock").push(id);
                    }
                }
            })
        })
        .collect();

    wait_for(&mut progress, "ingestion under way", |p| p.inserted >= 500).await;
    pg.stop_immediate().await.expect("immediate stop");
    wait_for(&mut progress, "the listener to notice", |p| {
        p.listener_down >= 1
    })
    .await;
    let published_before_restart = confirmed.lock().expect("lock").len();

    let pg = EmbeddedPostgres::start(Some(dir.path().to_path_buf()))
        .await
        .expect("the cluster recovers and starts again");
    assert_eq!(pg.url(), url);
    let back = wait_for(&mut progress, "the listener to come back", |p| {
        p.listener_up >= 2
    })
    .await;
    wait_for(
        &mut progress,
        "ingestion under way after the restart",
        |p| p.inserted >= back.inserted + 500,
    )
    .await;
    stop_sending.cancel();
    for sender in senders {
        sender.await.expect("sender");
    }
    let mut confirmed: Vec<Snowflake> = confirmed.lock().expect("lock").clone();
    assert!(published_before_restart > 0);
    assert!(
        confirmed.len() > published_before_restart,
        "sent after the restart too"
    );

    // A second crash right after a burst was published: its outbox commits waited for the
    // WAL flush and must survive (made without waiting, the last of them would die).
    wait_for(&mut progress, "ingestion to catch up", |p| {
        p.inserted >= confirmed.len()
    })
    .await;
    confirmed.extend(burst(&pipeline, 100).await);
    pg.stop_immediate().await.expect("immediate stop");
    let pg = EmbeddedPostgres::start(Some(dir.path().to_path_buf()))
        .await
        .expect("the cluster recovers again");
    wait_for(&mut progress, "the listener to come back again", |p| {
        p.listener_up >= 3
    })
    .await;

    // A third right after a burst was ingested, with nothing committed since: the ingestion
    // commits, made without waiting for the flush, are the likeliest to die, and must be
    // redone.
    wait_for(&mut progress, "ingestion to catch up again", |p| {
        p.inserted >= confirmed.len()
    })
    .await;
    confirmed.extend(burst(&pipeline, 100).await);
    wait_for(&mut progress, "the last burst ingested", |p| {
        p.inserted >= confirmed.len()
    })
    .await;
    pg.stop_immediate().await.expect("immediate stop");
    let pg = EmbeddedPostgres::start(Some(dir.path().to_path_buf()))
        .await
        .expect("the cluster recovers a third time");
    wait_for(
        &mut progress,
        "the listener to come back a third time",
        |p| p.listener_up >= 4,
    )
    .await;

    // Shutdown drains the backlog: rows whose ingestion commit died with the server are
    // ingested again.
    let pipeline = Arc::into_inner(pipeline).expect("senders are done");
    pipeline.shutdown(Duration::from_secs(60)).await;

    let client = database
        .connect_plain("durability-test")
        .await
        .expect("connects");
    let ids: Vec<i64> = confirmed.iter().map(|id| id.as_i64()).collect();
    let rows: Vec<i64> = client
        .query(
            "SELECT message_id FROM discord_messages WHERE message_id = ANY($1)",
            &[&ids],
        )
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let found: HashSet<i64> = rows.iter().copied().collect();
    let lost: Vec<&i64> = ids.iter().filter(|id| !found.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} published messages lost, e.g. {:?}",
        lost.len(),
        ids.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(rows.len(), found.len(), "one row per message");
    let unprocessed: i64 = client
        .query_one(
            "SELECT count(*) FROM event_outbox WHERE processed_at IS NULL",
            &[],
        )
        .await
        .expect("backlog")
        .get(0);
    assert_eq!(unprocessed, 0, "the outbox is drained");
    // One outbox row per message: a publish retried after the crash did not add a second.
    let outbox: i64 = client
        .query_one(
            "SELECT count(*) FROM event_outbox WHERE message_id = ANY($1)",
            &[&ids],
        )
        .await
        .expect("outbox rows")
        .get(0);
    assert_eq!(outbox as usize, ids.len());

    let end = progress.borrow().clone();
    eprintln!(
        "{} messages published, {published_before_restart} before the first of three crashes; {} \
         ingested again after their ingestion commit was lost in a crash; trace events \
         missed: {}",
        ids.len(),
        end.inserted_again,
        end.missed
    );
    drop(client);
    pg.stop().await;
}

/// A schedule short enough for a test: 50, 100, 200, 200 ms between the five attempts of a
/// row that fails on its own.
fn quick_retries() -> RetrySchedule {
    RetrySchedule {
        first_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        ..RetrySchedule::default()
    }
}

/// The database refuses a poison row as a CHECK constraint named `no_poison` would (same
/// SQLSTATE, same words), and says in the error when the attempt was claimed: `now()` inside
/// the insert is the start of the transaction whose claim picked the row, the very `now()`
/// the claim compared `next_attempt_at` with. And every attempt charged to a pending row is
/// noted in `charged` with what the row was given, between the start of the statement that
/// charged it and the end of that statement's work on it: the two moments the database's own
/// clock puts around the `clock_timestamp()` the next attempt was counted from.
fn refuse_poison_and_note_charges(schema: &str) -> String {
    format!(
        r#"
        CREATE FUNCTION "{s}".refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.content = 'poison' THEN
                RAISE EXCEPTION
                    'new row violates check constraint "no_poison" (claimed at % us)',
                    (extract(epoch FROM now()) * 1000000)::int8
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'no_poison';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER no_poison BEFORE INSERT ON "{s}".discord_messages
            FOR EACH ROW EXECUTE FUNCTION "{s}".refuse_poison();
        CREATE TABLE "{s}".charged (
            outbox_id int8, attempts int4, next_attempt_at timestamptz, dead boolean,
            statement_at timestamptz, done_by timestamptz);
        CREATE FUNCTION "{s}".note_charge() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO "{s}".charged VALUES (NEW.id, NEW.attempts, NEW.next_attempt_at,
                NEW.dead_at IS NOT NULL, statement_timestamp(), clock_timestamp());
            RETURN NULL;
        END $$;
        CREATE TRIGGER note_charge AFTER UPDATE OF attempts ON "{s}".event_outbox
            FOR EACH ROW WHEN (NEW.processed_at IS NULL AND NEW.attempts > OLD.attempts)
            EXECUTE FUNCTION "{s}".note_charge();
        "#,
        s = schema
    )
}

/// When the claim of the attempt that failed with `error` was made, in µs since the epoch,
/// as the database put it in the error.
fn claimed_at_us(error: &str) -> i64 {
    error
        .split("claimed at ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no claim time in the error: {error}"))
}

/// One failed attempt as traced: its number, whether it gave the row up, the error class,
/// the next attempt, and when (µs) its claim was made, by the database's clock.
type Attempt = (i32, bool, Option<ErrorClass>, Option<DateTime<Utc>>, i64);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_the_database_refuses_are_isolated_retried_spaced_and_given_up_after_five() {
    let PipelineRig {
        t,
        mut seen,
        pipeline,
        ..
    } = PipelineRig::start_on(TestSchema::new("poison"), |config| {
        config.control = false;
        config.retry = quick_retries();
        config.ingest_sweep = Duration::from_millis(50);
    })
    .await;
    t.client()
        .await
        .batch_execute(&refuse_poison_and_note_charges(&t.name))
        .await
        .expect("poison refused, charges noted");

    // Sent together, so that the refused rows share batches with good ones.
    let publisher = pipeline.publisher().clone();
    let sends: Vec<_> = (0..200)
        .map(|i| {
            let publisher = publisher.clone();
            tokio::spawn(async move {
                let content = if i == 60 || i == 140 {
                    "poison".to_owned()
                } else {
                    format!("good {i}")
                };
                let record = synthetic::message(content).to_record();
                let id = record.message_id;
                publisher.publish(record).await.expect("published");
                id
            })
        })
        .collect();
    let mut ids = Vec::new();
    for send in sends {
        ids.push(send.await.expect("send task"));
    }
    let poison = [ids[60], ids[140]];
    seen.until_count("198 good messages ingested", 198, is_inserted)
        .await;
    let client = t.client().await;
    for id in poison {
        let failures = |e: &TraceEvent| e.message_id == Some(id) && is_stage(e, "ingest_failed");
        seen.until_count("five attempts of a refused row", 5, failures)
            .await;
        let attempts: Vec<Attempt> = seen
            .events
            .iter()
            .filter(|e| failures(e))
            .map(|e| match &e.kind {
                TraceKind::IngestFailed {
                    error,
                    attempts,
                    permanent,
                    class,
                    next_attempt_at,
                    ..
                } => {
                    assert!(error.contains("no_poison"), "{error}");
                    (
                        *attempts,
                        *permanent,
                        *class,
                        *next_attempt_at,
                        claimed_at_us(error),
                    )
                }
                _ => unreachable!("matched on the stage name"),
            })
            .collect();
        let numbers: Vec<i32> = attempts.iter().map(|a| a.0).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5], "one attempt at a time, counted");
        for (n, permanent, class, next, _) in &attempts[..4] {
            assert!(!permanent, "attempt {n} is retried");
            assert_eq!(*class, Some(ErrorClass::Constraint));
            assert!(
                next.is_some(),
                "attempt {n}: a retried row has its next attempt"
            );
        }
        let (_, permanent, _, next, _) = attempts[4];
        assert!(permanent, "the fifth attempt gives the row up");
        assert_eq!(next, None, "no attempt after the fifth");

        // Spaced: no attempt was claimed before the time the previous one set for it, both
        // by the database's clock, whatever the machine's load made of the waits in between.
        for pair in attempts.windows(2) {
            let due = pair[0].3.expect("set above").timestamp_micros();
            let claimed = pair[1].4;
            assert!(
                claimed >= due,
                "attempt {} claimed {} µs before its time",
                pair[1].0,
                due - claimed
            );
        }

        // By the schedule: each retried attempt set its next one the schedule's delay after
        // the moment it was charged, which the database's clock puts between the start of
        // the charging statement and its end.
        let charged = client
            .query(
                "SELECT c.attempts, c.next_attempt_at, c.dead, \
                        (extract(epoch FROM c.next_attempt_at - c.done_by) * 1e6)::int8, \
                        (extract(epoch FROM c.next_attempt_at - c.statement_at) * 1e6)::int8 \
                 FROM charged c JOIN event_outbox o ON o.id = c.outbox_id \
                 WHERE o.message_id = $1 ORDER BY c.attempts",
                &[&id.as_i64()],
            )
            .await
            .expect("charges");
        let numbers: Vec<i32> = charged.iter().map(|r| r.get(0)).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5], "each attempt charged once");
        for (row, traced) in charged.iter().zip(&attempts) {
            let n: i32 = row.get(0);
            let next: Option<DateTime<Utc>> = row.get(1);
            assert_eq!(next, traced.3, "attempt {n}: traced as the row holds it");
            assert_eq!(
                row.get::<_, bool>(2),
                n == 5,
                "attempt {n}: given up only at five"
            );
            if n < 5 {
                let expected = quick_retries().delay_after(n).as_micros() as i64;
                let (at_least, at_most): (i64, i64) = (row.get(3), row.get(4));
                assert!(
                    (at_least..=at_most).contains(&expected),
                    "attempt {n}: the next one {at_least}..{at_most} µs after it was charged, \
                     the schedule says {expected} µs"
                );
            }
        }
    }

    // The connections that carried the failed transactions still work.
    let after = synthetic::message("after the failure");
    let after_id = after.message.message_id;
    pipeline.handle_message(after).await.expect("published");
    seen.first("a later message ingested", |e| {
        e.message_id == Some(after_id) && is_inserted(e)
    })
    .await;

    let client = t.client().await;
    assert_eq!(
        client
            .query_one("SELECT count(*) FROM discord_messages", &[])
            .await
            .expect("count")
            .get::<_, i64>(0),
        199
    );
    // Sweeps after the fifth attempt claim nothing: the row stays a dead letter.
    tokio::time::sleep(Duration::from_millis(300)).await;
    seen.drain();
    for id in poison {
        let row = client
            .query_one(
                "SELECT processed_at IS NULL, attempts, last_error, error_class, \
                        dead_at IS NOT NULL, next_attempt_at IS NULL \
                 FROM event_outbox WHERE message_id = $1",
                &[&id.as_i64()],
            )
            .await
            .expect("the refused row stays");
        assert!(row.get::<_, bool>(0), "not marked processed");
        assert_eq!(row.get::<_, i32>(1), 5, "five attempts, not one more");
        assert!(row.get::<_, String>(2).contains("no_poison"));
        assert_eq!(row.get::<_, String>(3), "constraint");
        assert!(row.get::<_, bool>(4), "given up as a dead letter");
        assert!(row.get::<_, bool>(5), "no next attempt");
        assert_eq!(
            seen.count(|e| e.message_id == Some(id) && is_stage(e, "ingest_failed")),
            5
        );
    }
    let charged: i64 = client
        .query_one(
            "SELECT count(*) FROM event_outbox WHERE processed_at IS NOT NULL AND attempts <> 1",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(charged, 0, "good rows are not charged for the refused one");
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_row_breaking_the_contract_is_kept_and_the_rest_flows() {
    let PipelineRig {
        t,
        mut seen,
        pipeline,
        ..
    } = PipelineRig::start_on(TestSchema::new("bad_row"), |config| config.control = false).await;

    // Written by someone else straight into the outbox: no `message`.
    let bad_id: i64 = t
        .client()
        .await
        .query_one(
            "INSERT INTO event_outbox (event_id, event_type, channel, payload) \
             VALUES (gen_random_uuid(), 'discord.message_created', $1, \
                     '{\"v\":1,\"event_type\":\"discord.message_created\"}') RETURNING id",
            &[&t.name],
        )
        .await
        .expect("inserted")
        .get(0);
    let publisher = pipeline.publisher().clone();
    let sends: Vec<_> = (0..50)
        .map(|i| {
            let publisher = publisher.clone();
            tokio::spawn(async move {
                publisher
                    .publish(synthetic::message(format!("good {i}")).to_record())
                    .await
                    .expect("published")
            })
        })
        .collect();
    for send in sends {
        send.await.expect("send task");
    }
    seen.until_count("50 ingested", 50, is_inserted).await;
    let failed = seen
        .first(
            "the bad row given up",
            |e| matches!(e.kind, TraceKind::IngestFailed { outbox_id, .. } if outbox_id == bad_id),
        )
        .await;
    assert!(matches!(
        failed.kind,
        TraceKind::IngestFailed {
            permanent: true,
            ..
        }
    ));
    let row = t
        .client()
        .await
        .query_one(
            "SELECT processed_at IS NULL, attempts, last_error FROM event_outbox WHERE id = $1",
            &[&bad_id],
        )
        .await
        .expect("kept");
    assert!(row.get::<_, bool>(0));
    assert_eq!(
        row.get::<_, i32>(1),
        1,
        "given up at once: no retry mends a payload"
    );
    assert!(row.get::<_, String>(2).contains("missing field"));
    assert_eq!(t.count("SELECT count(*) FROM discord_messages").await, 50);
    pipeline.shutdown(Duration::from_secs(1)).await;
}
