//! The tap of a pipeline someone else runs: a NOTIFY that announces a message makes the tap
//! look for its row at once, whatever its idle pace.

mod common;

use std::time::Duration;

use notifyscope::contract::Envelope;
use notifyscope::pipeline::synthetic;
use notifyscope::pipeline::watched::{self, Looks, WatchedTable};
use notifyscope::store::Identifier;
use notifyscope::trace::{Trace, TraceKind};
use tokio_util::sync::CancellationToken;

use common::{Seen, TestSchema};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notify_brings_the_look_for_its_row_at_once() {
    let t = TestSchema::new("watch_tap");
    let client = t.client().await;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA \"{s}\"; CREATE TABLE \"{s}\".messages (message_id int8 PRIMARY KEY)",
            s = t.name
        ))
        .await
        .expect("their table");
    let warm_up = Identifier::channel(&format!("{}_warm", t.name)).expect("a channel name");
    let trace = Trace::new();
    let mut seen = Seen::new(trace.subscribe());
    let stop = CancellationToken::new();
    let watched = WatchedTable {
        table: Identifier::fixed("messages"),
        id_column: Identifier::fixed("message_id"),
    };
    // Idle, the table is looked at once an hour: a row seen within the test's wait was looked
    // for because its NOTIFY asked.
    let looks = Looks {
        after: 0,
        idle_gap: Duration::from_secs(3600),
    };
    let tap = watched::spawn(
        &t.database(),
        &t.channel(),
        vec![warm_up.clone()],
        watched,
        looks,
        &trace,
        &stop,
    );

    // The neighbour is listened to after the channel: once it is heard, so is the channel.
    let heard = tokio::time::timeout(common::WAIT, async {
        loop {
            client
                .execute("SELECT pg_notify($1, 'warm-up')", &[&warm_up.as_str()])
                .await
                .expect("a NOTIFY");
            let listening = tokio::time::timeout(Duration::from_millis(200), async {
                seen.first("the warm-up NOTIFY", |e| {
                    matches!(e.kind, TraceKind::NeighbourNotified { .. })
                })
                .await
            });
            if listening.await.is_ok() {
                return;
            }
        }
    });
    heard.await.expect("the tap listens in time");

    let envelope = Envelope::new(synthetic::message("their message").to_record());
    let id = envelope.message.message_id;
    client.batch_execute("BEGIN").await.expect("a transaction");
    client
        .execute(
            &format!("INSERT INTO \"{}\".messages VALUES ($1)", t.name),
            &[&id.as_i64()],
        )
        .await
        .expect("their row");
    client
        .execute(
            "SELECT pg_notify($1, $2)",
            &[&t.channel().as_str(), &envelope.to_json()],
        )
        .await
        .expect("their NOTIFY");
    client.batch_execute("COMMIT").await.expect("committed");

    let observed = seen
        .first("the row, looked for after its NOTIFY", |e| {
            e.message_id == Some(id) && matches!(e.kind, TraceKind::RowObserved { .. })
        })
        .await;
    match &observed.kind {
        TraceKind::RowObserved {
            latency_ms: Some(ms),
            ..
        } => assert!(*ms >= 0.0, "{observed:?}"),
        other => panic!("the row's latency from its NOTIFY is missing: {other:?}"),
    }
    stop.cancel();
    for task in tap {
        let _ = task.await;
    }
}
