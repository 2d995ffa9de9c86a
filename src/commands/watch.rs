//! `notifyscope watch`: monitor a pipeline someone else runs. The tap
//! ([`crate::pipeline::watched`]) reports its NOTIFYs and rows on the trace; the diagnosis runs
//! the checks that make sense without our own bot and ingestion. Every connection is
//! read-only, so it cannot write to their tables even by mistake.

use std::process::ExitCode;

use anyhow::{anyhow, Context};

use crate::cli::{SharedArgs, WatchArgs};
use crate::commands::wiring::{
    channel_and_schema, forward_checks, screen_possible, spawn_writers, wait_for_signal,
    ScreenSettings,
};
use crate::diagnose::{self, DiagnoseConfig};
use crate::pipeline::watched::{self, WatchedTable};
use crate::screen::app::{App, Mode};
use crate::screen::event_loop;
use crate::store::{Database, Identifier};
use crate::trace::{Trace, TraceKind};
use tokio_util::sync::CancellationToken;

pub async fn run(shared: SharedArgs, args: WatchArgs) -> anyhow::Result<ExitCode> {
    let (channel, schema) = channel_and_schema(&shared)?;
    let table = WatchedTable {
        table: Identifier::new("table", &args.table)?,
        id_column: Identifier::new("column", &args.id_column)?,
    };
    let url = shared.database_url.clone().ok_or_else(|| {
        anyhow!("watch needs --database-url (or DATABASE_URL) of the pipeline to watch")
    })?;
    let interactive = !args.headless;
    if interactive && !screen_possible() {
        return Ok(ExitCode::from(2));
    }
    let screen = if interactive {
        Some(ScreenSettings::load(&args.screen)?)
    } else {
        None
    };
    let extra: Vec<Identifier> = args
        .watch_channels
        .iter()
        .map(|c| Identifier::channel(c))
        .collect::<Result<_, _>>()?;
    let database = Database::new(&url, schema.clone())?.read_only();
    let (start_id, has_outbox) = watched::starting_point(&database, &table)
        .await
        .with_context(|| format!("reading {schema}.{}.{}", table.table, table.id_column))?;

    let trace = Trace::new();
    let stop = CancellationToken::new();
    let screen_trace = interactive.then(|| trace.subscribe());
    let writers = spawn_writers(
        &trace,
        (!interactive).then_some(args.json),
        args.screen.record.as_deref(),
        &stop,
    )?;
    trace.emit(
        None,
        TraceKind::DatabaseUp {
            url: database.redacted().to_owned(),
            embedded: false,
        },
    );
    let neighbours = diagnose::neighbours(&channel, &extra);
    let tap = watched::spawn(
        &database, &channel, neighbours, table, start_id, &trace, &stop,
    );
    let mut config = DiagnoseConfig::new(channel.clone());
    config.watch_only = true;
    let (checks, diagnosis) = diagnose::spawn(
        config,
        trace.subscribe(),
        trace.clone(),
        database.pool(2)?,
        has_outbox,
        stop.clone(),
    );

    match (screen, screen_trace) {
        (Some(screen), Some(rx)) => {
            let mut app = App::new(screen.keymap, args.screen.history, channel.as_str());
            app.mode = Mode::Watch;
            let (extra_tx, extra_rx) = tokio::sync::mpsc::channel(16);
            forward_checks(checks, extra_tx);
            event_loop::run(app, screen.styles, Some(rx), None, Some(extra_rx)).await?;
        }
        _ => {
            drop(checks);
            wait_for_signal().await;
        }
    }
    stop.cancel();
    let [listening, polling] = tap;
    let _ = tokio::join!(listening, polling, diagnosis);
    for w in writers {
        let _ = w.await;
    }
    Ok(ExitCode::SUCCESS)
}
