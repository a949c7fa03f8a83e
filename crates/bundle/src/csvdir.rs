//! zipline's `csvdir` layout: ingest it into a bundle, and export a bundle back to it.
//!
//! ```text
//! <dir>/daily/<SYMBOL>.csv[.gz]    date,open,high,low,close,volume[,dividend,split]
//! <dir>/minute/<SYMBOL>.csv[.gz]   timestamp,open,high,low,close,volume[,dividend,split]
//! ```
//!
//! Columns are found by header name, so their order is free; the first column is the date.
//! Daily dates are `YYYY-MM-DD` (a `00:00:00` time part is accepted). Minute timestamps are the
//! bar's close in New York time, `YYYY-MM-DD HH:MM[:SS]`, or carry an explicit UTC offset
//! (`+00:00`, `Z`), which is converted to New York time with the US daylight-saving rules.
//!
//! `split = 2.0` on a row means 2-for-1 from that session (stored as zipline's ratio 0.5), and
//! `dividend` is cash per share with that session as its ex-date. Interior gaps in an asset's
//! bars (a halted day, a minute without trades) are forward-filled from the previous close with
//! zero volume, as zipline's data portal does, and counted in the ingest report.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Weekday};

use crate::calendar;
use crate::data::{AssetDef, BundleData, Dividend, Frequency, RawBars, Split, check_bar};
use crate::error::{Error, Result};
use crate::store;

/// What an ingest did, for the command line to report.
#[derive(Clone, Debug)]
pub struct IngestReport {
    /// The bundle's content hash.
    pub content_hash: String,
    /// Frequency ingested.
    pub frequency: Frequency,
    /// Number of assets.
    pub assets: usize,
    /// Bars read from the files.
    pub bars_read: usize,
    /// Interior bars that were missing and forward-filled.
    pub bars_filled: usize,
}

/// One parsed row.
struct Row {
    /// Session index (into the global session list, filled in later) and minute in session.
    date: NaiveDate,
    minute: usize,
    line: usize,
    ohlcv: [f64; 5],
    dividend: f64,
    split: f64,
}

struct AssetFile {
    symbol: String,
    path: PathBuf,
    rows: Vec<Row>,
}

/// Ingests the csvdir at `source` into a new bundle at `out` (which must not exist).
pub fn ingest(source: &Path, out: &Path, frequency: Option<Frequency>) -> Result<IngestReport> {
    if out.exists() {
        return Err(Error::at_path(out, "already exists; refusing to overwrite a bundle"));
    }
    if !source.is_dir() {
        return Err(Error::at_path(source, "source is not a directory"));
    }
    let (daily, minute) = (source.join("daily"), source.join("minute"));
    let frequency = match (frequency, daily.is_dir(), minute.is_dir()) {
        (Some(f), _, _) => f,
        (None, true, false) => Frequency::Daily,
        (None, false, true) => Frequency::Minute,
        (None, true, true) => {
            return Err(Error::at_path(source, "holds both daily/ and minute/: choose one with --frequency"));
        }
        (None, false, false) => {
            return Err(Error::at_path(source, "empty: expected a daily/ or minute/ directory of SYMBOL.csv files"));
        }
    };
    let dir = source.join(frequency.as_str());
    if !dir.is_dir() {
        return Err(Error::at_path(&dir, "missing directory"));
    }
    let mut files = list_symbol_files(&dir)?;
    let mut bars_read = 0;
    for f in &mut files {
        f.rows = read_file(&f.path, frequency)?;
        bars_read += f.rows.len();
    }
    let first = files.iter().map(|f| f.rows[0].date).min().expect("at least one file");
    let last = files.iter().map(|f| f.rows.last().expect("non-empty").date).max().expect("at least one file");
    let sessions = calendar::sessions_between(first, last);
    let bounds = crate::data::session_bounds(frequency, &sessions);
    let bar_of = |r: &Row| {
        let s = sessions.binary_search(&r.date).expect("row dates were checked against the calendar");
        bounds[s] + r.minute
    };

    let mut assets = Vec::with_capacity(files.len());
    let mut bars = Vec::with_capacity(files.len());
    let mut splits = Vec::new();
    let mut dividends = Vec::new();
    let mut bars_filled = 0;
    for (sid, f) in files.iter().enumerate() {
        let mut b = RawBars { first_bar: bar_of(&f.rows[0]), ..RawBars::default() };
        let mut split_sessions = Vec::new();
        for (k, r) in f.rows.iter().enumerate() {
            let at = bar_of(r);
            while b.end_bar() < at {
                let c = *b.close.last().expect("first row pushed before any gap");
                b.push(c, c, c, c, 0.0);
                bars_filled += 1;
            }
            let [o, h, l, c, v] = r.ohlcv;
            b.push(o, h, l, c, v);
            if r.split != 1.0 || r.dividend != 0.0 {
                let is_first_session = r.date == f.rows[0].date;
                if k == 0 || is_first_session {
                    return Err(Error::at_line(
                        &f.path,
                        r.line,
                        "split or dividend in the asset's first session: there are no earlier prices to adjust",
                    ));
                }
                if split_sessions.contains(&r.date) {
                    return Err(Error::at_line(
                        &f.path,
                        r.line,
                        format!("second split or dividend row for session {}", r.date),
                    ));
                }
                split_sessions.push(r.date);
            }
            if r.split != 1.0 {
                splits.push(Split { sid: sid as u32, effective_date: r.date, ratio: 1.0 / r.split });
            }
            if r.dividend != 0.0 {
                let at_session_start = bounds[sessions.binary_search(&r.date).expect("checked")];
                let prev_close = b.close[at_session_start - 1 - b.first_bar];
                if r.dividend >= prev_close {
                    return Err(Error::at_line(
                        &f.path,
                        r.line,
                        format!("dividend {} is not below the previous close {prev_close}", r.dividend),
                    ));
                }
                dividends.push(Dividend { sid: sid as u32, ex_date: r.date, amount: r.dividend });
            }
        }
        assets.push(AssetDef {
            symbol: f.symbol.clone(),
            asset_name: f.symbol.clone(),
            exchange: "XNYS".into(),
            shares_outstanding: 0.0,
        });
        bars.push(b);
    }
    let data = BundleData {
        frequency,
        sessions,
        provenance: format!("csvdir ingest of {}", source.display()),
        assets,
        bars,
        splits,
        dividends,
    };
    let content_hash = store::write(&data, out)?;
    Ok(IngestReport { content_hash, frequency, assets: data.assets.len(), bars_read, bars_filled })
}

fn list_symbol_files(dir: &Path) -> Result<Vec<AssetFile>> {
    let mut files: Vec<AssetFile> = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let symbol = if let Some(s) = name.strip_suffix(".csv.gz") {
            s
        } else if let Some(s) = name.strip_suffix(".csv") {
            s
        } else {
            continue;
        };
        if symbol.is_empty() {
            return Err(Error::at_path(&path, "file name has no symbol"));
        }
        if files.iter().any(|f| f.symbol == symbol) {
            return Err(Error::at_path(&path, format!("symbol {symbol} appears twice (.csv and .csv.gz)")));
        }
        files.push(AssetFile { symbol: symbol.to_string(), path, rows: Vec::new() });
    }
    if files.is_empty() {
        return Err(Error::at_path(dir, "empty: no SYMBOL.csv or SYMBOL.csv.gz files"));
    }
    files.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    Ok(files)
}

fn open_lines(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file))))
    } else {
        Ok(Box::new(BufReader::new(file)))
    }
}

fn read_file(path: &Path, frequency: Frequency) -> Result<Vec<Row>> {
    let mut lines = open_lines(path)?;
    let mut buf = String::new();
    let mut read_line = |buf: &mut String, line: usize| -> Result<bool> {
        buf.clear();
        match lines.read_line(buf) {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                Err(Error::at_line(path, line, "not valid UTF-8 text"))
            }
            Err(e) => Err(Error::at_line(path, line, format!("read failed: {e}"))),
        }
    };
    if !read_line(&mut buf, 1)? {
        return Err(Error::at_line(path, 1, "empty file: expected a header line"));
    }
    let header: Vec<String> =
        split_fields(buf.trim_end_matches(['\r', '\n'])).iter().map(|h| h.to_ascii_lowercase()).collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let mut idx = [0usize; 5];
    for (i, name) in ["open", "high", "low", "close", "volume"].iter().enumerate() {
        idx[i] = col(name).ok_or_else(|| Error::at_line(path, 1, format!("missing column {name:?} in header")))?;
        if idx[i] == 0 {
            return Err(Error::at_line(path, 1, "the first column must be the date"));
        }
    }
    let (div_col, split_col) = (col("dividend"), col("split"));
    let mut rows: Vec<Row> = Vec::new();
    let mut line = 1;
    while read_line(&mut buf, line + 1)? {
        line += 1;
        let text = buf.trim_end_matches(['\r', '\n']);
        if text.trim().is_empty() {
            continue;
        }
        let fields = split_fields(text);
        let at = |msg: String| Error::at_line(path, line, msg);
        let need = idx.iter().chain(div_col.iter()).chain(split_col.iter()).max().copied().unwrap_or(0);
        if fields.len() <= need {
            return Err(at(format!("expected {} fields, found {}", header.len(), fields.len())));
        }
        let (date, minute) = parse_when(fields[0], frequency).map_err(&at)?;
        let mut ohlcv = [0.0; 5];
        for (k, name) in ["open", "high", "low", "close", "volume"].iter().enumerate() {
            ohlcv[k] = parse_number(fields[idx[k]], name).map_err(&at)?;
        }
        let [o, h, l, c, v] = ohlcv;
        check_bar(o, h, l, c, v).map_err(&at)?;
        let dividend = match div_col.map(|i| fields[i]) {
            Some(s) if !s.is_empty() => parse_number(s, "dividend").map_err(&at)?,
            _ => 0.0,
        };
        if !(dividend.is_finite() && dividend >= 0.0) {
            return Err(at(format!("dividend {dividend} must be a finite amount >= 0")));
        }
        let split = match split_col.map(|i| fields[i]) {
            Some(s) if !s.is_empty() => parse_number(s, "split").map_err(&at)?,
            _ => 1.0,
        };
        if !(split.is_finite() && split > 0.0) {
            return Err(at(format!("split {split} must be > 0")));
        }
        if let Some(prev) = rows.last() {
            match (prev.date, prev.minute).cmp(&(date, minute)) {
                std::cmp::Ordering::Equal => return Err(at(format!("duplicate date {}", fields[0]))),
                std::cmp::Ordering::Greater => {
                    return Err(at(format!("dates not sorted: {} comes after a later date", fields[0])));
                }
                std::cmp::Ordering::Less => {}
            }
        }
        rows.push(Row { date, minute, line, ohlcv, dividend, split });
    }
    if rows.is_empty() {
        return Err(Error::at_line(path, line, "no data rows"));
    }
    Ok(rows)
}

fn split_fields(line: &str) -> Vec<&str> {
    line.split(',').map(|f| f.trim().trim_matches('"')).collect()
}

fn parse_number(s: &str, name: &str) -> std::result::Result<f64, String> {
    if s.is_empty() {
        return Err(format!("{name} is empty"));
    }
    let v: f64 = s.parse().map_err(|_| format!("{name} {s:?} is not a number"))?;
    if v.is_nan() {
        return Err(format!("{name} is NaN"));
    }
    Ok(v)
}

/// Parses a date (daily) or a bar timestamp (minute) into (session date, minute in session).
fn parse_when(s: &str, frequency: Frequency) -> std::result::Result<(NaiveDate, usize), String> {
    match frequency {
        Frequency::Daily => {
            let day = s.get(..10).unwrap_or(s);
            let rest = s.get(10..).unwrap_or("");
            let date: NaiveDate = day.parse().map_err(|_| format!("bad date {s:?}: expected YYYY-MM-DD"))?;
            if !matches!(
                rest.trim_start_matches([' ', 'T']),
                "" | "00:00:00" | "00:00" | "00:00:00+00:00" | "00:00:00Z"
            ) {
                return Err(format!("bad date {s:?}: daily bars take a date without a time of day"));
            }
            check_session(date, s)?;
            Ok((date, 0))
        }
        Frequency::Minute => {
            let local = parse_timestamp(s)?;
            let date = local.date();
            check_session(date, s)?;
            let minute_of_day = local.hour() * 60 + local.minute();
            if local.second() != 0 || minute_of_day < calendar::FIRST_BAR_MINUTE {
                return Err(format!("{s:?} is not a bar close inside the session (09:31..close, whole minutes)"));
            }
            let k = (minute_of_day - calendar::FIRST_BAR_MINUTE) as usize;
            if k >= calendar::minutes_in_session(date) as usize {
                return Err(format!("{s:?} is after the session's close"));
            }
            Ok((date, k))
        }
    }
}

fn check_session(date: NaiveDate, s: &str) -> std::result::Result<(), String> {
    if !calendar::supports(date) {
        return Err(format!(
            "date {s:?} is outside the supported calendar years {}..{}",
            calendar::FIRST_YEAR,
            calendar::LAST_YEAR
        ));
    }
    if !calendar::is_session(date) {
        return Err(format!("date {s:?} is off the XNYS calendar (weekend or holiday)"));
    }
    Ok(())
}

/// New York local time of a timestamp, naive (already local) or with a UTC offset.
fn parse_timestamp(s: &str) -> std::result::Result<NaiveDateTime, String> {
    let t = s.replacen('T', " ", 1);
    for fmt in ["%Y-%m-%d %H:%M:%S%:z", "%Y-%m-%d %H:%M%:z", "%Y-%m-%d %H:%M:%S%#z", "%Y-%m-%d %H:%M:%SZ"] {
        let parsed = if fmt.ends_with('Z') {
            NaiveDateTime::parse_from_str(&t, fmt).ok().map(|n| n.and_utc().fixed_offset())
        } else {
            DateTime::parse_from_str(&t, fmt).ok()
        };
        if let Some(dt) = parsed {
            return Ok(utc_to_new_york(dt.naive_utc()));
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(&t, fmt) {
            return Ok(n);
        }
    }
    Err(format!("bad timestamp {s:?}: expected YYYY-MM-DD HH:MM[:SS] in New York time, or with a UTC offset"))
}

/// US Eastern time: UTC−4 during daylight saving, else UTC−5 (rules of 2007 on, and of
/// 1987–2006 before that).
fn utc_to_new_york(utc: NaiveDateTime) -> NaiveDateTime {
    let y = utc.year();
    let nth_sunday = |m, n| NaiveDate::from_weekday_of_month_opt(y, m, Weekday::Sun, n).expect("exists");
    let last_sunday =
        |m| (1..=5).rev().find_map(|n| NaiveDate::from_weekday_of_month_opt(y, m, Weekday::Sun, n)).expect("exists");
    let (start, end) =
        if y >= 2007 { (nth_sunday(3, 2), nth_sunday(11, 1)) } else { (nth_sunday(4, 1), last_sunday(10)) };
    // 02:00 local standard time is 07:00 UTC; 02:00 local daylight time is 06:00 UTC.
    let dst_start = start.and_time(NaiveTime::from_hms_opt(7, 0, 0).expect("valid"));
    let dst_end = end.and_time(NaiveTime::from_hms_opt(6, 0, 0).expect("valid"));
    let hours = if utc >= dst_start && utc < dst_end { 4 } else { 5 };
    utc - chrono::TimeDelta::hours(hours)
}

/// Writes the bundle at `bundle_dir` as a csvdir at `out` (which must not exist): raw prices,
/// with each split and dividend on its session's first bar.
pub fn export(bundle_dir: &Path, out: &Path) -> Result<usize> {
    if out.exists() {
        return Err(Error::at_path(out, "already exists; refusing to overwrite"));
    }
    let (_, data) = store::read(bundle_dir)?;
    data.validate(bundle_dir)?;
    let tmp = store::TempDir::sibling_of(out)?;
    let sub = tmp.path.join(data.frequency.as_str());
    std::fs::create_dir(&sub).map_err(|e| Error::io(&sub, e))?;
    let bounds = data.session_bounds();
    let mut rows = 0;
    for (sid, (asset, b)) in data.assets.iter().zip(&data.bars).enumerate() {
        let path = sub.join(format!("{}.csv", asset.symbol));
        let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut w = std::io::BufWriter::new(file);
        let io = |e| Error::io(&path, e);
        writeln!(w, "date,open,high,low,close,volume,dividend,split").map_err(io)?;
        let mut s = bounds.partition_point(|&x| x <= b.first_bar) - 1;
        for i in 0..b.len() {
            let bar = b.first_bar + i;
            while bounds[s + 1] <= bar {
                s += 1;
            }
            let date = data.sessions[s];
            let first_of_session = bar == bounds[s];
            let dividend = if first_of_session {
                data.dividends.iter().find(|d| d.sid == sid as u32 && d.ex_date == date).map_or(0.0, |d| d.amount)
            } else {
                0.0
            };
            let split = if first_of_session {
                data.splits
                    .iter()
                    .find(|x| x.sid == sid as u32 && x.effective_date == date)
                    .map_or(1.0, |x| 1.0 / x.ratio)
            } else {
                1.0
            };
            match data.frequency {
                Frequency::Daily => write!(w, "{date}").map_err(io)?,
                Frequency::Minute => {
                    let m = calendar::FIRST_BAR_MINUTE + (bar - bounds[s]) as u32;
                    let t = date.and_hms_opt(m / 60, m % 60, 0).expect("valid time");
                    write!(w, "{}", t.format("%Y-%m-%d %H:%M:%S")).map_err(io)?;
                }
            }
            writeln!(w, ",{},{},{},{},{},{dividend},{split}", b.open[i], b.high[i], b.low[i], b.close[i], b.volume[i])
                .map_err(io)?;
            rows += 1;
        }
        w.flush().map_err(io)?;
    }
    tmp.persist(out)?;
    Ok(rows)
}
