//! What the commands that change rows or sessions share (`outbox retry|purge`,
//! `dead-letters retry|delete`, `backend cancel|terminate`): they show what would change and
//! ask first, report what changed as lines or one JSON document, and exit 0 when done, 1 when
//! some named row or session could not be handled, 2 when they could not run (no database,
//! bad arguments, not confirmed, a part the database refused). The lists (`outbox list`,
//! `dead-letters list`) print the same way. What is done, and how it is said, is the
//! operator's ([`notifyscope_pipeline::operate`]); these only ask and print.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use crate::cli::{ChangeArgs, SharedArgs};
use crate::commands::wiring::pipeline_database;
use notifyscope_pipeline::operate::{Apply, Operator, Present};

/// The exit code of a command that could not run, said on stderr.
pub fn could_not_run(command: &str, e: &anyhow::Error) -> ExitCode {
    eprintln!("notifyscope: {command}: {e:#}");
    ExitCode::from(2)
}

/// What acts on the pipeline `command` looks at (`why` ends the error when it cannot tell
/// which), through a connection of its own.
pub fn operator(shared: &SharedArgs, command: &str, why: &str) -> anyhow::Result<Operator> {
    let (channel, database) = pipeline_database(shared, command, why)?;
    Ok(Operator::on(&database, channel)?)
}

/// Works out what `act` would do, asks (unless `--yes`), then does it and prints what it did.
pub async fn carry_out<P: Present>(
    command: &str,
    args: &ChangeArgs,
    question: &str,
    act: impl AsyncFn(Apply) -> P,
) -> anyhow::Result<ExitCode> {
    if !args.yes {
        let plan = act(Apply::Preview).await;
        if let Some(exit) = confirm(command, args, &plan, question).await? {
            return Ok(exit);
        }
    }
    print(&act(Apply::Commit).await, args.json)
}

/// The outcome, or the error of its part that failed (the command could not run).
pub fn went_through<P: Present>(outcome: &P) -> anyhow::Result<()> {
    match outcome.failed() {
        Some(failed) => Err(failed.clone().into()),
        None => Ok(()),
    }
}

/// Asks before `plan` is carried out (unless `--yes` was given, the command does not work
/// out a plan): `None` to go ahead, or the exit code when it is not. A plan that changes
/// nothing is reported at once, without a question. The plan and the question go to stderr,
/// so that stdout carries only the result.
pub async fn confirm(
    command: &str,
    args: &ChangeArgs,
    plan: &impl Present,
    question: &str,
) -> anyhow::Result<Option<ExitCode>> {
    went_through(plan)?;
    if plan.changes() == 0 {
        return Ok(Some(print(plan, args.json)?));
    }
    for line in plan.lines() {
        eprintln!("{line}");
    }
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "notifyscope: {command}: nothing changed: stdin is not a terminal, so nobody can \
             confirm; add --yes to go ahead without asking"
        );
        return Ok(Some(ExitCode::from(2)));
    }
    let question = format!("{question} [y/N] ");
    let answer = tokio::task::spawn_blocking(move || {
        let mut stderr = std::io::stderr();
        stderr.write_all(question.as_bytes())?;
        stderr.flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        Ok::<_, std::io::Error>(answer)
    })
    .await??;
    if is_yes(&answer) {
        return Ok(None);
    }
    eprintln!("notifyscope: {command}: not confirmed; nothing changed");
    Ok(Some(ExitCode::from(2)))
}

fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_lowercase().as_str(), "y" | "yes")
}

/// Prints what was done (one JSON document with `json`); the exit code: 1 when something
/// named could not be handled.
pub fn print(report: &impl Present, json: bool) -> anyhow::Result<ExitCode> {
    went_through(report)?;
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        for line in report.lines() {
            println!("{line}");
        }
    }
    Ok(if report.not_handled() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yes_confirms() {
        for yes in ["y\n", "Y", " yes \n", "YES"] {
            assert!(is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yep", "y y"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }
}
