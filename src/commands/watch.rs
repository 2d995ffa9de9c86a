//! `notifyscope watch`: monitor a pipeline someone else runs. The tap
//! ([`notifyscope_pipeline::watched`]) reports its NOTIFYs and rows on the trace; the diagnosis runs
//! the checks that make sense without our own bot and ingestion. What their bot itself did
//! with each message comes from its log (`--bot-log`), its OpenTelemetry (`--otlp`) or an
//! observer session of its token. Every connection is read-only, so it cannot write to their
//! tables even by mistake.

use std::process::ExitCode;

use anyhow::Context;

use std::sync::Arc;

use notifyscope_pipeline::bot::GatewayIntents;

use crate::cli::{SharedArgs, WatchArgs};
use crate::commands::reach::Reach;
use crate::commands::wiring::{
    attach, bind_metrics, forward_checks, pipeline_database, screen_settings, wait_for_stop,
    Outputs,
};
use crate::commands::CannotRun;
use notifyscope_diagnose::{DiagnoseConfig, LockScope};
use notifyscope_model::trace::{Source, TraceKind};
use notifyscope_pipeline::bot::{run_bot, BotConfig, Shards, Token};
use notifyscope_pipeline::bot_path::BotPath;
use notifyscope_pipeline::bot_sources::log_file::{self, LogInput};
use notifyscope_pipeline::bot_sources::{otlp, Reporter};
use notifyscope_pipeline::operate::Operator;
use notifyscope_pipeline::watched::{self, Looks, WatchedTable};
use notifyscope_screen::app::{App, Mode};
use notifyscope_screen::event_loop;
use notifyscope_store::Identifier;
use tokio_util::sync::CancellationToken;

pub async fn run(shared: SharedArgs, args: WatchArgs) -> anyhow::Result<ExitCode> {
    let (channel, database) = pipeline_database(&shared, "watch", " of the pipeline to watch")?;
    let database = database.read_only();
    let schema = database.schema().clone();
    let table = WatchedTable {
        table: Identifier::new("table", &args.table)?,
        id_column: Identifier::new("column", &args.id_column)?,
    };
    let Some(screen) = screen_settings(args.headless, &args.screen)? else {
        return Ok(ExitCode::from(2));
    };
    let exporter = match bind_metrics(&args.metrics).await {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("notifyscope: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    // Bound before anything starts, so that a busy or wrong address is said at once.
    let otlp = match args.otlp {
        Some(addr) => match otlp::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                eprintln!("notifyscope: --otlp {addr}: cannot listen there: {e}");
                return Ok(ExitCode::from(2));
            }
        },
        None => None,
    };
    let extra: Vec<Identifier> = args
        .watch_channels
        .iter()
        .map(|c| Identifier::channel(c))
        .collect::<Result<_, _>>()?;
    let (start_id, has_outbox) = watched::starting_point(&database, &table)
        .await
        .with_context(|| format!("reading {schema}.{}.{}", table.table, table.id_column))?;

    let mut outputs = Outputs::start(screen.is_some(), args.json, &args.record)?;
    let trace = outputs.trace.clone();
    // Subscribed before anything starts, and only for an exporter: a reader nobody drains
    // would hold the stream's buffer for nothing.
    let metrics_events = exporter.as_ref().map(|_| trace.subscribe());
    let stop = CancellationToken::new();
    trace.emit(
        None,
        TraceKind::DatabaseUp {
            url: database.redacted().to_owned(),
            embedded: false,
        },
    );
    let neighbours = notifyscope_diagnose::neighbours(&channel, &extra);
    // Their backends are not ours by name: anyone waiting on their table (or the outbox)
    // is watched.
    let mut lock_tables = vec![table.table.clone()];
    if has_outbox {
        lock_tables.push(Identifier::new("table", "event_outbox")?);
    }
    let tap = watched::spawn(
        &database,
        &channel,
        neighbours,
        table,
        Looks::after(start_id),
        &trace,
        &stop,
    );
    let observer = start_observer(&args, &trace, &stop, screen.is_none())?;
    let their_bot = start_their_bot(&args, otlp, &trace, &channel, &stop);
    let mut config = DiagnoseConfig::new(channel.clone());
    config.watch_only = true;
    // Their log and telemetry show the messages their bot received, as the observer does,
    // and what it did with them besides.
    config.observer = observer.is_some() || !their_bot.is_empty();
    config.bot_reports = !their_bot.is_empty();
    config.locks = LockScope {
        tables: lock_tables,
        ours_only: false,
    };
    let (checks, diagnosis) = notifyscope_diagnose::spawn(
        config,
        trace.subscribe(),
        trace.clone(),
        database.pool(2)?,
        has_outbox,
        stop.clone(),
    );
    let metrics = exporter
        .zip(metrics_events)
        .map(|(e, events)| e.spawn(events, checks.clone(), stop.clone()));

    match (screen, outputs.screen.take()) {
        (Some(screen), Some(rx)) => {
            let mut app = App::new(screen.keymap, args.screen.history, channel.as_str());
            app.mode = Mode::Watch;
            let (extra_tx, extra_rx) = tokio::sync::mpsc::channel(16);
            forward_checks(checks, extra_tx);
            let reach = Reach {
                live: None,
                // Their sessions may be cancelled or ended from the health pane (each after a
                // confirmation); their tables are never written.
                operator: Some(Operator::new(database.pool(1)?, channel.clone())),
            };
            let attached = attach(Some(rx), &reach, Some(extra_rx), screen.mouse);
            event_loop::run(app, screen.styles, attached).await?;
        }
        _ => {
            drop(checks);
            wait_for_stop(&outputs).await;
        }
    }
    stop.cancel();
    let [listening, polling] = tap;
    let _ = tokio::join!(listening, polling, diagnosis);
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    if let Some(observer) = observer {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), observer).await;
    }
    for source in their_bot {
        let _ = source.await;
    }
    outputs.finish().await;
    Ok(ExitCode::SUCCESS)
}

/// With `--bot-log` and `--otlp`, their bot's own account of each message: its log and
/// its OpenTelemetry, put on the trace with their source named.
fn start_their_bot(
    args: &WatchArgs,
    otlp: Option<tokio::net::TcpListener>,
    trace: &notifyscope_model::trace::Trace,
    channel: &Identifier,
    stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut sources = Vec::new();
    if let Some(arg) = &args.bot_log {
        let input = LogInput::from_arg(arg);
        tracing::info!("reading their bot's log from {input}");
        let reporter = Reporter::new(trace, Source::BotLog, channel.as_str());
        sources.push(log_file::spawn(input, reporter, stop.clone()));
    }
    if let Some(listener) = otlp {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(
                "receiving their bot's OpenTelemetry at http://{addr}/v1/traces and /v1/logs"
            );
        }
        let reporter = Reporter::new(trace, Source::Otlp, channel.as_str());
        sources.push(otlp::spawn(listener, reporter, stop.clone()));
    }
    sources
}

/// With `--discord-token-env`, a gateway session of its own with their bot's token: it only
/// traces what Discord delivers (received, missing content) and sends nothing, asking for
/// the message intents only. A token Discord rejects is said once and watching goes on.
fn start_observer(
    args: &WatchArgs,
    trace: &notifyscope_model::trace::Trace,
    stop: &CancellationToken,
    headless: bool,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(name) = &args.discord_token_env else {
        return Ok(None);
    };
    let token = std::env::var(name)
        .ok()
        .and_then(Token::new)
        .ok_or_else(|| {
            CannotRun(format!(
                "--discord-token-env {name}: ${name} holds no token"
            ))
        })?;
    let config = BotConfig {
        token,
        api_url: args.discord_api_url.clone(),
        intents: GatewayIntents::GUILD_MESSAGES
            | GatewayIntents::DIRECT_MESSAGES
            | GatewayIntents::MESSAGE_CONTENT,
        shards: Shards::Auto,
        shard_range: None,
    };
    let path = Arc::new(BotPath::observer(trace.clone()));
    let stop = stop.clone();
    tracing::info!("observing the bot's gateway with the token in ${name} (read-only)");
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = run_bot(config, path, stop).await {
            // On the screen the log line is in the Logs pane; headless it is said on stderr
            // as well, where a user looks first.
            tracing::error!(error = %e, "the observer's gateway session stopped");
            if headless {
                eprintln!("notifyscope: watch: the observer's gateway session stopped: {e}");
            }
        }
    })))
}
