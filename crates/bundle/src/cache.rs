//! The columnar cache: a loaded bundle's columns in one file that processes map read-only.
//!
//! A spawned worker cannot inherit the parent's memory, so instead of each one loading the
//! SQLite files into private memory it maps this file: every worker then shares the same
//! page-cache pages, as forked workers share the parent's. The file lives inside the bundle
//! directory (never in a predictable /tmp path), is named after the content hash, and is
//! written once, atomically (temporary file + rename). It is never modified afterwards, which
//! is what makes mapping it sound.
//!
//! ```text
//! 0      16-byte magic, format version in the last byte
//! 16     u64 LE: length of the JSON header
//! 24     JSON header: frequency, sessions, assets, adjustments, content hash, n_bars
//! 4096·k values as little-endian f64, layout [asset][field][bar] (page aligned)
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::data::{Dividend, Frequency, Split};
use crate::error::{Error, Result};
use crate::loaded::{Asset, Bundle};
use crate::store;

const MAGIC: &[u8; 16] = b"BTOPT-COLUMNS\0\0\x01";
const ALIGN: usize = 4096;

/// Everything but the values, as stored in the cache file's header.
#[derive(Serialize, Deserialize)]
pub(crate) struct Header {
    pub(crate) content_hash: String,
    pub(crate) provenance: String,
    pub(crate) frequency: Frequency,
    pub(crate) sessions: Vec<NaiveDate>,
    pub(crate) assets: Vec<Asset>,
    pub(crate) splits: Vec<Split>,
    pub(crate) dividends: Vec<Dividend>,
    pub(crate) n_bars: usize,
}

/// Path of the cache file for the bundle at `dir` with content hash `hash`.
pub fn cache_path(dir: &Path, hash: &str) -> PathBuf {
    dir.join(format!("columns-{}.btcol", &hash[..hash.len().min(32)]))
}

/// Writes the cache file for `bundle` into `dir` unless it already exists. Returns its path.
pub fn write_cache(bundle: &Bundle, dir: &Path) -> Result<PathBuf> {
    let path = cache_path(dir, bundle.content_hash());
    if path.exists() {
        return Ok(path);
    }
    let header = Header {
        content_hash: bundle.content_hash().to_string(),
        provenance: bundle.provenance().to_string(),
        frequency: bundle.frequency(),
        sessions: bundle.sessions().to_vec(),
        assets: bundle.assets().to_vec(),
        splits: bundle.splits().to_vec(),
        dividends: bundle.dividends().to_vec(),
        n_bars: bundle.n_bars(),
    };
    let json = serde_json::to_vec(&header).map_err(|e| Error::at_path(&path, format!("cache header: {e}")))?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let tmp = dir.join(format!(".columns.tmp-{}-{nanos}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create_new(&tmp)?);
        f.write_all(MAGIC)?;
        f.write_all(&(json.len() as u64).to_le_bytes())?;
        f.write_all(&json)?;
        let at = MAGIC.len() + 8 + json.len();
        f.write_all(&vec![0u8; at.next_multiple_of(ALIGN) - at])?;
        for v in bundle.raw_values() {
            f.write_all(&v.to_le_bytes())?;
        }
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        drop(f);
        if path.exists() {
            // Another process published the same content first; keep theirs.
            std::fs::remove_file(&tmp)
        } else {
            std::fs::rename(&tmp, &path)
        }
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&path, e));
    }
    Ok(path)
}

impl Bundle {
    /// Opens the bundle at `dir` the cheapest sound way for a process that runs backtests:
    /// from its columnar cache when it has one (a copy of the mapped columns into this
    /// process's memory, in huge pages where the kernel gives them: nothing is parsed or
    /// checked again, since the cache is what a checked load wrote, and the engine reads the
    /// copy as fast as a loaded bundle); otherwise loaded, and the cache written for the next
    /// process. Returns the bundle and, when the cache could not be written (a read-only
    /// directory, say), why: the bundle is good all the same.
    pub fn open_cached(dir: &Path) -> Result<(Bundle, Option<Error>)> {
        let meta = store::read_metadata(dir)?;
        let path = cache_path(dir, &meta.content_hash);
        if path.exists() {
            return Ok((map_cache(&path, &meta.content_hash)?.into_owned(), None));
        }
        let loaded = Bundle::load(dir)?;
        let unwritten = write_cache(&loaded, dir).err();
        Ok((loaded, unwritten))
    }

    /// Opens the bundle at `dir` through its columnar cache, mapped read-only, writing the
    /// cache first (from a normal load) if it does not exist yet.
    pub fn open_mapped(dir: &Path) -> Result<Bundle> {
        let meta = store::read_metadata(dir)?;
        let path = cache_path(dir, &meta.content_hash);
        if !path.exists() {
            let loaded = Bundle::load(dir)?;
            write_cache(&loaded, dir)?;
        }
        map_cache(&path, &meta.content_hash)
    }
}

/// What an unreadable cache file's error ends with: the file is only ever a copy.
pub(crate) const REMEDY: &str = "delete it and the next run loads the bundle";

/// Maps the cache file at `path` of the bundle whose content hash is `hash`.
fn map_cache(path: &Path, hash: &str) -> Result<Bundle> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the cache file is written once under a temporary name and renamed into
    // place; nothing writes to it afterwards, so the map cannot change underneath us.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let bad = || Error::at_path(path, format!("not a btopt columnar cache, or truncated; {REMEDY}"));
    if map.len() < MAGIC.len() + 8 || &map[..MAGIC.len()] != MAGIC {
        return Err(bad());
    }
    let len = u64::from_le_bytes(map[16..24].try_into().expect("8 bytes")) as usize;
    let json = map.get(24..24usize.saturating_add(len)).ok_or_else(bad)?;
    let header: Header = serde_json::from_slice(json).map_err(|_| bad())?;
    if header.content_hash != hash {
        return Err(Error::at_path(path, format!("columnar cache belongs to other content; {REMEDY}")));
    }
    let offset = (24 + len).next_multiple_of(ALIGN);
    Bundle::from_mapped(header, map, offset, path)
}
