//! `notifyscope dead-letters list|retry|delete`: the dead letters of a pipeline's channel, of
//! two kinds kept apart: notifications the listener rejected (`dead_letters`, by `--id`) and
//! outbox rows given up (`event_outbox` with `dead_at`, by `--outbox-id`). The actions and
//! their outcomes are the pipeline's ([`notifyscope_pipeline::operate`]); this only reads the
//! arguments, asks and prints.

use std::process::ExitCode;

use crate::cli::{DeadLettersArgs, DeadLettersCommand, OutboxListArgs, SharedArgs};
use crate::commands::change;
use notifyscope_pipeline::operate::Selection;

/// Why a command needs to know the pipeline.
const WHY: &str = " of the pipeline";

pub async fn run(shared: SharedArgs, command: DeadLettersCommand) -> anyhow::Result<ExitCode> {
    let (name, done) = match command {
        DeadLettersCommand::List(args) => ("dead-letters list", list(&shared, &args).await),
        DeadLettersCommand::Retry(args) => ("dead-letters retry", retry(&shared, &args).await),
        DeadLettersCommand::Delete(args) => ("dead-letters delete", delete(&shared, &args).await),
    };
    Ok(done.unwrap_or_else(|e| change::could_not_run(name, &e)))
}

async fn list(shared: &SharedArgs, args: &OutboxListArgs) -> anyhow::Result<ExitCode> {
    let operator = change::operator(shared, "dead-letters list", WHY)?;
    change::print(&operator.list_dead_letters(args.limit).await, args.json)
}

/// The rows of each kind the arguments name: `None` for a kind not asked for.
fn selections(args: &DeadLettersArgs) -> (Option<Selection>, Option<Selection>) {
    if args.all {
        return (Some(Selection::All), Some(Selection::All));
    }
    let named = |ids: &[i64]| (!ids.is_empty()).then(|| Selection::ids(ids.iter().copied()));
    (named(&args.ids), named(&args.outbox_ids))
}

async fn retry(shared: &SharedArgs, args: &DeadLettersArgs) -> anyhow::Result<ExitCode> {
    const COMMAND: &str = "dead-letters retry";
    let operator = change::operator(shared, COMMAND, WHY)?;
    let (letters, given_up) = selections(args);
    let act = async |apply| {
        let (letters, given_up) = (letters.as_ref(), given_up.as_ref());
        operator.retry_dead_letters(letters, given_up, apply).await
    };
    change::carry_out(COMMAND, &args.change, "Re-send and requeue them?", act).await
}

async fn delete(shared: &SharedArgs, args: &DeadLettersArgs) -> anyhow::Result<ExitCode> {
    const COMMAND: &str = "dead-letters delete";
    let operator = change::operator(shared, COMMAND, WHY)?;
    let (letters, given_up) = selections(args);
    let act = async |apply| {
        let (letters, given_up) = (letters.as_ref(), given_up.as_ref());
        operator.delete_dead_letters(letters, given_up, apply).await
    };
    change::carry_out(COMMAND, &args.change, "Delete them?", act).await
}
