//! Sliding windows of what the trace showed: timestamped samples ([`Recent`]) and messages
//! waiting for their next stage ([`Pending`]). Both are bounded.

use std::collections::{HashSet, VecDeque};

use chrono::{DateTime, Utc};

use notifyscope_model::contract::Snowflake;
use notifyscope_model::present::counted;

/// Samples shown as evidence, at most.
pub(super) const SAMPLE: usize = 5;
/// Entries a window keeps, at most.
const KEEP: usize = 10_000;

/// Timestamps in a sliding window.
#[derive(Debug)]
pub(super) struct Recent<T> {
    pub(super) items: VecDeque<(DateTime<Utc>, T)>,
    pub(super) total: u64,
}

impl<T> Default for Recent<T> {
    fn default() -> Self {
        Recent {
            items: VecDeque::new(),
            total: 0,
        }
    }
}

impl<T: Clone> Recent<T> {
    pub(super) fn push(&mut self, at: DateTime<Utc>, item: T) {
        if self.items.len() >= KEEP {
            self.items.pop_front();
        }
        self.items.push_back((at, item));
        self.total += 1;
    }

    pub(super) fn prune(&mut self, before: DateTime<Utc>) {
        while self.items.front().is_some_and(|(at, _)| *at < before) {
            self.items.pop_front();
        }
    }

    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    pub(super) fn last(&self) -> Option<&(DateTime<Utc>, T)> {
        self.items.back()
    }

    /// `"{count} {noun}s {what}, last {when}"`, when the window holds anything.
    pub(super) fn last_seen(&self, noun: &str, what: &str, now: DateTime<Utc>) -> Option<String> {
        let (at, _) = self.last()?;
        Some(format!(
            "{} {what}, last {}",
            counted(self.len(), noun),
            ago(now, *at)
        ))
    }

    pub(super) fn samples(&self) -> Vec<T> {
        self.items
            .iter()
            .rev()
            .take(SAMPLE)
            .map(|(_, t)| t.clone())
            .collect()
    }
}

/// How long ago `at` was, for people.
pub(super) fn ago(now: DateTime<Utc>, at: DateTime<Utc>) -> String {
    let s = (now - at).num_milliseconds() as f64 / 1000.0;
    if s < 1.0 {
        "just now".into()
    } else if s < 120.0 {
        format!("{s:.0} s ago")
    } else {
        format!("{:.0} min ago", s / 60.0)
    }
}

/// Messages waiting for the next stage, oldest first.
#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) order: VecDeque<(DateTime<Utc>, Snowflake)>,
    open: HashSet<Snowflake>,
    /// Recently finished ids: the next stage may be reported before this one (a row can be
    /// ingested before its own NOTIFY is read), and must not open it again.
    finished: VecDeque<Snowflake>,
    finished_set: HashSet<Snowflake>,
}

impl Pending {
    pub(super) fn start(&mut self, at: DateTime<Utc>, id: Snowflake) {
        if self.finished_set.contains(&id) {
            return;
        }
        if self.order.len() >= KEEP {
            if let Some((_, old)) = self.order.pop_front() {
                self.open.remove(&old);
            }
        }
        if self.open.insert(id) {
            self.order.push_back((at, id));
        }
    }

    pub(super) fn is_open(&self, id: Snowflake) -> bool {
        self.open.contains(&id)
    }

    /// Started, whether still open or done since.
    pub(super) fn has_seen(&self, id: Snowflake) -> bool {
        self.open.contains(&id) || self.finished_set.contains(&id)
    }

    pub(super) fn done(&mut self, id: Snowflake) {
        self.open.remove(&id);
        if self.finished_set.insert(id) {
            if self.finished.len() >= KEEP {
                if let Some(old) = self.finished.pop_front() {
                    self.finished_set.remove(&old);
                }
            }
            self.finished.push_back(id);
        }
    }

    /// After missed trace events nothing is known about what is open.
    pub(super) fn forget(&mut self) {
        self.order.clear();
        self.open.clear();
    }

    /// Ids still open after `deadline`.
    pub(super) fn overdue(&mut self, before: DateTime<Utc>) -> Vec<(DateTime<Utc>, Snowflake)> {
        while self
            .order
            .front()
            .is_some_and(|(_, id)| !self.open.contains(id))
        {
            self.order.pop_front();
        }
        self.order
            .iter()
            .filter(|(at, id)| *at < before && self.open.contains(id))
            .copied()
            .collect()
    }
}
