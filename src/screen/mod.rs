//! The terminal monitor. [`app`] holds the state and changes it on keys and trace events;
//! [`draw`] only reads it; [`event_loop`] runs the one `select!` loop and carries out the
//! [`effects`] the state asks for, through the pipeline's handles (the screen never writes
//! SQL). Keys and the config file, the theme, panes, search and overlays have a file each.

pub mod app;
pub mod config;
pub mod detail;
pub mod draw;
pub mod effects;
pub mod event_loop;
pub mod keys;
pub mod logs;
pub mod pane;
pub mod search;
pub mod theme;
