//! End-to-end tests across crates: bundles written, read back in every way, and backtested.

mod backtests;
