//! `btopt bundle …`: thin wrappers that print what the bundle crate returns.

use std::path::Path;

use anyhow::{Context, Result};

/// The bundle at `dir` for a command that runs backtests: mapped through its columnar cache
/// when the bundle has one, else loaded, writing the cache for the next command
/// ([`bundle::Bundle::open_cached`]). A cache that cannot be written costs one line on stderr.
pub(crate) fn open(dir: &Path) -> Result<bundle::Bundle> {
    let (bundle, unwritten) = bundle::Bundle::open_cached(dir).map_err(|e| {
        // A cache file that cannot be read is named in `e`; deleting it is the remedy.
        let cached = matches!(&e, bundle::Error::AtPath { path, .. } if path.extension().is_some_and(|x| x == "btcol"));
        let what = if cached {
            "failed to load the bundle (delete its columnar cache to load the SQLite files)"
        } else {
            "failed to load the bundle"
        };
        anyhow::Error::new(e).context(what)
    })?;
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
    /// A columnar cache that cannot be read fails the command in one line that names the file
    /// and the remedy; a load error that is not the cache's does not mention it.
    #[test]
    fn an_unreadable_columnar_cache_is_named_with_its_remedy() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("b");
        let spec = bundle::GenerateSpec {
            start: "2024-01-02".parse().unwrap(),
            end: "2024-02-28".parse().unwrap(),
            ..bundle::GenerateSpec::mag7(bundle::Frequency::Daily)
        };
        let hash = bundle::store::write(&bundle::generate::generate(&spec).expect("generate"), &dir).expect("write");
        super::open(&dir).expect("the first open loads and writes the cache");
        let cache = bundle::cache::cache_path(&dir, &hash);
        std::fs::OpenOptions::new().write(true).open(&cache).unwrap().set_len(100).unwrap();
        let e = format!("{:#}", super::open(&dir).expect_err("a truncated cache"));
        assert!(e.contains("delete its columnar cache") && e.contains(&*cache.to_string_lossy()), "{e}");
        let e = format!("{:#}", super::open(&tmp.path().join("missing")).expect_err("no bundle"));
        assert!(e.starts_with("failed to load the bundle:") && !e.contains("columnar"), "{e}");
    }
}
