//! `notifyscope bench`: synthetic Discord messages through the real path (bot path → filter
//! → publisher → outbox + NOTIFY → listener → ingestion → row), in a schema of its own that
//! is dropped afterwards, with throughput, latencies per stage, and a count of what was lost
//! or delivered twice. [`engine`] drives the messages, [`seen`] times them from the trace,
//! [`report`] sums up; this file is the command around them.

pub mod engine;
pub mod report;
mod seen;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use tokio_util::sync::CancellationToken;

pub use engine::{run, BenchError, BenchOptions};
pub use report::{BenchReport, Percentiles, JSON_KEYS};

use crate::cli::{BenchArgs, SharedArgs};
use crate::store::embedded::EmbeddedPostgres;

/// `notifyscope bench`: against --database-url, or a private embedded cluster without one.
pub async fn command(shared: SharedArgs, args: BenchArgs) -> anyhow::Result<ExitCode> {
    let options = BenchOptions {
        messages: args.messages,
        rate: args.rate,
        publishers: usize::try_from(args.publishers).unwrap_or(1),
        workers: usize::from(args.workers),
        notify: args.notify.into(),
        stall_timeout: Duration::from_secs(args.stall_timeout.max(1)),
    };
    let (embedded, url) = match shared.database_url {
        Some(url) => (None, url),
        None => {
            let pg = EmbeddedPostgres::start(None)
                .await
                .context("starting the embedded PostgreSQL")?;
            let url = pg.url().to_owned();
            (Some(pg), url)
        }
    };
    let progress = if args.json {
        ProgressBar::hidden()
    } else {
        progress_bar(args.messages)
    };
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    let signal_task = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::warn!("interrupted: stopping the bench and dropping its schema");
            on_signal.cancel();
        }
    });
    let result = run(&url, options, progress.clone(), cancel).await;
    signal_task.abort();
    progress.finish_and_clear();
    if let Some(pg) = embedded {
        pg.stop().await;
    }
    let report = result?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn progress_bar(messages: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(messages), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} ingested ({rate} msg/s)",
    ) {
        bar.set_style(
            style
                .with_key(
                    "rate",
                    |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0}", state.per_sec());
                    },
                )
                .progress_chars("=> "),
        );
    }
    bar
}
