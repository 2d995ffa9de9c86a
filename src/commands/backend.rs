//! `notifyscope backend cancel|terminate PID`: act on the session that blocks the pipeline
//! (a lock it waits for, a transaction left open while the NOTIFY queue fills), as doctor
//! and the lock check name it. Only sessions of the pipeline's database.

use std::process::ExitCode;

use serde::Serialize;

use crate::cli::{BackendArgs, BackendCommand, SharedArgs};
use crate::commands::change::{self, Report};
use crate::commands::wiring::pipeline_database;
use crate::diagnose::snapshot::statement_shown;
use crate::store::backends::{self, BackendSignal, Session, SignalOutcome};
use crate::store::APP_NAME;

pub async fn run(shared: SharedArgs, command: BackendCommand) -> anyhow::Result<ExitCode> {
    let (signal, args) = match command {
        BackendCommand::Cancel(args) => (BackendSignal::Cancel, args),
        BackendCommand::Terminate(args) => (BackendSignal::Terminate, args),
    };
    let command = format!("backend {}", signal.as_str());
    Ok(act(&shared, signal, &args, &command)
        .await
        .unwrap_or_else(|e| change::could_not_run(&command, &e)))
}

/// The session as it may be shown: its statement by the first word only.
#[derive(Serialize)]
struct Shown {
    database: Option<String>,
    user: Option<String>,
    application_name: String,
    state: Option<String>,
    seconds_in_state: Option<f64>,
    statement: String,
}

impl Shown {
    fn of(s: &Session) -> Self {
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

/// What `backend cancel|terminate` did or would do.
#[derive(Serialize)]
struct SignalReport {
    database: String,
    pid: i32,
    signal: BackendSignal,
    /// Done, or only looked up (before asking).
    applied: bool,
    /// The session, as it was before.
    session: Option<Shown>,
    /// Absent before asking.
    #[serde(flatten)]
    outcome: Option<SignalOutcome>,
}

impl Report for SignalReport {
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
            None => format!("{verb} backend pid {}{session}: {what}", self.pid),
            Some(SignalOutcome::Sent) => {
                format!("{verb}: signalled backend pid {}{session}", self.pid)
            }
            Some(SignalOutcome::NoSuchBackend) => {
                format!("{verb}: no session has pid {}", self.pid)
            }
            Some(SignalOutcome::OtherDatabase { database }) => format!(
                "{verb}: refused: pid {} is a session of {}, not of {}",
                self.pid,
                database
                    .as_deref()
                    .map(|d| format!("database {d}"))
                    .unwrap_or_else(|| "the server itself".into()),
                self.database
            ),
            Some(SignalOutcome::OwnSession) => {
                format!(
                    "{verb}: refused: pid {} is this command's session",
                    self.pid
                )
            }
            Some(SignalOutcome::NotSignalled) => format!(
                "{verb}: the server found no session with pid {} to signal (it ended)",
                self.pid
            ),
            Some(SignalOutcome::Refused { class, error }) => {
                format!("{verb}: the server refused ({}): {error}", class.describe())
            }
        };
        vec![line]
    }
}

async fn act(
    shared: &SharedArgs,
    signal: BackendSignal,
    args: &BackendArgs,
    command: &str,
) -> anyhow::Result<ExitCode> {
    let (_, database) = pipeline_database(shared, command, " whose session to signal")?;
    let client = database.connect_plain(APP_NAME).await?;
    let looked_up = backends::session(&client, args.pid)
        .await
        .map_err(|e| change::store_failed("reading pg_stat_activity", &database, &e))?;
    let report = |applied, outcome| SignalReport {
        database: database.redacted().to_owned(),
        pid: args.pid,
        signal,
        applied,
        session: looked_up.as_ref().map(Shown::of),
        outcome,
    };
    // A session that may be signalled is confirmed first; any other pid is refused by the
    // signal itself, which says why.
    let signalable = looked_up
        .as_ref()
        .is_some_and(|s| s.same_database && !s.own);
    if signalable && !args.change.yes {
        let question = format!("{} it?", capitalised(signal.as_str()));
        let plan = report(false, None);
        if let Some(exit) = change::confirm(command, &args.change, &plan, &question).await? {
            return Ok(exit);
        }
    }
    let outcome = backends::signal_backend(&client, args.pid, signal)
        .await
        .map_err(|e| change::store_failed("signalling the backend", &database, &e))?;
    change::print(&report(true, Some(outcome)), args.change.json)
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
