//! The binary: parse the command line, send logs where they can be read (the Logs pane while
//! a screen is drawn, stderr otherwise), and run the command.

use std::io::IsTerminal;
use std::process::ExitCode;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use notifyscope::cli::{self, Cli, Command};
use notifyscope::pipeline::bot::gateway::GatewayCloseLayer;
use notifyscope::store::error_chain;

/// The screen is up: logs must go to the log pane, never to the terminal.
fn draws_a_screen(cli: &Cli) -> bool {
    let stdout_is_terminal = std::io::stdout().is_terminal();
    match &cli.command {
        None => !cli.run.headless && stdout_is_terminal,
        Some(Command::Run(run)) => !run.headless && stdout_is_terminal,
        Some(Command::Replay(_)) => stdout_is_terminal,
        Some(Command::Watch(watch)) => !watch.headless && stdout_is_terminal,
        Some(_) => false,
    }
}

/// The log filter: RUST_LOG when it is set, else `--log` (checked when it was parsed), else
/// the command's own (see [`Cli::log_filter`]).
fn log_filter(cli: &Cli) -> Result<EnvFilter, String> {
    match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => EnvFilter::builder()
            .parse(&value)
            .map_err(|e| format!("RUST_LOG={value:?} is not a log filter: {e}")),
        _ => {
            let filter = cli.log_filter();
            EnvFilter::builder()
                .parse(filter)
                .map_err(|e| format!("--log {filter:?} is not a log filter: {e}"))
        }
    }
}

fn init_logging(cli: &Cli, mut filter: EnvFilter) {
    // The WebSocket library traces whole frames, IDENTIFY with the bot token among them: it
    // never logs below info, whatever the filter asks for.
    for quiet in ["tungstenite=info", "tokio_tungstenite=info"] {
        if let Ok(directive) = quiet.parse() {
            filter = filter.add_directive(directive);
        }
    }
    if draws_a_screen(cli) {
        let subscriber = tracing_subscriber::registry()
            .with(notifyscope::screen::logs::pane_layer().with_filter(filter))
            .with(GatewayCloseLayer::default().with_filter(GatewayCloseLayer::filter()));
        let _ = tracing::subscriber::set_global_default(subscriber);
        return;
    }
    // Logs go to stderr so that stdout carries only trace output.
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter);
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(GatewayCloseLayer::default().with_filter(GatewayCloseLayer::filter()))
        .try_init();
}

fn main() -> ExitCode {
    let cli = cli::parse();
    if let Some(Command::Help(args)) = &cli.command {
        return notifyscope::commands::help::print(&args.command);
    }
    match log_filter(&cli) {
        Ok(filter) => init_logging(&cli, filter),
        Err(e) => {
            eprintln!("notifyscope: {e}");
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("notifyscope: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(notifyscope::commands::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("notifyscope: error: {}", error_chain(e.as_ref()));
            notifyscope::commands::exit_code_of(&e)
        }
    }
}
