//! `btopt bundle …`: thin wrappers that print what the bundle crate returns; and [`open`], how
//! the commands that run backtests open a bundle.

use std::path::Path;

use anyhow::{Context, Result};

/// Set to `0`, commands neither read nor write a bundle's columnar cache: each run loads the
/// SQLite files (the cache takes about twice their size on disk for minute bars).
pub(crate) const COLUMNAR_CACHE_ENV: &str = "BTOPT_COLUMNAR_CACHE";

/// The bundle at `dir` for a command that runs backtests: read from its columnar cache when
/// the bundle has one, else loaded, writing the cache for the next command
/// ([`bundle::Bundle::open_cached`]); only loaded when [`COLUMNAR_CACHE_ENV`] is `0`. A cache
/// that cannot be written costs one line on stderr.
pub(crate) fn open(dir: &Path) -> Result<bundle::Bundle> {
    let use_cache = std::env::var_os(COLUMNAR_CACHE_ENV).is_none_or(|v| v != "0");
    open_with(dir, use_cache)
}

/// [`open`], with the cache or without it.
fn open_with(dir: &Path, use_cache: bool) -> Result<bundle::Bundle> {
    if !use_cache {
        return bundle::Bundle::load(dir).context("failed to load the bundle");
    }
    // An unreadable cache file is named in the error, with its remedy.
    let (bundle, unwritten) = bundle::Bundle::open_cached(dir).context("failed to load the bundle")?;
    if let Some(e) = unwritten {
        eprintln!("note: the bundle's columnar cache could not be written ({e}); each start loads the bundle");
    }
    Ok(bundle)
}

pub(crate) fn generate(spec: &bundle::GenerateSpec, out: &Path) -> Result<()> {
    let data = bundle::generate::generate(spec).context("failed to generate the bundle")?;
    let hash = bundle::store::write(&data, out).context("failed to write the bundle")?;
    let bars: usize = data.bars.iter().map(|b| b.len()).sum();
    eprintln!("wrote {} ({} assets, {bars} bars, content hash {hash})", out.display(), data.assets.len());
    Ok(())
}

pub(crate) fn ingest_csvdir(source: &Path, out: &Path, frequency: Option<bundle::Frequency>) -> Result<()> {
    let r = bundle::csvdir::ingest(source, out, frequency).context("failed to ingest csvdir")?;
    eprintln!(
        "wrote {} ({} {} assets, {} bars read, {} missing bars forward-filled, content hash {})",
        out.display(),
        r.assets,
        r.frequency.as_str(),
        r.bars_read,
        r.bars_filled,
        r.content_hash
    );
    Ok(())
}

pub(crate) fn info(dir: &Path, json: bool) -> Result<()> {
    let s = bundle::summary::info(dir).context("failed to read the bundle")?;
    if json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        print!("{}", s.to_text());
    }
    Ok(())
}

pub(crate) fn verify(dir: &Path) -> Result<()> {
    let s = bundle::summary::verify(dir).context("bundle verification failed")?;
    println!(
        "ok: {} ({} sessions, {} assets, content hash {})",
        dir.display(),
        s.sessions,
        s.assets.len(),
        s.content_hash
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Without the cache nothing is written next to the bundle. A columnar cache that cannot be
    /// read fails the command in one line that names the file and the remedy; a load error that
    /// is not the cache's does not mention it.
    #[test]
    fn the_cache_is_optional_and_an_unreadable_one_is_named_with_its_remedy() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("b");
        let spec = bundle::GenerateSpec {
            start: "2024-01-02".parse().unwrap(),
            end: "2024-02-28".parse().unwrap(),
            ..bundle::GenerateSpec::mag7(bundle::Frequency::Daily)
        };
        let hash = bundle::store::write(&bundle::generate::generate(&spec).expect("generate"), &dir).expect("write");
        let cache = bundle::cache::cache_path(&dir, &hash);
        super::open_with(&dir, false).expect("a load");
        assert!(!cache.exists(), "without the cache nothing is written");
        super::open_with(&dir, true).expect("the first open loads and writes the cache");
        assert!(cache.exists());
        std::fs::OpenOptions::new().write(true).open(&cache).unwrap().set_len(100).unwrap();
        let e = format!("{:#}", super::open_with(&dir, true).expect_err("a truncated cache"));
        assert!(
            e.contains("delete it and the next run loads the bundle") && e.contains(&*cache.to_string_lossy()),
            "{e}"
        );
        super::open_with(&dir, false).expect("without the cache, the SQLite files load as ever");
        let e = format!("{:#}", super::open_with(&tmp.path().join("missing"), true).expect_err("no bundle"));
        assert!(e.starts_with("failed to load the bundle:") && !e.contains("columnar"), "{e}");
    }
}
