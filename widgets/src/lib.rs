//! Pane widgets of notifyscope.
