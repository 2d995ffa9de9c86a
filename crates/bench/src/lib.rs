//! The benchmark and soak behind `notifyscope bench`: synthetic Discord messages through the
//! real path (bot path → filter → publisher → outbox + NOTIFY → listener → ingestion → row),
//! in a schema of its own that is dropped afterwards, with throughput, latencies per stage,
//! and a count of what was lost or delivered twice. [`engine`] drives the messages, [`seen`]
//! times them from the trace, [`report`] sums up, [`soak`] runs for a duration and judges
//! drift.

pub mod engine;
pub mod report;
mod seen;
pub mod soak;

pub use engine::{run, BenchError, BenchOptions};
pub use report::{BenchReport, Percentiles, JSON_KEYS};
