//! The terminal monitor: one `select!` loop over terminal input, the trace stream, results of
//! background work, a one-second tick and a frame deadline. Frames are drawn only when
//! something changed, at most [`MAX_FPS`] a second.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use crossterm::event::{Event, EventStream, KeyCode, KeyEventKind};
use futures_util::StreamExt;
use notifyscope_widgets::Styles;
use ratatui::layout::Rect;
use ratatui::widgets::{Block, BorderType, Borders};
use ratatui::{DefaultTerminal, Frame};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tui_logger::{TuiLoggerSmartWidget, TuiWidgetEvent, TuiWidgetState};

use crate::app::{App, AppEvent, Effect, PaneId};
use crate::control::SimulatedSource;
use crate::event::{Envelope, Snowflake};
use crate::filter::SkipReason;
use crate::pipeline::Handled;
use crate::publish::PublisherHandle;
use crate::store::{self, Identifier};
use crate::synthetic::{self, SimKind};
use crate::trace::{TraceEvent, TraceReceiver};
use crate::ui;

pub const MAX_FPS: u32 = 30;
/// Trace events taken in one go before the loop looks at input again.
const BATCH: usize = 5_000;

/// What the monitor needs of a running pipeline to send test events and poll the backlog.
#[derive(Clone)]
pub struct Live {
    pub simulated: SimulatedSource,
    pub publisher: PublisherHandle,
    pub pool: deadpool_postgres::Pool,
    pub channel: Identifier,
}

/// Restores the terminal however the loop ends.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Runs the monitor until the user quits (or a signal arrives). Returns once the terminal is
/// restored.
pub async fn run(
    mut app: App,
    styles: Styles,
    trace: Option<TraceReceiver>,
    live: Option<Live>,
    extra: Option<mpsc::Receiver<AppEvent>>,
) -> anyhow::Result<()> {
    let terminal = ratatui::try_init().context("setting up the terminal")?;
    let _guard = TerminalGuard;
    event_loop(&mut app, &styles, terminal, trace, live, extra).await
}

async fn event_loop(
    app: &mut App,
    styles: &Styles,
    mut terminal: DefaultTerminal,
    mut trace: Option<TraceReceiver>,
    live: Option<Live>,
    mut extra: Option<mpsc::Receiver<AppEvent>>,
) -> anyhow::Result<()> {
    let log_state = TuiWidgetState::new();
    let (results_tx, mut results) = mpsc::channel::<AppEvent>(256);
    if let Ok(size) = terminal.size() {
        app.heights = ui::pane_heights(Rect::new(0, 0, size.width, size.height), app.focus);
    }
    let mut input = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let frame_period = Duration::from_secs(1) / MAX_FPS;
    let mut last_frame = Instant::now() - frame_period;
    let mut signals = Signals::new();
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
                        run_effect(effect, app, live.as_ref(), &results_tx, &log_state);
                    }
                    // The focused pane decides the layout on small terminals.
                    if let Ok(size) = terminal.size() {
                        app.heights = ui::pane_heights(Rect::new(0, 0, size.width, size.height), app.focus);
                    }
                }
                Some(Ok(Event::Resize(w, h))) => {
                    app.heights = ui::pane_heights(Rect::new(0, 0, w, h), app.focus);
                    app.dirty = true;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).context("reading the terminal"),
                None => return Ok(()),
            },
            () = signals.recv() => return Ok(()),
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
                terminal
                    .draw(|frame| ui::draw(frame, app, styles, &|f, r, focused| draw_logs(f, r, focused, styles, &log_state, matches!(app.mode, crate::app::Mode::Replay(_)))))
                    .context("drawing")?;
                app.dirty = false;
                last_frame = Instant::now();
            }
        }
    }
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

/// SIGTERM and SIGHUP end the monitor like `q` (Ctrl-C arrives as a key in raw mode).
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            hup: signal(SignalKind::hangup()).ok(),
        }
    }

    async fn recv(&mut self) {
        let term = async {
            match self.term.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        let hup = async {
            match self.hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = term => {}
            () = hup => {}
        }
    }
}

fn draw_logs(
    frame: &mut Frame,
    area: Rect,
    focused: bool,
    styles: &Styles,
    state: &TuiWidgetState,
    replay: bool,
) {
    let title = format!(" {} Logs ", PaneId::Logs.key());
    if replay {
        let block = Block::default()
            .borders(Borders::ALL)
            .border_type(BorderType::Rounded)
            .border_style(styles.block(focused))
            .title(title);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        frame.render_widget(
            ratatui::widgets::Paragraph::new("a replay has no logs").style(styles.dim),
            inner,
        );
        return;
    }
    let widget = TuiLoggerSmartWidget::default()
        .title_log(title)
        .title_target(" targets ")
        .border_style(styles.block(focused))
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Rounded
        })
        .style(styles.text)
        .style_error(styles.error)
        .style_warn(styles.warn)
        .style_info(styles.ok)
        .style_debug(styles.dim)
        .style_trace(styles.dim)
        .output_separator(' ')
        .output_timestamp(Some("%H:%M:%S".into()))
        .output_level(Some(tui_logger::TuiLoggerLevelOutput::Abbreviated))
        .output_target(true)
        .output_file(false)
        .output_line(false)
        .state(state);
    frame.render_widget(widget, area);
}

fn log_event(key: KeyCode) -> Option<TuiWidgetEvent> {
    Some(match key {
        KeyCode::Up => TuiWidgetEvent::UpKey,
        KeyCode::Down => TuiWidgetEvent::DownKey,
        KeyCode::Left => TuiWidgetEvent::LeftKey,
        KeyCode::Right => TuiWidgetEvent::RightKey,
        KeyCode::Char('+') => TuiWidgetEvent::PlusKey,
        KeyCode::Char('-') => TuiWidgetEvent::MinusKey,
        KeyCode::Char('h') => TuiWidgetEvent::HideKey,
        KeyCode::Char('f') => TuiWidgetEvent::FocusKey,
        KeyCode::PageUp => TuiWidgetEvent::PrevPageKey,
        KeyCode::PageDown => TuiWidgetEvent::NextPageKey,
        _ => return None,
    })
}

fn run_effect(
    effect: Effect,
    app: &mut App,
    live: Option<&Live>,
    results: &mpsc::Sender<AppEvent>,
    log_state: &TuiWidgetState,
) {
    match effect {
        Effect::Quit => {}
        Effect::LogKey(key) => {
            if let Some(ev) = log_event(key.code) {
                log_state.transition(ev);
            }
        }
        Effect::Copy(text) => match copy_osc52(&text) {
            Ok(()) => app.toast(format!(
                "copied {} bytes to the clipboard (OSC 52)",
                text.len()
            )),
            Err(e) => app.toast(format!("copy failed: {e}")),
        },
        Effect::Save(events) => match save_session(&events) {
            Ok(path) => app.toast(format!(
                "saved {} events to {} (notifyscope replay {0})",
                events.len(),
                path.display()
            )),
            Err(e) => app.toast(format!("save failed: {e}")),
        },
        Effect::Send(kind) => {
            if let Some(live) = live {
                let live = live.clone();
                let results = results.clone();
                tokio::spawn(async move {
                    let outcome = live.simulated.inject(kind).await;
                    let _ = results
                        .send(AppEvent::Toast(describe_sent(kind, &outcome)))
                        .await;
                });
            }
        }
        Effect::SendMalformed => {
            if let Some(live) = live {
                let live = live.clone();
                let results = results.clone();
                tokio::spawn(async move {
                    let text = match notify(&live.pool, live.channel.as_str(), MALFORMED).await {
                        Ok(()) => format!(
                            "x: malformed NOTIFY sent on {}: watch NOTIFY receipts",
                            live.channel
                        ),
                        Err(e) => format!("x: failed: {e}"),
                    };
                    let _ = results.send(AppEvent::Toast(text)).await;
                });
            }
        }
        Effect::SendWrongChannel => {
            if let Some(live) = live {
                let live = live.clone();
                let results = results.clone();
                tokio::spawn(async move {
                    let wrong = wrong_case(live.channel.as_str());
                    let envelope =
                        Envelope::new(synthetic::message("sent on the wrong channel").to_record());
                    let id = envelope.message.message_id;
                    let text = match notify(&live.pool, &wrong, &envelope.to_json()).await {
                        Ok(()) => format!("w: message {id} sent on {wrong:?} instead of {:?}: no listener of ours hears it", live.channel.as_str()),
                        Err(e) => format!("w: failed: {e}"),
                    };
                    let _ = results.send(AppEvent::Toast(text)).await;
                });
            }
        }
        Effect::SendDirect => {
            if let Some(live) = live {
                let live = live.clone();
                let results = results.clone();
                tokio::spawn(async move {
                    let msg = synthetic::message("published straight to the outbox").to_record();
                    let id = msg.message_id;
                    let text = match live.publisher.publish(msg).await {
                        Ok(r) => format!(
                            "d: message {id} published straight to the outbox (outbox {})",
                            r.outbox_id
                        ),
                        Err(e) => format!("d: message {id} failed: {e}"),
                    };
                    let _ = results.send(AppEvent::Toast(text)).await;
                });
            }
        }
    }
}

/// A payload that is JSON but breaks the contract (no message, unknown version field).
const MALFORMED: &str = r#"{"v":1,"event_type":"discord.message_created","note":"malformed on purpose: no event_id, no message"}"#;

async fn notify(
    pool: &deadpool_postgres::Pool,
    channel: &str,
    payload: &str,
) -> Result<(), String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    client
        .execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
        .await
        .map(|_| ())
        .map_err(|e| store::error_chain(&e))
}

/// The neighbour that `LISTEN`'s case folding makes people hit by mistake.
pub fn wrong_case(channel: &str) -> String {
    let lower = channel.to_lowercase();
    if lower != channel {
        return lower;
    }
    let mut chars = channel.chars();
    let capitalised: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    let upper = channel.to_uppercase();
    if capitalised != channel {
        capitalised
    } else if upper != channel {
        upper
    } else {
        // No letters to change: a neighbour by a suffix.
        format!("{}_", &channel[..channel.len().min(62)])
    }
}

fn describe_sent(
    kind: SimKind,
    outcome: &[(Snowflake, Result<Handled, crate::publish::PublishError>)],
) -> String {
    let key = match kind {
        SimKind::Message => "m",
        SimKind::Burst => "M",
        SimKind::Own => "o",
        SimKind::Bot => "b",
        SimKind::Empty => "e",
        SimKind::Long => "l",
        _ => "",
    };
    if let [(id, result)] = outcome {
        let label = match kind {
            SimKind::Message => "message".to_owned(),
            other => format!("{} message", other.as_str()),
        };
        return match result {
            Ok(Handled::Published(r)) => format!(
                "{key}: {label} {id} published (outbox {}{})",
                r.outbox_id,
                if r.by_ref { ", by reference" } else { "" }
            ),
            Ok(Handled::Skipped(reason)) => format!("{key}: {label} {id} skipped: {reason}"),
            Err(e) => format!("{key}: {label} {id} failed: {e}"),
        };
    }
    let published = outcome
        .iter()
        .filter(|(_, r)| matches!(r, Ok(Handled::Published(_))))
        .count();
    let skipped: Vec<SkipReason> = outcome
        .iter()
        .filter_map(|(_, r)| match r {
            Ok(Handled::Skipped(reason)) => Some(*reason),
            _ => None,
        })
        .collect();
    let first = outcome
        .first()
        .map(|(id, _)| id.to_string())
        .unwrap_or_default();
    format!(
        "{key}: {} messages from {first}: {published} published, {} skipped, {} failed",
        outcome.len(),
        skipped.len(),
        outcome.len() - published - skipped.len()
    )
}

/// OSC 52 puts text on the clipboard of the terminal the user sits at, also over ssh.
fn copy_osc52(text: &str) -> std::io::Result<()> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
    let mut out = std::io::stdout().lock();
    write!(out, "\x1b]52;c;{encoded}\x07")?;
    out.flush()
}

fn save_session(events: &[Arc<TraceEvent>]) -> std::io::Result<PathBuf> {
    let name = format!(
        "notifyscope-session-{}.jsonl",
        chrono::Local::now().format("%Y%m%d-%H%M%S")
    );
    let path = PathBuf::from(name);
    write_jsonl(&path, events)?;
    Ok(path)
}

pub fn write_jsonl(path: &Path, events: &[Arc<TraceEvent>]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for e in events {
        writeln!(out, "{}", e.to_json())?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_case_is_a_neighbour() {
        assert_eq!(wrong_case("events"), "Events");
        assert_eq!(wrong_case("Events"), "events");
        assert_eq!(wrong_case("_x"), "_X");
        assert_eq!(wrong_case("_1"), "_1_");
    }
}
