//! notifyscope: a live monitor for the pipeline
//! Discord message → bot → filter → publish (outbox + NOTIFY) → LISTEN → ingestion.
//!
//! Sources feed the pipeline, the pipeline reports every stage on the [`trace`] stream, and
//! consumers (headless output, recorder, diagnosis, the screen) read only that stream.

pub mod app;
pub mod bench;
pub mod bot;
pub mod cli;
pub mod commands;
pub mod control;
pub mod diagnose;
pub mod doctor;
pub mod embedded;
pub mod event;
pub mod filter;
pub mod ingest;
pub mod keys;
pub mod listen;
pub mod output;
pub mod pipeline;
pub mod publish;
pub mod record;
pub mod selftest;
pub mod store;
pub mod synthetic;
pub mod theme;
pub mod trace;
pub mod tui;
pub mod ui;
pub mod watch;
