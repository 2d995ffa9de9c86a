//! The terminal monitor: one `select!` loop over terminal input, the trace stream, results of
//! background work, a one-second tick and a frame deadline. Frames are drawn only when
//! something changed, at most [`MAX_FPS`] a second.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use crossterm::event::{
    DisableMouseCapture, EnableMouseCapture, Event, EventStream, KeyEventKind, MouseButton,
    MouseEventKind,
};
use futures_util::StreamExt;
use notifyscope_widgets::Styles;
use ratatui::layout::Rect;
use ratatui::DefaultTerminal;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tui_logger::TuiWidgetState;

use crate::app::{App, AppEvent, ClickTarget, Effect, Mode, Pointer};
use crate::draw;
use crate::effects::{run_effect, Outside};
use crate::keys::Action;
use crate::logs;
use crate::pane::PaneId;
use notifyscope_model::trace::{TraceEvent, TraceReceiver};

pub const MAX_FPS: u32 = 30;
/// Trace events taken in one go before the loop looks at input again.
const BATCH: usize = 5_000;

/// Restores the terminal however the loop ends, mouse reporting included.
struct TerminalGuard {
    mouse: bool,
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if self.mouse {
            let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
        }
        ratatui::restore();
    }
}

/// Runs the monitor until the user quits (or a signal arrives). Returns once the terminal is
/// restored. `mouse`: report clicks and the wheel (the terminal's own selection then needs
/// Shift).
pub async fn run(mut app: App, styles: Styles, attached: Attached<'_>) -> anyhow::Result<()> {
    let mouse = attached.mouse;
    let terminal = ratatui::try_init().context("setting up the terminal")?;
    let _guard = TerminalGuard { mouse };
    if mouse {
        crossterm::execute!(std::io::stdout(), EnableMouseCapture)
            .context("turning on mouse reporting")?;
    }
    event_loop(&mut app, &styles, terminal, attached).await
}

/// What the monitor is attached to: the trace it shows (none in replay), what it reaches
/// beyond the screen, other events (checks, backlog), whether it takes the mouse, and the
/// token that ends it like `q` (its command cancels it on SIGTERM and SIGHUP; Ctrl-C arrives
/// as a key in raw mode).
pub struct Attached<'a> {
    pub trace: Option<TraceReceiver>,
    pub outside: &'a dyn Outside,
    pub extra: Option<mpsc::Receiver<AppEvent>>,
    pub mouse: bool,
    pub stop: CancellationToken,
}

async fn event_loop(
    app: &mut App,
    styles: &Styles,
    mut terminal: DefaultTerminal,
    attached: Attached<'_>,
) -> anyhow::Result<()> {
    let Attached {
        mut trace,
        outside,
        mut extra,
        stop,
        ..
    } = attached;
    let log_state = TuiWidgetState::new();
    let (results_tx, mut results) = mpsc::channel::<AppEvent>(256);
    if let Ok(size) = terminal.size() {
        settle(app, Rect::new(0, 0, size.width, size.height));
    }
    let mut input = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let frame_period = Duration::from_secs(1) / MAX_FPS;
    let mut last_frame = Instant::now() - frame_period;
    loop {
        let deadline = app
            .dirty
            .then(|| (last_frame + frame_period).max(Instant::now()));
        tokio::select! {
            biased;
            ev = input.next() => match ev {
                Some(Ok(Event::Key(key))) if key.kind == KeyEventKind::Press => {
                    let effect = app.on_key(key);
                    if let Some(effect) = effect {
                        if effect == Effect::Quit {
                            return Ok(());
                        }
                        run_effect(effect, app, outside, &results_tx, &log_state);
                    }
                    if let Ok(size) = terminal.size() {
                        settle(app, Rect::new(0, 0, size.width, size.height));
                    }
                }
                Some(Ok(Event::Mouse(mouse))) => {
                    let Ok(size) = terminal.size() else { continue };
                    let screen = Rect::new(0, 0, size.width, size.height);
                    let target = draw::pointer_target(app, screen, mouse.column, mouse.row);
                    let under = match target {
                        Some(ClickTarget::Pane { pane, .. }) => pane,
                        _ => app.focus,
                    };
                    let pointer = match mouse.kind {
                        MouseEventKind::Down(MouseButton::Left) => target.map(Pointer::Click),
                        MouseEventKind::ScrollUp => Some(Pointer::ScrollUp(under)),
                        MouseEventKind::ScrollDown => Some(Pointer::ScrollDown(under)),
                        _ => None,
                    };
                    if let Some(pointer) = pointer {
                        if let Some(effect) = app.on_pointer(pointer) {
                            run_effect(effect, app, outside, &results_tx, &log_state);
                        }
                        settle(app, screen);
                    }
                }
                Some(Ok(Event::Resize(w, h))) => {
                    settle(app, Rect::new(0, 0, w, h));
                    app.dirty = true;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).context("reading the terminal"),
                None => return Ok(()),
            },
            () = stop.cancelled() => return Ok(()),
            Some(ev) = next_trace(&mut trace) => {
                app.on_trace(ev);
                if let Some(rx) = trace.as_mut() {
                    for _ in 0..BATCH {
                        match rx.try_recv() {
                            Some(ev) => app.on_trace(ev),
                            None => break,
                        }
                    }
                }
            }
            Some(ev) = results.recv() => app.on_event(ev),
            Some(ev) = next_extra(&mut extra) => app.on_event(ev),
            _ = tick.tick() => app.on_event(AppEvent::Tick),
            () = sleep_until(deadline) => {
                draw_frame(&mut terminal, app, styles, &log_state)?;
                app.dirty = false;
                last_frame = Instant::now();
            }
        }
    }
}

/// Fits the state to a screen of `area` after input or a resize: the rows each pane's list
/// has (the focused pane and zoom decide the layout on small terminals), and the open
/// overlay's scroll, which stops where its last line is at the bottom.
pub fn settle(app: &mut App, area: Rect) {
    app.heights = draw::pane_heights(area, app.focus, app.zoom);
    if let Some(max) = draw::overlay_scroll_max(app, area) {
        app.layers.limit_scroll(max);
    }
}

fn draw_frame(
    terminal: &mut DefaultTerminal,
    app: &App,
    styles: &Styles,
    log_state: &TuiWidgetState,
) -> anyhow::Result<()> {
    let logs_key = app.keymap.label(Action::Focus(PaneId::Logs));
    let replay = matches!(app.mode, Mode::Replay(_));
    let rate = app.status.log_rate.per_second();
    let draw_logs = |f: &mut ratatui::Frame, r, focused| {
        logs::draw_logs(f, r, &logs_key, focused, styles, log_state, replay, rate)
    };
    terminal
        .draw(|frame| draw::draw(frame, app, styles, &draw_logs))
        .context("drawing")?;
    Ok(())
}

async fn next_trace(trace: &mut Option<TraceReceiver>) -> Option<Arc<TraceEvent>> {
    match trace {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_extra(extra: &mut Option<mpsc::Receiver<AppEvent>>) -> Option<AppEvent> {
    match extra {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
