//! Retention: processed outbox rows and dead letters go once past their retention, in small
//! batches, while rows still waiting for ingestion and `discord_messages` stay untouched.

mod common;

use std::time::Duration;

use common::{is_inserted, is_stage, PipelineRig, TestSchema};
use notifyscope::pipeline::retention::{Retention, RetentionConfig};
use notifyscope::pipeline::synthetic;
use notifyscope::trace::TraceKind;

fn pruned_rows(kind: &TraceKind, what: &str) -> u64 {
    match kind {
        TraceKind::Pruned { what: w, rows, .. } if w == what => *rows,
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processed_rows_and_dead_letters_go_and_nothing_else() {
    let PipelineRig {
        t,
        mut seen,
        pipeline,
        ..
    } = PipelineRig::start_on(TestSchema::new("retention"), |c| {
        c.control = false;
        c.retention = RetentionConfig {
            outbox: Retention::For(Duration::ZERO),
            dead_letters: Retention::For(Duration::ZERO),
            every: Duration::from_millis(100),
            // Small batches, so that several are needed.
            batch: 7,
        };
    })
    .await;
    let client = t.client().await;
    // A row still waiting: its next attempt is an hour away.
    client
        .execute(
            "INSERT INTO event_outbox (event_id, event_type, channel, payload, next_attempt_at) \
             VALUES (gen_random_uuid(), 'discord.message_created', $1, '{}', now() + interval '1 hour')",
            &[&t.name],
        )
        .await
        .expect("a waiting row");
    for i in 0..30 {
        pipeline
            .publisher()
            .publish(synthetic::message(format!("kept in discord_messages {i}")).to_record())
            .await
            .expect("published");
    }
    seen.until_count("30 ingested", 30, is_inserted).await;
    // A rejected notification becomes a dead letter.
    client
        .execute("SELECT pg_notify($1, 'not json')", &[&t.name])
        .await
        .expect("notify");
    seen.until("every processed row pruned", |evs| {
        evs.iter()
            .map(|e| pruned_rows(&e.kind, "processed outbox rows"))
            .sum::<u64>()
            >= 30
    })
    .await;
    seen.until("the dead letter pruned", |evs| {
        evs.iter()
            .any(|e| pruned_rows(&e.kind, "dead letters") == 1)
    })
    .await;

    let count = |sql: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(sql, &[])
                .await
                .expect("count")
                .get::<_, i64>(0)
        }
    };
    assert_eq!(
        count("SELECT count(*) FROM event_outbox WHERE processed_at IS NOT NULL").await,
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM event_outbox WHERE processed_at IS NULL").await,
        1,
        "the waiting row stays"
    );
    assert_eq!(count("SELECT count(*) FROM dead_letters").await, 0);
    assert_eq!(count("SELECT count(*) FROM discord_messages").await, 30);
    assert!(seen.count(|e| is_stage(e, "pruned")) >= 2);
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forever_keeps_everything() {
    let PipelineRig {
        t,
        mut seen,
        pipeline,
        ..
    } = PipelineRig::start_on(TestSchema::new("retention_forever"), |c| {
        c.control = false;
        c.retention = RetentionConfig {
            outbox: Retention::Forever,
            dead_letters: Retention::Forever,
            every: Duration::from_millis(50),
            batch: 7,
        };
    })
    .await;
    for i in 0..10 {
        pipeline
            .publisher()
            .publish(synthetic::message(format!("kept {i}")).to_record())
            .await
            .expect("published");
    }
    seen.until_count("10 ingested", 10, is_inserted).await;
    // Several pruner periods pass.
    tokio::time::sleep(Duration::from_millis(300)).await;
    seen.drain();
    assert_eq!(seen.count(|e| is_stage(e, "pruned")), 0);
    assert_eq!(
        t.count("SELECT count(*) FROM event_outbox WHERE processed_at IS NOT NULL")
            .await,
        10
    );
    pipeline.shutdown(Duration::from_secs(1)).await;
}

/// Where autovacuum does not look after the outbox (here: turned off for the table, as it
/// may be for a whole server), the pruner vacuums and analyzes what it pruned, so that the
/// deleted rows' space is used again and the outbox stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_autovacuum_the_pruner_vacuums_what_it_pruned() {
    let t = TestSchema::new("retention_vacuum");
    t.database().migrate().await.expect("migrated");
    let client = t.client().await;
    client
        .batch_execute(&format!(
            "ALTER TABLE \"{0}\".event_outbox SET (autovacuum_enabled = false)",
            t.name
        ))
        .await
        .expect("autovacuum off for the outbox");
    let PipelineRig {
        t,
        mut seen,
        pipeline,
        ..
    } = PipelineRig::start_on(t, |c| {
        c.control = false;
        c.retention = RetentionConfig {
            outbox: Retention::For(Duration::ZERO),
            dead_letters: Retention::Forever,
            every: Duration::from_millis(200),
            batch: 1000,
        };
    })
    .await;
    for i in 0..20 {
        pipeline
            .publisher()
            .publish(synthetic::message(format!("vacuumed away {i}")).to_record())
            .await
            .expect("published");
    }
    seen.until_count("20 ingested", 20, is_inserted).await;
    seen.until("processed rows pruned", |evs| {
        evs.iter()
            .map(|e| pruned_rows(&e.kind, "processed outbox rows"))
            .sum::<u64>()
            >= 20
    })
    .await;
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let vacuumed: bool = client
            .query_one(
                "SELECT last_vacuum IS NOT NULL AND last_analyze IS NOT NULL \
                 FROM pg_stat_user_tables WHERE relid = to_regclass($1)",
                &[&format!("\"{}\".event_outbox", t.name)],
            )
            .await
            .expect("table statistics")
            .get(0);
        if vacuumed {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pruned outbox was never vacuumed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pipeline.shutdown(Duration::from_secs(5)).await;
}
