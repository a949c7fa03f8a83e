//! pool: filled in by its own issue.
