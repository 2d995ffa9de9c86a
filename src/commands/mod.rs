//! One module per subcommand, and the wiring they share ([`wiring`]). This is the top of the
//! house: commands put sources, pipeline, trace and consumers together; nothing below
//! imports them.

pub mod bench;
pub mod doctor;
pub mod outbox;
pub mod replay;
pub mod run;
pub mod selftest;
pub mod send;
pub mod watch;
pub mod wiring;

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{Cli, Command};

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => run::run(cli.run.shared.clone(), cli.run).await,
        Some(Command::Run(args)) => run::run(args.shared.clone(), args).await,
        Some(Command::Send(args)) => send::send(args.shared.clone(), args).await,
        Some(Command::Replay(args)) => replay::replay(args).await,
        Some(Command::Outbox { shared, command }) => outbox::run(shared, command).await,
        Some(Command::Doctor(args)) => doctor::run(args.shared.clone(), args).await,
        Some(Command::Watch(args)) => watch::run(args.shared.clone(), args).await,
        Some(Command::Selftest { shared, timeout }) => {
            selftest::run(shared, Duration::from_secs(timeout)).await
        }
        Some(Command::Bench(args)) => bench::command(args.shared.clone(), args).await,
    }
}
