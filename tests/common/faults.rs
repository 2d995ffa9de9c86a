//! Helpers of the fault tests: messages kept flowing while a fault lasts, the check that
//! nothing was lost once it is over, and a look at the health changes seen.

use std::collections::HashSet;
use std::time::Duration;

use notifyscope::contract::Snowflake;
use notifyscope::pipeline::publish::PublisherHandle;
use notifyscope::pipeline::synthetic;
use notifyscope::trace::{Status, TraceEvent, TraceKind};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{is_inserted, Seen, TestSchema};

/// Publishes a message every 20 ms until stopped; the ids of those committed to the outbox
/// (a publish held up by the fault waits, and counts once it lands).
pub fn keep_sending(
    publisher: PublisherHandle,
    stop: CancellationToken,
) -> JoinHandle<Vec<Snowflake>> {
    tokio::spawn(async move {
        let mut sent = Vec::new();
        while !stop.is_cancelled() {
            let record = synthetic::message("sent while the database refuses").to_record();
            let id = record.message_id;
            if publisher.publish(record).await.is_ok() {
                sent.push(id);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sent
    })
}

/// Check `check` turned to `to`.
pub fn turned(e: &TraceEvent, check: &str, to: Status) -> bool {
    matches!(&e.kind, TraceKind::HealthChanged { check: c, status, .. } if c == check && *status == to)
}

/// Every message of `ids` ingested exactly once, and no row given up.
pub async fn all_arrived_once(t: &TestSchema, seen: &mut Seen, ids: &[Snowflake]) {
    let wanted: HashSet<Snowflake> = ids.iter().copied().collect();
    seen.until("every message sent ingested", |evs| {
        let ingested: HashSet<Snowflake> = evs
            .iter()
            .filter(|e| is_inserted(e))
            .filter_map(|e| e.message_id)
            .collect();
        wanted.is_subset(&ingested)
    })
    .await;
    let raw: Vec<i64> = ids.iter().map(|id| id.as_i64()).collect();
    let client = t.client().await;
    let rows: i64 = client
        .query_one(
            "SELECT count(*) FROM discord_messages WHERE message_id = ANY($1)",
            &[&raw],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows as usize, ids.len(), "one row per message");
    let dead: i64 = client
        .query_one(
            "SELECT count(*) FROM event_outbox WHERE dead_at IS NOT NULL",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(dead, 0, "a passing fault makes no dead letter");
    let pending: i64 = client
        .query_one(
            "SELECT count(*) FROM event_outbox WHERE processed_at IS NULL",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(pending, 0, "the outbox is drained without a manual retry");
}
