//! What came of an operator action, typed once, and its presenter ([`Present`]): the toast
//! line of the screen, the lines of the command line, and (serde) the JSON document the
//! command prints with `--json`. Here are what every outcome shares (a part that failed, the
//! header of an action on a channel) and the outbox's own: rows requeued and rows purged.

use std::fmt;

use serde::Serialize;

use notifyscope_model::present::{counted, shorten};
use notifyscope_store::action::{NotHandled, Why};
use notifyscope_store::outbox::{PurgeOutcome, RequeueOutcome, RowState, Stuck};
use notifyscope_store::{error_chain, ErrorClass, StoreError};

/// An outcome for people and for scripts.
pub trait Present: Serialize {
    /// Rows (or sessions) it changes, or would change before asking.
    fn changes(&self) -> usize;
    /// Rows (or sessions) named that it could not handle.
    fn not_handled(&self) -> usize;
    /// For the command line: what changed (or would change), then what was left alone and
    /// why.
    fn lines(&self) -> Vec<String>;
    /// For the screen: what came of it in one sentence.
    fn toast(&self) -> String;
    /// The first part of it the database did not let through: the command line reports
    /// that instead of the rest (it could not run).
    fn failed(&self) -> Option<&Failed>;
}

/// A part of an action that did not go through: connecting, or a statement the database
/// refused. As text (`Display`), the command line's sentence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failed {
    /// What was being done, e.g. `requeuing rows of event_outbox`; `None` when connecting
    /// failed, whose error names the server itself.
    pub doing: Option<&'static str>,
    #[serde(skip)]
    pub database: String,
    pub class: ErrorClass,
    pub error: String,
}

impl Failed {
    pub fn new(doing: &'static str, database: &str, e: &StoreError) -> Self {
        Failed {
            doing: Some(doing),
            database: database.to_owned(),
            class: e.class(),
            error: error_chain(e),
        }
    }

    /// No connection to act with.
    pub fn connecting(database: &str, e: &StoreError) -> Self {
        Failed {
            doing: None,
            ..Failed::new("connecting", database, e)
        }
    }

    /// The error, cut to `max` columns for a toast.
    pub fn short(&self, max: usize) -> String {
        shorten(&self.error, max)
    }
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.doing {
            Some(doing) => write!(
                f,
                "{doing} in {} failed ({}): {}",
                self.database,
                self.class.describe(),
                self.error
            ),
            None => f.write_str(&self.error),
        }
    }
}

impl std::error::Error for Failed {}

/// A part of an outcome: what it did, or why it could not. In JSON the part itself (the
/// command line prints no document for a part that failed).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Part<T> {
    Done(T),
    Failed(Failed),
}

impl<T> From<Result<T, Failed>> for Part<T> {
    fn from(result: Result<T, Failed>) -> Self {
        match result {
            Ok(done) => Part::Done(done),
            Err(failed) => Part::Failed(failed),
        }
    }
}

impl<T> Part<T> {
    pub fn done(&self) -> Option<&T> {
        match self {
            Part::Done(done) => Some(done),
            Part::Failed(_) => None,
        }
    }

    pub fn failed(&self) -> Option<&Failed> {
        match self {
            Part::Done(_) => None,
            Part::Failed(failed) => Some(failed),
        }
    }
}

/// What an action on rows of a channel did, as the parts under it present it.
pub trait Work: Serialize {
    fn changes(&self) -> usize;
    fn not_handled(&self) -> usize;
    fn lines(&self, applied: bool, channel: &str, database: &str) -> Vec<String>;
    fn toast(&self) -> String;
    fn failed(&self) -> Option<&Failed>;
}

/// An action on the rows of a channel: where, whether it was done, and what it did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Acted<T> {
    pub database: String,
    pub channel: String,
    /// Done, or only worked out (before asking).
    pub applied: bool,
    #[serde(flatten)]
    pub work: T,
}

impl<T: Work> Present for Acted<T> {
    fn changes(&self) -> usize {
        self.work.changes()
    }

    fn not_handled(&self) -> usize {
        self.work.not_handled()
    }

    fn lines(&self) -> Vec<String> {
        self.work.lines(self.applied, &self.channel, &self.database)
    }

    fn toast(&self) -> String {
        self.work.toast()
    }

    fn failed(&self) -> Option<&Failed> {
        self.work.failed()
    }
}

/// An outbox command's part: its rows, presented by [`Rows`].
impl<T: OutboxWork> Work for Part<T> {
    fn changes(&self) -> usize {
        self.done().map_or(0, |t| t.rows().count())
    }

    fn not_handled(&self) -> usize {
        self.done().map_or(0, |t| t.rows().left_alone().len())
    }

    fn lines(&self, applied: bool, channel: &str, database: &str) -> Vec<String> {
        self.done()
            .map(|t| t.rows().lines(applied, channel, database))
            .unwrap_or_default()
    }

    fn toast(&self) -> String {
        match self {
            Part::Done(t) => t.toast(),
            Part::Failed(f) => format!("{} failed: {}", T::VERB, f.short(120)),
        }
    }

    fn failed(&self) -> Option<&Failed> {
        Part::failed(self)
    }
}

/// Outbox rows an action took, and those it left alone.
pub trait Rows: Serialize {
    /// What is done to a row, and what was done: `("requeue", "requeued")`.
    const VERB: (&'static str, &'static str);
    /// What follows the count of rows in the first line.
    const TAIL: &'static str;
    /// How many rows it took, and the rows named that it left alone.
    fn taken(&self) -> (usize, &[NotHandled]);
    /// A line per row taken.
    fn row_lines(&self, channel: &str) -> Vec<String>;
    /// Why a row named was left alone in `state`.
    fn state_why(state: RowState) -> String;
    /// As the given-up part of an action on the dead letters says it.
    fn given_up_toast(&self) -> String;

    fn count(&self) -> usize {
        self.taken().0
    }

    fn left_alone(&self) -> &[NotHandled] {
        self.taken().1
    }

    /// The rows taken (or to take), then those left alone and why.
    fn lines(&self, applied: bool, channel: &str, database: &str) -> Vec<String> {
        let (verb, n) = (Self::VERB, self.count());
        let mut lines = vec![if n == 0 {
            format!(
                "no outbox row to {} on channel {channel} in {database}",
                verb.0
            )
        } else {
            format!(
                "{} {} of channel {channel} in {database}{}",
                if applied { verb.1 } else { verb.0 },
                counted(n, "outbox row"),
                Self::TAIL
            )
        }];
        lines.extend(self.row_lines(channel));
        lines.extend(left_alone_lines(self.left_alone(), "row", Self::state_why));
        lines
    }
}

/// What an outbox command did to rows, with the count its JSON carries.
pub trait OutboxWork: Serialize {
    type Rows: Rows;
    /// What the action is called in a toast of its failure: `retry`, `purge`.
    const VERB: &'static str;
    fn rows(&self) -> &Self::Rows;
    fn toast(&self) -> String;
}

/// Stuck rows put back in the queue (`outbox retry`); in JSON with `requeued_count`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Requeue {
    pub requeued_count: usize,
    #[serde(flatten)]
    pub outcome: RequeueOutcome,
    #[serde(skip)]
    pub stuck: Stuck,
}

impl Requeue {
    pub fn of(outcome: RequeueOutcome, stuck: Stuck) -> Self {
        Requeue {
            requeued_count: outcome.requeued.len(),
            outcome,
            stuck,
        }
    }
}

impl OutboxWork for Requeue {
    type Rows = RequeueOutcome;
    const VERB: &'static str = "retry";

    fn rows(&self) -> &RequeueOutcome {
        &self.outcome
    }

    fn toast(&self) -> String {
        let n = self.outcome.requeued.len();
        let rows = match self.stuck {
            Stuck::RetryingOrGivenUp => "stuck outbox row",
            Stuck::GivenUp => "given-up outbox row",
        };
        if n == 0 {
            return format!("no {rows}: the backlog is rows waiting their turn");
        }
        let woken = if self.outcome.woke_ingestion {
            "; ingestion woken"
        } else {
            ""
        };
        format!(
            "{} due now, attempts reset{woken}{}",
            counted(n, rows),
            left_alone_toast(&self.outcome.not_handled)
        )
    }
}

impl Rows for RequeueOutcome {
    const VERB: (&'static str, &'static str) = ("requeue", "requeued");
    const TAIL: &'static str = ", each due now with attempts 0:";

    fn taken(&self) -> (usize, &[NotHandled]) {
        (self.requeued.len(), &self.not_handled)
    }

    fn row_lines(&self, channel: &str) -> Vec<String> {
        if self.requeued.is_empty() {
            return Vec::new();
        }
        let mut lines: Vec<String> = self
            .requeued
            .iter()
            .map(|r| {
                format!(
                    "  {:>10}  message {:<19}  was {}, {} attempts, {}",
                    r.id,
                    r.message_id.as_deref().unwrap_or("-"),
                    r.was.as_str(),
                    r.attempts,
                    r.error_class.as_deref().unwrap_or("no error class"),
                )
            })
            .collect();
        lines.push(if self.woke_ingestion {
            format!("one NOTIFY on {channel} woke ingestion for them")
        } else {
            format!("then one NOTIFY on {channel} wakes ingestion")
        });
        lines
    }

    fn state_why(state: RowState) -> String {
        match state {
            RowState::Waiting => "waiting: not stuck, ingestion takes it when due".into(),
            RowState::Retrying => {
                "retrying, not given up: `notifyscope outbox retry` requeues it".into()
            }
            RowState::Dead => "given up".into(),
        }
    }

    fn given_up_toast(&self) -> String {
        format!(
            "{} queued again",
            counted(self.requeued.len(), "given-up row")
        )
    }
}

/// Rows deleted (`outbox purge`); in JSON with `purged_count`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Purge {
    pub purged_count: usize,
    #[serde(flatten)]
    pub outcome: PurgeOutcome,
}

impl Purge {
    pub fn of(outcome: PurgeOutcome) -> Self {
        Purge {
            purged_count: outcome.purged.len(),
            outcome,
        }
    }
}

impl OutboxWork for Purge {
    type Rows = PurgeOutcome;
    const VERB: &'static str = "purge";

    fn rows(&self) -> &PurgeOutcome {
        &self.outcome
    }

    fn toast(&self) -> String {
        format!(
            "{} deleted{}",
            counted(self.outcome.purged.len(), "outbox row"),
            left_alone_toast(&self.outcome.not_handled)
        )
    }
}

impl Rows for PurgeOutcome {
    const VERB: (&'static str, &'static str) = ("delete", "deleted");
    const TAIL: &'static str = "; discord_messages is not touched:";

    fn taken(&self) -> (usize, &[NotHandled]) {
        (self.purged.len(), &self.not_handled)
    }

    fn row_lines(&self, _channel: &str) -> Vec<String> {
        let lines = self.purged.iter().map(|r| {
            let lost = if r.was == RowState::Dead {
                ""
            } else {
                "  NOT DELIVERED: its message is lost"
            };
            format!(
                "  {:>10}  message {:<19}  {}, {} attempts{lost}",
                r.id,
                r.message_id.as_deref().unwrap_or("-"),
                r.was.as_str(),
                r.attempts,
            )
        });
        lines.collect()
    }

    fn state_why(state: RowState) -> String {
        format!(
            "{}: a message not delivered yet; `notifyscope outbox purge --force --id ID` \
             deletes it anyway, and the message is lost",
            state.as_str()
        )
    }

    fn given_up_toast(&self) -> String {
        counted(self.purged.len(), "given-up row")
    }
}

/// Why a named row was left alone, for the reasons every action shares; `None` for a row's
/// state, which each action words for itself.
fn why_text(why: &Why) -> Option<String> {
    Some(match why {
        Why::NotFound => "no such row".into(),
        Why::OtherChannel { channel } => format!("a row of channel {channel}: not touched"),
        Why::Ingested => "ingested already (retention deletes it)".into(),
        Why::Refused { class, error } => format!("refused ({}): {error}", class.describe()),
        Why::State { .. } => return None,
    })
}

/// The lines for `noun`s named by id and left alone; `state` words a row's state.
pub(super) fn left_alone_lines(
    rows: &[NotHandled],
    noun: &str,
    state: fn(RowState) -> String,
) -> Vec<String> {
    if rows.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![format!("left alone: {}", counted(rows.len(), noun))];
    for row in rows {
        let why = match &row.why {
            Why::State { state: s } => state(*s),
            other => why_text(other).unwrap_or_default(),
        };
        lines.push(format!("  {:>10}  {why}", row.id));
    }
    lines
}

/// `, N left alone` when rows named were.
pub(super) fn left_alone_toast(rows: &[NotHandled]) -> String {
    if rows.is_empty() {
        String::new()
    } else {
        format!(", {} left alone", rows.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notifyscope_store::outbox::Requeued;

    fn requeued(n: usize) -> RequeueOutcome {
        RequeueOutcome {
            requeued: (0..n)
                .map(|i| Requeued {
                    id: i as i64,
                    message_id: None,
                    was: RowState::Dead,
                    attempts: 5,
                    error_class: None,
                })
                .collect(),
            not_handled: vec![],
            woke_ingestion: n > 0,
        }
    }

    fn retried(n: usize) -> Acted<Part<Requeue>> {
        Acted {
            database: "db".into(),
            channel: "events".into(),
            applied: true,
            work: Part::Done(Requeue::of(requeued(n), Stuck::RetryingOrGivenUp)),
        }
    }

    #[test]
    fn a_retry_says_its_rows_in_the_singular_and_the_plural() {
        assert_eq!(
            retried(1).toast(),
            "1 stuck outbox row due now, attempts reset; ingestion woken"
        );
        assert_eq!(
            retried(2).toast(),
            "2 stuck outbox rows due now, attempts reset; ingestion woken"
        );
        assert_eq!(
            retried(0).toast(),
            "no stuck outbox row: the backlog is rows waiting their turn"
        );
        assert_eq!(
            retried(2).lines()[0].split(',').next(),
            Some("requeued 2 outbox rows of channel events in db")
        );
    }

    #[test]
    fn the_json_of_a_retry_is_the_commands_document() {
        let json = serde_json::to_value(retried(1)).expect("serializes");
        let keys: Vec<&str> = json
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "applied",
                "channel",
                "database",
                "not_handled",
                "requeued",
                "requeued_count",
                "woke_ingestion"
            ]
        );
    }

    #[test]
    fn a_failed_part_says_what_it_was_doing_where() {
        let failed = Failed {
            doing: Some("requeuing rows of event_outbox"),
            database: "host=h".into(),
            class: ErrorClass::Timeout,
            error: "canceling statement due to lock timeout".into(),
        };
        assert_eq!(
            failed.to_string(),
            "requeuing rows of event_outbox in host=h failed (waited on a lock past \
             lock_timeout (or a statement timed out)): canceling statement due to lock timeout"
        );
        let part: Part<Requeue> = Part::Failed(failed);
        assert_eq!(
            part.toast(),
            "retry failed: canceling statement due to lock timeout"
        );
    }

    #[test]
    fn a_purge_names_each_row_and_why_others_were_left_alone() {
        use notifyscope_store::outbox::Purged;
        let outcome = PurgeOutcome {
            purged: vec![Purged {
                id: 3,
                message_id: Some("42".into()),
                was: RowState::Waiting,
                attempts: 0,
            }],
            not_handled: vec![
                NotHandled {
                    id: 4,
                    why: Why::State {
                        state: RowState::Retrying,
                    },
                },
                NotHandled {
                    id: 5,
                    why: Why::NotFound,
                },
            ],
        };
        assert_eq!(
            outcome.lines(false, "events", "db"),
            [
                "delete 1 outbox row of channel events in db; discord_messages is not touched:",
                "           3  message 42                   waiting, 0 attempts  NOT DELIVERED: \
                 its message is lost",
                "left alone: 2 rows",
                "           4  retrying: a message not delivered yet; `notifyscope outbox purge \
                 --force --id ID` deletes it anyway, and the message is lost",
                "           5  no such row",
            ]
        );
        let none = PurgeOutcome {
            purged: vec![],
            not_handled: vec![],
        };
        assert_eq!(
            none.lines(true, "events", "db"),
            ["no outbox row to delete on channel events in db"]
        );
    }
}
