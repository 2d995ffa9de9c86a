//! What came of an action on the dead letters of a channel, of two kinds kept apart:
//! notifications the listener rejected (`dead_letters`) and outbox rows given up. Re-sending
//! (`dead-letters retry`, the screen's requeue) and deleting (`dead-letters delete`, the
//! screen's delete) share one outcome, [`DeadLetters`], over what is done to the rows.

use serde::Serialize;

use super::outcome::{left_alone_lines, Failed, Part, Rows, Work};
use notifyscope_model::contract;
use notifyscope_model::present::{counted, shorten};
use notifyscope_store::action::NotHandled;
use notifyscope_store::dead_letters::{self, Handled};
use notifyscope_store::outbox::{PurgeOutcome, RequeueOutcome};

/// Payloads in JSON are cut to this many columns, as in `notify_rejected` trace events.
pub const PAYLOAD_JSON: usize = 1024;
/// And in lines to this many.
pub const PAYLOAD_LINE: usize = 60;

/// Re-sending the rejected notifications and requeuing the given-up rows.
pub type DeadLettersRetried = super::Acted<DeadLetters<RequeueOutcome>>;
/// Deleting both.
pub type DeadLettersDeleted = super::Acted<DeadLetters<PurgeOutcome>>;

/// A rejected notification re-sent or deleted, with its payload cut for showing and, for a
/// re-send, what the contract says of it now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LetterDone {
    pub id: i64,
    pub sender_pid: i32,
    /// Why it was rejected before.
    pub error: String,
    /// Cut to 1,024 columns.
    pub payload: String,
    /// Re-sent only: whether it follows the contract now. When it does not, the listener
    /// rejects it again and records it as a new dead letter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passes_contract: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contract_error: Option<String>,
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

/// What happened to the rejected notifications.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Letters {
    pub count: usize,
    pub rows: Vec<LetterDone>,
    pub not_handled: Vec<NotHandled>,
}

impl Letters {
    /// `judged`: say what the contract says of each payload now (for a re-send).
    pub fn of(outcome: dead_letters::Outcome, judged: bool) -> Self {
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

    fn none() -> Self {
        Letters {
            count: 0,
            rows: Vec::new(),
            not_handled: Vec::new(),
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
                counted(self.rows.len(), "rejected notification")
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
        // A rejected notification has no row state of its own to word.
        lines.extend(left_alone_lines(
            &self.not_handled,
            "rejected notification",
            |_| String::new(),
        ));
        lines
    }
}

/// An outcome with the number of rows it changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Counted<T> {
    pub count: usize,
    #[serde(flatten)]
    pub outcome: T,
}

/// What an action on both kinds of dead letters did: each kind is a part of its own, done
/// (or not) whatever came of the other. `R`: what was done to the given-up outbox rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetters<R> {
    /// Re-sent as a NOTIFY on the channel (and deleted: the listener records one that is
    /// still broken again), or deleted.
    pub rejected_notifications: Part<Letters>,
    /// Put back in the queue, or deleted.
    pub outbox_given_up: Part<Counted<R>>,
    /// Which kinds were asked for (a kind not asked for is done, with nothing).
    #[serde(skip)]
    pub asked: (bool, bool),
}

impl<R: Verbs> DeadLetters<R> {
    /// The outcome of the parts asked for; a part not asked for has done nothing.
    pub fn of(letters: Option<Part<Letters>>, rows: Option<Part<R>>) -> Self {
        let asked = (letters.is_some(), rows.is_some());
        let rows = match rows.unwrap_or_else(|| Part::Done(R::nothing())) {
            Part::Done(outcome) => Part::Done(Counted {
                count: outcome.count(),
                outcome,
            }),
            Part::Failed(f) => Part::Failed(f),
        };
        DeadLetters {
            rejected_notifications: letters.unwrap_or(Part::Done(Letters::none())),
            outbox_given_up: rows,
            asked,
        }
    }
}

/// How each action on the dead letters is said.
pub trait Verbs: Rows {
    /// What is done to the rejected notifications, and what was done.
    const LETTERS: (&'static str, &'static str);
    /// The toast of the given-up part when it failed, before the error.
    const ROWS_FAILED: &'static str;
    /// The toast of the letters' part when it failed, before the error.
    const LETTERS_FAILED: &'static str;
    /// Nothing done to the given-up rows (they were not asked for).
    fn nothing() -> Self;
    /// The toast of the letters done.
    fn letters_toast(letters: &Letters) -> String;
    /// The toast of the parts asked for: what each did, or (`Err`) that it failed.
    fn join(parts: Vec<Result<String, String>>) -> String;
}

impl Verbs for RequeueOutcome {
    const LETTERS: (&'static str, &'static str) = ("re-send", "re-sent");
    const ROWS_FAILED: &'static str = "given-up rows not queued: ";
    const LETTERS_FAILED: &'static str = "dead letters not sent: ";

    fn nothing() -> Self {
        RequeueOutcome {
            requeued: Vec::new(),
            not_handled: Vec::new(),
            woke_ingestion: false,
        }
    }

    fn letters_toast(letters: &Letters) -> String {
        let sent = format!("{} sent again", counted(letters.count, "dead letter"));
        match letters.not_handled.len() {
            0 => sent,
            n => format!("{sent}, {n} could not be sent"),
        }
    }

    fn join(parts: Vec<Result<String, String>>) -> String {
        let said: Vec<String> = parts.into_iter().map(|p| p.unwrap_or_else(|e| e)).collect();
        said.join("; ")
    }
}

impl Verbs for PurgeOutcome {
    const LETTERS: (&'static str, &'static str) = ("delete", "deleted");
    const ROWS_FAILED: &'static str = "given-up rows not deleted: ";
    const LETTERS_FAILED: &'static str = "dead letters not deleted: ";

    fn nothing() -> Self {
        PurgeOutcome {
            purged: Vec::new(),
            not_handled: Vec::new(),
        }
    }

    fn letters_toast(letters: &Letters) -> String {
        counted(letters.count, "dead letter")
    }

    /// `1 given-up row and 2 dead letters deleted`; with a part that failed, each part
    /// on its own.
    fn join(parts: Vec<Result<String, String>>) -> String {
        if let Ok(done) = parts.iter().cloned().collect::<Result<Vec<_>, _>>() {
            return format!("{} deleted", done.join(" and "));
        }
        let said: Vec<String> = parts
            .into_iter()
            .map(|p| p.map_or_else(|e| e, |done| format!("{done} deleted")))
            .collect();
        said.join("; ")
    }
}

impl<R: Verbs> Work for DeadLetters<R> {
    fn changes(&self) -> usize {
        self.rejected_notifications.done().map_or(0, |l| l.count)
            + self.outbox_given_up.done().map_or(0, |r| r.count)
    }

    fn not_handled(&self) -> usize {
        self.rejected_notifications
            .done()
            .map_or(0, |l| l.not_handled.len())
            + self
                .outbox_given_up
                .done()
                .map_or(0, |r| r.outcome.left_alone().len())
    }

    fn lines(&self, applied: bool, channel: &str, database: &str) -> Vec<String> {
        let mut lines = Vec::new();
        if let (true, Some(letters)) = (self.asked.0, self.rejected_notifications.done()) {
            lines.extend(letters.lines(R::LETTERS, applied, channel, database));
        }
        if let (true, Some(rows)) = (self.asked.1, self.outbox_given_up.done()) {
            lines.extend(rows.outcome.lines(applied, channel, database));
        }
        lines
    }

    fn toast(&self) -> String {
        let rows = self.asked.1.then(|| match &self.outbox_given_up {
            Part::Done(rows) => Ok(rows.outcome.given_up_toast()),
            Part::Failed(f) => Err(format!("{}{}", R::ROWS_FAILED, f.short(80))),
        });
        let letters = self.asked.0.then(|| match &self.rejected_notifications {
            Part::Done(letters) => Ok(R::letters_toast(letters)),
            Part::Failed(f) => Err(format!("{}{}", R::LETTERS_FAILED, f.short(80))),
        });
        R::join(rows.into_iter().chain(letters).collect())
    }

    fn failed(&self) -> Option<&Failed> {
        self.rejected_notifications
            .failed()
            .or(self.outbox_given_up.failed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letters(n: usize) -> Part<Letters> {
        Part::Done(Letters {
            count: n,
            rows: vec![],
            not_handled: vec![],
        })
    }

    fn failed() -> Failed {
        Failed {
            doing: Some("deleting dead letters"),
            database: "db".into(),
            class: notifyscope_store::ErrorClass::Timeout,
            error: "lock timeout".into(),
        }
    }

    #[test]
    fn a_delete_says_each_part_and_what_failed() {
        let both: DeadLetters<PurgeOutcome> =
            DeadLetters::of(Some(letters(1)), Some(Part::Done(PurgeOutcome::nothing())));
        assert_eq!(both.toast(), "0 given-up rows and 1 dead letter deleted");
        let half: DeadLetters<PurgeOutcome> = DeadLetters::of(
            Some(Part::Failed(failed())),
            Some(Part::Done(PurgeOutcome::nothing())),
        );
        assert_eq!(
            half.toast(),
            "0 given-up rows deleted; dead letters not deleted: lock timeout"
        );
        let letters_only: DeadLetters<PurgeOutcome> = DeadLetters::of(Some(letters(2)), None);
        assert_eq!(letters_only.toast(), "2 dead letters deleted");
    }

    #[test]
    fn a_retry_says_each_part() {
        let both: DeadLetters<RequeueOutcome> = DeadLetters::of(
            Some(letters(2)),
            Some(Part::Done(RequeueOutcome::nothing())),
        );
        assert_eq!(
            both.toast(),
            "0 given-up rows queued again; 2 dead letters sent again"
        );
        let json = serde_json::to_value(&both).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "rejected_notifications": {"count": 2, "rows": [], "not_handled": []},
                "outbox_given_up": {
                    "count": 0, "requeued": [], "not_handled": [], "woke_ingestion": false
                }
            })
        );
    }
}
