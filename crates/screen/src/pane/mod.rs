//! The panes as one table: each row names a pane, its number key (its place in the table),
//! its titles and column headers, which trace events it shows, and what it says while empty.
//! Counts, keys, tabs, help and the order of focus all come from [`PANES`]; adding a pane is a
//! row here and its drawing. [`history`] keeps a stage pane's rows.

mod history;

pub use history::Pane;

use notifyscope_model::trace::{TraceKind, WriteStage};

/// What a pane shows.
#[derive(Clone, Copy)]
pub enum Shows {
    /// Rows of trace events: those this accepts.
    Stage(fn(&TraceKind) -> bool),
    /// The diagnosis's checks.
    Health,
    /// The log widget.
    Logs,
}

/// The key of events a stage pane shows as one row per key, updated in place with their
/// count; `None` for an event that is a row of its own.
pub type Summarise = fn(&TraceKind) -> Option<&str>;

/// One row of the pane table.
pub struct PaneSpec {
    pub id: PaneId,
    /// The title of its border.
    pub title: &'static str,
    /// Its name in the tab bar, help and stats.
    pub short_title: &'static str,
    /// Its name in the tab bar when the short titles do not fit.
    pub tab_title: &'static str,
    /// The header of the stage's own column, in the order the row text gives it.
    pub columns: &'static str,
    pub shows: Shows,
    /// Why it is empty, and what would fill it where the user can, in one short line.
    pub empty: Empty,
    /// Events it shows as one row per key with their count, e.g. NOTIFYs on each
    /// neighbouring channel, which can come by the hundred and must not push out the rows
    /// of the pipeline's own channel.
    pub summarise: Option<Summarise>,
}

/// What an empty pane says, by what the screen is attached to. `{send}` stands for the key
/// that sends a test message.
#[derive(Clone, Copy)]
pub struct Empty {
    pub live: &'static str,
    pub watch: &'static str,
    pub replay: &'static str,
}

impl Empty {
    /// The same words whatever the screen is attached to.
    const fn always(text: &'static str) -> Empty {
        Empty {
            live: text,
            watch: text,
            replay: text,
        }
    }
}

impl PaneSpec {
    pub const fn is_stage(&self) -> bool {
        matches!(self.shows, Shows::Stage(_))
    }
}

/// A pane's [`PaneSpec::summarise`]: none unless given.
macro_rules! summarise {
    () => {
        None
    };
    ($summarise:expr) => {
        Some($summarise)
    };
}

/// Declares [`PaneId`] and [`PANES`] from one table, in the order of the number keys.
macro_rules! panes {
    ($($variant:ident => $title:literal, $short:literal, $tab:literal, $columns:literal,
       $shows:expr, $empty:expr $(, summarise: $summarise:expr)?;)*) => {
        /// A pane, by its row of [`PANES`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum PaneId {
            $($variant),*
        }

        /// Every pane, in the order of the number keys.
        pub const PANES: &[PaneSpec] = &[$(PaneSpec {
            id: PaneId::$variant,
            title: $title,
            short_title: $short,
            tab_title: $tab,
            columns: $columns,
            shows: $shows,
            empty: $empty,
            summarise: summarise!($($summarise)?),
        }),*];
    };
}

panes! {
    Received => "Discord messages received", "Received", "Rx", "author #channel size",
        Shows::Stage(|k| matches!(k, TraceKind::Received { .. })),
        // Test keys send nothing into someone else's pipeline: only an observer of their bot
        // sees messages arrive.
        Empty {
            live: "no messages yet: press {send} to send one",
            watch: "messages need --discord-token-env, --bot-log or --otlp",
            replay: "no message in this recording",
        };
    Published => "Published payloads", "Published", "Pub", "outbox row, NOTIFY size",
        Shows::Stage(|k| matches!(
            k,
            TraceKind::Published { .. }
                | TraceKind::PublishReported { .. }
                | TraceKind::PublishFailed { .. }
                | TraceKind::Backpressure { .. }
                | TraceKind::DatabaseRefused { part: WriteStage::Publish, .. }
        )),
        Empty {
            live: "nothing published yet",
            watch: "their publishes: see NOTIFY receipts",
            replay: "nothing published yet",
        };
    Notify => "NOTIFY receipts", "NOTIFY", "Ntfy", "channel, sender pid, outbox row, size",
        Shows::Stage(|k| matches!(
            k,
            TraceKind::Notified { .. }
                | TraceKind::NotifyRejected { .. }
                | TraceKind::NeighbourNotified { .. }
                | TraceKind::DatabaseRefused { part: WriteStage::DeadLetters, .. }
        )),
        Empty::always("no NOTIFY received yet"),
        summarise: |k| match k {
            TraceKind::NeighbourNotified { channel, .. } => Some(channel.as_str()),
            _ => None,
        };
    Ingest => "Ingestion results", "Ingestion", "Ingest", "result, latency, outbox row",
        Shows::Stage(|k| matches!(
            k,
            TraceKind::Ingested { .. }
                | TraceKind::IngestFailed { .. }
                | TraceKind::RowObserved { .. }
                | TraceKind::DatabaseRefused { part: WriteStage::Ingest, .. }
        )),
        Empty::always("nothing ingested yet");
    Skips => "Filter skips", "Skips", "Skip", "reason · author #channel",
        Shows::Stage(|k| matches!(
            k,
            TraceKind::Skipped { .. } | TraceKind::ContentIntentSuspected { .. }
        )),
        Empty::always("no message skipped");
    Health => "Health", "Health", "Health", "", Shows::Health, Empty::always("");
    Logs => "Logs", "Logs", "Logs", "", Shows::Logs, Empty::always("");
}

/// How many panes there are.
pub const PANE_COUNT: usize = PANES.len();

/// How many of them show trace events.
pub const STAGE_COUNT: usize = {
    let mut count = 0;
    let mut i = 0;
    while i < PANE_COUNT {
        if PANES[i].is_stage() {
            count += 1;
        }
        i += 1;
    }
    count
};

impl PaneId {
    /// Every pane, in the order of the number keys.
    pub const ALL: [PaneId; PANE_COUNT] = {
        let mut out = [PaneId::Received; PANE_COUNT];
        let mut i = 0;
        while i < PANE_COUNT {
            out[i] = PANES[i].id;
            i += 1;
        }
        out
    };

    /// The panes that show trace events, in table order.
    pub const STAGES: [PaneId; STAGE_COUNT] = {
        let mut out = [PaneId::Received; STAGE_COUNT];
        let (mut i, mut j) = (0, 0);
        while i < PANE_COUNT {
            if PANES[i].is_stage() {
                out[j] = PANES[i].id;
                j += 1;
            }
            i += 1;
        }
        out
    };

    pub fn spec(self) -> &'static PaneSpec {
        &PANES[self.index()]
    }

    /// Its row in the table.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The pane `steps` rows after this one (before it, when negative), wrapping around.
    pub fn step(self, steps: isize) -> PaneId {
        let n = PANE_COUNT as isize;
        PaneId::ALL[(self.index() as isize + steps).rem_euclid(n) as usize]
    }

    pub fn is_stage(self) -> bool {
        self.spec().is_stage()
    }

    pub fn title(self) -> &'static str {
        self.spec().title
    }

    pub fn short_title(self) -> &'static str {
        self.spec().short_title
    }

    pub fn tab_title(self) -> &'static str {
        self.spec().tab_title
    }

    pub fn columns(self) -> &'static str {
        self.spec().columns
    }

    /// The stage pane an event belongs in, if any.
    pub fn of(kind: &TraceKind) -> Option<PaneId> {
        PANES.iter().find_map(|p| match p.shows {
            Shows::Stage(shows) if shows(kind) => Some(p.id),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_the_order_of_its_ids() {
        for (i, spec) in PANES.iter().enumerate() {
            assert_eq!(spec.id.index(), i, "{:?}", spec.id);
        }
        assert_eq!(PaneId::STAGES.len(), STAGE_COUNT);
        assert!(PaneId::STAGES.iter().all(|p| p.is_stage()));
        assert_eq!(PaneId::Logs.step(1), PaneId::Received);
        assert_eq!(PaneId::Received.step(-1), PaneId::Logs);
    }

    #[test]
    fn every_event_has_at_most_one_stage_pane() {
        let refused = |part| TraceKind::DatabaseRefused {
            part,
            class: notifyscope_model::error_class::ErrorClass::Permission,
            error: String::new(),
            retry_in_ms: None,
        };
        assert_eq!(
            PaneId::of(&refused(WriteStage::Publish)),
            Some(PaneId::Published)
        );
        assert_eq!(
            PaneId::of(&refused(WriteStage::Ingest)),
            Some(PaneId::Ingest)
        );
        assert_eq!(
            PaneId::of(&refused(WriteStage::DeadLetters)),
            Some(PaneId::Notify)
        );
        assert_eq!(PaneId::of(&TraceKind::Lagged { missed: 1 }), None);
    }
}
