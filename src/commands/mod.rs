//! One module per subcommand, and the wiring they share ([`wiring`]). This is the top of the
//! house: commands put sources, pipeline, trace and consumers together; nothing below
//! imports them.
//!
//! One rule gives every command its exit code: 2 when it could not run at all (the command
//! line, the configuration, or the database it names: [`exit_code_of`]), 1 when it ran and
//! what it ran or checked failed, 0 otherwise.

pub mod backend;
pub mod bench;
pub mod change;
pub mod dead_letters;
pub mod doctor;
pub mod help;
pub mod outbox;
pub mod reach;
pub mod replay;
pub mod run;
pub mod selftest;
pub mod send;
pub mod watch;
pub mod wiring;

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{Cli, Command};
use notifyscope_bench::BenchError;
use notifyscope_model::error_class::ErrorClass;
use notifyscope_pipeline::control::ControlError;
use notifyscope_pipeline::metrics::MetricsError;
use notifyscope_pipeline::recording::RecordingError;
use notifyscope_screen::config::ConfigError;
use notifyscope_screen::theme::ThemeError;
use notifyscope_store::embedded::EmbeddedError;
use notifyscope_store::instance::InstanceError;
use notifyscope_store::{IdentifierError, StoreError};

/// Exit code of a command that could not run: a usage, configuration or connection error.
pub const COULD_NOT_RUN: u8 = 2;
/// Exit code of a command that ran, and what it ran or checked failed.
pub const FAILED: u8 = 1;

/// An error in what the command was given (its arguments, the environment, a file it was
/// pointed at) that no other type says: the command could not run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CannotRun(pub String);

/// The exit code of a command that ended with `e`: [`COULD_NOT_RUN`] when anything in its
/// chain of causes is an error of the command line, the configuration or the connection to
/// the database, else [`FAILED`].
pub fn exit_code_of(e: &anyhow::Error) -> ExitCode {
    if e.chain().any(could_not_run) {
        ExitCode::from(COULD_NOT_RUN)
    } else {
        ExitCode::from(FAILED)
    }
}

fn could_not_run(e: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(store) = e.downcast_ref::<StoreError>() {
        return store_could_not_run(store);
    }
    if let Some(control) = e.downcast_ref::<ControlError>() {
        return matches!(control, ControlError::Store(store) if store_could_not_run(store));
    }
    if let Some(bench) = e.downcast_ref::<BenchError>() {
        return match bench {
            BenchError::Store(store) => store_could_not_run(store),
            BenchError::Invalid(_) => true,
            _ => false,
        };
    }
    e.is::<CannotRun>()
        || e.is::<IdentifierError>()
        || e.is::<wiring::LocateError>()
        || e.is::<InstanceError>()
        || e.is::<ConfigError>()
        || e.is::<ThemeError>()
        || e.is::<RecordingError>()
        || e.is::<MetricsError>()
        // No database to run on: the embedded cluster could not be made or started.
        || e.is::<EmbeddedError>()
}

/// A bad URL or name, or a database that cannot be reached or refuses the login; not an
/// error of a statement on a database that answered.
fn store_could_not_run(e: &StoreError) -> bool {
    match e {
        StoreError::BadUrl(_)
        | StoreError::BadIdentifier(_)
        | StoreError::TransactionPooler { .. } => true,
        StoreError::Connect { .. }
        | StoreError::Pool(_)
        | StoreError::Db(_)
        | StoreError::Silent(_) => unreachable(e.class()),
        StoreError::Migration(_) => false,
    }
}

fn unreachable(class: ErrorClass) -> bool {
    matches!(class, ErrorClass::Connection | ErrorClass::Login) || class.is_tls()
}

/// Runs the command; a command that could not tell which pipeline to look at could not run
/// (exit 2), whichever it is.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let looks_at_a_running_pipeline = matches!(
        cli.command,
        Some(
            Command::Send(_)
                | Command::Doctor(_)
                | Command::Watch(_)
                | Command::Outbox { .. }
                | Command::DeadLetters { .. }
                | Command::Backend { .. }
                | Command::Selftest { .. }
        )
    );
    if let (Some(pid), false) = (cli.shared.instance, looks_at_a_running_pipeline) {
        eprintln!(
            "notifyscope: --instance {pid} picks the running instance that send, doctor, \
             selftest, watch, outbox, dead-letters and backend look at; this command does \
             not use one"
        );
        return Ok(ExitCode::from(COULD_NOT_RUN));
    }
    run_command(cli).await
}

async fn run_command(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => run::run(cli.shared, cli.run).await,
        Some(Command::Run(args)) => run::run(cli.shared, args).await,
        Some(Command::Send(args)) => send::send(cli.shared, args).await,
        Some(Command::Replay(args)) => replay::replay(args).await,
        Some(Command::Outbox { command }) => outbox::run(cli.shared, command).await,
        Some(Command::DeadLetters { command }) => dead_letters::run(cli.shared, command).await,
        Some(Command::Backend { command }) => backend::run(cli.shared, command).await,
        Some(Command::Doctor(args)) => doctor::run(cli.shared, args).await,
        Some(Command::Watch(args)) => watch::run(cli.shared, args).await,
        Some(Command::Selftest { timeout, .. }) => {
            selftest::run(cli.shared, Duration::from_secs(timeout)).await
        }
        Some(Command::Bench(args)) => bench::command(cli.shared, args).await,
        Some(Command::Help(args)) => Ok(help::print(&args.command)),
    }
}
