//! `notifyscope outbox list|retry|purge`: what waits in the outbox of a pipeline, putting
//! stuck rows back in the queue and deleting rows given up, for ssh sessions and scripts.
//! `list` exits 0 when listed, 2 when it could not read the outbox; `retry` and `purge` as
//! [`change`] says. The actions and their outcomes are the pipeline's
//! ([`notifyscope_pipeline::operate`]); this only reads the arguments, asks and prints.

use std::process::ExitCode;

use crate::cli::{OutboxCommand, OutboxListArgs, OutboxPurgeArgs, OutboxRetryArgs, SharedArgs};
use crate::commands::change;
use notifyscope_pipeline::operate::Selection;

/// Why a command needs to know the pipeline.
const WHY: &str = " of the pipeline";

pub async fn run(shared: SharedArgs, command: OutboxCommand) -> anyhow::Result<ExitCode> {
    let (name, done) = match command {
        OutboxCommand::List(args) => ("outbox list", list(&shared, &args).await),
        OutboxCommand::Retry(args) => ("outbox retry", retry(&shared, &args).await),
        OutboxCommand::Purge(args) => ("outbox purge", purge(&shared, &args).await),
    };
    Ok(done.unwrap_or_else(|e| change::could_not_run(name, &e)))
}

async fn list(shared: &SharedArgs, args: &OutboxListArgs) -> anyhow::Result<ExitCode> {
    let operator = change::operator(shared, "outbox list", WHY)?;
    change::print(&operator.list_outbox(args.limit).await, args.json)
}

async fn retry(shared: &SharedArgs, args: &OutboxRetryArgs) -> anyhow::Result<ExitCode> {
    const COMMAND: &str = "outbox retry";
    let operator = change::operator(shared, COMMAND, WHY)?;
    let selection = if args.all_stuck {
        Selection::All
    } else {
        Selection::ids(args.ids.iter().copied())
    };
    let act = async |apply| operator.retry_outbox(&selection, apply).await;
    change::carry_out(COMMAND, &args.change, "Requeue them?", act).await
}

async fn purge(shared: &SharedArgs, args: &OutboxPurgeArgs) -> anyhow::Result<ExitCode> {
    const COMMAND: &str = "outbox purge";
    let operator = change::operator(shared, COMMAND, WHY)?;
    let selection = if args.all_dead {
        Selection::All
    } else {
        Selection::ids(args.ids.iter().copied())
    };
    let act = async |apply| operator.purge_outbox(&selection, args.force, apply).await;
    change::carry_out(COMMAND, &args.change, "Delete them?", act).await
}
