//! A stage pane's rows: a bounded history addressed by sequence numbers, the selection and
//! the visible window, the rows that match the search, and the rows that stand for many
//! events of a kind the pane summarises.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::Summarise;
use crate::search::Search;
use notifyscope_model::trace::{TraceEvent, TraceKind};

/// The row that stands for every event with one summary key, and how many there were.
#[derive(Debug, Clone, Copy)]
struct Summary {
    /// The row's sequence number; it is no longer kept once below the first kept.
    seq: u64,
    count: u64,
}

/// A bounded history of one stage's events, addressed by sequence numbers so that dropping
/// old rows does not move the selection.
#[derive(Debug, Default)]
pub struct Pane {
    events: VecDeque<Arc<TraceEvent>>,
    /// Sequence number of `events[0]`.
    first_seq: u64,
    /// With a search: the sequence numbers of matching events, in order.
    matches: Option<VecDeque<u64>>,
    pub dropped: u64,
    /// Showing (and selecting) the newest row as rows arrive.
    pub tail: bool,
    selected_seq: u64,
    top_seq: u64,
    /// The summary key of the events that share one row (`None`: every event is a row).
    summarise: Option<Summarise>,
    summaries: HashMap<String, Summary>,
}

impl Pane {
    pub(crate) fn new(summarise: Option<Summarise>) -> Self {
        Pane {
            tail: true,
            summarise,
            ..Pane::default()
        }
    }

    fn summary_key<'a>(&self, kind: &'a TraceKind) -> Option<&'a str> {
        self.summarise.and_then(|key| key(kind))
    }

    /// Shows `event`: a new row, or, for an event the pane summarises, its key's row updated
    /// in place with the newest event and the count, so that a flood of them takes one row
    /// instead of pushing the others out of the history.
    pub(crate) fn push(
        &mut self,
        event: Arc<TraceEvent>,
        capacity: usize,
        search: Option<&Search>,
    ) {
        let Some(key) = self.summary_key(&event.kind).map(str::to_owned) else {
            self.push_row(event, capacity, search);
            return;
        };
        match self.summaries.get(&key).copied() {
            Some(summary) if summary.seq >= self.first_seq => {
                self.summaries.insert(
                    key,
                    Summary {
                        count: summary.count + 1,
                        ..summary
                    },
                );
                self.replace(summary.seq, event, search);
            }
            // New, or its row left the history: a row at the end, the count going on.
            previous => {
                let seq = self.push_row(event, capacity, search);
                let count = previous.map_or(0, |p| p.count) + 1;
                self.summaries.insert(key, Summary { seq, count });
            }
        }
    }

    /// The row `seq` shows `event` now; whether it matches the search may have changed.
    fn replace(&mut self, seq: u64, event: Arc<TraceEvent>, search: Option<&Search>) {
        let Some(slot) = self.events.get_mut((seq - self.first_seq) as usize) else {
            return;
        };
        if let (Some(m), Some(f)) = (&mut self.matches, search) {
            match (m.binary_search(&seq), f.matches(&event)) {
                (Ok(at), false) => {
                    m.remove(at);
                }
                (Err(at), true) => m.insert(at, seq),
                _ => {}
            }
        }
        *slot = event;
    }

    /// How many events the row at a view index stands for, when it summarises them.
    pub fn repeats(&self, index: usize) -> Option<u64> {
        let seq = self.seq_at(index)?;
        let event = self.get(index)?;
        let summary = self.summaries.get(self.summary_key(&event.kind)?)?;
        (summary.seq == seq).then_some(summary.count)
    }

    /// Appends a row; its sequence number.
    fn push_row(
        &mut self,
        event: Arc<TraceEvent>,
        capacity: usize,
        search: Option<&Search>,
    ) -> u64 {
        if self.events.len() >= capacity.max(1) {
            self.events.pop_front();
            self.first_seq += 1;
            self.dropped += 1;
            if let Some(m) = &mut self.matches {
                while m.front().is_some_and(|s| *s < self.first_seq) {
                    m.pop_front();
                }
            }
        }
        let seq = self.first_seq + self.events.len() as u64;
        if let (Some(m), Some(f)) = (&mut self.matches, search) {
            if f.matches(&event) {
                m.push_back(seq);
            }
        }
        self.events.push_back(event);
        seq
    }

    pub(crate) fn apply_search(&mut self, search: Option<&Search>) {
        self.matches = search.map(|f| {
            self.events
                .iter()
                .enumerate()
                .filter(|(_, e)| f.matches(e))
                .map(|(i, _)| self.first_seq + i as u64)
                .collect()
        });
        self.tail = true;
    }

    pub(crate) fn clear(&mut self) {
        self.first_seq += self.events.len() as u64;
        self.events.clear();
        self.summaries.clear();
        if let Some(m) = &mut self.matches {
            m.clear();
        }
        self.tail = true;
    }

    /// Rows in view (matching the search).
    pub fn len(&self) -> usize {
        self.matches
            .as_ref()
            .map(|m| m.len())
            .unwrap_or(self.events.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every kept row, matching the search or not, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &Arc<TraceEvent>> {
        self.events.iter()
    }

    pub fn total_kept(&self) -> usize {
        self.events.len()
    }

    fn seq_at(&self, index: usize) -> Option<u64> {
        match &self.matches {
            Some(m) => m.get(index).copied(),
            None => (index < self.events.len()).then(|| self.first_seq + index as u64),
        }
    }

    fn index_of(&self, seq: u64) -> usize {
        match &self.matches {
            Some(m) => m.partition_point(|s| *s < seq),
            None => seq.saturating_sub(self.first_seq) as usize,
        }
        .min(self.len().saturating_sub(1))
    }

    /// The event at a view index.
    pub fn get(&self, index: usize) -> Option<&Arc<TraceEvent>> {
        let seq = self.seq_at(index)?;
        self.events.get((seq - self.first_seq) as usize)
    }

    pub fn selected_index(&self) -> Option<usize> {
        if self.is_empty() {
            None
        } else if self.tail {
            Some(self.len() - 1)
        } else {
            Some(self.index_of(self.selected_seq))
        }
    }

    pub fn selected(&self) -> Option<&Arc<TraceEvent>> {
        self.selected_index().and_then(|i| self.get(i))
    }

    /// The view indices shown in a window of `height` rows.
    pub fn window(&self, height: usize) -> std::ops::Range<usize> {
        let len = self.len();
        if len == 0 || height == 0 {
            return 0..0;
        }
        if self.tail {
            return len.saturating_sub(height)..len;
        }
        let top = self.index_of(self.top_seq);
        let top = top.min(len.saturating_sub(height));
        top..(top + height).min(len)
    }

    /// Moves the selection by `delta` rows, keeping it inside a window of `height`.
    pub(crate) fn move_by(&mut self, delta: isize, height: usize) {
        let len = self.len();
        if len == 0 {
            return;
        }
        let current = self.selected_index().unwrap_or(len - 1);
        let target = (current as isize + delta).clamp(0, len as isize - 1) as usize;
        self.select(target, height);
    }

    pub(crate) fn select(&mut self, target: usize, height: usize) {
        let len = self.len();
        if len == 0 {
            return;
        }
        let height = height.max(1);
        let mut top = self.window(height).start;
        if target < top {
            top = target;
        } else if target >= top + height {
            top = target + 1 - height;
        }
        // Reaching the newest row goes back to following new rows.
        self.tail = target + 1 == len;
        self.selected_seq = self.seq_at(target).unwrap_or(0);
        self.top_seq = self.seq_at(top).unwrap_or(0);
    }
}
