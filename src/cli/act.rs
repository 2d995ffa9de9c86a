//! Options of the commands that act on rows and sessions by hand: `outbox`, `dead-letters`
//! and `backend`.

use clap::{Args, Subcommand};

use super::{RunningPipeline, OUTPUT, PIPELINE};

#[derive(Debug, Clone, Subcommand)]
pub enum OutboxCommand {
    /// Unprocessed rows, oldest first: waiting, retrying (with the next attempt) or dead.
    List(OutboxListArgs),
    /// Put stuck rows (retrying, or given up) back in the queue: no attempts, due now; then
    /// one NOTIFY wakes ingestion. Rows ingested, waiting or of another channel stay as they
    /// are.
    Retry(OutboxRetryArgs),
    /// Delete rows given up. Rows still waiting or retrying are messages not delivered yet:
    /// only with --force, and only named by --id.
    Purge(OutboxPurgeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct OutboxListArgs {
    #[command(flatten)]
    pub target: RunningPipeline,
    /// One JSON document instead of a table.
    #[arg(long, help_heading = OUTPUT)]
    pub json: bool,
    /// Rows shown at most.
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(i64).range(1..=100_000), help_heading = OUTPUT)]
    pub limit: i64,
}

/// How an action that changes rows is confirmed and reported.
#[derive(Debug, Clone, Args)]
pub struct ChangeArgs {
    /// Go ahead without asking; needed when stdin is not a terminal.
    #[arg(long, help_heading = OUTPUT)]
    pub yes: bool,
    /// One JSON document with what was changed instead of lines.
    #[arg(long, help_heading = OUTPUT)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("rows").required(true).args(["ids", "all_stuck"])))]
pub struct OutboxRetryArgs {
    #[command(flatten)]
    pub target: RunningPipeline,
    /// Outbox rows by id (repeatable, or several after one --id).
    #[arg(long = "id", value_name = "ID", num_args = 1..,
          value_parser = clap::value_parser!(i64).range(1..), help_heading = PIPELINE)]
    pub ids: Vec<i64>,
    /// Every stuck row of the channel.
    #[arg(long, help_heading = PIPELINE)]
    pub all_stuck: bool,
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("rows").required(true).args(["ids", "all_dead"])))]
pub struct OutboxPurgeArgs {
    #[command(flatten)]
    pub target: RunningPipeline,
    /// Outbox rows by id (repeatable, or several after one --id).
    #[arg(long = "id", value_name = "ID", num_args = 1..,
          value_parser = clap::value_parser!(i64).range(1..), help_heading = PIPELINE)]
    pub ids: Vec<i64>,
    /// Every row of the channel given up.
    #[arg(long, help_heading = PIPELINE)]
    pub all_dead: bool,
    /// Also delete rows named by --id that are still waiting or retrying: their messages
    /// were never delivered and are lost.
    #[arg(long, conflicts_with = "all_dead", help_heading = PIPELINE)]
    pub force: bool,
    #[command(flatten)]
    pub change: ChangeArgs,
}

/// The usage of `dead-letters retry|delete`, one way of naming rows a line: clap's own puts
/// the three on one line, wider than a terminal of 80 columns.
fn dead_letters_usage(command: &str) -> String {
    ["--id <ID>...", "--outbox-id <ID>...", "--all"]
        .map(|rows| format!("notifyscope dead-letters {command} [OPTIONS] {rows}"))
        .join("\n       ")
}

#[derive(Debug, Clone, Subcommand)]
pub enum DeadLettersCommand {
    /// Rejected notifications and outbox rows given up, oldest first, each kind apart.
    List(OutboxListArgs),
    /// Re-send rejected notifications on the channel (the listener judges them again) and
    /// put outbox rows given up back in the queue.
    #[command(override_usage = dead_letters_usage("retry"))]
    Retry(DeadLettersArgs),
    /// Delete rejected notifications and outbox rows given up.
    #[command(override_usage = dead_letters_usage("delete"))]
    Delete(DeadLettersArgs),
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("rows").required(true).multiple(true)
    .args(["ids", "outbox_ids", "all"])))]
pub struct DeadLettersArgs {
    #[command(flatten)]
    pub target: RunningPipeline,
    /// Rejected notifications by their dead_letters id (repeatable).
    #[arg(long = "id", value_name = "ID", num_args = 1..,
          value_parser = clap::value_parser!(i64).range(1..), help_heading = PIPELINE)]
    pub ids: Vec<i64>,
    /// Outbox rows given up, by their outbox id (repeatable).
    #[arg(long = "outbox-id", value_name = "ID", num_args = 1..,
          value_parser = clap::value_parser!(i64).range(1..), help_heading = PIPELINE)]
    pub outbox_ids: Vec<i64>,
    /// Every dead letter of the channel, of both kinds.
    #[arg(long, conflicts_with_all = ["ids", "outbox_ids"], help_heading = PIPELINE)]
    pub all: bool,
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Debug, Clone, Subcommand)]
pub enum BackendCommand {
    /// Cancel the running statement of a session of the pipeline's database
    /// (pg_cancel_backend).
    Cancel(BackendArgs),
    /// End a session of the pipeline's database (pg_terminate_backend): its transaction is
    /// rolled back and its locks are released.
    Terminate(BackendArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BackendArgs {
    /// The session's process id (pid in pg_stat_activity, or as doctor names a blocker).
    #[arg(value_parser = clap::value_parser!(i32).range(1..))]
    pub pid: i32,
    #[command(flatten)]
    pub target: RunningPipeline,
    #[command(flatten)]
    pub change: ChangeArgs,
}
