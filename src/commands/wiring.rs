//! What the subcommands share: settings read before anything starts, the writers of trace
//! output, the hand-over of diagnosis reports to the screen, and waiting for a signal.

use std::io::IsTerminal;

use anyhow::{anyhow, Context};
use tokio_util::sync::CancellationToken;

use crate::cli::{ScreenArgs, SharedArgs};
use crate::diagnose;
use crate::recording::writer;
use crate::screen::app::AppEvent;
use crate::screen::config;
use crate::screen::keys::KeyMap;
use crate::screen::theme;
use crate::store::Identifier;
use crate::trace::Trace;

/// The channel and schema of the command line, checked.
pub fn channel_and_schema(shared: &SharedArgs) -> anyhow::Result<(Identifier, Identifier)> {
    Ok((
        Identifier::channel(&shared.channel)?,
        Identifier::schema(&shared.schema)?,
    ))
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
        writers.push(tokio::spawn(writer::write_events(
            trace.subscribe(),
            json,
            std::io::stdout(),
            stop.clone(),
        )));
    }
    if let Some(path) = record {
        let file = std::fs::File::create(path)
            .with_context(|| format!("creating the recording {}", path.display()))?;
        writers.push(tokio::spawn(writer::write_events(
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

/// What the screen needs from the command line and the config file.
pub struct ScreenSettings {
    pub styles: notifyscope_widgets::Styles,
    pub keymap: KeyMap,
}

impl ScreenSettings {
    pub fn load(args: &ScreenArgs) -> anyhow::Result<Self> {
        let config = config::load(args.config.as_deref())?;
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
