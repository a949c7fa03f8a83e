//! The on-disk format: SQLite files in a directory that is immutable once written.
//!
//! ```text
//! <bundle>/assets.sqlite        bundle_metadata, exchanges, equities, equity_symbol_mappings,
//!                               calendar_sessions
//! <bundle>/adjustments.sqlite   splits(sid, effective_date, ratio), dividends(sid, ex_date, amount)
//! <bundle>/daily_bars.sqlite    daily_bars(sid, day, open, high, low, close, volume)
//!   or minute_bars.sqlite       minute_bars(sid, session, first_minute, open, high, low, close,
//!                               volume), prices as little-endian f64 BLOBs, one row per session
//! ```
//!
//! Dates are ISO `YYYY-MM-DD` text. Minute rows hold a session's bars as BLOBs because one
//! row per minute would make loading the 3.4M-bar mag-7 minute bundle SQLite-bound; one row per
//! (sid, session) loads at memory speed and stays inspectable with the sqlite3 shell.
//!
//! Writers build the whole bundle in a hidden sibling directory and rename it into place, so
//! a reader never sees half a bundle, and `immutable=1` stays sound: no file changes after
//! the rename.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use rusqlite::{Connection, OpenFlags, params};

use crate::calendar;
use crate::data::{AssetDef, BundleData, Dividend, Frequency, RawBars, Split};
use crate::error::{Error, Result};

/// Version of the on-disk format, stored in `bundle_metadata`.
pub const FORMAT_VERSION: &str = "1";

/// File names inside a bundle directory.
pub const ASSETS_DB: &str = "assets.sqlite";
/// Adjustments database file name.
pub const ADJUSTMENTS_DB: &str = "adjustments.sqlite";
/// Daily bars database file name.
pub const DAILY_DB: &str = "daily_bars.sqlite";
/// Minute bars database file name.
pub const MINUTE_DB: &str = "minute_bars.sqlite";

/// The bars database file name for a frequency.
pub fn bars_db(frequency: Frequency) -> &'static str {
    match frequency {
        Frequency::Daily => DAILY_DB,
        Frequency::Minute => MINUTE_DB,
    }
}

/// Opens an existing bundle database read-only with `immutable=1`: no locks, no change
/// detection, so the handle may be shared by forked children (see docs/ARCHITECTURE.md).
///
/// Also rejects what SQLite itself opens lazily: a missing file, a foreign file, and a file
/// shorter than its header says (truncated).
pub fn open_immutable(path: &Path) -> Result<Connection> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::at_path(path, "not a file"));
    }
    let uri = sqlite_uri(path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(&uri, flags).map_err(|e| Error::sqlite(path, e))?;
    let (page_size, page_count): (i64, i64) = conn
        .query_row("SELECT * FROM pragma_page_size, pragma_page_count", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(|e| Error::sqlite(path, e))?;
    if page_count == 0 {
        return Err(Error::at_path(path, "empty file, not a bundle database"));
    }
    if (page_size * page_count) as u64 > meta.len() {
        return Err(Error::at_path(
            path,
            format!("truncated: header says {} bytes, file has {}", page_size * page_count, meta.len()),
        ));
    }
    Ok(conn)
}

/// `file:` URI for SQLite, percent-encoding everything that could be read as URI syntax.
fn sqlite_uri(path: &Path) -> Result<String> {
    let abs = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
    let s = abs.to_str().ok_or_else(|| Error::at_path(path, "path is not valid UTF-8"))?;
    let mut uri = String::from("file:");
    if cfg!(windows) {
        uri.push_str("///");
    }
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => uri.push(b as char),
            b'\\' if cfg!(windows) => uri.push('/'),
            b':' if cfg!(windows) => uri.push(':'),
            other => uri.push_str(&format!("%{other:02X}")),
        }
    }
    uri.push_str("?immutable=1&mode=ro");
    Ok(uri)
}

fn require_tables(conn: &Connection, path: &Path, tables: &[&str]) -> Result<()> {
    for t in tables {
        let n: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [t], |r| r.get(0))
            .map_err(|e| Error::sqlite(path, e))?;
        if n == 0 {
            return Err(Error::at_path(path, format!("missing table {t}: not a btopt bundle database")));
        }
    }
    Ok(())
}

/// Writes `data` as a new bundle at `out`, atomically. `out` must not exist.
///
/// The content hash is computed here and stored in `bundle_metadata`. On any error nothing is
/// left at `out` and the temporary directory is removed.
pub fn write(data: &BundleData, out: &Path) -> Result<String> {
    if out.exists() {
        return Err(Error::at_path(out, "already exists; refusing to overwrite a bundle"));
    }
    data.validate(out)?;
    let tmp = TempDir::sibling_of(out)?;
    let hash = data.content_hash();
    write_assets(data, &hash, &tmp.path.join(ASSETS_DB))?;
    write_adjustments(data, &tmp.path.join(ADJUSTMENTS_DB))?;
    match data.frequency {
        Frequency::Daily => write_daily(data, &tmp.path.join(DAILY_DB))?,
        Frequency::Minute => write_minute(data, &tmp.path.join(MINUTE_DB))?,
    }
    tmp.persist(out)?;
    Ok(hash)
}

/// A hidden sibling directory that is removed on drop unless persisted.
pub(crate) struct TempDir {
    pub(crate) path: PathBuf,
    keep: bool,
}

impl TempDir {
    pub(crate) fn sibling_of(out: &Path) -> Result<TempDir> {
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(Error::at_path(&parent, "parent directory of --out does not exist"));
        }
        let name = out.file_name().ok_or_else(|| Error::at_path(out, "not a directory name"))?;
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = parent.join(format!(".{}.tmp-{}-{nanos}", name.to_string_lossy(), std::process::id()));
        std::fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
        Ok(TempDir { path, keep: false })
    }

    pub(crate) fn persist(mut self, out: &Path) -> Result<()> {
        if out.exists() {
            return Err(Error::at_path(out, "already exists; refusing to overwrite a bundle"));
        }
        std::fs::rename(&self.path, out).map_err(|e| Error::io(out, e))?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn create_db(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(|e| Error::sqlite(path, e))?;
    // A fresh file in a private directory: no journal needed, the rename is the commit.
    conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA page_size = 65536;")
        .map_err(|e| Error::sqlite(path, e))?;
    Ok(conn)
}

fn finish_db(conn: Connection, path: &Path) -> Result<()> {
    conn.close().map_err(|(_, e)| Error::sqlite(path, e))?;
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

fn write_assets(data: &BundleData, hash: &str, path: &Path) -> Result<()> {
    let mut conn = create_db(path)?;
    let sq = |e| Error::sqlite(path, e);
    let tx = conn.transaction().map_err(sq)?;
    tx.execute_batch(
        "CREATE TABLE bundle_metadata (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE exchanges (exchange TEXT PRIMARY KEY, canonical_name TEXT NOT NULL, country_code TEXT NOT NULL);
         CREATE TABLE equities (sid INTEGER PRIMARY KEY, asset_name TEXT NOT NULL, start_date TEXT NOT NULL,
             end_date TEXT NOT NULL, first_traded TEXT NOT NULL, auto_close_date TEXT NOT NULL,
             exchange TEXT NOT NULL, shares_outstanding REAL NOT NULL,
             first_bar INTEGER NOT NULL, bar_count INTEGER NOT NULL);
         CREATE TABLE equity_symbol_mappings (id INTEGER PRIMARY KEY, sid INTEGER NOT NULL, symbol TEXT NOT NULL,
             company_symbol TEXT NOT NULL, share_class_symbol TEXT NOT NULL, start_date TEXT NOT NULL, end_date TEXT NOT NULL);
         CREATE TABLE calendar_sessions (session TEXT PRIMARY KEY, open TEXT NOT NULL, close TEXT NOT NULL);",
    )
    .map_err(sq)?;
    let first = data.sessions[0];
    let last = *data.sessions.last().expect("validated non-empty");
    for (k, v) in [
        ("format_version", FORMAT_VERSION.to_string()),
        ("frequency", data.frequency.as_str().to_string()),
        ("calendar", "XNYS".to_string()),
        ("first_session", first.to_string()),
        ("last_session", last.to_string()),
        ("content_hash", hash.to_string()),
        ("provenance", data.provenance.clone()),
    ] {
        tx.execute("INSERT INTO bundle_metadata VALUES (?1, ?2)", params![k, v]).map_err(sq)?;
    }
    let mut exchanges: Vec<&str> = data.assets.iter().map(|a| a.exchange.as_str()).collect();
    exchanges.sort_unstable();
    exchanges.dedup();
    for e in exchanges {
        let canonical = if e == "XNYS" { "NYSE" } else { e };
        tx.execute("INSERT INTO exchanges VALUES (?1, ?2, 'US')", params![e, canonical]).map_err(sq)?;
    }
    let bounds = data.session_bounds();
    for (sid, (a, b)) in data.assets.iter().zip(&data.bars).enumerate() {
        let start = data.sessions[bounds.partition_point(|&x| x <= b.first_bar) - 1].to_string();
        let end = data.sessions[bounds.partition_point(|&x| x < b.end_bar()) - 1].to_string();
        tx.execute(
            "INSERT INTO equities VALUES (?1, ?2, ?3, ?4, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                sid as i64,
                a.asset_name,
                start,
                end,
                a.exchange,
                a.shares_outstanding,
                b.first_bar as i64,
                b.len() as i64
            ],
        )
        .map_err(sq)?;
        tx.execute(
            "INSERT INTO equity_symbol_mappings VALUES (?1, ?1, ?2, ?2, '', ?3, ?4)",
            params![sid as i64, a.symbol, start, end],
        )
        .map_err(sq)?;
    }
    for s in &data.sessions {
        let close = if calendar::is_early_close(*s) { "13:00" } else { "16:00" };
        tx.execute("INSERT INTO calendar_sessions VALUES (?1, '09:30', ?2)", params![s.to_string(), close])
            .map_err(sq)?;
    }
    tx.commit().map_err(sq)?;
    finish_db(conn, path)
}

fn write_adjustments(data: &BundleData, path: &Path) -> Result<()> {
    let mut conn = create_db(path)?;
    let sq = |e| Error::sqlite(path, e);
    let tx = conn.transaction().map_err(sq)?;
    tx.execute_batch(
        "CREATE TABLE splits (sid INTEGER NOT NULL, effective_date TEXT NOT NULL, ratio REAL NOT NULL);
         CREATE TABLE dividends (sid INTEGER NOT NULL, ex_date TEXT NOT NULL, amount REAL NOT NULL);
         CREATE INDEX splits_sid ON splits (sid, effective_date);
         CREATE INDEX dividends_sid ON dividends (sid, ex_date);",
    )
    .map_err(sq)?;
    for s in &data.splits {
        tx.execute("INSERT INTO splits VALUES (?1, ?2, ?3)", params![s.sid, s.effective_date.to_string(), s.ratio])
            .map_err(sq)?;
    }
    for d in &data.dividends {
        tx.execute("INSERT INTO dividends VALUES (?1, ?2, ?3)", params![d.sid, d.ex_date.to_string(), d.amount])
            .map_err(sq)?;
    }
    tx.commit().map_err(sq)?;
    finish_db(conn, path)
}

fn write_daily(data: &BundleData, path: &Path) -> Result<()> {
    let mut conn = create_db(path)?;
    let sq = |e| Error::sqlite(path, e);
    let tx = conn.transaction().map_err(sq)?;
    tx.execute_batch(
        "CREATE TABLE daily_bars (sid INTEGER NOT NULL, day TEXT NOT NULL, open REAL NOT NULL, high REAL NOT NULL,
             low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL, PRIMARY KEY (sid, day)) WITHOUT ROWID;",
    )
    .map_err(sq)?;
    {
        let mut ins = tx.prepare("INSERT INTO daily_bars VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)").map_err(sq)?;
        for (sid, b) in data.bars.iter().enumerate() {
            for i in 0..b.len() {
                let day = data.sessions[b.first_bar + i].to_string();
                ins.execute(params![sid as i64, day, b.open[i], b.high[i], b.low[i], b.close[i], b.volume[i]])
                    .map_err(sq)?;
            }
        }
    }
    tx.commit().map_err(sq)?;
    finish_db(conn, path)
}

fn write_minute(data: &BundleData, path: &Path) -> Result<()> {
    let mut conn = create_db(path)?;
    let sq = |e| Error::sqlite(path, e);
    let tx = conn.transaction().map_err(sq)?;
    tx.execute_batch(
        "CREATE TABLE minute_bars (sid INTEGER NOT NULL, session TEXT NOT NULL, first_minute INTEGER NOT NULL,
             open BLOB NOT NULL, high BLOB NOT NULL, low BLOB NOT NULL, close BLOB NOT NULL, volume BLOB NOT NULL,
             PRIMARY KEY (sid, session)) WITHOUT ROWID;",
    )
    .map_err(sq)?;
    let bounds = data.session_bounds();
    {
        let mut ins = tx.prepare("INSERT INTO minute_bars VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)").map_err(sq)?;
        let mut blobs: [Vec<u8>; 5] = Default::default();
        for (sid, b) in data.bars.iter().enumerate() {
            let first_s = bounds.partition_point(|&x| x <= b.first_bar) - 1;
            let last_s = bounds.partition_point(|&x| x < b.end_bar()) - 1;
            for s in first_s..=last_s {
                let lo = bounds[s].max(b.first_bar);
                let hi = bounds[s + 1].min(b.end_bar());
                let (i0, i1) = (lo - b.first_bar, hi - b.first_bar);
                for (blob, col) in blobs.iter_mut().zip([&b.open, &b.high, &b.low, &b.close, &b.volume]) {
                    blob.clear();
                    for v in &col[i0..i1] {
                        blob.extend_from_slice(&v.to_le_bytes());
                    }
                }
                ins.execute(params![
                    sid as i64,
                    data.sessions[s].to_string(),
                    (lo - bounds[s]) as i64,
                    blobs[0],
                    blobs[1],
                    blobs[2],
                    blobs[3],
                    blobs[4]
                ])
                .map_err(sq)?;
            }
        }
    }
    tx.commit().map_err(sq)?;
    finish_db(conn, path)
}

/// Metadata of a bundle, from `bundle_metadata`.
#[derive(Clone, Debug)]
pub struct Metadata {
    /// Bar frequency.
    pub frequency: Frequency,
    /// Content hash recorded at write time.
    pub content_hash: String,
    /// Where the data came from.
    pub provenance: String,
}

fn parse_date(s: &str, path: &Path, table: &'static str, row: &str) -> Result<NaiveDate> {
    s.parse().map_err(|_| Error::at_row(path, table, row, format!("bad date {s:?}")))
}

/// Reads the metadata table.
pub fn read_metadata(dir: &Path) -> Result<Metadata> {
    let path = dir.join(ASSETS_DB);
    let conn = open_immutable(&path)?;
    read_metadata_from(&conn, &path)
}

fn read_metadata_from(conn: &Connection, path: &Path) -> Result<Metadata> {
    require_tables(
        conn,
        path,
        &["bundle_metadata", "equities", "equity_symbol_mappings", "exchanges", "calendar_sessions"],
    )?;
    let get = |k: &str| -> Result<String> {
        conn.query_row("SELECT value FROM bundle_metadata WHERE key = ?1", [k], |r| r.get(0)).map_err(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => {
                Error::at_row(path, "bundle_metadata", format!("key {k}"), "missing")
            }
            e => Error::sqlite(path, e),
        })
    };
    let version = get("format_version")?;
    if version != FORMAT_VERSION {
        return Err(Error::at_row(
            path,
            "bundle_metadata",
            "key format_version",
            format!("unsupported format version {version:?}"),
        ));
    }
    let frequency = get("frequency")?
        .parse()
        .map_err(|e: Error| Error::at_row(path, "bundle_metadata", "key frequency", e.to_string()))?;
    Ok(Metadata { frequency, content_hash: get("content_hash")?, provenance: get("provenance")? })
}

/// Reads the metadata and the sessions only, not the bars: enough for a process that runs no
/// backtest on the bundle (a coordinator whose workers load it themselves). Checks the
/// structure of what it reads, not the bars (each process that runs backtests loads and
/// validates them).
pub fn read_sessions(dir: &Path) -> Result<(Metadata, Vec<NaiveDate>)> {
    if !dir.is_dir() {
        return Err(Error::at_path(dir, "not a bundle directory"));
    }
    let assets_path = dir.join(ASSETS_DB);
    let conn = open_immutable(&assets_path)?;
    let meta = read_metadata_from(&conn, &assets_path)?;
    let sessions = read_sessions_from(&conn, &assets_path)?;
    if sessions.is_empty() {
        return Err(Error::at_path(&assets_path, "the calendar has no session"));
    }
    Ok((meta, sessions))
}

fn read_sessions_from(conn: &Connection, path: &Path) -> Result<Vec<NaiveDate>> {
    let sq = |e| Error::sqlite(path, e);
    let mut sessions = Vec::new();
    let mut st = conn.prepare("SELECT session FROM calendar_sessions ORDER BY session").map_err(sq)?;
    let mut rows = st.query([]).map_err(sq)?;
    while let Some(r) = rows.next().map_err(sq)? {
        let s: String = r.get(0).map_err(sq)?;
        sessions.push(parse_date(&s, path, "calendar_sessions", &format!("session {s}"))?);
    }
    Ok(sessions)
}

/// Reads a whole bundle back into its canonical form. Checks the structure row by row, but not
/// the content invariants: call [`BundleData::validate`] for those.
pub fn read(dir: &Path) -> Result<(Metadata, BundleData)> {
    if !dir.is_dir() {
        return Err(Error::at_path(dir, "not a bundle directory"));
    }
    let assets_path = dir.join(ASSETS_DB);
    let conn = open_immutable(&assets_path)?;
    let meta = read_metadata_from(&conn, &assets_path)?;
    let sq = |p: &Path| {
        let p = p.to_path_buf();
        move |e| Error::sqlite(&p, e)
    };

    let sessions = read_sessions_from(&conn, &assets_path)?;

    let mut assets = Vec::new();
    let mut bars = Vec::new();
    let mut counts = Vec::new();
    {
        let mut st = conn
            .prepare(
                "SELECT e.sid, m.symbol, e.asset_name, e.exchange, e.shares_outstanding, e.first_bar, e.bar_count
                 FROM equities e JOIN equity_symbol_mappings m ON m.sid = e.sid ORDER BY e.sid",
            )
            .map_err(sq(&assets_path))?;
        let mut rows = st.query([]).map_err(sq(&assets_path))?;
        while let Some(r) = rows.next().map_err(sq(&assets_path))? {
            let sid: i64 = r.get(0).map_err(sq(&assets_path))?;
            if sid != assets.len() as i64 {
                return Err(Error::at_row(&assets_path, "equities", format!("sid {sid}"), "sids must be 0..n-1"));
            }
            let first_bar: i64 = r.get(5).map_err(sq(&assets_path))?;
            let count: i64 = r.get(6).map_err(sq(&assets_path))?;
            if first_bar < 0 || count <= 0 {
                return Err(Error::at_row(
                    &assets_path,
                    "equities",
                    format!("sid {sid}"),
                    "bad first_bar or bar_count",
                ));
            }
            assets.push(AssetDef {
                symbol: r.get(1).map_err(sq(&assets_path))?,
                asset_name: r.get(2).map_err(sq(&assets_path))?,
                exchange: r.get(3).map_err(sq(&assets_path))?,
                shares_outstanding: r.get(4).map_err(sq(&assets_path))?,
            });
            counts.push(count as usize);
            let mut b = RawBars { first_bar: first_bar as usize, ..RawBars::default() };
            for col in [&mut b.open, &mut b.high, &mut b.low, &mut b.close, &mut b.volume] {
                col.reserve_exact(count as usize);
            }
            bars.push(b);
        }
    }
    drop(conn);

    let adj_path = dir.join(ADJUSTMENTS_DB);
    let conn = open_immutable(&adj_path)?;
    require_tables(&conn, &adj_path, &["splits", "dividends"])?;
    let mut splits = Vec::new();
    {
        let mut st = conn
            .prepare("SELECT sid, effective_date, ratio FROM splits ORDER BY sid, effective_date")
            .map_err(sq(&adj_path))?;
        let mut rows = st.query([]).map_err(sq(&adj_path))?;
        while let Some(r) = rows.next().map_err(sq(&adj_path))? {
            let sid: u32 = r.get(0).map_err(sq(&adj_path))?;
            let d: String = r.get(1).map_err(sq(&adj_path))?;
            let effective_date = parse_date(&d, &adj_path, "splits", &format!("sid {sid}"))?;
            splits.push(Split { sid, effective_date, ratio: r.get(2).map_err(sq(&adj_path))? });
        }
    }
    let mut dividends = Vec::new();
    {
        let mut st =
            conn.prepare("SELECT sid, ex_date, amount FROM dividends ORDER BY sid, ex_date").map_err(sq(&adj_path))?;
        let mut rows = st.query([]).map_err(sq(&adj_path))?;
        while let Some(r) = rows.next().map_err(sq(&adj_path))? {
            let sid: u32 = r.get(0).map_err(sq(&adj_path))?;
            let d: String = r.get(1).map_err(sq(&adj_path))?;
            let ex_date = parse_date(&d, &adj_path, "dividends", &format!("sid {sid}"))?;
            dividends.push(Dividend { sid, ex_date, amount: r.get(2).map_err(sq(&adj_path))? });
        }
    }
    drop(conn);

    let mut data = BundleData {
        frequency: meta.frequency,
        sessions,
        provenance: meta.provenance.clone(),
        assets,
        bars,
        splits,
        dividends,
    };
    match meta.frequency {
        Frequency::Daily => read_daily(dir, &mut data)?,
        Frequency::Minute => read_minute(dir, &mut data)?,
    }
    for (sid, (b, n)) in data.bars.iter().zip(counts).enumerate() {
        if b.len() != n {
            let file = dir.join(bars_db(meta.frequency));
            return Err(Error::at_path(file, format!("sid {sid} has {} bars, equities.bar_count says {n}", b.len())));
        }
    }
    Ok((meta, data))
}

fn read_daily(dir: &Path, data: &mut BundleData) -> Result<()> {
    let path = dir.join(DAILY_DB);
    let conn = open_immutable(&path)?;
    require_tables(&conn, &path, &["daily_bars"])?;
    let sq = |e| Error::sqlite(&path, e);
    // Rows arrive in (sid, day) order and must be each asset's consecutive sessions, so each
    // row's day is checked against the text of the session it must be: no date parsing and no
    // allocation per row (this loop is what bounds loading speed for daily bundles).
    let session_text: Vec<String> = data.sessions.iter().map(|d| d.to_string()).collect();
    let mut st = conn
        .prepare("SELECT sid, day, open, high, low, close, volume FROM daily_bars ORDER BY sid, day")
        .map_err(sq)?;
    let mut rows = st.query([]).map_err(sq)?;
    while let Some(r) = rows.next().map_err(sq)? {
        let sid: i64 = r.get(0).map_err(sq)?;
        let day = r.get_ref(1).map_err(sq)?.as_str().map_err(|e| sq(e.into()))?;
        let row = || format!("sid {sid}, day {day}");
        let Some(b) = usize::try_from(sid).ok().and_then(|s| data.bars.get_mut(s)) else {
            return Err(Error::at_row(&path, "daily_bars", row(), "unknown sid"));
        };
        if session_text.get(b.first_bar + b.len()).map(String::as_str) != Some(day) {
            parse_date(day, &path, "daily_bars", &row())?;
            return Err(Error::at_row(
                &path,
                "daily_bars",
                row(),
                "bars are not contiguous with the asset's first_bar",
            ));
        }
        b.push(
            r.get(2).map_err(sq)?,
            r.get(3).map_err(sq)?,
            r.get(4).map_err(sq)?,
            r.get(5).map_err(sq)?,
            r.get(6).map_err(sq)?,
        );
    }
    Ok(())
}

fn read_minute(dir: &Path, data: &mut BundleData) -> Result<()> {
    let path = dir.join(MINUTE_DB);
    let conn = open_immutable(&path)?;
    require_tables(&conn, &path, &["minute_bars"])?;
    let bounds = data.session_bounds();
    let sq = |e| Error::sqlite(&path, e);
    let mut st = conn
        .prepare(
            "SELECT sid, session, first_minute, open, high, low, close, volume FROM minute_bars ORDER BY sid, session",
        )
        .map_err(sq)?;
    let mut rows = st.query([]).map_err(sq)?;
    while let Some(r) = rows.next().map_err(sq)? {
        let sid: i64 = r.get(0).map_err(sq)?;
        let session: String = r.get(1).map_err(sq)?;
        let row = || format!("sid {sid}, session {session}");
        let Some(b) = usize::try_from(sid).ok().and_then(|s| data.bars.get_mut(s)) else {
            return Err(Error::at_row(&path, "minute_bars", row(), "unknown sid"));
        };
        let date = parse_date(&session, &path, "minute_bars", &row())?;
        let Ok(s) = data.sessions.binary_search(&date) else {
            return Err(Error::at_row(&path, "minute_bars", row(), "session is not in the calendar"));
        };
        let first_minute: i64 = r.get(2).map_err(sq)?;
        let at = bounds[s] + usize::try_from(first_minute).unwrap_or(usize::MAX);
        if at != b.first_bar + b.len() || at >= bounds[s + 1] {
            return Err(Error::at_row(
                &path,
                "minute_bars",
                row(),
                "bars are not contiguous with the asset's first_bar",
            ));
        }
        let mut n = None;
        for (k, col) in [&mut b.open, &mut b.high, &mut b.low, &mut b.close, &mut b.volume].into_iter().enumerate() {
            let blob = r.get_ref(3 + k).map_err(sq)?.as_blob().map_err(|e| Error::sqlite(&path, e.into()))?;
            if blob.len() % 8 != 0 || n.is_some_and(|n| n != blob.len() / 8) || at + blob.len() / 8 > bounds[s + 1] {
                return Err(Error::at_row(&path, "minute_bars", row(), "bar blobs have inconsistent lengths"));
            }
            n = Some(blob.len() / 8);
            col.extend(blob.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))));
        }
    }
    Ok(())
}
