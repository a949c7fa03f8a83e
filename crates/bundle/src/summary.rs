//! `bundle info` and `bundle verify`: the summary of a bundle, and a full check of it.

use std::path::Path;

use serde::Serialize;

use crate::data::{BundleData, Frequency};
use crate::error::{Error, Result};
use crate::store;

/// One asset in a [`BundleSummary`].
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AssetSummary {
    /// Sid.
    pub sid: u32,
    /// Symbol.
    pub symbol: String,
    /// First session, YYYY-MM-DD.
    pub first: String,
    /// Last session, YYYY-MM-DD.
    pub last: String,
    /// Number of bars.
    pub bars: usize,
}

/// The `bundle info --json` object, field for field as the command-line contract gives it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BundleSummary {
    /// `daily` or `minute`.
    pub frequency: Frequency,
    /// Number of sessions.
    pub sessions: usize,
    /// First session, YYYY-MM-DD.
    pub first_session: String,
    /// Last session, YYYY-MM-DD.
    pub last_session: String,
    /// Content hash recorded in the metadata.
    pub content_hash: String,
    /// Number of splits.
    pub splits: usize,
    /// Number of dividends.
    pub dividends: usize,
    /// Assets in sid order.
    pub assets: Vec<AssetSummary>,
}

impl BundleSummary {
    /// Summarises canonical content, with the hash recorded for it.
    pub fn of(data: &BundleData, content_hash: &str) -> BundleSummary {
        let bounds = data.session_bounds();
        let session_of = |bar: usize| data.sessions[bounds.partition_point(|&b| b <= bar) - 1].to_string();
        BundleSummary {
            frequency: data.frequency,
            sessions: data.sessions.len(),
            first_session: data.sessions[0].to_string(),
            last_session: data.sessions.last().expect("validated non-empty").to_string(),
            content_hash: content_hash.to_string(),
            splits: data.splits.len(),
            dividends: data.dividends.len(),
            assets: data
                .assets
                .iter()
                .zip(&data.bars)
                .enumerate()
                .map(|(sid, (a, b))| AssetSummary {
                    sid: sid as u32,
                    symbol: a.symbol.clone(),
                    first: session_of(b.first_bar),
                    last: session_of(b.end_bar() - 1),
                    bars: b.len(),
                })
                .collect(),
        }
    }

    /// Human-readable form for `bundle info` without `--json`.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "frequency     {}\nsessions      {} ({} .. {})\ncontent_hash  {}\nsplits        {}\ndividends     {}\nassets        {}\n",
            self.frequency.as_str(),
            self.sessions,
            self.first_session,
            self.last_session,
            self.content_hash,
            self.splits,
            self.dividends,
            self.assets.len()
        );
        for a in &self.assets {
            s.push_str(&format!("  {:>4}  {:<8} {} .. {}  {:>9} bars\n", a.sid, a.symbol, a.first, a.last, a.bars));
        }
        s
    }
}

/// Reads the summary of the bundle at `dir`, checking its structure on the way.
pub fn info(dir: &Path) -> Result<BundleSummary> {
    let (meta, data) = store::read(dir)?;
    data.validate(dir)?;
    Ok(BundleSummary::of(&data, &meta.content_hash))
}

/// Checks a bundle completely: SQLite integrity of each file, every invariant of the format,
/// and that the recorded content hash matches the content. Returns the summary.
pub fn verify(dir: &Path) -> Result<BundleSummary> {
    let meta = store::read_metadata(dir)?;
    for name in [store::ASSETS_DB, store::ADJUSTMENTS_DB, store::bars_db(meta.frequency)] {
        let path = dir.join(name);
        let conn = store::open_immutable(&path)?;
        let result: String =
            conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(|e| Error::sqlite(&path, e))?;
        if result != "ok" {
            return Err(Error::at_path(&path, format!("SQLite integrity check failed: {result}")));
        }
    }
    let (meta, data) = store::read(dir)?;
    data.validate(dir)?;
    let actual = data.content_hash();
    if actual != meta.content_hash {
        return Err(Error::at_path(
            dir.join(store::ASSETS_DB),
            format!("content hash mismatch: metadata says {}, content hashes to {actual}", meta.content_hash),
        ));
    }
    Ok(BundleSummary::of(&data, &meta.content_hash))
}
