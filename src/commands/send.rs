//! `notifyscope send`: test events for a running pipeline, through its bot path
//! (`--via-bot`, with the running instance's control secret), through the publisher, or as a
//! raw NOTIFY.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::cli::{SendArgs, SendCommand, SharedArgs};
use crate::commands::wiring::{locate_pipeline, TargetPipeline};
use crate::commands::CannotRun;
use notifyscope_model::contract::Snowflake;
use notifyscope_model::trace::{Source, Trace};
use notifyscope_pipeline::control::{self, ViaBotReply};
use notifyscope_pipeline::publish::{self, publish_event_safe};
use notifyscope_pipeline::synthetic::{self, SimKind};
use notifyscope_store::{Database, Identifier, APP_NAME};

pub async fn send(shared: SharedArgs, args: SendArgs) -> anyhow::Result<ExitCode> {
    let TargetPipeline {
        channel,
        database,
        instance,
        ..
    } = locate_pipeline(&shared, "send", " of the pipeline to send to")?;
    match (args.via_bot, args.command) {
        (Some(kind), _) => {
            let secret = instance.as_ref().map(|i| &i.secret);
            let timeout = Duration::from_secs(args.timeout);
            let (ids, reply) =
                control::send_via_bot(&database, &channel, kind, secret, timeout).await?;
            if args.json {
                print_outcomes_as_json(&ids, &reply);
            } else {
                print_outcomes(kind, &ids, &reply);
            }
            Ok(if reply.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        (
            None,
            Some(SendCommand::Message {
                count,
                content,
                json,
                ..
            }),
        ) => send_messages(database, channel, count, content, json).await,
        (None, Some(SendCommand::Raw { payload, .. })) => {
            let client = database.connect_plain(APP_NAME).await?;
            notifyscope_store::notify::notify(&client, channel.as_str(), &payload)
                .await
                .with_context(|| format!("NOTIFY on channel {channel}"))?;
            println!(
                "sent a raw NOTIFY of {} bytes on channel {channel}",
                payload.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        (None, None) => Err(CannotRun(
            "say what to send: --via-bot KIND, `send message` or `send raw` (see --help)".into(),
        )
        .into()),
    }
}

/// Published messages listed one a line at most; the rest are counted.
const PUBLISHED_LISTED: usize = 10;

/// A summary line, then each message (published ones up to [`PUBLISHED_LISTED`], then how
/// many more).
fn print_outcomes(kind: SimKind, ids: &[Snowflake], reply: &ViaBotReply) {
    let noun = match kind {
        SimKind::Message => "message".to_owned(),
        other => format!("{} message", other.as_str()),
    };
    println!(
        "{} through the running bot path: {} published, {} skipped, {} failed",
        notifyscope_model::present::counted(ids.len(), &noun),
        reply.published.len(),
        reply.skipped.len(),
        reply.failed.len()
    );
    for id in reply.published.iter().take(PUBLISHED_LISTED) {
        println!("  {id} published");
    }
    let left_out = reply.published.len().saturating_sub(PUBLISHED_LISTED);
    if left_out > 0 {
        println!("  … and {left_out} more published");
    }
    for (id, reason) in &reply.skipped {
        println!("  {id} skipped: {reason}");
    }
    for (id, error) in &reply.failed {
        println!("  {id} failed: {error}");
    }
}

/// One JSON line per message sent, in the order sent. A message the reply does not mention
/// (a very long reply is cut) is `unknown`.
fn print_outcomes_as_json(ids: &[Snowflake], reply: &ViaBotReply) {
    for id in ids {
        let message_id = id.to_string();
        let line = if reply.published.contains(id) {
            serde_json::json!({"message_id": message_id, "outcome": "published"})
        } else if let Some((_, reason)) = reply.skipped.iter().find(|(s, _)| s == id) {
            serde_json::json!({"message_id": message_id, "outcome": "skipped", "reason": reason.as_str()})
        } else if let Some((_, error)) = reply.failed.iter().find(|(f, _)| f == id) {
            serde_json::json!({"message_id": message_id, "outcome": "failed", "error": error})
        } else {
            serde_json::json!({"message_id": message_id, "outcome": "unknown"})
        };
        println!("{line}");
    }
}

async fn send_messages(
    database: Database,
    channel: Identifier,
    count: u32,
    content: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    database.migrate().await?;
    let pool = database.pool(2)?;
    let stop = CancellationToken::new();
    let (publisher, task) = publish::spawn_publisher(
        pool,
        channel.clone(),
        Trace::new(),
        publish::DEFAULT_QUEUE_CAPACITY,
        stop.clone(),
    );
    // Many in flight at once so that the publisher can batch them.
    let results: Vec<_> = futures_util::stream::iter(0..count)
        .map(|i| {
            let publisher = publisher.clone();
            let text = content
                .clone()
                .unwrap_or_else(|| format!("test message {}", i + 1));
            async move {
                let msg = synthetic::message(text).to_record();
                let id = msg.message_id;
                (
                    id,
                    publish_event_safe(&publisher, msg, Source::Simulated).await,
                )
            }
        })
        .buffered(1024)
        .collect()
        .await;
    stop.cancel();
    let _ = task.await;

    let mut failed = 0;
    for (id, result) in &results {
        match result {
            Ok(receipt) if json => println!(
                "{}",
                serde_json::json!({
                    "message_id": id.to_string(),
                    "outbox_id": receipt.outbox_id,
                    "channel": channel.as_str(),
                    "bytes": receipt.notify_bytes,
                    "by_ref": receipt.by_ref,
                })
            ),
            Ok(_) => {}
            Err(e) => {
                failed += 1;
                eprintln!("notifyscope: message {id} not published: {e}");
            }
        }
    }
    if !json {
        let ids: Vec<_> = results.iter().map(|(id, _)| *id).collect();
        match (ids.first(), ids.last()) {
            (Some(first), Some(last)) => println!(
                "published {} of {count} messages on channel {channel} (ids {first}..{last})",
                count as usize - failed
            ),
            _ => println!("published no messages"),
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
