//! The pipeline against a real PostgreSQL: each test has a schema and a channel of its own.

mod common;

use std::time::Duration;

use common::{is_duplicate, is_inserted, is_stage, PipelineRig, Seen, TestSchema, WAIT};
use futures_util::StreamExt;
use notifyscope::contract::{MessageRecord, Snowflake};
use notifyscope::pipeline::bot_path::Handled;
use notifyscope::pipeline::publish::{self, PublishError, PublisherHandle};
use notifyscope::pipeline::synthetic;
use notifyscope::pipeline::PipelineConfig;
use notifyscope::store::Identifier;
use notifyscope::trace::{Trace, TraceKind};
use tokio_util::sync::CancellationToken;

/// Publishes `n` synthetic messages with up to 512 in flight, returning their ids.
async fn publish_many(publisher: &PublisherHandle, n: usize) -> Vec<Snowflake> {
    futures_util::stream::iter(0..n)
        .map(|i| {
            let publisher = publisher.clone();
            async move {
                let msg = synthetic::message(format!("message {i}")).to_record();
                let id = msg.message_id;
                publish::publish_event_safe(&publisher, msg, notifyscope::trace::Source::Simulated)
                    .await
                    .expect("published");
                id
            }
        })
        .buffer_unordered(512)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_round_trip_in_stage_order() {
    let PipelineRig {
        t,
        mut seen,
        pipeline,
        ..
    } = PipelineRig::start("roundtrip").await;

    let msg = synthetic::message("hello ✓");
    let id = msg.message.message_id;
    let handled = pipeline.handle_message(msg).await.expect("handled");
    assert!(matches!(handled, Handled::Published(_)));
    for stage in ["published", "notified", "ingested"] {
        seen.first(stage, |e| e.message_id == Some(id) && is_stage(e, stage))
            .await;
    }

    let mut stages: Vec<_> = seen
        .events
        .iter()
        .filter(|e| e.message_id == Some(id))
        .collect();
    stages.sort_by_key(|e| e.at);
    let names: Vec<&str> = stages.iter().map(|e| e.kind.name()).collect();
    // The publisher says it committed once the commit's reply is read, and the listener may
    // hear the commit's NOTIFY, and ingestion store the row, before that: the order of the
    // last three stages is the order of three processes' clocks, not the pipeline's.
    assert_eq!(names.len(), 4, "{names:?}");
    assert_eq!(names[0], "received", "{names:?}");
    let mut rest = names[1..].to_vec();
    rest.sort_unstable();
    assert_eq!(rest, ["ingested", "notified", "published"]);

    let row = t
        .client()
        .await
        .query_one(
            &format!(
                "SELECT content, synthetic FROM \"{}\".discord_messages WHERE message_id = $1",
                t.name
            ),
            &[&id.as_i64()],
        )
        .await
        .expect("row");
    assert_eq!(row.get::<_, String>(0), "hello ✓");
    assert!(row.get::<_, bool>(1));
    pipeline.shutdown(Duration::from_secs(5)).await;
}

/// Doctor's probe goes through ingestion's insert beside an ordinary message, but is never
/// stored, and its outbox row is deleted rather than marked: it leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doctor_probe_is_ingested_without_a_trace_in_the_tables() {
    let PipelineRig {
        t,
        mut seen,
        pipeline,
        ..
    } = PipelineRig::start("probe").await;
    let mut probe = synthetic::message("probe").to_record();
    probe.author_id = notifyscope_model::sim::DOCTOR_PROBE_AUTHOR;
    let ordinary = synthetic::message("ordinary").to_record();
    let ids = [probe.message_id, ordinary.message_id];
    let publisher = pipeline.publisher();
    let (a, b) = tokio::join!(publisher.publish(probe), publisher.publish(ordinary));
    a.expect("probe published");
    b.expect("message published");
    for id in ids {
        seen.first("ingested", |e| {
            e.message_id == Some(id) && is_stage(e, "ingested")
        })
        .await;
    }
    let stored = t
        .count(&format!(
            "SELECT count(*) FROM \"{}\".discord_messages WHERE message_id = {}",
            t.name,
            ids[0].as_i64()
        ))
        .await;
    assert_eq!(stored, 0, "the probe is not stored");
    let rows = t
        .count(&format!(
            "SELECT count(*) FROM \"{}\".event_outbox WHERE message_id = {}",
            t.name,
            ids[0].as_i64()
        ))
        .await;
    assert_eq!(rows, 0, "the probe's outbox row is deleted");
    let stored = t
        .count(&format!(
            "SELECT count(*) FROM \"{}\".discord_messages WHERE message_id = {}",
            t.name,
            ids[1].as_i64()
        ))
        .await;
    assert_eq!(stored, 1, "the ordinary message is stored");
    pipeline.shutdown(Duration::from_secs(5)).await;
}

/// An outbox row whose payload breaks the contract is given up under the message id of its
/// own column: the payload may not name one, and the failure row must.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_that_breaks_the_contract_fails_under_its_rows_message_id() {
    let PipelineRig {
        t,
        mut seen,
        pipeline,
        ..
    } = PipelineRig::start("broken").await;
    t.client()
        .await
        .execute(
            &format!(
                "INSERT INTO \"{}\".event_outbox (event_id, event_type, channel, message_id, payload) \
                 VALUES (gen_random_uuid(), 'discord.message_created', $1, 1234567890123456789, '{{}}')",
                t.name
            ),
            &[&t.name],
        )
        .await
        .expect("a broken row");
    // Ingestion claims every waiting row once a message wakes it.
    pipeline
        .publisher()
        .publish(synthetic::message("wake").to_record())
        .await
        .expect("published");
    let failed = seen
        .first("ingest_failed", |e| is_stage(e, "ingest_failed"))
        .await;
    assert_eq!(failed.message_id, Some(Snowflake(1234567890123456789)));
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_from_several_publishers() {
    let PipelineRig {
        t,
        mut seen,
        pipeline,
        ..
    } = PipelineRig::start("tenk").await;

    let publishers: Vec<_> = (0..4)
        .map(|_| {
            let p = pipeline.publisher().clone();
            tokio::spawn(async move { publish_many(&p, 2500).await })
        })
        .collect();
    let mut ids = Vec::new();
    for p in publishers {
        ids.extend(p.await.expect("publisher task"));
    }
    assert_eq!(ids.len(), 10_000);
    seen.until_count("10,000 ingested", 10_000, is_inserted)
        .await;
    assert_eq!(seen.count(is_duplicate), 0);
    let rows = t
        .count(&format!(
            "SELECT count(*) FROM \"{}\".discord_messages",
            t.name
        ))
        .await;
    assert_eq!(rows, 10_000, "lost or extra rows");
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_killed_mid_stream_reconnects_and_catches_up() {
    let PipelineRig {
        t,
        mut seen,
        pipeline,
        ..
    } = PipelineRig::start("killed").await;
    let first_up = seen
        .first("listener up", |e| is_stage(e, "listener_up"))
        .await;
    let TraceKind::ListenerUp { pid, .. } = first_up.kind else {
        unreachable!()
    };

    let publisher = pipeline.publisher().clone();
    let stream = tokio::spawn(async move { publish_many(&publisher, 3000).await });
    seen.until_count("some ingested", 300, is_inserted).await;
    let killed: bool = t
        .client()
        .await
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .expect("terminate")
        .get(0);
    assert!(killed);
    seen.first("listener down", |e| is_stage(e, "listener_down"))
        .await;
    seen.until_count("listener up again", 2, |e| is_stage(e, "listener_up"))
        .await;
    let ids = stream.await.expect("publishing finished");
    seen.until_count("all ingested", ids.len(), is_inserted)
        .await;
    let rows = t
        .count(&format!(
            "SELECT count(*) FROM \"{}\".discord_messages",
            t.name
        ))
        .await;
    assert_eq!(rows, 3000);
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_before_any_listener_is_caught_up() {
    let t = TestSchema::new("early");
    let database = t.database();
    database.migrate().await.expect("migrates");
    let stop = CancellationToken::new();
    let (publisher, task) = publish::spawn_publisher(
        database.pool(2).expect("pool"),
        t.channel(),
        Trace::new(),
        100,
        stop.clone(),
    );
    let ids = publish_many(&publisher, 100).await;
    stop.cancel();
    task.await.expect("publisher stops");

    let PipelineRig {
        t: _schema,
        mut seen,
        pipeline,
        ..
    } = PipelineRig::start_on(t, |_| {}).await;
    seen.until_count("caught up", 100, is_inserted).await;
    for id in &ids {
        assert!(seen
            .events
            .iter()
            .any(|e| e.message_id == Some(*id) && is_inserted(e)));
    }
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_notifications_are_rejected_and_the_listener_lives_on() {
    let PipelineRig {
        t,
        mut seen,
        pipeline,
        ..
    } = PipelineRig::start("malformed").await;

    let sql = t.client().await;
    sql.execute("SELECT pg_notify($1, 'garbage')", &[&t.name])
        .await
        .expect("notify");
    let missing_field = r#"{"v":1,"event_type":"discord.message_created","event_id":"7d0e4f0a-3c6e-4a59-9d43-8f7b7a0c2d11","published_at":"2026-11-27T10:00:00.123Z","message":{"channel_id":"1","guild_id":null,"author_id":"2","author_name":"x","author_is_bot":false,"content":"hi","created_at":"2026-11-27T10:00:00.100Z"}}"#;
    sql.execute("SELECT pg_notify($1, $2)", &[&t.name, &missing_field])
        .await
        .expect("notify");

    seen.until_count("two rejections", 2, |e| is_stage(e, "notify_rejected"))
        .await;
    let errors: Vec<String> = seen
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            TraceKind::NotifyRejected { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect();
    assert!(errors[0].contains("not valid JSON"), "{errors:?}");
    assert!(
        errors[1].contains("missing field `message.message_id`"),
        "{errors:?}"
    );

    let msg = synthetic::message("after the garbage");
    let id = msg.message.message_id;
    pipeline.handle_message(msg).await.expect("published");
    seen.first("good message ingested", |e| {
        e.message_id == Some(id) && is_inserted(e)
    })
    .await;
    // Dead letters are written by a task of their own, so that they never hold up the
    // listener: under load the good message can be ingested before both are committed.
    let dead_letters = format!("SELECT count(*) FROM \"{}\".dead_letters", t.name);
    let dead = tokio::time::timeout(WAIT, async {
        loop {
            let dead = t.count(&dead_letters).await;
            if dead >= 2 {
                return dead;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("dead letters not written within {WAIT:?}"));
    assert_eq!(dead, 2);
    pipeline.shutdown(Duration::from_secs(5)).await;
}

fn multibyte_content(bytes: usize) -> String {
    // "é" is two bytes, "✓" three: fill with both, then pad with ASCII to the exact size.
    let mut s = String::new();
    while s.len() + 5 <= bytes {
        s.push_str("é✓");
    }
    while s.len() < bytes {
        s.push('a');
    }
    assert_eq!(s.len(), bytes);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_contents_travel_by_reference_intact() {
    let PipelineRig {
        t,
        mut seen,
        pipeline,
        ..
    } = PipelineRig::start("large").await;

    let mut sent = Vec::new();
    for size in [10, 7_999, 8_000, 16_000] {
        let content = multibyte_content(size);
        let msg = synthetic::message(content.clone()).to_record();
        let receipt = pipeline
            .publisher()
            .publish(msg.clone())
            .await
            .expect("published");
        assert_eq!(receipt.by_ref, size > 10, "size {size}");
        assert!(receipt.notify_bytes <= 7_999);
        sent.push((msg.message_id, content));
    }
    seen.until_count("all four", 4, is_inserted).await;
    let client = t.client().await;
    for (id, content) in sent {
        let stored: String = client
            .query_one(
                &format!(
                    "SELECT content FROM \"{}\".discord_messages WHERE message_id = $1",
                    t.name
                ),
                &[&id.as_i64()],
            )
            .await
            .expect("row")
            .get(0);
        assert_eq!(stored, content);
    }
    // A row can be ingested before its own NOTIFY is read: wait for the NOTIFYs too.
    seen.until_count("three by reference", 3, |e| {
        matches!(e.kind, TraceKind::Notified { by_ref: true, .. })
    })
    .await;
    let by_ref = seen.count(|e| matches!(e.kind, TraceKind::Notified { by_ref: true, .. }));
    assert_eq!(by_ref, 3);
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_message_twice_is_one_row_and_a_duplicate() {
    let PipelineRig {
        t,
        mut seen,
        pipeline,
        ..
    } = PipelineRig::start("dup").await;

    let msg: MessageRecord = synthetic::message("twice").to_record();
    pipeline
        .publisher()
        .publish(msg.clone())
        .await
        .expect("first");
    seen.first("first inserted", is_inserted).await;
    pipeline
        .publisher()
        .publish(msg.clone())
        .await
        .expect("second");
    let dup = seen.first("second is a duplicate", is_duplicate).await;
    assert_eq!(dup.message_id, Some(msg.message_id));
    let rows = t
        .count(&format!(
            "SELECT count(*) FROM \"{}\".discord_messages",
            t.name
        ))
        .await;
    assert_eq!(rows, 1);
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_blocking_works_from_a_thread_and_refuses_inside_the_runtime() {
    let PipelineRig {
        t: _schema,
        mut seen,
        pipeline,
        ..
    } = PipelineRig::start("blocking").await;

    let publisher = pipeline.publisher().clone();
    let from_thread = std::thread::spawn(move || {
        publisher.publish_blocking(synthetic::message("from a plain thread").to_record())
    })
    .join()
    .expect("thread finished");
    let receipt = from_thread.expect("published from a std thread");
    seen.first("ingested", |e| {
        e.message_id == Some(receipt.message_id) && is_inserted(e)
    })
    .await;

    let inside = pipeline
        .publisher()
        .publish_blocking(synthetic::message("inside").to_record());
    assert!(
        matches!(inside, Err(PublishError::InsideRuntime)),
        "{inside:?}"
    );
    let failure = seen
        .first("publish_failed traced", |e| is_stage(e, "publish_failed"))
        .await;
    assert!(failure.to_json().contains("inside the async runtime"));
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingestion_processes_share_one_outbox() {
    let t = TestSchema::new("share");
    let trace_a = Trace::new();
    let trace_b = Trace::new();
    let mut seen_a = Seen::new(trace_a.subscribe());
    let mut seen_b = Seen::new(trace_b.subscribe());
    let mut config = PipelineConfig::new(t.database(), t.channel());
    // Small claims so that both get a share of the work.
    config.ingest_batch = 20;
    let a = common::start_pipeline(config.clone(), &trace_a).await;
    let b = common::start_pipeline(config, &trace_b).await;

    publish_many(a.publisher(), 4000).await;
    let rows_query = format!("SELECT count(*) FROM \"{}\".discord_messages", t.name);
    let pending_query = format!(
        "SELECT count(*) FROM \"{}\".event_outbox WHERE processed_at IS NULL",
        t.name
    );
    tokio::time::timeout(WAIT, async {
        while t.count(&pending_query).await > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("outbox drained");
    // Both traces have every event that was committed by now.
    seen_a.until_count("a's share", 1, is_inserted).await;
    seen_b.until_count("b's share", 1, is_inserted).await;
    a.shutdown(Duration::from_secs(5)).await;
    b.shutdown(Duration::from_secs(5)).await;
    seen_a.drain();
    seen_b.drain();
    let (ia, ib) = (seen_a.count(is_inserted), seen_b.count(is_inserted));
    assert_eq!(t.count(&rows_query).await, 4000);
    assert_eq!(ia + ib, 4000, "a={ia} b={ib}");
    assert!(ia > 0 && ib > 0, "a={ia} b={ib}");
    assert_eq!(seen_a.count(is_duplicate) + seen_b.count(is_duplicate), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_case_is_kept_on_both_sides() {
    let t = TestSchema::new("case");
    let channel = Identifier::channel(&format!("Ev_{}", &t.name[2..])).expect("valid");
    let PipelineRig {
        t,
        mut seen,
        pipeline,
        ..
    } = PipelineRig::start_on(t, |config| config.channel = channel.clone()).await;

    // The lower-case neighbour is another channel: nothing arrives from it.
    let lower = channel.as_str().to_lowercase();
    t.client()
        .await
        .execute("SELECT pg_notify($1, 'wrong case')", &[&lower])
        .await
        .expect("notify");
    let msg = synthetic::message("mixed case channel");
    let id = msg.message.message_id;
    pipeline.handle_message(msg).await.expect("published");
    let notified = seen
        .first("notified on the exact channel", |e| {
            e.message_id == Some(id) && is_stage(e, "notified")
        })
        .await;
    assert!(notified
        .to_json()
        .contains(&format!("\"channel\":\"{channel}\"")));
    seen.first("ingested", |e| e.message_id == Some(id) && is_inserted(e))
        .await;
    assert_eq!(seen.count(|e| is_stage(e, "notify_rejected")), 0);
    pipeline.shutdown(Duration::from_secs(5)).await;
}
