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
