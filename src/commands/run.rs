//! `notifyscope [run]`: the pipeline with its bot path, diagnosis and output, on the screen
//! or headless, until the user quits; then an orderly drain.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::{RunArgs, SharedArgs};
use crate::commands::reach::{Live, Reach};
use crate::commands::wiring::{
    attach, bind_metrics, channel_and_schema, forward_checks, screen_settings, wait_for_stop,
    Outputs, ScreenSettings,
};
use notifyscope_diagnose::{DiagnoseConfig, Report};
use notifyscope_model::trace::{Trace, TraceKind};
use notifyscope_pipeline::bot::{
    parse_intents, run_bot, BotConfig, BotError, Shards, Token, DEFAULT_INTENTS,
};
use notifyscope_pipeline::listen::ListenerState;
use notifyscope_pipeline::{Pipeline, PipelineConfig, ShutdownReport};
use notifyscope_screen::app::{App, AppEvent};
use notifyscope_screen::event_loop;
use notifyscope_store::embedded::EmbeddedPostgres;
use notifyscope_store::instance::{ControlSecret, InstanceFile, InstanceRecord, RuntimeDir};
use notifyscope_store::{error_chain, Database, Identifier};

type BotTask = JoinHandle<Result<(), BotError>>;

pub async fn run(shared: SharedArgs, args: RunArgs) -> anyhow::Result<ExitCode> {
    let (channel, schema) = channel_and_schema(&shared)?;
    let instance = match shard_instance(&args) {
        Ok(instance) => instance,
        Err(e) => {
            eprintln!("notifyscope: {e}");
            return Ok(ExitCode::from(2));
        }
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
    let (embedded, url) = open_database(&shared, &args).await?;
    let mut database = Database::new(&url, schema)?.with_deadline(shared.deadline());
    if let Some(direct) = &shared.direct_database_url {
        database = database.with_direct(direct)?;
    }
    if let Some(instance) = &instance {
        tracing::info!("this process runs {instance} of the bot");
        database = database.with_instance(instance);
    }
    // Other commands find the pipeline where sessions last: the direct URL when given.
    let record = InstanceRecord::new(database.direct(), &channel, embedded.is_some());
    let mut outputs = Outputs::start(screen.is_some(), args.json, &args.record)?;
    let trace = outputs.trace.clone();
    // Subscribed before anything starts, and only for an exporter: a reader nobody drains
    // would hold the stream's buffer for nothing.
    let metrics_events = exporter.as_ref().map(|_| trace.subscribe());
    let secret = record.secret.clone();
    let mut running = start_pipeline(
        &args,
        database,
        embedded.is_some(),
        &channel,
        secret,
        &trace,
    )
    .await?;
    let runtime_file = write_runtime_file(&record);
    let stop_metrics = CancellationToken::new();
    let metrics = exporter
        .zip(metrics_events)
        .map(|(e, events)| e.spawn(events, running.checks.clone(), stop_metrics.clone()));
    let stop_sources = CancellationToken::new();
    let mut bot = start_sources(&args, &mut running.pipeline, &trace, &stop_sources).await;

    let exit = match (screen, outputs.screen.take()) {
        (Some(screen), Some(rx)) => {
            // The command that reaches this instance: from its runtime file when it has one.
            let send_command = runtime_file.as_ref().map(|_| record.send_command());
            run_screen(
                screen,
                rx,
                &args,
                &channel,
                &running,
                &mut bot,
                send_command,
            )
            .await?;
            ExitCode::SUCCESS
        }
        _ => wait_headless(&mut bot, &outputs).await,
    };

    stop_sources.cancel();
    // Gone before the drain, so that no other shell picks an instance that is stopping.
    drop(runtime_file);
    let report = shut_down(running, bot, !args.headless, args.drain_timeout).await;
    stop_metrics.cancel();
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    outputs.finish().await;
    if let Some(pg) = embedded {
        pg.stop().await;
    }
    for line in report.lines() {
        eprintln!("notifyscope: {line}");
    }
    // A task that crashed is a failure of this run, whatever the user asked for.
    Ok(if report.crashed.is_empty() {
        exit
    } else {
        ExitCode::from(1)
    })
}

/// With `--shard-range`, the instance this process is among those sharing the bot, as its
/// connections name it in `pg_stat_activity`; or why the range does not fit.
fn shard_instance(args: &RunArgs) -> Result<Option<String>, String> {
    let Some(range) = args.discord.shard_range else {
        return Ok(None);
    };
    let total = range.check(args.discord.shards.unwrap_or(Shards::Count(1)))?;
    Ok(Some(range.instance(total)))
}

/// `--database-url`, or a private embedded cluster started for this run.
async fn open_database(
    shared: &SharedArgs,
    args: &RunArgs,
) -> anyhow::Result<(Option<EmbeddedPostgres>, String)> {
    if let Some(url) = shared.database_url.clone() {
        return Ok((None, url));
    }
    let pg = EmbeddedPostgres::start(args.data_dir.clone())
        .await
        .context("starting the embedded PostgreSQL")?;
    let url = pg.url().to_owned();
    tracing::info!(
        "embedded PostgreSQL running; connect from another shell with --database-url '{url}'"
    );
    Ok((Some(pg), url))
}

/// The runtime file through which `send`, `doctor`, `selftest`, `watch` and `outbox` on this
/// machine find this instance; without it they need --database-url, and `send --via-bot`
/// cannot reach it, since only the file tells the control secret.
fn write_runtime_file(record: &InstanceRecord) -> Option<InstanceFile> {
    match RuntimeDir::create().and_then(|dir| dir.write(record)) {
        Ok(file) => {
            tracing::info!(
                "other shells on this machine find this instance through {}: `{}`",
                file.path().display(),
                record.send_command()
            );
            Some(file)
        }
        Err(e) => {
            tracing::warn!(
                "no runtime file, so other commands need --database-url and `send --via-bot` \
                 cannot reach this instance: {}",
                error_chain(&e)
            );
            None
        }
    }
}

/// The pipeline and the diagnosis that watches it.
struct Running {
    pipeline: Pipeline,
    checks: tokio::sync::watch::Receiver<std::sync::Arc<Report>>,
    diagnosis: JoinHandle<()>,
    stop_diagnosis: CancellationToken,
    simulated_only: bool,
}

async fn start_pipeline(
    args: &RunArgs,
    database: Database,
    embedded: bool,
    channel: &Identifier,
    control_secret: ControlSecret,
    trace: &Trace,
) -> anyhow::Result<Running> {
    let mut diagnose_config = DiagnoseConfig::new(channel.clone());
    diagnose_config.role = database.role().map(str::to_owned);
    // The diagnosis reads session views (pg_stat_activity, pg_locks, pg_listening_channels).
    let diagnosis_pool = database.direct().pool(1)?;
    let mut config = PipelineConfig::new(database, channel.clone());
    config.filter = args.filter.to_config();
    config.workers = usize::from(args.workers);
    config.queue_capacity = args.queue_capacity;
    config.retention.outbox = args.outbox_retention;
    config.retention.dead_letters = args.dead_letter_retention;
    config.embedded = embedded;
    config.control_secret = control_secret;
    let extra: Vec<Identifier> = args
        .watch_channels
        .iter()
        .map(|c| Identifier::channel(c))
        .collect::<Result<_, _>>()?;
    config.watch_channels = notifyscope_diagnose::neighbours(channel, &extra);
    let diagnosis_events = trace.subscribe();
    let pipeline = Pipeline::start(config, trace.clone())
        .await
        .context("starting the pipeline")?;
    let stop_diagnosis = CancellationToken::new();
    let (checks, diagnosis) = notifyscope_diagnose::spawn(
        diagnose_config,
        diagnosis_events,
        trace.clone(),
        diagnosis_pool,
        true,
        stop_diagnosis.clone(),
    );
    let simulated_only = discord_token(args).is_none();
    Ok(Running {
        pipeline,
        checks,
        diagnosis,
        stop_diagnosis,
        simulated_only,
    })
}

fn discord_token(args: &RunArgs) -> Option<Token> {
    std::env::var(&args.discord.discord_token_env)
        .ok()
        .and_then(Token::new)
}

/// The Discord bot when there is a token (behind the startup gate), and demo traffic.
async fn start_sources(
    args: &RunArgs,
    pipeline: &mut Pipeline,
    trace: &Trace,
    stop: &CancellationToken,
) -> Option<BotTask> {
    let bot = match discord_token(args) {
        Some(token) => {
            let config = BotConfig {
                token,
                api_url: args.discord.discord_api_url.clone(),
                intents: args
                    .discord
                    .intents
                    .unwrap_or_else(|| parse_intents(DEFAULT_INTENTS).unwrap_or_default()),
                shards: args.discord.shards.unwrap_or(Shards::Count(1)),
                shard_range: args.discord.shard_range,
            };
            Some(spawn_gated_bot(
                config,
                pipeline,
                trace.clone(),
                stop.clone(),
            ))
        }
        None => {
            tracing::info!(
                "no Discord token in ${}: the bot path is fed by the simulated source \
                 (`notifyscope send --via-bot message`, --demo-rate)",
                args.discord.discord_token_env
            );
            None
        }
    };
    if let Some(rate) = args.demo_rate {
        let _ = pipeline.wait_listening(Duration::from_secs(60)).await;
        pipeline.simulated().spawn_demo(rate, stop.clone());
    }
    bot
}

/// Startup gate: no Discord message is taken before the listener is up, so none is
/// published into a channel nobody listens on.
fn spawn_gated_bot(
    config: BotConfig,
    pipeline: &Pipeline,
    trace: Trace,
    stop: CancellationToken,
) -> BotTask {
    let bot_path = pipeline.bot_path().clone();
    let mut listener = pipeline.listener_watch();
    tokio::spawn(async move {
        if !matches!(*listener.borrow(), ListenerState::Up { .. }) {
            tracing::info!("bot waiting for the listener before connecting to Discord");
            trace.emit(
                None,
                TraceKind::GatewayWaiting {
                    waiting_for: "listener".into(),
                },
            );
        }
        tokio::select! {
            _ = listener.wait_for(|s| matches!(s, ListenerState::Up { .. })) => {}
            () = stop.cancelled() => return Ok(()),
        }
        run_bot(config, bot_path, stop).await
    })
}

/// The monitor, until the user quits. A bot that stops for good is shown, not fatal: the
/// screen stays to explain.
async fn run_screen(
    screen: ScreenSettings,
    rx: notifyscope_model::trace::TraceReceiver,
    args: &RunArgs,
    channel: &Identifier,
    running: &Running,
    bot: &mut Option<BotTask>,
    send_command: Option<String>,
) -> anyhow::Result<()> {
    let pipeline = &running.pipeline;
    let mut app = App::new(screen.keymap, args.screen.history, channel.as_str());
    app.status.info.simulated = running.simulated_only;
    app.status.send_command = send_command;
    let reach = Reach {
        live: Some(Live {
            simulated: pipeline.simulated().clone(),
            tests: pipeline.test_events(),
        }),
        operator: Some(pipeline.operator()),
    };
    let (extra_tx, extra_rx) = tokio::sync::mpsc::channel(16);
    forward_checks(running.checks.clone(), extra_tx.clone());
    if let Some(task) = bot.take() {
        *bot = Some(tokio::spawn(async move {
            let result = task
                .await
                .unwrap_or_else(|e| Err(BotError::Gateway(e.to_string())));
            if let Err(e) = &result {
                let _ = extra_tx
                    .send(AppEvent::Toast(format!("Discord bot stopped: {e}")))
                    .await;
            }
            result
        }));
    }
    let attached = attach(Some(rx), &reach, Some(extra_rx), screen.mouse);
    event_loop::run(app, screen.styles, attached).await
}

/// Runs until a signal or the reader of stdout goes away, or until the bot fails for good
/// (exit 1).
async fn wait_headless(bot: &mut Option<BotTask>, outputs: &Outputs) -> ExitCode {
    let bot_failed = async {
        match bot.as_mut() {
            Some(task) => match task.await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(format!("the bot task failed: {e}")),
            },
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = wait_for_stop(outputs) => ExitCode::SUCCESS,
        failure = bot_failed => match failure {
            Some(error) => {
                tracing::error!(%error, "Discord bot stopped");
                eprintln!("notifyscope: error: {error}");
                ExitCode::from(1)
            }
            None => ExitCode::SUCCESS,
        },
    }
}

/// Stops the diagnosis and the bot, then drains the pipeline; what it could not do.
async fn shut_down(
    running: Running,
    bot: Option<BotTask>,
    interactive: bool,
    drain_timeout: u64,
) -> ShutdownReport {
    let mut crashed = Vec::new();
    running.stop_diagnosis.cancel();
    // Its tick may be waiting on a connection that went silent: not worth the drain time.
    let mut diagnosis = running.diagnosis;
    match tokio::time::timeout(Duration::from_secs(1), &mut diagnosis).await {
        Ok(Err(e)) => crashed.push(format!("the diagnosis: {e}")),
        Ok(Ok(())) => {}
        Err(_) => diagnosis.abort(),
    }
    if let Some(task) = bot {
        if !task.is_finished() {
            if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(10), task).await {
                crashed.push(format!("the Discord bot: {e}"));
            }
        }
    }
    for c in &crashed {
        tracing::error!("shutdown: {c} had crashed");
    }
    tracing::info!("shutting down: draining queued and unprocessed events");
    if interactive {
        eprintln!("notifyscope: draining queued and unprocessed events…");
    }
    let mut report = running
        .pipeline
        .shutdown(Duration::from_secs(drain_timeout))
        .await;
    report.crashed.splice(0..0, crashed);
    report
}
