//! Options of `notifyscope bench`.

use clap::{Args, ValueEnum};

use notifyscope_pipeline::publish::NotifyMode;

use super::{BenchPipeline, OUTPUT, PIPELINE};

/// Options of `notifyscope bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub target: BenchPipeline,
    /// Messages to send.
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000), help_heading = PIPELINE)]
    pub messages: u64,
    /// Send at this many messages a second (a latency run). Without it, messages go as fast
    /// as the pipeline takes them (a throughput run).
    #[arg(long, value_name = "R", value_parser = parse_rate, help_heading = PIPELINE)]
    pub rate: Option<f64>,
    /// Senders putting messages through the bot path at once, as concurrent Discord event
    /// handlers do. More senders give the publisher larger batches to commit together.
    #[arg(long, value_name = "N", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..=100_000), help_heading = PIPELINE)]
    pub publishers: u32,
    /// Ingestion workers.
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..=64), help_heading = PIPELINE)]
    pub workers: u16,
    /// How committed batches are announced: a NOTIFY per event (as `run` does) or one per
    /// batch (the wake-up only; ingestion reads the rows).
    #[arg(long, value_enum, default_value_t = BenchNotify::PerEvent, help_heading = PIPELINE)]
    pub notify: BenchNotify,
    /// A soak run: send at --rate for this long (e.g. `10m`) instead of --messages, and
    /// report throughput, latency, RSS, CPU and outbox size per window; exit 1 when RSS or
    /// p99 drift beyond their bounds.
    #[arg(long, value_name = "AGE", value_parser = parse_duration, requires = "rate",
          help_heading = PIPELINE)]
    pub duration: Option<std::time::Duration>,
    /// With --duration: the length of one window of the report.
    #[arg(long, value_name = "AGE", default_value = "1m", value_parser = parse_duration,
          help_heading = PIPELINE)]
    pub report_every: std::time::Duration,
    /// With --duration: how long ingested outbox rows are kept (as `run --outbox-retention`),
    /// so that a soak shows the outbox staying bounded.
    #[arg(long, value_name = "AGE", default_value = "24h", help_heading = PIPELINE)]
    pub outbox_retention: notifyscope_pipeline::retention::Retention,
    /// Give up waiting for ingestion after this many seconds without progress.
    #[arg(long, default_value_t = 30, value_name = "S", help_heading = PIPELINE)]
    pub stall_timeout: u64,
    /// Print one JSON object with the results (no progress bar).
    #[arg(long, help_heading = OUTPUT)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchNotify {
    PerEvent,
    PerBatch,
}

impl From<BenchNotify> for NotifyMode {
    fn from(n: BenchNotify) -> Self {
        match n {
            BenchNotify::PerEvent => NotifyMode::PerEvent,
            BenchNotify::PerBatch => NotifyMode::PerBatch,
        }
    }
}

/// A length of time such as `90s`, `10m` or `1h`, above zero.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    match s.parse::<notifyscope_pipeline::retention::Retention>() {
        Ok(notifyscope_pipeline::retention::Retention::For(d)) if !d.is_zero() => Ok(d),
        _ => Err(format!(
            "{s:?} is not a length of time above zero, such as 90s, 10m or 1h"
        )),
    }
}

/// A rate of messages a second: a number above zero.
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{s:?} is not a number of messages a second above zero"
        )),
    }
}
