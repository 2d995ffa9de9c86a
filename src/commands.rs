//! What each subcommand does.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::app::{App, AppEvent};
use crate::bot::{parse_intents, run_bot, BotConfig, BotError, Shards, Token, DEFAULT_INTENTS};
use crate::cli::{
    Cli, Command, ReplayArgs, RunArgs, ScreenArgs, SendArgs, SendCommand, SharedArgs,
};
use crate::control;
use crate::diagnose::{self, DiagnoseConfig};
use crate::embedded::EmbeddedPostgres;
use crate::keys::{ConfigFile, KeyMap};
use crate::listen::ListenerState;
use crate::output;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::publish::{self, publish_event_safe};
use crate::selftest;
use crate::store::{Database, Identifier, APP_NAME};
use crate::synthetic;
use crate::trace::Stage;
use crate::trace::Trace;
use crate::tui::{self, Live};
use crate::{record, theme};

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => run(cli.shared, cli.run).await,
        Some(Command::Run(args)) => run(cli.shared, args).await,
        Some(Command::Send(args)) => send(cli.shared, args).await,
        Some(Command::Replay(args)) => replay(args).await,
        Some(Command::Doctor(args)) => crate::doctor::run(cli.shared, args).await,
        Some(Command::Watch(args)) => crate::watch::run(cli.shared, args).await,
        Some(Command::Selftest { timeout }) => {
            selftest::run(cli.shared, Duration::from_secs(timeout)).await
        }
        Some(Command::Bench(args)) => crate::bench::command(cli.shared, args).await,
    }
}

fn channel_and_schema(shared: &SharedArgs) -> anyhow::Result<(Identifier, Identifier)> {
    Ok((
        Identifier::channel(&shared.channel)?,
        Identifier::schema(&shared.schema)?,
    ))
}

async fn run(shared: SharedArgs, args: RunArgs) -> anyhow::Result<ExitCode> {
    let (channel, schema) = channel_and_schema(&shared)?;
    let interactive = !args.headless;
    if interactive && !screen_possible() {
        return Ok(ExitCode::from(2));
    }
    // Settings are checked before anything starts, so a typo costs no database start-up.
    let screen = if interactive {
        Some(ScreenSettings::load(&args.screen)?)
    } else {
        None
    };

    let (embedded, url) = match shared.database_url.clone() {
        Some(url) => (None, url),
        None => {
            let pg = EmbeddedPostgres::start(args.data_dir.clone())
                .await
                .context("starting the embedded PostgreSQL")?;
            let url = pg.url().to_owned();
            tracing::info!(
                "embedded PostgreSQL running; connect from another shell with --database-url '{url}'"
            );
            (Some(pg), url)
        }
    };
    let database = Database::new(&url, schema)?;

    let trace = Trace::new();
    let stop_output = CancellationToken::new();
    // Subscribed before the pipeline starts, so that its first events are seen too.
    let screen_trace = interactive.then(|| trace.subscribe());
    let writers = spawn_writers(
        &trace,
        (!interactive).then_some(args.json),
        args.screen.record.as_deref(),
        &stop_output,
    )?;

    let mut config = PipelineConfig::new(database, channel.clone());
    config.filter = args.filter.to_config();
    config.workers = usize::from(args.workers);
    config.queue_capacity = args.queue_capacity;
    config.embedded = embedded.is_some();
    let extra: Vec<Identifier> = args
        .watch_channels
        .iter()
        .map(|c| Identifier::channel(c))
        .collect::<Result<_, _>>()?;
    config.watch_channels = diagnose::neighbours(&channel, &extra);
    let diagnosis_events = trace.subscribe();
    let mut pipeline = Pipeline::start(config, trace.clone())
        .await
        .context("starting the pipeline")?;
    let stop_diagnosis = CancellationToken::new();
    let (checks, diagnosis) = diagnose::spawn(
        DiagnoseConfig::new(channel.clone()),
        diagnosis_events,
        trace.clone(),
        pipeline.pool().clone(),
        true,
        stop_diagnosis.clone(),
    );

    let token = std::env::var(&args.discord.discord_token_env)
        .ok()
        .and_then(Token::new);
    let stop_sources = CancellationToken::new();
    let simulated_only = token.is_none();
    let mut bot = None;
    match token {
        Some(token) => {
            let config = BotConfig {
                token,
                api_url: args.discord.discord_api_url.clone(),
                intents: args
                    .discord
                    .intents
                    .unwrap_or_else(|| parse_intents(DEFAULT_INTENTS).unwrap_or_default()),
                shards: args.discord.shards.unwrap_or(Shards::Count(1)),
            };
            let bot_path = pipeline.bot_path().clone();
            let trace = trace.clone();
            let stop = stop_sources.clone();
            let mut listener = pipeline.listener_watch();
            bot = Some(tokio::spawn(async move {
                // Startup gate: no Discord message is taken before the listener is up, so
                // none is published into a channel nobody listens on.
                if !matches!(*listener.borrow(), ListenerState::Up { .. }) {
                    tracing::info!("bot waiting for the listener before connecting to Discord");
                    trace.emit(
                        None,
                        Stage::GatewayWaiting {
                            waiting_for: "listener".into(),
                        },
                    );
                }
                tokio::select! {
                    _ = listener.wait_for(|s| matches!(s, ListenerState::Up { .. })) => {}
                    () = stop.cancelled() => return Ok(()),
                }
                run_bot(config, bot_path, stop).await
            }));
        }
        None => {
            tracing::info!(
                "no Discord token in ${}: the bot path is fed by the simulated source \
                 (`notifyscope send --via-bot message`, --demo-rate)",
                args.discord.discord_token_env
            );
        }
    }
    if let Some(rate) = args.demo_rate {
        let _ = pipeline.wait_listening(Duration::from_secs(60)).await;
        pipeline.simulated().spawn_demo(rate, stop_sources.clone());
    }

    let exit = match (screen, screen_trace) {
        (Some(screen), Some(rx)) => {
            let mut app = App::new(screen.keymap, args.screen.history, channel.as_str());
            app.status.simulated = simulated_only;
            let live = Live {
                simulated: pipeline.simulated().clone(),
                publisher: pipeline.publisher().clone(),
                pool: pipeline.pool().clone(),
                channel: channel.clone(),
            };
            let (extra_tx, extra_rx) = tokio::sync::mpsc::channel(16);
            forward_checks(checks.clone(), extra_tx.clone());
            if let Some(task) = bot.take() {
                // A bot that stops for good is shown, not fatal: the screen stays to explain.
                bot = Some(tokio::spawn(async move {
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
            tui::run(app, screen.styles, Some(rx), Some(live), Some(extra_rx)).await?;
            ExitCode::SUCCESS
        }
        _ => wait_headless(&mut bot).await,
    };

    stop_sources.cancel();
    stop_diagnosis.cancel();
    let _ = diagnosis.await;
    if let Some(task) = bot {
        if !task.is_finished() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
    tracing::info!("shutting down: draining queued and unprocessed events");
    if interactive {
        eprintln!("notifyscope: draining queued and unprocessed events…");
    }
    pipeline
        .shutdown(Duration::from_secs(args.drain_timeout))
        .await;
    stop_output.cancel();
    for writer in writers {
        let _ = writer.await;
    }
    if let Some(pg) = embedded {
        pg.stop().await;
    }
    Ok(exit)
}

/// Whether stdout is a terminal to draw on; says so in one line when it is not.
pub fn screen_possible() -> bool {
    let terminal = std::io::stdout().is_terminal();
    if !terminal {
        eprintln!(
            "notifyscope: stdout is not a terminal, so there is no screen to draw on; \
             run with --headless (add --json for JSON lines)"
        );
    }
    terminal
}

/// The consumers that write trace events out: stdout (`Some(json)`, when there is no screen)
/// and the recording. They stop when `stop` fires, after writing what is buffered.
pub fn spawn_writers(
    trace: &Trace,
    stdout_json: Option<bool>,
    record: Option<&std::path::Path>,
    stop: &CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut writers = Vec::new();
    if let Some(json) = stdout_json {
        writers.push(tokio::spawn(output::write_events(
            trace.subscribe(),
            json,
            std::io::stdout(),
            stop.clone(),
        )));
    }
    if let Some(path) = record {
        let file = std::fs::File::create(path)
            .with_context(|| format!("creating the recording {}", path.display()))?;
        writers.push(tokio::spawn(output::write_events(
            trace.subscribe(),
            true,
            std::io::BufWriter::new(file),
            stop.clone(),
        )));
    }
    Ok(writers)
}

/// Hands every new diagnosis report to the screen.
pub fn forward_checks(
    mut reports: tokio::sync::watch::Receiver<std::sync::Arc<diagnose::Report>>,
    screen: tokio::sync::mpsc::Sender<AppEvent>,
) {
    tokio::spawn(async move {
        while reports.changed().await.is_ok() {
            let latest = reports.borrow_and_update().clone();
            if screen
                .send(AppEvent::Backlog(latest.backlog))
                .await
                .is_err()
                || screen
                    .send(AppEvent::Health(latest.checks.clone()))
                    .await
                    .is_err()
            {
                break;
            }
        }
    });
}

/// Runs until a signal, or until the bot fails for good (exit 1).
async fn wait_headless(
    bot: &mut Option<tokio::task::JoinHandle<Result<(), BotError>>>,
) -> ExitCode {
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
        () = wait_for_signal() => ExitCode::SUCCESS,
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

/// What the screen needs from the command line and the config file.
pub struct ScreenSettings {
    pub styles: notifyscope_widgets::Styles,
    pub keymap: KeyMap,
}

impl ScreenSettings {
    pub fn load(args: &ScreenArgs) -> anyhow::Result<Self> {
        let config = load_config(args.config.as_deref())?;
        let theme_name = args
            .theme
            .clone()
            .or(config.theme.clone())
            .unwrap_or_else(|| theme::DEFAULT_THEME.to_owned());
        let styles = theme::load(&theme_name, theme::colour_wanted(args.no_color))?;
        let keymap = KeyMap::new(&config.keys).map_err(|e| anyhow!("config: {e}"))?;
        Ok(ScreenSettings { styles, keymap })
    }
}

/// The config file: `--config PATH`, else `$XDG_CONFIG_HOME/notifyscope/config.toml` (or
/// `~/.config/…`) when it exists.
fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<ConfigFile> {
    let (path, must_exist) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => {
            let base = std::env::var_os("XDG_CONFIG_HOME")
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config"))
                });
            match base {
                Some(b) => (b.join("notifyscope").join("config.toml"), false),
                None => return Ok(ConfigFile::default()),
            }
        }
    };
    if !must_exist && !path.exists() {
        return Ok(ConfigFile::default());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow!("config file {}: {e}", path.display()))
}

async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let events = record::load(&args.file)?;
    if !std::io::stdout().is_terminal() {
        eprintln!(
            "notifyscope: stdout is not a terminal, so there is no screen for the replay \
             ({} events read from {})",
            events.len(),
            args.file.display()
        );
        return Ok(ExitCode::from(2));
    }
    let screen = ScreenSettings::load(&args.screen)?;
    let mut app = App::new(
        screen.keymap,
        args.screen.history.max(events.len() / 5 + 1),
        "",
    );
    app.mode = crate::app::Mode::Replay(args.file.display().to_string());
    for event in events {
        app.on_trace(std::sync::Arc::new(event));
    }
    tui::run(app, screen.styles, None, None, None).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn send(shared: SharedArgs, args: SendArgs) -> anyhow::Result<ExitCode> {
    let (channel, schema) = channel_and_schema(&shared)?;
    let url = shared.database_url.clone().ok_or_else(|| {
        anyhow!(
            "send needs --database-url (or DATABASE_URL): the connection string that the \
             running notifyscope logs at start"
        )
    })?;
    let database = Database::new(&url, schema)?;
    match (args.via_bot, args.command) {
        (Some(kind), _) => {
            let (ids, reply) =
                control::send_via_bot(&database, &channel, kind, Duration::from_secs(args.timeout))
                    .await?;
            println!(
                "{} {} message(s) through the running bot path: {} published, {} skipped, {} failed",
                ids.len(),
                kind.as_str(),
                reply.published.len(),
                reply.skipped.len(),
                reply.failed.len()
            );
            for id in reply.published.iter().take(10) {
                println!("  {id} published");
            }
            for (id, reason) in &reply.skipped {
                println!("  {id} skipped: {reason}");
            }
            for (id, error) in &reply.failed {
                println!("  {id} failed: {error}");
            }
            Ok(if reply.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        (
            None,
            Some(SendCommand::Message {
                count,
                content,
                json,
            }),
        ) => send_messages(database, channel, count, content, json).await,
        (None, Some(SendCommand::Raw { payload })) => {
            let client = database.connect_plain(APP_NAME).await?;
            client
                .execute("SELECT pg_notify($1, $2)", &[&channel.as_str(), &payload])
                .await
                .with_context(|| format!("NOTIFY on channel {channel}"))?;
            println!(
                "sent a raw NOTIFY of {} bytes on channel {channel}",
                payload.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        (None, None) => Err(anyhow!(
            "say what to send: --via-bot KIND, `send message` or `send raw` (see --help)"
        )),
    }
}

async fn send_messages(
    database: Database,
    channel: Identifier,
    count: u32,
    content: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    database.migrate().await?;
    let pool = database.pool(2)?;
    let stop = CancellationToken::new();
    let (publisher, task) = publish::spawn_publisher(
        pool,
        channel.clone(),
        Trace::new(),
        publish::DEFAULT_QUEUE_CAPACITY,
        stop.clone(),
    );
    // Many in flight at once so that the publisher can batch them.
    let results: Vec<_> = futures_util::stream::iter(0..count)
        .map(|i| {
            let publisher = publisher.clone();
            let text = content
                .clone()
                .unwrap_or_else(|| format!("test message {}", i + 1));
            async move {
                let msg = synthetic::message(text).to_record();
                let id = msg.message_id;
                (id, publish_event_safe(&publisher, msg).await)
            }
        })
        .buffered(1024)
        .collect()
        .await;
    stop.cancel();
    let _ = task.await;

    let mut failed = 0;
    for (id, result) in &results {
        match result {
            Ok(receipt) if json => println!(
                "{}",
                serde_json::json!({
                    "message_id": id.to_string(),
                    "outbox_id": receipt.outbox_id,
                    "channel": channel.as_str(),
                    "bytes": receipt.notify_bytes,
                    "by_ref": receipt.by_ref,
                })
            ),
            Ok(_) => {}
            Err(e) => {
                failed += 1;
                eprintln!("notifyscope: message {id} not published: {e}");
            }
        }
    }
    if !json {
        let ids: Vec<_> = results.iter().map(|(id, _)| *id).collect();
        match (ids.first(), ids.last()) {
            (Some(first), Some(last)) => println!(
                "published {} of {count} messages on channel {channel} (ids {first}..{last})",
                count as usize - failed
            ),
            _ => println!("published no messages"),
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
