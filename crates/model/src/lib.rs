//! The words every part of notifyscope shares, with no I/O: the payload [`contract`], the
//! [`trace`] vocabulary every stage reports in, validated [`identifier`]s, the classes of
//! database errors ([`error_class`]), the [`check`]s of the failure table, the kinds of
//! simulated messages ([`sim`]), and the one text of each of them ([`present`], [`text`]).
//! It depends on neither the terminal nor the database.

pub mod check;
pub mod contract;
pub mod error_class;
pub mod identifier;
pub mod present;
pub mod round;
pub mod sim;
pub mod text;
pub mod trace;
