//! What came of cancelling or ending a session (`backend cancel|terminate`, and the screen's
//! action on the session that holds the pipeline up), and its presenter.

use serde::Serialize;

use super::outcome::{Failed, Present};
use notifyscope_model::present::shorten;
use notifyscope_store::backends::{BackendSignal, Session, SignalOutcome};
use notifyscope_store::snapshot::statement_shown;

/// The session as it may be shown: its statement by the first word only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shown {
    pub database: Option<String>,
    pub user: Option<String>,
    pub application_name: String,
    pub state: Option<String>,
    pub seconds_in_state: Option<f64>,
    pub statement: String,
}

impl Shown {
    pub fn of(s: &Session) -> Self {
        Shown {
            database: s.database.clone(),
            user: s.user.clone(),
            application_name: s.application_name.clone(),
            state: s.state.clone(),
            seconds_in_state: s.seconds_in_state,
            statement: statement_shown(&s.query),
        }
    }

    fn describe(&self) -> String {
        let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let mut text = format!(
            "user {}, application {:?}, {}",
            or_dash(&self.user),
            self.application_name,
            or_dash(&self.state),
        );
        if let Some(s) = self.seconds_in_state {
            text.push_str(&format!(" for {s:.0} s"));
        }
        if !self.statement.is_empty() {
            text.push_str(&format!(", statement {}", self.statement));
        }
        text
    }
}

/// What cancelling or ending a session did, or would do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Signalled {
    pub database: String,
    pub pid: i32,
    pub signal: BackendSignal,
    /// Done, or only looked up (before asking).
    pub applied: bool,
    /// The session, as it was before.
    pub session: Option<Shown>,
    /// Absent before asking.
    #[serde(flatten)]
    pub outcome: Option<SignalOutcome>,
    /// Looking the session up or signalling it failed.
    #[serde(skip)]
    pub failed: Option<Failed>,
    /// The session may be signalled: of this database, not the asking one's own.
    #[serde(skip)]
    pub signalable: bool,
}

impl Present for Signalled {
    fn changes(&self) -> usize {
        match &self.outcome {
            Some(outcome) => usize::from(outcome.worked()),
            // Before asking: whether there is anything to signal.
            None => usize::from(self.session.is_some()),
        }
    }

    fn not_handled(&self) -> usize {
        usize::from(self.outcome.as_ref().is_some_and(|o| !o.worked()))
    }

    fn lines(&self) -> Vec<String> {
        let verb = self.signal.as_str();
        let pid = self.pid;
        let session = self
            .session
            .as_ref()
            .map(|s| format!(" ({})", s.describe()))
            .unwrap_or_default();
        let what = match self.signal {
            BackendSignal::Cancel => "its running statement fails; the session stays",
            BackendSignal::Terminate => {
                "the session ends: its transaction is rolled back and its locks released"
            }
        };
        let line = match &self.outcome {
            None => format!("{verb} backend pid {pid}{session}: {what}"),
            Some(SignalOutcome::Sent) => format!("{verb}: signalled backend pid {pid}{session}"),
            Some(SignalOutcome::NoSuchBackend) => format!("{verb}: no session has pid {pid}"),
            Some(SignalOutcome::OtherDatabase { database }) => format!(
                "{verb}: refused: pid {pid} is a session of {}, not of {}",
                database
                    .as_deref()
                    .map(|d| format!("database {d}"))
                    .unwrap_or_else(|| "the server itself".into()),
                self.database
            ),
            Some(SignalOutcome::OwnSession) => {
                format!("{verb}: refused: pid {pid} is this command's session")
            }
            Some(SignalOutcome::NotSignalled) => {
                format!("{verb}: the server found no session with pid {pid} to signal (it ended)")
            }
            Some(SignalOutcome::Refused { class, error }) => {
                format!("{verb}: the server refused ({}): {error}", class.describe())
            }
        };
        vec![line]
    }

    fn toast(&self) -> String {
        let pid = self.pid;
        if let Some(failed) = &self.failed {
            return format!("pid {pid}: failed: {}", failed.short(120));
        }
        match &self.outcome {
            None => format!("pid {pid}: {}", self.signal.as_str()),
            Some(SignalOutcome::Sent) => match self.signal {
                BackendSignal::Cancel => format!("pid {pid}: statement cancelled"),
                BackendSignal::Terminate => format!("pid {pid}: session ended"),
            },
            Some(SignalOutcome::NoSuchBackend | SignalOutcome::NotSignalled) => {
                format!("pid {pid} is gone already: nothing to do")
            }
            Some(SignalOutcome::OtherDatabase { database }) => format!(
                "pid {pid} is a session of {}, not of this database: left alone",
                database.as_deref().unwrap_or("the server itself")
            ),
            Some(SignalOutcome::OwnSession) => {
                format!("pid {pid} is this very session: left alone")
            }
            Some(SignalOutcome::Refused { error, .. }) => {
                format!("pid {pid}: the server refused: {}", shorten(error, 120))
            }
        }
    }

    fn failed(&self) -> Option<&Failed> {
        self.failed.as_ref()
    }
}
