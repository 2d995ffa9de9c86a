//! The status a health check can have. It sits below the trace stream because the stream
//! carries health changes; the checks themselves live in `diagnose`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::contract::Snowflake;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Unknown,
    Warn,
    Fail,
}

impl Status {
    pub fn symbol(self) -> &'static str {
        match self {
            Status::Ok => "✓",
            Status::Unknown => "?",
            Status::Warn => "!",
            Status::Fail => "✗",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Unknown => "unknown",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// The verdict over a set of checks: how many stand at each status. Healthy only when every
/// check was judged and holds; a check left unknown for lack of evidence is counted, never
/// taken for a check that holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdict {
    pub ok: usize,
    pub unknown: usize,
    pub warn: usize,
    pub fail: usize,
}

impl Verdict {
    pub fn of(statuses: impl IntoIterator<Item = Status>) -> Verdict {
        let mut v = Verdict::default();
        for s in statuses {
            match s {
                Status::Ok => v.ok += 1,
                Status::Unknown => v.unknown += 1,
                Status::Warn => v.warn += 1,
                Status::Fail => v.fail += 1,
            }
        }
        v
    }

    pub fn total(&self) -> usize {
        self.ok + self.unknown + self.warn + self.fail
    }

    /// Every check judged, and every one holds.
    pub fn healthy(&self) -> bool {
        self.total() > 0 && self.ok == self.total()
    }

    /// The worst status there is; `None` for no checks.
    pub fn worst(&self) -> Option<Status> {
        [
            (self.fail, Status::Fail),
            (self.warn, Status::Warn),
            (self.unknown, Status::Unknown),
            (self.ok, Status::Ok),
        ]
        .into_iter()
        .find(|(n, _)| *n > 0)
        .map(|(_, s)| s)
    }

    /// The counts that are not zero, worst first: `✗ 1 failing · ! 2 warning · ? 7 unknown`,
    /// or `✓ healthy` when all hold, `no checks` when there are none.
    pub fn words(&self) -> String {
        if self.total() == 0 {
            return "no checks".to_owned();
        }
        if self.healthy() {
            return format!("{} healthy", Status::Ok.symbol());
        }
        let parts: Vec<String> = [
            (self.fail, Status::Fail, "failing"),
            (self.warn, Status::Warn, "warning"),
            (self.unknown, Status::Unknown, "unknown"),
            (self.ok, Status::Ok, "ok"),
        ]
        .into_iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, s, word)| format!("{} {n} {word}", s.symbol()))
        .collect();
        parts.join(" · ")
    }
}

/// One check as the diagnosis judged it, in the trace's own words: what a recording keeps so
/// that a replay shows the verdicts that were on screen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckState {
    /// The check's stable id (`listener`, `backlog`, …).
    pub check: String,
    pub name: String,
    pub status: Status,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    pub hint: String,
    pub since: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub message_ids: Vec<Snowflake>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_checks_are_counted_and_never_healthy() {
        let v = Verdict::of([Status::Ok, Status::Unknown, Status::Unknown, Status::Ok]);
        assert!(!v.healthy());
        assert_eq!(v.worst(), Some(Status::Unknown));
        assert_eq!(v.words(), "? 2 unknown · ✓ 2 ok");
        let v = Verdict::of([Status::Ok, Status::Fail, Status::Unknown]);
        assert_eq!(v.words(), "✗ 1 failing · ? 1 unknown · ✓ 1 ok");
        assert!(Verdict::of([Status::Ok, Status::Ok]).healthy());
        assert_eq!(Verdict::of([Status::Ok]).words(), "✓ healthy");
        assert!(!Verdict::of([]).healthy());
    }
}
