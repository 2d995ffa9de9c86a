//! notifyscope: a live monitor for the pipeline
//! Discord message → bot → filter → publish (outbox + NOTIFY) → LISTEN → ingestion.
//!
//! The layers are crates, and the compiler keeps their floors:
//! - `notifyscope-model`: the payload contract, the trace vocabulary, checks, identifiers and
//!   error classes; no I/O.
//! - `notifyscope-store`: PostgreSQL (connections, migrations, queries, actions).
//! - `notifyscope-pipeline`: the stages, the sources and the tap of someone else's pipeline;
//!   it reports every stage on the trace stream.
//! - `notifyscope-diagnose`: the checks, judged from the trace and the server's views.
//! - `notifyscope-screen` (with `notifyscope-widgets`): the terminal monitor; it reads the
//!   trace and the checks, and never talks to PostgreSQL.
//! - `notifyscope-bench`: the benchmark and soak.
//!
//! This crate is the command line ([`cli`]) and the [`commands`] that wire the layers
//! together; it neither draws nor queries by itself. The layers are re-exported under their
//! old module names for the tests and benches.

pub mod cli;
pub mod commands;

pub use notifyscope_bench as bench;
pub use notifyscope_diagnose as diagnose;
pub use notifyscope_model::{check, contract, present, trace};
pub use notifyscope_pipeline as pipeline;
pub use notifyscope_pipeline::{metrics, recording};
pub use notifyscope_screen as screen;
pub use notifyscope_store as store;
