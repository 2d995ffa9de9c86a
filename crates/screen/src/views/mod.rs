//! The views the monitor's state is made of, each with its own update and footer hints; the
//! [`crate::app::App`] routes to them.

pub mod health;
pub mod layers;
pub mod stages;
pub mod status;
