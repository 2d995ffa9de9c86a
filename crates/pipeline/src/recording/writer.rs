//! Trace events written out as they happen: JSON lines (`--record`, `--headless --json`) or
//! one readable line each (`--headless`).

use std::io::Write;

use tokio_util::sync::CancellationToken;

use notifyscope_model::present::human_line;
use notifyscope_model::trace::{TraceEvent, TraceReceiver};

/// Writes every event until the stream ends or `stop` fires; on `stop` it first writes what
/// is already buffered. Flushes whenever it has caught up, so a reader on a pipe sees events
/// promptly without a syscall per line under load. A write that fails ends the output with
/// its error (`BrokenPipe` when the reader of a pipe went away); the caller decides what it
/// means.
pub async fn write_events(
    mut rx: TraceReceiver,
    json: bool,
    mut out: impl Write,
    stop: CancellationToken,
) -> std::io::Result<()> {
    loop {
        let event = tokio::select! {
            event = rx.recv() => event,
            () = stop.cancelled() => None,
        };
        let Some(event) = event else { break };
        write_one(&mut out, &event, json)?;
        while let Some(event) = rx.try_recv() {
            write_one(&mut out, &event, json)?;
        }
        out.flush()?;
    }
    while let Some(event) = rx.try_recv() {
        write_one(&mut out, &event, json)?;
    }
    out.flush()
}

pub(super) fn write_one(
    out: &mut impl Write,
    event: &TraceEvent,
    json: bool,
) -> std::io::Result<()> {
    if json {
        writeln!(out, "{}", event.to_json())
    } else {
        writeln!(out, "{}", human_line(event))
    }
}
