//! `notifyscope backend cancel|terminate PID`: act on the session that blocks the pipeline
//! (a lock it waits for, a transaction left open while the NOTIFY queue fills), as doctor
//! and the lock check name it. Only sessions of the pipeline's database. The action and its
//! outcome are the pipeline's ([`notifyscope_pipeline::operate`]); this only reads the
//! arguments, asks and prints.

use std::process::ExitCode;

use crate::cli::{BackendArgs, BackendCommand, SharedArgs};
use crate::commands::change;
use notifyscope_pipeline::operate::{Apply, BackendSignal};

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

async fn act(
    shared: &SharedArgs,
    signal: BackendSignal,
    args: &BackendArgs,
    command: &str,
) -> anyhow::Result<ExitCode> {
    let operator = change::operator(shared, command, " whose session to signal")?;
    // A session that may be signalled is confirmed first; any other pid is refused by the
    // signal itself, which says why.
    if !args.change.yes {
        let plan = operator
            .signal_backend(args.pid, signal, Apply::Preview)
            .await;
        change::went_through(&plan)?;
        if plan.signalable {
            let question = format!("{} it?", capitalised(signal.as_str()));
            if let Some(exit) = change::confirm(command, &args.change, &plan, &question).await? {
                return Ok(exit);
            }
        }
    }
    let done = operator
        .signal_backend(args.pid, signal, Apply::Commit)
        .await;
    change::print(&done, args.change.json)
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
