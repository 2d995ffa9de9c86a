//! One module per subcommand, and the wiring they share ([`wiring`]). This is the top of the
//! house: commands put sources, pipeline, trace and consumers together; nothing below
//! imports them.

pub mod backend;
pub mod bench;
pub mod change;
pub mod dead_letters;
pub mod doctor;
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
                | Command::Selftest { .. }
        )
    );
    if let (Some(pid), false) = (cli.shared.instance, looks_at_a_running_pipeline) {
        eprintln!(
            "notifyscope: --instance {pid} picks the running instance that send, doctor, \
             selftest, watch and outbox look at; this command does not use one"
        );
        return Ok(ExitCode::from(2));
    }
    match run_command(cli).await {
        Err(e) => match e.downcast_ref::<wiring::LocateError>() {
            Some(unknown) => {
                eprintln!("notifyscope: {unknown}");
                Ok(ExitCode::from(2))
            }
            None => Err(e),
        },
        done => done,
    }
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
        Some(Command::Selftest { timeout }) => {
            selftest::run(cli.shared, Duration::from_secs(timeout)).await
        }
        Some(Command::Bench(args)) => bench::command(cli.shared, args).await,
    }
}
