//! Checks of a recorded [`crate::history::History`].
