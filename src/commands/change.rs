//! What the commands that change rows or sessions share (`outbox retry|purge`,
//! `dead-letters retry|delete`, `backend cancel|terminate`): they show what would change and
//! ask first, report what changed as lines or one JSON document, and exit 0 when done, 1 when
//! some named row or session could not be handled, 2 when they could not run (no database,
//! bad arguments, not confirmed).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use serde::Serialize;

use crate::cli::ChangeArgs;
use crate::store::action::Why;
use crate::store::{error_chain, Database, StoreError};

/// What an action did, or would do.
pub trait Report: Serialize {
    /// Rows (or sessions) it changes.
    fn changes(&self) -> usize;
    /// Rows (or sessions) named that it could not handle.
    fn not_handled(&self) -> usize;
    /// For people: what changed (or would change), then what was left alone and why.
    fn lines(&self) -> Vec<String>;
}

/// The exit code of a command that could not run, said on stderr.
pub fn could_not_run(command: &str, e: &anyhow::Error) -> ExitCode {
    eprintln!("notifyscope: {command}: {e:#}");
    ExitCode::from(2)
}

/// An error of the database while acting, with its class.
pub fn store_failed(what: &str, database: &Database, e: &StoreError) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} in {} failed ({}): {}",
        database.redacted(),
        e.class().describe(),
        error_chain(e)
    )
}

/// Asks before `plan` is carried out (unless `--yes` was given, the command does not work
/// out a plan): `None` to go ahead, or the exit code when it is not. A plan that changes
/// nothing is reported at once, without a question. The plan and the question go to stderr,
/// so that stdout carries only the result.
pub async fn confirm(
    command: &str,
    args: &ChangeArgs,
    plan: &impl Report,
    question: &str,
) -> anyhow::Result<Option<ExitCode>> {
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
pub fn print(report: &impl Report, json: bool) -> anyhow::Result<ExitCode> {
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

/// Why a named row was left alone, for the reasons every action shares; `None` for a row's
/// state, which each action words for itself.
pub fn why_text(why: &Why) -> Option<String> {
    Some(match why {
        Why::NotFound => "no such row".into(),
        Why::OtherChannel { channel } => format!("a row of channel {channel}: not touched"),
        Why::Ingested => "ingested already (retention deletes it)".into(),
        Why::Refused { class, error } => format!("refused ({}): {error}", class.describe()),
        Why::State { .. } => return None,
    })
}

/// `n thing(s)`.
pub fn count(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
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

    #[test]
    fn counts() {
        assert_eq!(count(1, "row"), "1 row");
        assert_eq!(count(0, "row"), "0 rows");
        assert_eq!(count(3, "dead letter"), "3 dead letters");
    }
}
