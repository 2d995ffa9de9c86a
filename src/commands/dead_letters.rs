//! `notifyscope dead-letters list|retry|delete`: the dead letters of a pipeline's channel, of
//! two kinds kept apart: notifications the listener rejected (`dead_letters`, by `--id`) and
//! outbox rows given up (`event_outbox` with `dead_at`, by `--outbox-id`).

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cli::{DeadLettersArgs, DeadLettersCommand, OutboxListArgs, SharedArgs};
use crate::commands::change::{self, count, why_text, Report};
use crate::commands::outbox::{purge_lines, requeue_lines};
use crate::commands::wiring::pipeline_database;
use crate::contract;
use crate::present::shorten;
use crate::store::action::{Apply, NotHandled, Selection};
use crate::store::dead_letters::{self, Handled};
use crate::store::outbox::{self, OutboxRow, PurgeOutcome, RequeueOutcome, Stuck};
use crate::store::{Database, Identifier, StoreError, APP_NAME};

/// Payloads in JSON are cut to this many columns, as in `notify_rejected` trace events.
const PAYLOAD_JSON: usize = 1024;
/// And in lines to this many.
const PAYLOAD_LINE: usize = 60;

pub async fn run(shared: SharedArgs, command: DeadLettersCommand) -> anyhow::Result<ExitCode> {
    Ok(match command {
        DeadLettersCommand::List(args) => match list(&shared, &args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => change::could_not_run("dead-letters list", &e),
        },
        DeadLettersCommand::Retry(args) => retry(&shared, &args)
            .await
            .unwrap_or_else(|e| change::could_not_run("dead-letters retry", &e)),
        DeadLettersCommand::Delete(args) => delete(&shared, &args)
            .await
            .unwrap_or_else(|e| change::could_not_run("dead-letters delete", &e)),
    })
}

/// A rejected notification as listed.
#[derive(Serialize)]
struct Letter {
    id: i64,
    received_at: DateTime<Utc>,
    sender_pid: i32,
    error: String,
    /// Cut to 1,024 columns (`…` where cut).
    payload: String,
    payload_bytes: usize,
}

#[derive(Serialize)]
struct Kind<T> {
    /// Rows of this kind on the channel; `rows` holds the oldest, up to --limit.
    total: i64,
    rows: Vec<T>,
}

#[derive(Serialize)]
struct Listing<'a> {
    database: &'a str,
    channel: &'a str,
    /// Notifications the listener rejected (table dead_letters; act on them by --id).
    rejected_notifications: Kind<Letter>,
    /// Outbox rows given up (event_outbox, dead_at set; act on them by --outbox-id).
    outbox_given_up: Kind<OutboxRow>,
}

async fn list(shared: &SharedArgs, args: &OutboxListArgs) -> anyhow::Result<()> {
    let (channel, database) = pipeline_database(shared, "dead-letters list", " of the pipeline")?;
    let client = database.connect_plain(APP_NAME).await?;
    let failed = |table: &str, e: StoreError| {
        change::store_failed(&format!("reading {table}"), &database, &e)
    };
    let letters = dead_letters::list(&client, &channel, args.limit)
        .await
        .map_err(|e| failed("dead_letters", e))?;
    let letters_total = dead_letters::count(&client, &channel)
        .await
        .map_err(|e| failed("dead_letters", e))?;
    let given_up = outbox::given_up(&client, &channel, args.limit)
        .await
        .map_err(|e| failed("event_outbox", e))?;
    let given_up_total = outbox::given_up_count(&client, &channel)
        .await
        .map_err(|e| failed("event_outbox", e))?;
    let listing = Listing {
        database: database.redacted(),
        channel: channel.as_str(),
        rejected_notifications: Kind {
            total: letters_total,
            rows: letters
                .into_iter()
                .map(|l| Letter {
                    id: l.id,
                    received_at: l.received_at,
                    sender_pid: l.sender_pid,
                    error: l.error,
                    payload_bytes: l.payload.len(),
                    payload: shorten(&l.payload, PAYLOAD_JSON),
                })
                .collect(),
        },
        outbox_given_up: Kind {
            total: given_up_total,
            rows: given_up,
        },
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(());
    }
    for line in listing_lines(&listing) {
        println!("{line}");
    }
    Ok(())
}

fn listing_lines(listing: &Listing) -> Vec<String> {
    let shown = |kind_total: i64, rows: usize| {
        if i64::try_from(rows).unwrap_or(i64::MAX) < kind_total {
            format!(" (the oldest {rows} shown; --limit)")
        } else {
            String::new()
        }
    };
    let letters = &listing.rejected_notifications;
    let mut lines = vec![format!(
        "rejected notifications (dead_letters, by --id) on channel {} in {}: {}{}",
        listing.channel,
        listing.database,
        letters.total,
        shown(letters.total, letters.rows.len())
    )];
    if !letters.rows.is_empty() {
        lines.push(format!(
            "  {:>10}  {:<23}  {:>7}  {:<40}  PAYLOAD",
            "ID", "RECEIVED", "SENDER", "ERROR"
        ));
    }
    for l in &letters.rows {
        lines.push(format!(
            "  {:>10}  {:<23}  {:>7}  {:<40}  {}",
            l.id,
            l.received_at.format("%Y-%m-%d %H:%M:%S%.3f"),
            l.sender_pid,
            shorten(&l.error, 40),
            shorten(&l.payload, PAYLOAD_LINE),
        ));
    }
    let given_up = &listing.outbox_given_up;
    lines.push(format!(
        "outbox rows given up (event_outbox with dead_at, by --outbox-id): {}{}",
        given_up.total,
        shown(given_up.total, given_up.rows.len())
    ));
    if !given_up.rows.is_empty() {
        lines.push(format!(
            "  {:>10}  {:<19}  {:>8}  {:<23}  {:<14}  LAST ERROR",
            "ID", "MESSAGE", "ATTEMPTS", "GIVEN UP", "CLASS"
        ));
    }
    for r in &given_up.rows {
        lines.push(format!(
            "  {:>10}  {:<19}  {:>8}  {:<23}  {:<14}  {}",
            r.id,
            r.message_id.as_deref().unwrap_or("-"),
            r.attempts,
            r.dead_at
                .map(|at| at.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
                .unwrap_or_default(),
            r.error_class.as_deref().unwrap_or("-"),
            shorten(r.last_error.as_deref().unwrap_or("-"), 80),
        ));
    }
    lines
}

/// The rows of each kind the arguments name: `None` for a kind not asked for.
fn selections(args: &DeadLettersArgs) -> (Option<Selection>, Option<Selection>) {
    if args.all {
        return (Some(Selection::All), Some(Selection::All));
    }
    let named = |ids: &[i64]| (!ids.is_empty()).then(|| Selection::ids(ids.iter().copied()));
    (named(&args.ids), named(&args.outbox_ids))
}

/// A rejected notification re-sent or deleted, with its payload cut for showing and, for a
/// re-send, what the contract says of it now.
#[derive(Serialize)]
struct LetterDone {
    id: i64,
    sender_pid: i32,
    /// Why it was rejected before.
    error: String,
    /// Cut to 1,024 columns.
    payload: String,
    /// Re-sent only: whether it follows the contract now. When it does not, the listener
    /// rejects it again and records it as a new dead letter.
    #[serde(skip_serializing_if = "Option::is_none")]
    passes_contract: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    contract_error: Option<String>,
}

impl LetterDone {
    fn of(letter: Handled, judged: bool) -> Self {
        let verdict = judged.then(|| contract::parse_notify(&letter.payload).err());
        LetterDone {
            id: letter.id,
            sender_pid: letter.sender_pid,
            error: letter.error,
            payload: shorten(&letter.payload, PAYLOAD_JSON),
            passes_contract: verdict.as_ref().map(Option::is_none),
            contract_error: verdict.flatten().map(|e| e.to_string()),
        }
    }
}

/// An outcome with the number of rows it changed.
#[derive(Serialize)]
struct Counted<T> {
    count: usize,
    #[serde(flatten)]
    outcome: T,
}

/// What happened to the rejected notifications.
#[derive(Serialize)]
struct Letters {
    count: usize,
    rows: Vec<LetterDone>,
    not_handled: Vec<NotHandled>,
}

impl Letters {
    fn of(outcome: Option<dead_letters::Outcome>, judged: bool) -> Self {
        let outcome = outcome.unwrap_or(dead_letters::Outcome {
            handled: Vec::new(),
            not_handled: Vec::new(),
        });
        Letters {
            count: outcome.handled.len(),
            rows: outcome
                .handled
                .into_iter()
                .map(|l| LetterDone::of(l, judged))
                .collect(),
            not_handled: outcome.not_handled,
        }
    }

    /// `verb`: what is done to them, and what was done.
    fn lines(
        &self,
        verb: (&str, &str),
        applied: bool,
        channel: &str,
        database: &str,
    ) -> Vec<String> {
        let mut lines = Vec::new();
        if self.rows.is_empty() {
            lines.push(format!(
                "no rejected notification to {} on channel {channel} in {database}",
                verb.0
            ));
        } else {
            lines.push(format!(
                "{} {} of channel {channel} in {database}:",
                if applied { verb.1 } else { verb.0 },
                count(self.rows.len(), "rejected notification")
            ));
        }
        for l in &self.rows {
            let verdict = match (&l.passes_contract, &l.contract_error) {
                (Some(true), _) => "  follows the contract now".to_owned(),
                (Some(false), Some(e)) => format!(
                    "  still breaks the contract ({e}): a running listener rejects it and \
                     records it again"
                ),
                _ => String::new(),
            };
            lines.push(format!(
                "  {:>10}  from pid {:<7}  {}{verdict}",
                l.id,
                l.sender_pid,
                shorten(&l.payload, PAYLOAD_LINE)
            ));
        }
        if !self.not_handled.is_empty() {
            lines.push(format!(
                "left alone: {}",
                count(self.not_handled.len(), "rejected notification")
            ));
            for row in &self.not_handled {
                let why = why_text(&row.why).unwrap_or_default();
                lines.push(format!("  {:>10}  {why}", row.id));
            }
        }
        lines
    }
}

/// What `dead-letters retry` did or would do.
#[derive(Serialize)]
struct RetryReport {
    database: String,
    channel: String,
    /// Done, or only worked out (before asking).
    applied: bool,
    /// Re-sent as a NOTIFY on the channel (and deleted: the listener records one that is
    /// still broken again).
    rejected_notifications: Letters,
    /// Put back in the queue.
    outbox_given_up: Counted<RequeueOutcome>,
    #[serde(skip)]
    asked: (bool, bool),
}

impl Report for RetryReport {
    fn changes(&self) -> usize {
        self.rejected_notifications.count + self.outbox_given_up.count
    }

    fn not_handled(&self) -> usize {
        self.rejected_notifications.not_handled.len()
            + self.outbox_given_up.outcome.not_handled.len()
    }

    fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.asked.0 {
            lines.extend(self.rejected_notifications.lines(
                ("re-send", "re-sent"),
                self.applied,
                &self.channel,
                &self.database,
            ));
        }
        if self.asked.1 {
            lines.extend(requeue_lines(
                &self.outbox_given_up.outcome,
                self.applied,
                &self.channel,
                &self.database,
            ));
        }
        lines
    }
}

async fn retry(shared: &SharedArgs, args: &DeadLettersArgs) -> anyhow::Result<ExitCode> {
    const COMMAND: &str = "dead-letters retry";
    let (channel, database) = pipeline_database(shared, COMMAND, " of the pipeline")?;
    let mut client = database.connect_plain(APP_NAME).await?;
    let (letters, given_up) = selections(args);
    let mut act = Retry {
        client: &mut client,
        channel: &channel,
        database: &database,
        letters: letters.as_ref(),
        given_up: given_up.as_ref(),
    };
    if !args.change.yes {
        let plan = act.run(Apply::Preview).await?;
        let question = "Re-send and requeue them?";
        if let Some(exit) = change::confirm(COMMAND, &args.change, &plan, question).await? {
            return Ok(exit);
        }
    }
    change::print(&act.run(Apply::Commit).await?, args.change.json)
}

struct Retry<'a> {
    client: &'a mut tokio_postgres::Client,
    channel: &'a Identifier,
    database: &'a Database,
    letters: Option<&'a Selection>,
    given_up: Option<&'a Selection>,
}

impl Retry<'_> {
    async fn run(&mut self, apply: Apply) -> anyhow::Result<RetryReport> {
        let database = self.database;
        let failed = |what: &str, e: StoreError| change::store_failed(what, database, &e);
        let letters = match self.letters {
            Some(selection) => Some(
                dead_letters::resend(self.client, self.channel, selection, apply)
                    .await
                    .map_err(|e| failed("re-sending dead letters", e))?,
            ),
            None => None,
        };
        let requeued = match self.given_up {
            Some(selection) => {
                outbox::requeue(self.client, self.channel, selection, Stuck::GivenUp, apply)
                    .await
                    .map_err(|e| failed("requeuing rows of event_outbox", e))?
            }
            None => RequeueOutcome {
                requeued: Vec::new(),
                not_handled: Vec::new(),
                woke_ingestion: false,
            },
        };
        Ok(RetryReport {
            database: self.database.redacted().to_owned(),
            channel: self.channel.as_str().to_owned(),
            applied: apply == Apply::Commit,
            rejected_notifications: Letters::of(letters, true),
            outbox_given_up: Counted {
                count: requeued.requeued.len(),
                outcome: requeued,
            },
            asked: (self.letters.is_some(), self.given_up.is_some()),
        })
    }
}

/// What `dead-letters delete` did or would do.
#[derive(Serialize)]
struct DeleteReport {
    database: String,
    channel: String,
    /// Done, or only worked out (before asking).
    applied: bool,
    rejected_notifications: Letters,
    outbox_given_up: Counted<PurgeOutcome>,
    #[serde(skip)]
    asked: (bool, bool),
}

impl Report for DeleteReport {
    fn changes(&self) -> usize {
        self.rejected_notifications.count + self.outbox_given_up.count
    }

    fn not_handled(&self) -> usize {
        self.rejected_notifications.not_handled.len()
            + self.outbox_given_up.outcome.not_handled.len()
    }

    fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.asked.0 {
            lines.extend(self.rejected_notifications.lines(
                ("delete", "deleted"),
                self.applied,
                &self.channel,
                &self.database,
            ));
        }
        if self.asked.1 {
            lines.extend(purge_lines(
                &self.outbox_given_up.outcome,
                self.applied,
                &self.channel,
                &self.database,
            ));
        }
        lines
    }
}

async fn delete(shared: &SharedArgs, args: &DeadLettersArgs) -> anyhow::Result<ExitCode> {
    const COMMAND: &str = "dead-letters delete";
    let (channel, database) = pipeline_database(shared, COMMAND, " of the pipeline")?;
    let mut client = database.connect_plain(APP_NAME).await?;
    let (letters, given_up) = selections(args);
    let mut act = Delete {
        client: &mut client,
        channel: &channel,
        database: &database,
        letters: letters.as_ref(),
        given_up: given_up.as_ref(),
    };
    if !args.change.yes {
        let plan = act.run(Apply::Preview).await?;
        if let Some(exit) = change::confirm(COMMAND, &args.change, &plan, "Delete them?").await? {
            return Ok(exit);
        }
    }
    change::print(&act.run(Apply::Commit).await?, args.change.json)
}

struct Delete<'a> {
    client: &'a mut tokio_postgres::Client,
    channel: &'a Identifier,
    database: &'a Database,
    letters: Option<&'a Selection>,
    given_up: Option<&'a Selection>,
}

impl Delete<'_> {
    async fn run(&mut self, apply: Apply) -> anyhow::Result<DeleteReport> {
        let database = self.database;
        let failed = |what: &str, e: StoreError| change::store_failed(what, database, &e);
        let letters = match self.letters {
            Some(selection) => Some(
                dead_letters::delete(self.client, self.channel, selection, apply)
                    .await
                    .map_err(|e| failed("deleting dead letters", e))?,
            ),
            None => None,
        };
        // Given-up rows only: a row still waiting or retrying is no dead letter.
        let purged = match self.given_up {
            Some(selection) => outbox::purge(self.client, self.channel, selection, false, apply)
                .await
                .map_err(|e| failed("deleting rows of event_outbox", e))?,
            None => PurgeOutcome {
                purged: Vec::new(),
                not_handled: Vec::new(),
            },
        };
        Ok(DeleteReport {
            database: self.database.redacted().to_owned(),
            channel: self.channel.as_str().to_owned(),
            applied: apply == Apply::Commit,
            rejected_notifications: Letters::of(letters, false),
            outbox_given_up: Counted {
                count: purged.purged.len(),
                outcome: purged,
            },
            asked: (self.letters.is_some(), self.given_up.is_some()),
        })
    }
}
