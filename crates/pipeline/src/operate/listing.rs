//! What a look at the outbox or the dead letters found (`outbox list`, `dead-letters list`,
//! the screen's list of dead letters), and its presenter.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::dead_letters::{PAYLOAD_JSON, PAYLOAD_LINE};
use super::outcome::{Failed, Part, Present};
use notifyscope_model::present::{counted, shorten};
use notifyscope_store::dead_letters::DeadLetter;
use notifyscope_store::outbox::OutboxRow;

/// What was listed on a channel: where, and the rows (or why they could not be read).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listed<T> {
    pub database: String,
    pub channel: String,
    #[serde(flatten)]
    pub list: Part<T>,
}

/// Rows found, for people.
pub trait Found: Serialize {
    fn lines(&self, channel: &str, database: &str) -> Vec<String>;
    fn toast(&self) -> String;
}

impl<T: Found> Present for Listed<T> {
    fn changes(&self) -> usize {
        0
    }

    fn not_handled(&self) -> usize {
        0
    }

    fn lines(&self) -> Vec<String> {
        self.list
            .done()
            .map(|t| t.lines(&self.channel, &self.database))
            .unwrap_or_default()
    }

    fn toast(&self) -> String {
        match &self.list {
            Part::Done(t) => t.toast(),
            Part::Failed(f) => format!("could not read them: {}", f.short(120)),
        }
    }

    fn failed(&self) -> Option<&Failed> {
        self.list.failed()
    }
}

/// The outbox rows of a channel not ingested yet (`outbox list`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxList {
    pub rows: Vec<OutboxRow>,
}

impl Found for OutboxList {
    fn lines(&self, channel: &str, database: &str) -> Vec<String> {
        if self.rows.is_empty() {
            return vec![format!(
                "no unprocessed row on channel {channel} in {database}"
            )];
        }
        let mut lines = vec![format!(
            "{:>10}  {:<19}  {:<8}  {:>8}  {:<12}  {:<14}  LAST ERROR",
            "ID", "MESSAGE", "STATE", "ATTEMPTS", "NEXT", "CLASS"
        )];
        let now = Utc::now();
        for row in &self.rows {
            let next = match (row.next_attempt_at, row.dead_at) {
                (_, Some(_)) => "never".to_owned(),
                (Some(at), None) if at > now => {
                    format!("in {:.0} s", (at - now).num_milliseconds() as f64 / 1e3)
                }
                _ => "now".to_owned(),
            };
            lines.push(format!(
                "{:>10}  {:<19}  {:<8}  {:>8}  {:<12}  {:<14}  {}",
                row.id,
                row.message_id.as_deref().unwrap_or("-"),
                row.state.as_str(),
                row.attempts,
                next,
                row.error_class.as_deref().unwrap_or("-"),
                shorten(row.last_error.as_deref().unwrap_or("-"), 100),
            ));
        }
        lines
    }

    fn toast(&self) -> String {
        counted(self.rows.len(), "unprocessed outbox row")
    }
}

/// A rejected notification as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Letter {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    pub sender_pid: i32,
    pub error: String,
    /// Cut to 1,024 columns (`…` where cut).
    pub payload: String,
    pub payload_bytes: usize,
}

impl Letter {
    pub fn of(l: DeadLetter) -> Self {
        Letter {
            id: l.id,
            received_at: l.received_at,
            sender_pid: l.sender_pid,
            error: l.error,
            payload_bytes: l.payload.len(),
            payload: shorten(&l.payload, PAYLOAD_JSON),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kind<T> {
    /// Rows of this kind on the channel; `rows` holds the oldest, up to the limit.
    pub total: i64,
    pub rows: Vec<T>,
}

impl<T> Kind<T> {
    /// `total`, and which of them are shown when not all are.
    fn shown(&self, some: impl Fn(usize) -> String) -> String {
        if i64::try_from(self.rows.len()).unwrap_or(i64::MAX) < self.total {
            format!("{}{}", self.total, some(self.rows.len()))
        } else {
            self.total.to_string()
        }
    }
}

/// The dead letters of a channel, both kinds (`dead-letters list`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetterList {
    /// Notifications the listener rejected (table dead_letters; act on them by --id).
    pub rejected_notifications: Kind<Letter>,
    /// Outbox rows given up (event_outbox, dead_at set; act on them by --outbox-id).
    pub outbox_given_up: Kind<OutboxRow>,
}

impl Found for DeadLetterList {
    fn lines(&self, channel: &str, database: &str) -> Vec<String> {
        let more = |rows: usize| format!(" (the oldest {rows} shown; --limit)");
        let letters = &self.rejected_notifications;
        let mut lines = vec![format!(
            "rejected notifications (dead_letters, by --id) on channel {channel} in {database}: {}",
            letters.shown(more)
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
        let given_up = &self.outbox_given_up;
        lines.push(format!(
            "outbox rows given up (event_outbox with dead_at, by --outbox-id): {}",
            given_up.shown(more)
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

    fn toast(&self) -> String {
        let count = |n: i64, what| counted(usize::try_from(n).unwrap_or(0), what);
        format!(
            "{}, {} given up",
            count(self.rejected_notifications.total, "rejected notification"),
            count(self.outbox_given_up.total, "outbox row")
        )
    }
}

impl Listed<DeadLetterList> {
    /// For the screen's overlay: both kinds, a short line a row.
    pub fn overview(&self) -> Vec<String> {
        let list = match &self.list {
            Part::Done(list) => list,
            Part::Failed(f) => return vec![format!("could not read them: {}", f.error)],
        };
        let more = |rows: usize| format!(" (the oldest {rows} below)");
        let letters = &list.rejected_notifications;
        let mut lines = vec![format!(
            "Rejected notifications (dead_letters): {}",
            letters.shown(more)
        )];
        lines.extend(letters.rows.iter().map(|l| {
            format!(
                "  #{} {} pid {}: {} — {}",
                l.id,
                l.received_at.format("%H:%M:%S"),
                l.sender_pid,
                shorten(&l.error, 60),
                shorten(&l.payload, 60)
            )
        }));
        lines.push(String::new());
        let rows = &list.outbox_given_up;
        lines.push(format!("Outbox rows given up: {}", rows.shown(more)));
        lines.extend(rows.rows.iter().map(|r| {
            format!(
                "  outbox {} message {} after {}: {}",
                r.id,
                r.message_id.as_deref().unwrap_or("-"),
                counted(usize::try_from(r.attempts).unwrap_or(0), "attempt"),
                shorten(r.last_error.as_deref().unwrap_or(""), 80)
            )
        }));
        lines
    }
}
