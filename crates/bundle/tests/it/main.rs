//! Integration tests of the bundle crate.
