//! bench-driver's library: the statistics, decisions, reports and plots of btopt's sequential
//! evaluation.
//!
//! The binary (`src/main.rs`) runs the scenarios and measures them; this library turns those
//! measurements into numbers and verdicts and writes them out. It is pure: it starts no
//! processes (apart from asking `rustc -V` and `git rev-parse HEAD` for the report's
//! environment), opens no bundles and knows nothing about pools or optimizers.
//!
//! - [`stats`]: mean, sd and Student-t CIs, Welch's and the paired t-test, the speed-up % with
//!   its CI.
//! - [`decide`]: the guidance's acceptance rules, BOHB's criteria, cumulative tracking and the
//!   stop rule on diminishing returns.
//! - [`report`]: serializable records, and the writers of `report.json`, `runs.csv` and
//!   `report.md`.
//! - [`plots`]: SVG plots (speed-up with CI bars, memory per backend, BOHB convergence).
//!
//! # Example
//! ```
//! use bench_driver::{decide, stats};
//!
//! let baseline = [1.00, 1.02, 0.98, 1.01, 0.99, 1.00, 1.03, 0.97, 1.00, 1.00];
//! let candidate = [0.80, 0.81, 0.79, 0.80, 0.82, 0.78, 0.80, 0.81, 0.79, 0.80];
//! let cmp = stats::compare(&baseline, &candidate, false).unwrap();
//! let verdict = decide::decide(true, Some(&cmp));
//! assert!(verdict.is_accept());
//! assert!((cmp.speedup.pct - 25.0).abs() < 0.5);
//! ```

pub mod decide;
pub mod plots;
pub mod report;
pub mod stats;
