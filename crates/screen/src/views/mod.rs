//! The views the monitor's state is made of, each with its own update and footer hints; the
//! [`crate::app::App`] routes to them.

pub mod health;
pub mod layers;
pub mod stages;
pub mod status;

use crate::detail::Overlay;
use crate::events::Effect;
use notifyscope_model::contract::Snowflake;

/// What a view's update asks of the app beyond the view's own state.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Done, nothing to do, or not an action of this view.
    Nothing,
    Effect(Effect),
    Toast(String),
    Open(Overlay),
    /// Follow this message across the stage panes (or stop, when it is followed already).
    Follow(Snowflake),
}
