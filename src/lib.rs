//! notifyscope: a live monitor for the pipeline
//! Discord message → bot → filter → publish (outbox + NOTIFY) → LISTEN → ingestion.
//!
//! Data flows one way: sources ([`pipeline::bot`], [`pipeline::synthetic`]) feed the
//! [`pipeline`], the pipeline reports every stage on the [`trace`] stream, and consumers
//! ([`recording`], [`diagnose`], [`screen`], [`metrics`]) read only that stream (and
//! the diagnosis reports). [`commands`] wires them
//! together for each subcommand. Below everything sit the payload [`contract`] and the
//! database ([`store`]); [`present`] holds the one text of each trace event.

pub mod cli;
pub mod commands;
pub mod contract;
pub mod diagnose;
pub mod metrics;
pub mod pipeline;
pub mod present;
pub mod recording;
pub mod screen;
pub mod store;
pub mod trace;
