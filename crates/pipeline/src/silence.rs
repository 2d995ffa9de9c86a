//! Saying that a connection went silent: a log line and the `connection_silent` trace event
//! that the diagnosis, the screen and the metrics read.

use notifyscope_model::trace::{Trace, TraceKind};
use notifyscope_store::deadline::Silence;

/// `role`'s connection missed its deadline and was dropped; `replaced` when a new one takes
/// its place without waiting (a pool's next checkout).
pub(crate) fn report(trace: &Trace, role: &str, silence: &Silence, replaced: bool) {
    tracing::warn!(
        role,
        target = %silence.target,
        during = silence.during,
        waited_ms = silence.waited.as_millis() as u64,
        "{role}: {silence}; dropped{}",
        if replaced { " and replaced" } else { "" }
    );
    trace.emit(
        None,
        TraceKind::ConnectionSilent {
            role: role.to_owned(),
            target: silence.target.clone(),
            silent_ms: silence.waited.as_secs_f64() * 1e3,
            during: silence.during.to_owned(),
            replaced,
        },
    );
}
