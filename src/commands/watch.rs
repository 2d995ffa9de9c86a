//! `notifyscope watch`: monitor a pipeline someone else runs. The tap
//! ([`crate::pipeline::watched`]) reports its NOTIFYs and rows on the trace; the diagnosis runs
//! the checks that make sense without our own bot and ingestion. Every connection is
//! read-only, so it cannot write to their tables even by mistake.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{SharedArgs, WatchArgs};
use crate::commands::wiring::{
    forward_checks, pipeline_database, screen_settings, wait_for_signal, Outputs,
};
use crate::diagnose::{self, DiagnoseConfig, LockScope};
use crate::pipeline::watched::{self, WatchedTable};
use crate::screen::app::{App, Mode};
use crate::screen::event_loop;
use crate::store::Identifier;
use crate::trace::TraceKind;
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
    let extra: Vec<Identifier> = args
        .watch_channels
        .iter()
        .map(|c| Identifier::channel(c))
        .collect::<Result<_, _>>()?;
    let (start_id, has_outbox) = watched::starting_point(&database, &table)
        .await
        .with_context(|| format!("reading {schema}.{}.{}", table.table, table.id_column))?;

    let mut outputs = Outputs::start(screen.is_some(), args.json, &args.screen)?;
    let trace = outputs.trace.clone();
    let stop = CancellationToken::new();
    trace.emit(
        None,
        TraceKind::DatabaseUp {
            url: database.redacted().to_owned(),
            embedded: false,
        },
    );
    let neighbours = diagnose::neighbours(&channel, &extra);
    // Their backends are not ours by name: anyone waiting on their table (or the outbox)
    // is watched.
    let mut lock_tables = vec![table.table.clone()];
    if has_outbox {
        lock_tables.push(Identifier::new("table", "event_outbox")?);
    }
    let tap = watched::spawn(
        &database, &channel, neighbours, table, start_id, &trace, &stop,
    );
    let mut config = DiagnoseConfig::new(channel.clone());
    config.watch_only = true;
    config.locks = LockScope {
        tables: lock_tables,
        ours_only: false,
    };
    let (checks, diagnosis) = diagnose::spawn(
        config,
        trace.subscribe(),
        trace.clone(),
        database.pool(2)?,
        has_outbox,
        stop.clone(),
    );

    match (screen, outputs.screen.take()) {
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
    outputs.finish().await;
    Ok(ExitCode::SUCCESS)
}
