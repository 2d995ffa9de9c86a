//! `notifyscope outbox list|retry|purge`: what waits in the outbox of a pipeline, putting
//! stuck rows back in the queue and deleting rows given up, for ssh sessions and scripts.
//! `list` exits 0 when listed, 2 when it could not read the outbox; `retry` and `purge` as
//! [`change`] says.

use std::process::ExitCode;

use chrono::Utc;
use serde::Serialize;

use crate::cli::{OutboxCommand, OutboxListArgs, OutboxPurgeArgs, OutboxRetryArgs, SharedArgs};
use crate::commands::change::{self, count, why_text, Report};
use crate::commands::wiring::pipeline_database;
use crate::present::shorten;
use crate::store::action::{Apply, NotHandled, Selection, Why};
use crate::store::outbox::{self, OutboxRow, PurgeOutcome, RequeueOutcome, RowState, Stuck};
use crate::store::{Database, Identifier, APP_NAME};

pub async fn run(shared: SharedArgs, command: OutboxCommand) -> anyhow::Result<ExitCode> {
    match command {
        OutboxCommand::List(args) => match list(&shared, &args).await {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => Ok(change::could_not_run("outbox list", &e)),
        },
        OutboxCommand::Retry(args) => Ok(retry(&shared, &args)
            .await
            .unwrap_or_else(|e| change::could_not_run("outbox retry", &e))),
        OutboxCommand::Purge(args) => Ok(purge(&shared, &args)
            .await
            .unwrap_or_else(|e| change::could_not_run("outbox purge", &e))),
    }
}

async fn retry(shared: &SharedArgs, args: &OutboxRetryArgs) -> anyhow::Result<ExitCode> {
    const COMMAND: &str = "outbox retry";
    let (channel, database) = pipeline_database(shared, COMMAND, " of the pipeline")?;
    let mut client = database.connect_plain(APP_NAME).await?;
    let selection = if args.all_stuck {
        Selection::All
    } else {
        Selection::ids(args.ids.iter().copied())
    };
    let stuck = Stuck::RetryingOrGivenUp;
    if !args.change.yes {
        let plan = outbox::requeue(&mut client, &channel, &selection, stuck, Apply::Preview)
            .await
            .map_err(|e| change::store_failed("reading event_outbox", &database, &e))?;
        let plan = RetryReport::new(&database, &channel, plan, false);
        if let Some(exit) = change::confirm(COMMAND, &args.change, &plan, "Requeue them?").await? {
            return Ok(exit);
        }
    }
    let done = outbox::requeue(&mut client, &channel, &selection, stuck, Apply::Commit)
        .await
        .map_err(|e| change::store_failed("requeuing rows of event_outbox", &database, &e))?;
    change::print(
        &RetryReport::new(&database, &channel, done, true),
        args.change.json,
    )
}

async fn purge(shared: &SharedArgs, args: &OutboxPurgeArgs) -> anyhow::Result<ExitCode> {
    const COMMAND: &str = "outbox purge";
    let (channel, database) = pipeline_database(shared, COMMAND, " of the pipeline")?;
    let mut client = database.connect_plain(APP_NAME).await?;
    let selection = if args.all_dead {
        Selection::All
    } else {
        Selection::ids(args.ids.iter().copied())
    };
    let force = args.force;
    if !args.change.yes {
        let plan = outbox::purge(&mut client, &channel, &selection, force, Apply::Preview)
            .await
            .map_err(|e| change::store_failed("reading event_outbox", &database, &e))?;
        let plan = PurgeReport::new(&database, &channel, plan, false);
        if let Some(exit) = change::confirm(COMMAND, &args.change, &plan, "Delete them?").await? {
            return Ok(exit);
        }
    }
    let done = outbox::purge(&mut client, &channel, &selection, force, Apply::Commit)
        .await
        .map_err(|e| change::store_failed("deleting rows of event_outbox", &database, &e))?;
    change::print(
        &PurgeReport::new(&database, &channel, done, true),
        args.change.json,
    )
}

/// What `outbox retry` did or would do.
#[derive(Serialize)]
pub(crate) struct RetryReport {
    database: String,
    channel: String,
    /// Done, or only worked out (before asking).
    applied: bool,
    requeued_count: usize,
    #[serde(flatten)]
    outcome: RequeueOutcome,
}

impl RetryReport {
    pub(crate) fn new(
        database: &Database,
        channel: &Identifier,
        outcome: RequeueOutcome,
        applied: bool,
    ) -> Self {
        RetryReport {
            database: database.redacted().to_owned(),
            channel: channel.as_str().to_owned(),
            applied,
            requeued_count: outcome.requeued.len(),
            outcome,
        }
    }
}

impl Report for RetryReport {
    fn changes(&self) -> usize {
        self.outcome.requeued.len()
    }

    fn not_handled(&self) -> usize {
        self.outcome.not_handled.len()
    }

    fn lines(&self) -> Vec<String> {
        requeue_lines(&self.outcome, self.applied, &self.channel, &self.database)
    }
}

/// For people: the rows requeued (or to requeue), then those left alone and why.
pub(crate) fn requeue_lines(
    outcome: &RequeueOutcome,
    applied: bool,
    channel: &str,
    database: &str,
) -> Vec<String> {
    let rows = &outcome.requeued;
    let mut lines = Vec::new();
    if rows.is_empty() {
        lines.push(format!(
            "no outbox row to requeue on channel {channel} in {database}"
        ));
    } else {
        lines.push(format!(
            "{} {} of channel {channel} in {database}, each due now with attempts 0:",
            if applied { "requeued" } else { "requeue" },
            count(rows.len(), "outbox row"),
        ));
        for r in rows {
            lines.push(format!(
                "  {:>10}  message {:<19}  was {}, {} attempts, {}",
                r.id,
                r.message_id.as_deref().unwrap_or("-"),
                r.was.as_str(),
                r.attempts,
                r.error_class.as_deref().unwrap_or("no error class"),
            ));
        }
        lines.push(if outcome.woke_ingestion {
            format!("one NOTIFY on {channel} woke ingestion for them")
        } else {
            format!("then one NOTIFY on {channel} wakes ingestion")
        });
    }
    lines.extend(left_alone(&outcome.not_handled, |state| match state {
        RowState::Waiting => "waiting: not stuck, ingestion takes it when due".into(),
        RowState::Retrying => {
            "retrying, not given up: `notifyscope outbox retry` requeues it".into()
        }
        RowState::Dead => "given up".into(),
    }));
    lines
}

/// What `outbox purge` did or would do.
#[derive(Serialize)]
pub(crate) struct PurgeReport {
    database: String,
    channel: String,
    /// Done, or only worked out (before asking).
    applied: bool,
    purged_count: usize,
    #[serde(flatten)]
    outcome: PurgeOutcome,
}

impl PurgeReport {
    pub(crate) fn new(
        database: &Database,
        channel: &Identifier,
        outcome: PurgeOutcome,
        applied: bool,
    ) -> Self {
        PurgeReport {
            database: database.redacted().to_owned(),
            channel: channel.as_str().to_owned(),
            applied,
            purged_count: outcome.purged.len(),
            outcome,
        }
    }
}

impl Report for PurgeReport {
    fn changes(&self) -> usize {
        self.outcome.purged.len()
    }

    fn not_handled(&self) -> usize {
        self.outcome.not_handled.len()
    }

    fn lines(&self) -> Vec<String> {
        purge_lines(&self.outcome, self.applied, &self.channel, &self.database)
    }
}

/// For people: the rows deleted (or to delete), then those left alone and why.
pub(crate) fn purge_lines(
    outcome: &PurgeOutcome,
    applied: bool,
    channel: &str,
    database: &str,
) -> Vec<String> {
    let rows = &outcome.purged;
    let mut lines = Vec::new();
    if rows.is_empty() {
        lines.push(format!(
            "no outbox row to delete on channel {channel} in {database}"
        ));
    } else {
        lines.push(format!(
            "{} {} of channel {channel} in {database}; discord_messages is not touched:",
            if applied { "deleted" } else { "delete" },
            count(rows.len(), "outbox row"),
        ));
        for r in rows {
            let lost = if r.was == RowState::Dead {
                ""
            } else {
                "  NOT DELIVERED: its message is lost"
            };
            lines.push(format!(
                "  {:>10}  message {:<19}  {}, {} attempts{lost}",
                r.id,
                r.message_id.as_deref().unwrap_or("-"),
                r.was.as_str(),
                r.attempts,
            ));
        }
    }
    lines.extend(left_alone(&outcome.not_handled, |state| {
        format!(
            "{}: a message not delivered yet; `notifyscope outbox purge --force --id ID` \
             deletes it anyway, and the message is lost",
            state.as_str()
        )
    }));
    lines
}

/// The lines for rows named by id and left alone; `state` words a row's state.
pub(crate) fn left_alone(rows: &[NotHandled], state: impl Fn(RowState) -> String) -> Vec<String> {
    if rows.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![format!("left alone: {}", count(rows.len(), "row"))];
    for row in rows {
        let why = match &row.why {
            Why::State { state: s } => state(*s),
            other => why_text(other).unwrap_or_default(),
        };
        lines.push(format!("  {:>10}  {why}", row.id));
    }
    lines
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
        .map_err(|e| change::store_failed("reading event_outbox", &database, &e))?;
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
