//! What serenity does not tell its event handler: a gateway connection closing (with the
//! close code), and which shards are up, so that each down is reported once.
//!
//! serenity 0.12 hands a close frame to no handler and has no event for it: the shard runner
//! reconnects by itself and the handler sees only a stage change. The one place the close
//! code shows is its `handle_gateway_closed` span, so a tracing layer reads it there. The
//! layer keeps what it saw in a [`GatewayWatch`], which the bot finds through the process's
//! subscriber: one typed place, no global state.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::span::Attributes;
use tracing::{Id, Subscriber};
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::Layer;

use notifyscope_model::trace::{Trace, TraceKind};

/// A WebSocket close seen by the gateway client.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayClose {
    pub code: Option<u16>,
    pub reason: String,
}

/// The gateway as the layer sees it: the last close, which shards are connected, and the
/// trace their downs are reported on.
#[derive(Clone, Default)]
pub struct GatewayWatch {
    state: Arc<Mutex<GatewayState>>,
}

#[derive(Default)]
struct GatewayState {
    trace: Option<Trace>,
    connected: BTreeSet<u32>,
    last_close: Option<(Instant, GatewayClose)>,
}

impl GatewayWatch {
    /// The watch of the [`GatewayCloseLayer`] of this process's subscriber; a watch of its
    /// own (that sees no close codes) where there is none.
    pub fn of_subscriber() -> GatewayWatch {
        tracing::dispatcher::get_default(|dispatch| {
            dispatch
                .downcast_ref::<GatewayCloseLayer>()
                .map(|layer| layer.watch.clone())
        })
        .unwrap_or_default()
    }

    fn state(&self) -> Option<MutexGuard<'_, GatewayState>> {
        self.state.lock().ok()
    }

    /// Reports on `trace` from now on (none: stop reporting), with no shard connected.
    pub(super) fn attach(&self, trace: Option<Trace>) {
        if let Some(mut state) = self.state() {
            state.trace = trace;
            state.connected.clear();
        }
    }

    /// The last close seen within `within`, if any.
    pub(super) fn last_close(&self, within: Duration) -> Option<GatewayClose> {
        let state = self.state()?;
        state
            .last_close
            .as_ref()
            .filter(|(at, _)| at.elapsed() <= within)
            .map(|(_, close)| close.clone())
    }

    fn closed(&self, close: GatewayClose) {
        if let Some(mut state) = self.state() {
            state.last_close = Some((Instant::now(), close.clone()));
        }
        let reason = if close.reason.is_empty() {
            "gateway closed the connection".to_owned()
        } else {
            close.reason
        };
        self.shard_down(None, close.code, reason);
    }

    /// Marks the shard connected; true when it already was.
    pub(super) fn shard_up(&self, shard: u32) -> bool {
        self.state()
            .map(|mut state| !state.connected.insert(shard))
            .unwrap_or(false)
    }

    /// Reports a connected shard as down, once. `None` means "the shard whose connection
    /// closed", which is unambiguous only while a single shard is connected.
    pub(super) fn shard_down(&self, shard: Option<u32>, code: Option<u16>, reason: String) {
        let Some(mut state) = self.state() else {
            return;
        };
        let shard = match shard {
            Some(s) if state.connected.remove(&s) => Some(s),
            Some(_) => return,
            None if state.connected.len() == 1 => state.connected.pop_first(),
            None if state.connected.is_empty() => return,
            None => None,
        };
        tracing::warn!(?shard, ?code, %reason, "gateway connection down");
        if let Some(trace) = &state.trace {
            trace.emit(
                None,
                TraceKind::GatewayDown {
                    shard,
                    code,
                    reason,
                },
            );
        }
    }
}

/// Reads close codes from serenity's `handle_gateway_closed` span, and a missed heartbeat
/// from its warning, into its [`GatewayWatch`].
#[derive(Default)]
pub struct GatewayCloseLayer {
    watch: GatewayWatch,
}

impl GatewayCloseLayer {
    /// The filter to attach: only serenity's gateway spans reach the layer.
    pub fn filter() -> tracing_subscriber::filter::Targets {
        tracing_subscriber::filter::Targets::new()
            .with_target("serenity::gateway", tracing::Level::INFO)
    }
}

#[derive(Default)]
struct DebugFields {
    data: String,
    message: String,
}

impl Visit for DebugFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "data" => self.data = format!("{value:?}"),
            "message" => self.message = format!("{value:?}"),
            _ => {}
        }
    }
}

impl<S: Subscriber> Layer<S> for GatewayCloseLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: LayerContext<'_, S>) {
        if attrs.metadata().name() != "handle_gateway_closed" {
            return;
        }
        let mut fields = DebugFields::default();
        attrs.record(&mut fields);
        self.watch.closed(parse_close_frame(&fields.data));
    }

    fn on_event(&self, event: &tracing::Event<'_>, _ctx: LayerContext<'_, S>) {
        // A missed heartbeat ACK makes serenity restart the shard without any close frame or
        // stage change; this warning is the only sign of it.
        let mut fields = DebugFields::default();
        event.record(&mut fields);
        if fields.message.contains("Error heartbeating") {
            self.watch.shard_down(
                parse_shard_id(&fields.message),
                None,
                "heartbeat not acknowledged; reconnecting".into(),
            );
        }
    }
}

fn parse_shard_id(text: &str) -> Option<u32> {
    text.split("ShardId(")
        .nth(1)?
        .split(')')
        .next()?
        .parse()
        .ok()
}

/// Reads `Some(CloseFrame { code: Library(4004), reason: "…" })` as tungstenite prints it.
fn parse_close_frame(text: &str) -> GatewayClose {
    let code = text.split("code: ").nth(1).and_then(|rest| {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        let number: String = rest
            .chars()
            .skip(name.len())
            .skip_while(|c| *c == '(')
            .take_while(|c| c.is_ascii_digit())
            .collect();
        number.parse::<u16>().ok().or(match name.as_str() {
            "Normal" => Some(1000),
            "Away" => Some(1001),
            "Protocol" => Some(1002),
            "Unsupported" => Some(1003),
            "Status" => Some(1005),
            "Abnormal" => Some(1006),
            "Invalid" => Some(1007),
            "Policy" => Some(1008),
            "Size" => Some(1009),
            "Extension" => Some(1010),
            "Error" => Some(1011),
            "Restart" => Some(1012),
            "Again" => Some(1013),
            "Tls" => Some(1015),
            _ => None,
        })
    });
    let reason = text
        .split("reason: \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned();
    GatewayClose { code, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_frames_parse() {
        assert_eq!(
            parse_close_frame(
                r#"Some(CloseFrame { code: Library(4004), reason: "Authentication failed." })"#
            ),
            GatewayClose {
                code: Some(4004),
                reason: "Authentication failed.".into()
            }
        );
        assert_eq!(
            parse_close_frame(r#"Some(CloseFrame { code: Normal, reason: "" })"#).code,
            Some(1000)
        );
        assert_eq!(parse_close_frame("None").code, None);
    }
}
