//! The terminal monitor. [`app`] holds the state, made of [`views`], and changes it on keys
//! and trace events; [`draw`] only reads it; [`event_loop`] runs the one `select!` loop and
//! carries out the [`effects`] the state asks for, the ones beyond the screen through the
//! [`effects::Outside`] its command hands over. This crate never talks to PostgreSQL. The
//! panes are one table ([`pane`]); keys and the config file, the theme, search and overlays
//! have a file each.

pub mod app;
pub mod config;
pub mod detail;
pub mod draw;
pub mod effects;
pub mod event_loop;
pub mod events;
pub mod keys;
pub mod logs;
pub mod pane;
pub mod rows;
pub mod search;
pub mod theme;
pub mod views;
