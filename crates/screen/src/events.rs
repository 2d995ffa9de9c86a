//! What the monitor's state hears and answers: events from outside ([`AppEvent`]), the mouse
//! ([`Pointer`]), what the bottom line reads ([`Prompt`]), and the work it hands to the event
//! loop ([`Effect`]).

use std::sync::Arc;

use crate::pane::PaneId;
use notifyscope_model::check::Check;
use notifyscope_model::sim::SimKind;
use notifyscope_model::trace::TraceEvent;

/// Work for the event loop.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Quit,
    Send(SimKind),
    SendMalformed,
    SendWrongChannel,
    SendDirect,
    /// Put this text on the clipboard.
    Copy(String),
    /// Write these events as JSON lines.
    Save(Vec<Arc<TraceEvent>>),
    /// Forward the key to the log widget.
    LogKey(crossterm::event::KeyEvent),
    /// Cancel the statement of a backend that holds the pipeline up (`pg_cancel_backend`).
    CancelBackend(i32),
    /// End the session of that backend (`pg_terminate_backend`).
    TerminateBackend(i32),
    /// Stuck outbox rows of the channel due now, their attempts reset.
    RetryStuckRows,
    /// Dead letters and given-up outbox rows, listed in an overlay.
    ListDeadLetters,
    /// Dead letters sent again and given-up rows queued again.
    RequeueDeadLetters,
    /// Dead letters and given-up rows deleted.
    DeleteDeadLetters,
}

/// What the bottom line reads, when it reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// The filter or the search being typed; `error` says why the last Enter was refused
    /// (the text stays, to be corrected).
    Input {
        kind: InputKind,
        text: String,
        error: Option<String>,
    },
    /// An action on the diagnosis waiting for its confirmation: a key per choice.
    Confirm {
        question: String,
        choices: Vec<(char, String, Effect)>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Filter,
    Search,
}

/// Where a click landed, as the layout tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClickTarget {
    /// A pane's title in the tab bar.
    Tab(PaneId),
    /// A pane, and the row of its list under the pointer (counted from the first row shown).
    Pane { pane: PaneId, row: Option<usize> },
}

/// The mouse, in the app's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pointer {
    Click(ClickTarget),
    ScrollUp(PaneId),
    ScrollDown(PaneId),
}

/// Things that happen to the app besides keys.
#[derive(Debug, Clone)]
pub enum AppEvent {
    Trace(Arc<TraceEvent>),
    Backlog(Option<i64>),
    Health(Vec<Check>),
    Toast(String),
    /// Lines to show in an overlay (the result of work such as listing dead letters).
    Lines {
        title: String,
        lines: Vec<String>,
    },
    Tick,
}

/// What the screen is attached to.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Our own pipeline: test keys work.
    Live,
    /// Someone else's pipeline, watched without writing.
    Watch,
    /// A recording, read-only.
    Replay(String),
}
