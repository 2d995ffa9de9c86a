//! What each subcommand does.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::bot::{parse_intents, run_bot, BotConfig, Shards, Token, DEFAULT_INTENTS};
use crate::cli::{Cli, Command, RunArgs, SendArgs, SendCommand, SharedArgs};
use crate::control;
use crate::embedded::EmbeddedPostgres;
use crate::listen::ListenerState;
use crate::output;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::publish::{self, publish_event_safe};
use crate::selftest;
use crate::store::{Database, Identifier, APP_NAME};
use crate::synthetic;
use crate::trace::Stage;
use crate::trace::Trace;

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => run(cli.shared, cli.run).await,
        Some(Command::Run(args)) => run(cli.shared, args).await,
        Some(Command::Send(args)) => send(cli.shared, args).await,
        Some(Command::Selftest { timeout }) => {
            selftest::run(cli.shared, Duration::from_secs(timeout)).await
        }
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
    if !args.headless && !std::io::stdout().is_terminal() {
        eprintln!(
            "notifyscope: stdout is not a terminal, so there is no screen to draw on; \
             run with --headless (add --json for JSON lines)"
        );
        return Ok(ExitCode::from(2));
    }

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
    let printer = tokio::spawn(output::write_events(
        trace.subscribe(),
        args.json,
        std::io::stdout(),
        stop_output.clone(),
    ));

    let mut config = PipelineConfig::new(database, channel);
    config.filter = args.filter.to_config();
    config.workers = usize::from(args.workers);
    config.queue_capacity = args.queue_capacity;
    config.embedded = embedded.is_some();
    let mut pipeline = Pipeline::start(config, trace.clone())
        .await
        .context("starting the pipeline")?;

    let token = std::env::var(&args.discord.discord_token_env)
        .ok()
        .and_then(Token::new);
    let stop_sources = CancellationToken::new();
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
            pipeline.filter().set_bot_user_id(synthetic::SIM_BOT);
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

    let mut exit = ExitCode::SUCCESS;
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
        () = wait_for_signal() => {}
        failure = bot_failed => {
            if let Some(error) = failure {
                tracing::error!(%error, "Discord bot stopped");
                eprintln!("notifyscope: error: {error}");
                exit = ExitCode::from(1);
            }
        }
    }
    stop_sources.cancel();
    if let Some(task) = bot {
        if !task.is_finished() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
    tracing::info!("shutting down: draining queued and unprocessed events");
    pipeline
        .shutdown(Duration::from_secs(args.drain_timeout))
        .await;
    stop_output.cancel();
    let _ = printer.await;
    if let Some(pg) = embedded {
        pg.stop().await;
    }
    Ok(exit)
}

async fn wait_for_signal() {
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
