//! End-to-end tests across crates: bundles written, read back in every way, and backtested;
//! the same jobs on every pool backend; `btopt optimize` end to end, also under failure;
//! distributed studies on PostgreSQL with a coordinator and `btopt worker` processes.
//!
//! Child binaries: `btopt-e2e` (this package, see `src/bin/btopt-e2e.rs`) and `btopt` (found
//! next to this test binary, see `support::btopt_exe`).

mod backtests;
mod distributed;
mod optimize_cli;
mod optimize_recovery;
mod overfitting_cli;
mod planted_edge;
mod pool_equivalence;
mod shared_tables;
mod support;
mod trials_out;
mod walkforward_cli;
