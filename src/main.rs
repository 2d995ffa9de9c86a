use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use notifyscope::bot::GatewayCloseLayer;

use notifyscope::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr so that stdout carries only trace output.
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cli.shared.log))
        .unwrap_or_else(|_| EnvFilter::new("notifyscope=info,warn"));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter);
    tracing_subscriber::registry()
        .with(logs)
        .with(GatewayCloseLayer.with_filter(GatewayCloseLayer::filter()))
        .init();

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
            eprintln!("notifyscope: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
