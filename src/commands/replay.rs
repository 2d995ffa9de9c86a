//! `notifyscope replay FILE`: a recording in the monitor, read-only.

use std::io::IsTerminal;
use std::process::ExitCode;

use crate::cli::ReplayArgs;
use crate::commands::reach::Reach;
use crate::commands::wiring::{attach, ScreenSettings};
use notifyscope_pipeline::recording;
use notifyscope_screen::app::{App, Mode};
use notifyscope_screen::event_loop;

pub async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let events = recording::load(&args.file)?;
    // Judged before the terminal is, as `run` and `watch` judge them headless too.
    let screen = ScreenSettings::load(&args.screen)?;
    if !std::io::stdout().is_terminal() {
        eprintln!(
            "notifyscope: stdout is not a terminal, so there is no screen for the replay \
             ({} events read from {})",
            events.len(),
            args.file.display()
        );
        return Ok(ExitCode::from(2));
    }
    let mut app = App::new(
        screen.keymap,
        args.screen.history.max(events.len() / 5 + 1),
        "",
    );
    app.mode = Mode::Replay(args.file.display().to_string());
    for event in events {
        app.on_trace(std::sync::Arc::new(event));
    }
    let nothing_to_reach = Reach::default();
    let attached = attach(None, &nothing_to_reach, None, screen.mouse);
    event_loop::run(app, screen.styles, attached).await?;
    Ok(ExitCode::SUCCESS)
}
