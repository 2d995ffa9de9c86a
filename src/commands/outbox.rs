//! `notifyscope outbox list`: what waits in the outbox of a pipeline, for ssh sessions and
//! scripts. Exit 0 when listed, 2 when it could not read the outbox.

use std::process::ExitCode;

use chrono::Utc;
use serde::Serialize;

use crate::cli::{OutboxCommand, OutboxListArgs, SharedArgs};
use crate::commands::wiring::pipeline_database;
use crate::present::shorten;
use crate::store::outbox::{self, OutboxRow};
use crate::store::{error_chain, APP_NAME};

pub async fn run(shared: SharedArgs, command: OutboxCommand) -> anyhow::Result<ExitCode> {
    match command {
        OutboxCommand::List(args) => match list(&shared, &args).await {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => {
                eprintln!("notifyscope: outbox list: {e:#}");
                Ok(ExitCode::from(2))
            }
        },
    }
}

#[derive(Serialize)]
struct Listing<'a> {
    database: &'a str,
    channel: &'a str,
    rows: &'a [OutboxRow],
}

async fn list(shared: &SharedArgs, args: &OutboxListArgs) -> anyhow::Result<()> {
    let (channel, database) = pipeline_database(shared, "outbox list", " of the pipeline")?;
    let client = database.connect_plain(APP_NAME).await?;
    let rows = outbox::unprocessed(&client, &channel, args.limit)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "reading event_outbox in {} failed ({}): {}",
                database.redacted(),
                e.class().describe(),
                error_chain(&e)
            )
        })?;
    if args.json {
        let listing = Listing {
            database: database.redacted(),
            channel: channel.as_str(),
            rows: &rows,
        };
        println!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "no unprocessed row on channel {channel} in {}",
            database.redacted()
        );
        return Ok(());
    }
    println!(
        "{:>10}  {:<19}  {:<8}  {:>8}  {:<12}  {:<14}  LAST ERROR",
        "ID", "MESSAGE", "STATE", "ATTEMPTS", "NEXT", "CLASS"
    );
    let now = Utc::now();
    for row in &rows {
        let next = match (row.next_attempt_at, row.dead_at) {
            (_, Some(_)) => "never".to_owned(),
            (Some(at), None) if at > now => {
                format!("in {:.0} s", (at - now).num_milliseconds() as f64 / 1e3)
            }
            _ => "now".to_owned(),
        };
        println!(
            "{:>10}  {:<19}  {:<8}  {:>8}  {:<12}  {:<14}  {}",
            row.id,
            row.message_id.as_deref().unwrap_or("-"),
            row.state.as_str(),
            row.attempts,
            next,
            row.error_class.as_deref().unwrap_or("-"),
            shorten(row.last_error.as_deref().unwrap_or("-"), 100),
        );
    }
    Ok(())
}
