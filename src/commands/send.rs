//! `notifyscope send`: test events for a running pipeline, through its bot path
//! (`--via-bot`), through the publisher, or as a raw NOTIFY.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::cli::{SendArgs, SendCommand, SharedArgs};
use crate::commands::wiring::pipeline_database;
use crate::pipeline::control;
use crate::pipeline::publish::{self, publish_event_safe};
use crate::pipeline::synthetic;
use crate::store::{Database, Identifier, APP_NAME};
use crate::trace::Trace;

pub async fn send(shared: SharedArgs, args: SendArgs) -> anyhow::Result<ExitCode> {
    let (channel, database) = pipeline_database(
        &shared,
        "send",
        ": the connection string that the running notifyscope logs at start",
    )?;
    match (args.via_bot, args.command) {
        (Some(kind), _) => {
            let (ids, reply) =
                control::send_via_bot(&database, &channel, kind, Duration::from_secs(args.timeout))
                    .await?;
            println!(
                "{} {} message(s) through the running bot path: {} published, {} skipped, {} failed",
                ids.len(),
                kind.as_str(),
                reply.published.len(),
                reply.skipped.len(),
                reply.failed.len()
            );
            for id in reply.published.iter().take(10) {
                println!("  {id} published");
            }
            for (id, reason) in &reply.skipped {
                println!("  {id} skipped: {reason}");
            }
            for (id, error) in &reply.failed {
                println!("  {id} failed: {error}");
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
            }),
        ) => send_messages(database, channel, count, content, json).await,
        (None, Some(SendCommand::Raw { payload })) => {
            let client = database.connect_plain(APP_NAME).await?;
            crate::store::notify::notify(&client, channel.as_str(), &payload)
                .await
                .with_context(|| format!("NOTIFY on channel {channel}"))?;
            println!(
                "sent a raw NOTIFY of {} bytes on channel {channel}",
                payload.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        (None, None) => Err(anyhow!(
            "say what to send: --via-bot KIND, `send message` or `send raw` (see --help)"
        )),
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
                (id, publish_event_safe(&publisher, msg).await)
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
