//! `notifyscope bench`: the command around the benchmark and soak of `notifyscope-bench`:
//! where the database comes from, the progress bar, Ctrl-C, and what is printed.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use tokio_util::sync::CancellationToken;

use notifyscope_bench::{engine, run, soak, BenchOptions};

use crate::cli::{BenchArgs, SharedArgs};
use crate::commands::wiring::first_signal;
use notifyscope_store::embedded::EmbeddedPostgres;
use tokio::signal::unix::SignalKind;

/// `notifyscope bench`: against --database-url, or a private embedded cluster without one.
pub async fn command(shared: SharedArgs, args: BenchArgs) -> anyhow::Result<ExitCode> {
    if let Some(duration) = args.duration {
        return soak_command(shared, args, duration).await;
    }
    let options = BenchOptions {
        messages: args.messages,
        rate: args.rate,
        publishers: usize::try_from(args.publishers).unwrap_or(1),
        workers: usize::from(args.workers),
        notify: args.notify.into(),
        stall_timeout: Duration::from_secs(args.stall_timeout.max(1)),
    };
    let (embedded, url) = bench_database(&shared).await?;
    let progress = if args.json {
        ProgressBar::hidden()
    } else {
        progress_bar(args.messages)
    };
    let (cancel, signal_task) = cancel_on_interrupt();
    let direct = shared.direct_database_url.as_deref();
    let result = run(&url, direct, options, progress.clone(), cancel).await;
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

/// `--database-url`, or a private embedded cluster.
async fn bench_database(shared: &SharedArgs) -> anyhow::Result<(Option<EmbeddedPostgres>, String)> {
    Ok(match &shared.database_url {
        Some(url) => (None, url.clone()),
        None => {
            let pg = EmbeddedPostgres::start(None)
                .await
                .context("starting the embedded PostgreSQL")?;
            let url = pg.url().to_owned();
            (Some(pg), url)
        }
    })
}

/// A token Ctrl-C cancels, and the task that waits for it.
fn cancel_on_interrupt() -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    let task = tokio::spawn(async move {
        first_signal(&[SignalKind::interrupt()]).await;
        tracing::warn!("interrupted: stopping the bench and dropping its schema");
        on_signal.cancel();
    });
    (cancel, task)
}

/// `bench --duration D --rate R`: the soak run, a line per window as it ends (without
/// `--json`), then the summary and the drift verdict; exit 1 on drift, loss or duplicates.
async fn soak_command(
    shared: SharedArgs,
    args: BenchArgs,
    duration: Duration,
) -> anyhow::Result<ExitCode> {
    // `--duration` requires `--rate`, which clap takes only above zero.
    let rate = args.rate.unwrap_or(1000.0);
    let options = soak::SoakOptions {
        duration,
        rate,
        window: args.report_every.min(duration),
        publishers: usize::try_from(args.publishers).unwrap_or(1),
        workers: usize::from(args.workers),
        outbox_retention: args.outbox_retention,
        stall_timeout: Duration::from_secs(args.stall_timeout.max(1)),
    };
    let (embedded, url) = bench_database(&shared).await?;
    let (cancel, signal_task) = cancel_on_interrupt();
    let json = args.json;
    if !json {
        println!(
            "soak: {} s at {rate} msg/s, a line every {} s",
            duration.as_secs(),
            options.window.as_secs()
        );
        print!("{}", soak::window_header());
    }
    let direct = shared.direct_database_url.as_deref();
    let result = engine::in_fresh_schema(&url, direct, |database, channel| {
        soak::run_in_schema(database, channel, options, cancel, |w| {
            if !json {
                print!("{}", soak::window_line(w));
            }
        })
    })
    .await;
    signal_task.abort();
    if let Some(pg) = embedded {
        pg.stop().await;
    }
    let (mut report, schema) = result?;
    report.schema = schema;
    if json {
        println!("{}", report.to_json());
    } else {
        print!("\n{}", report.summary_text());
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
