//! Placeholder; see the validator task.
