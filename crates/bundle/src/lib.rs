//! Market-data bundles: write them once, load them many times, share them across workers.
//!
//! A bundle is a zipline-style directory of SQLite databases (assets and calendar,
//! adjustments, bars) that is immutable once written. This crate is the only place in btopt
//! that knows the format or opens SQLite on a bundle. It provides:
//!
//! - [`generate`]: deterministic synthetic bundles (the mag-7 stocks, or a broad universe);
//! - [`csvdir`]: ingest from, and export to, zipline's csvdir layout;
//! - [`store`]: the on-disk format, written atomically and opened read-only with `immutable=1`;
//! - [`Bundle`]: the loaded, immutable, columnar in-memory form that workers share
//!   copy-on-write, with raw and back-adjusted OHLCV per asset aligned to the session grid;
//! - [`Handles`]: the read-only SQLite handles that forked workers may inherit;
//! - [`cache`]: the columnar cache file beside a bundle's databases, which spawned workers map
//!   ([`Bundle::open_mapped`]) and `optimize` and `worker` read instead of the SQLite bars
//!   ([`Bundle::open_cached`]);
//! - [`calendar`]: the XNYS calendar for 2000–2030;
//! - [`summary`]: `bundle info` and `bundle verify`.
//!
//! It knows nothing about strategies, worker pools or optimizers.
//!
//! ```no_run
//! use bundle::{Bundle, Frequency, GenerateSpec};
//! # fn main() -> Result<(), bundle::Error> {
//! let data = bundle::generate::generate(&GenerateSpec::mag7(Frequency::Daily))?;
//! bundle::store::write(&data, "mag7-daily".as_ref())?;
//! let loaded = Bundle::load("mag7-daily".as_ref())?;
//! let aapl_close = loaded.column(0, bundle::Field::AdjClose);
//! # let _ = aapl_close; Ok(()) }
//! ```

pub mod cache;
pub mod calendar;
pub mod csvdir;
mod data;
mod error;
pub mod generate;
mod loaded;
pub mod store;
pub mod summary;

pub use data::{AssetDef, BundleData, Dividend, Frequency, RawBars, Split, session_bounds};
pub use error::{Error, Result};
pub use generate::{GenerateSpec, Preset};
pub use loaded::{Asset, Bundle, Field, Handles};
pub use summary::BundleSummary;
