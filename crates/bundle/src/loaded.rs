//! The loaded bundle: immutable, columnar, aligned to the session grid, shared by workers.

use std::path::Path;

use chrono::NaiveDate;
use rusqlite::Connection;

use crate::data::{BundleData, Dividend, Frequency, Split};
use crate::error::{Error, Result};
use crate::store;

/// One column of per-bar values. Raw fields are as stored; `Adj*` are back-adjusted for
/// splits and dividends, which is what strategies trade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Field {
    /// Raw open.
    Open,
    /// Raw high.
    High,
    /// Raw low.
    Low,
    /// Raw close.
    Close,
    /// Raw volume.
    Volume,
    /// Back-adjusted open.
    AdjOpen,
    /// Back-adjusted high.
    AdjHigh,
    /// Back-adjusted low.
    AdjLow,
    /// Back-adjusted close.
    AdjClose,
    /// Split-adjusted volume.
    AdjVolume,
}

impl Field {
    /// Every field, in storage order.
    pub const ALL: [Field; 10] = [
        Field::Open,
        Field::High,
        Field::Low,
        Field::Close,
        Field::Volume,
        Field::AdjOpen,
        Field::AdjHigh,
        Field::AdjLow,
        Field::AdjClose,
        Field::AdjVolume,
    ];
}

/// An asset of a loaded bundle.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Asset {
    /// Sid, equal to the asset's index.
    pub sid: u32,
    /// Ticker symbol.
    pub symbol: String,
    /// Listing exchange.
    pub exchange: String,
    /// Shares outstanding in current shares (0 when unknown).
    pub shares_outstanding: f64,
    /// Global bar index of the asset's first bar.
    pub first_bar: usize,
    /// One past the global bar index of its last bar. Bars in between are all present.
    pub end_bar: usize,
    /// Date of the first session it trades.
    pub first_session: NaiveDate,
    /// Date of the last session it trades.
    pub last_session: NaiveDate,
}

impl Asset {
    /// Number of bars.
    pub fn bars(&self) -> usize {
        self.end_bar - self.first_bar
    }
}

/// A bundle loaded into memory: per asset, one contiguous `f64` array per [`Field`], each as
/// long as the bundle's whole bar grid, `NaN` outside the asset's `first_bar..end_bar`.
///
/// It is built once and never mutated, so forked workers share its pages copy-on-write and
/// threads share it through `Arc` (it is `Send + Sync`). It holds no SQLite handle; those are
/// [`Handles`], kept apart because `rusqlite::Connection` is not `Sync`.
#[derive(Debug)]
pub struct Bundle {
    frequency: Frequency,
    content_hash: String,
    provenance: String,
    sessions: Vec<NaiveDate>,
    session_bounds: Vec<usize>,
    assets: Vec<Asset>,
    splits: Vec<Split>,
    dividends: Vec<Dividend>,
    /// Layout `[asset][field][bar]`, `n_bars` values per column.
    values: Values,
    n_bars: usize,
}

/// Where the column values live: on the heap (loaded from SQLite), or in a read-only map of
/// the bundle's columnar cache file (see [`crate::cache`]).
#[derive(Debug)]
enum Values {
    Owned(Box<[f64]>),
    Mapped { map: memmap2::Mmap, offset: usize, len: usize },
}

impl Values {
    fn as_slice(&self) -> &[f64] {
        match self {
            Values::Owned(v) => v,
            Values::Mapped { map, offset, len } => {
                let bytes = &map[*offset..*offset + *len * 8];
                // SAFETY: any bit pattern is a valid f64; the cache writer places the values at
                // an 8-aligned offset of a page-aligned map (checked in `from_mapped`), and the
                // format is little-endian, which `from_mapped` requires of the target.
                let (pre, values, post) = unsafe { bytes.align_to::<f64>() };
                debug_assert!(pre.is_empty() && post.is_empty());
                values
            }
        }
    }
}

impl Bundle {
    /// Loads the bundle at `dir` into memory.
    ///
    /// Checks the structure but does not recompute the content hash (that is `verify`'s job);
    /// it does validate every bar, because a wrong backtest is worse than none.
    pub fn load(dir: &Path) -> Result<Bundle> {
        let (meta, data) = store::read(dir)?;
        data.validate(dir)?;
        Ok(Bundle::from_data(&data, meta.content_hash, meta.provenance))
    }

    /// Builds the in-memory form from canonical content (already validated).
    pub fn from_data(data: &BundleData, content_hash: String, provenance: String) -> Bundle {
        let session_bounds = data.session_bounds();
        let n_bars = *session_bounds.last().expect("bounds are non-empty");
        let nf = Field::ALL.len();
        // Huge pages: the 2024 minute bundle's 55 MB took 13,000 small page faults.
        let mut values = hugemem::filled(data.assets.len() * nf * n_bars, f64::NAN).into_boxed_slice();
        let mut assets = Vec::with_capacity(data.assets.len());
        for (sid, (def, raw)) in data.assets.iter().zip(&data.bars).enumerate() {
            let adj = data.adjustment(sid as u32);
            let base = sid * nf * n_bars;
            let (lo, hi) = (raw.first_bar, raw.end_bar());
            let col = |f: Field| base + f as usize * n_bars;
            let cols: [(&[f64], Field, Field, &[f64]); 5] = [
                (&raw.open, Field::Open, Field::AdjOpen, &adj.price),
                (&raw.high, Field::High, Field::AdjHigh, &adj.price),
                (&raw.low, Field::Low, Field::AdjLow, &adj.price),
                (&raw.close, Field::Close, Field::AdjClose, &adj.price),
                (&raw.volume, Field::Volume, Field::AdjVolume, &adj.volume),
            ];
            for (src, f_raw, f_adj, mult) in cols {
                values[col(f_raw) + lo..col(f_raw) + hi].copy_from_slice(src);
                for (dst, (v, m)) in values[col(f_adj) + lo..col(f_adj) + hi].iter_mut().zip(src.iter().zip(mult)) {
                    *dst = v * m;
                }
            }
            let session_of = |bar: usize| data.sessions[session_bounds.partition_point(|&b| b <= bar) - 1];
            assets.push(Asset {
                sid: sid as u32,
                symbol: def.symbol.clone(),
                exchange: def.exchange.clone(),
                shares_outstanding: def.shares_outstanding,
                first_bar: lo,
                end_bar: hi,
                first_session: session_of(lo),
                last_session: session_of(hi - 1),
            });
        }
        Bundle {
            frequency: data.frequency,
            content_hash,
            provenance,
            sessions: data.sessions.clone(),
            session_bounds,
            assets,
            splits: data.splits.clone(),
            dividends: data.dividends.clone(),
            values: Values::Owned(values),
            n_bars,
        }
    }

    /// Rebuilds a bundle around a read-only map of its columnar cache file.
    pub(crate) fn from_mapped(
        header: crate::cache::Header,
        map: memmap2::Mmap,
        offset: usize,
        path: &Path,
    ) -> Result<Bundle> {
        let len = header.assets.len() * Field::ALL.len() * header.n_bars;
        let fits = offset.checked_add(len * 8).is_some_and(|end| end <= map.len());
        let aligned = (map.as_ptr() as usize + offset).is_multiple_of(std::mem::align_of::<f64>());
        if !cfg!(target_endian = "little") || !fits || !aligned {
            return Err(Error::at_path(
                path,
                format!("columnar cache is truncated, misaligned or foreign; {}", crate::cache::REMEDY),
            ));
        }
        let session_bounds = crate::data::session_bounds(header.frequency, &header.sessions);
        if session_bounds.last() != Some(&header.n_bars) {
            return Err(Error::at_path(
                path,
                format!("columnar cache header is inconsistent; {}", crate::cache::REMEDY),
            ));
        }
        Ok(Bundle {
            frequency: header.frequency,
            content_hash: header.content_hash,
            provenance: header.provenance,
            sessions: header.sessions,
            session_bounds,
            assets: header.assets,
            splits: header.splits,
            dividends: header.dividends,
            values: Values::Mapped { map, offset, len },
            n_bars: header.n_bars,
        })
    }

    /// This bundle with its columns in this process's own memory (huge pages where the
    /// kernel gives them), copied out of the map if it is mapped. That is what the engine
    /// reads fastest: a mapped file is faulted in small pages, again by every process that
    /// reads it (a forked worker inherits no page table entries of a file map), and each
    /// small page costs a TLB entry.
    pub(crate) fn into_owned(self) -> Bundle {
        if !self.is_mapped() {
            return self;
        }
        let values = Values::Owned(hugemem::copied(self.values.as_slice()).into_boxed_slice());
        Bundle { values, ..self }
    }

    /// All column values in storage order `[asset][field][bar]`, for the cache writer.
    pub(crate) fn raw_values(&self) -> &[f64] {
        self.values.as_slice()
    }

    /// Whether the columns are a map of the cache file rather than heap memory.
    pub fn is_mapped(&self) -> bool {
        matches!(self.values, Values::Mapped { .. })
    }

    /// Bar frequency.
    pub fn frequency(&self) -> Frequency {
        self.frequency
    }
    /// Content hash recorded in the bundle's metadata.
    pub fn content_hash(&self) -> &str {
        &self.content_hash
    }
    /// Where the data came from.
    pub fn provenance(&self) -> &str {
        &self.provenance
    }
    /// Calendar sessions, ascending.
    pub fn sessions(&self) -> &[NaiveDate] {
        &self.sessions
    }
    /// Bar offset of each session's first bar; `len = sessions + 1`, last = [`Bundle::n_bars`].
    pub fn session_bounds(&self) -> &[usize] {
        &self.session_bounds
    }
    /// Total bars on the grid (sessions × bars per session).
    pub fn n_bars(&self) -> usize {
        self.n_bars
    }
    /// Assets, indexed by sid.
    pub fn assets(&self) -> &[Asset] {
        &self.assets
    }
    /// Splits, sorted by (sid, date).
    pub fn splits(&self) -> &[Split] {
        &self.splits
    }
    /// Dividends, sorted by (sid, date).
    pub fn dividends(&self) -> &[Dividend] {
        &self.dividends
    }
    /// One column of one asset over the whole bar grid (`NaN` where it does not trade).
    pub fn column(&self, sid: u32, field: Field) -> &[f64] {
        let start = (sid as usize * Field::ALL.len() + field as usize) * self.n_bars;
        &self.values.as_slice()[start..start + self.n_bars]
    }
    /// Bytes of bar data held in memory (all columns of all assets).
    pub fn value_bytes(&self) -> usize {
        std::mem::size_of_val(self.values.as_slice())
    }
    /// Index of the first session on or after `date`.
    pub fn session_at_or_after(&self, date: NaiveDate) -> usize {
        self.sessions.partition_point(|s| *s < date)
    }
}

/// Read-only `immutable=1` SQLite handles on a bundle's three databases.
///
/// Opened once, before workers fork, so that forked children can inherit and use them
/// without reopening. This is sound only because the files never change, the handles never
/// take a lock, and a child never closes them (it leaves with `_exit`). See the "SQLite across
/// fork" section of docs/ARCHITECTURE.md.
#[derive(Debug)]
pub struct Handles {
    frequency: Frequency,
    /// `assets.sqlite`.
    pub assets: Connection,
    /// `adjustments.sqlite`.
    pub adjustments: Connection,
    /// `daily_bars.sqlite` or `minute_bars.sqlite`.
    pub bars: Connection,
}

impl Handles {
    /// Opens the three databases of the bundle at `dir`.
    pub fn open(dir: &Path) -> Result<Handles> {
        let meta = store::read_metadata(dir)?;
        Ok(Handles {
            frequency: meta.frequency,
            assets: store::open_immutable(&dir.join(store::ASSETS_DB))?,
            adjustments: store::open_immutable(&dir.join(store::ADJUSTMENTS_DB))?,
            bars: store::open_immutable(&dir.join(store::bars_db(meta.frequency)))?,
        })
    }

    /// Raw closes of one asset, read through the bars handle in session order. Used to check
    /// that inherited handles read correctly from many processes at once.
    pub fn raw_closes(&self, sid: u32) -> Result<Vec<f64>> {
        let sq = |e| Error::sqlite("bars database", e);
        let mut out = Vec::new();
        match self.frequency {
            Frequency::Daily => {
                let mut st =
                    self.bars.prepare_cached("SELECT close FROM daily_bars WHERE sid = ?1 ORDER BY day").map_err(sq)?;
                let rows = st.query_map([sid], |r| r.get::<_, f64>(0)).map_err(sq)?;
                for r in rows {
                    out.push(r.map_err(sq)?);
                }
            }
            Frequency::Minute => {
                let mut st = self
                    .bars
                    .prepare_cached("SELECT close FROM minute_bars WHERE sid = ?1 ORDER BY session")
                    .map_err(sq)?;
                let mut rows = st.query([sid]).map_err(sq)?;
                while let Some(r) = rows.next().map_err(sq)? {
                    let blob = r.get_ref(0).map_err(sq)?.as_blob().map_err(|e| sq(e.into()))?;
                    out.extend(blob.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))));
                }
            }
        }
        Ok(out)
    }
}
