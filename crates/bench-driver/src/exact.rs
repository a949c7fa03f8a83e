//! The exact optimum of a space on a bundle: the exhaustive grid at full budget, run once
//! through the optimizer on a pool and cached under the data dir, so that BOHB is judged
//! against the true answer rather than the best of a sample.
//!
//! Cache: `<data-dir>/exact-<bundle hash, 16 hex>-<space hash>.json` (the optimum, its params,
//! the points, how long the grid took) beside `….f64`, every point's full-budget sharpe sorted
//! ascending as little-endian `f64` (43 MB for the 5.4M space), from which any sharpe's rank
//! and the fraction of the space near the optimum are read. Both are written to temporary
//! siblings and renamed into place, the sharpes first, so a half-written cache is never read.
//! The key is the bundle's content hash and the space's identity hash, so a changed bundle or
//! space is computed afresh.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use engine::{Registry, RunOptions};
use optimize::{SearchKind, SearchSpec, Space, TrialStatus};

use crate::Data;
use crate::scenarios::Pool;

/// The grid's answer.
pub(crate) struct Exact {
    /// The best full-budget sharpe over every point.
    pub(crate) optimum: f64,
    /// Its params (the lowest trial id on a tie), as the CLI prints them.
    pub(crate) best_params: serde_json::Value,
    /// Points evaluated (crashed ones included).
    pub(crate) points: u64,
    /// Every ok point's sharpe, ascending.
    pub(crate) sorted: Vec<f64>,
    /// Wall seconds the grid took when it was computed.
    pub(crate) seconds: f64,
    /// Whether it came from the cache.
    pub(crate) cached: bool,
}

impl Exact {
    /// The percentage of points whose sharpe is at or below `sharpe` (100 at the optimum).
    pub(crate) fn percentile(&self, sharpe: f64) -> f64 {
        let at_or_below = self.sorted.partition_point(|&s| s <= sharpe);
        100.0 * at_or_below as f64 / self.sorted.len().max(1) as f64
    }

    /// The fraction of points within `fraction` (0.1 = 10%) of the optimum, in the shortfall
    /// sense of `decide::shortfall`: sharpe ≥ optimum − fraction·|optimum|.
    pub(crate) fn fraction_within(&self, fraction: f64) -> f64 {
        let floor = self.optimum - fraction * self.optimum.abs();
        let below = self.sorted.partition_point(|&s| s < floor);
        (self.sorted.len() - below) as f64 / self.sorted.len().max(1) as f64
    }
}

fn paths(data_dir: &Path, data: &Data, space: &Space) -> (PathBuf, PathBuf) {
    let bundle = data.bundle.content_hash().to_string();
    let stem = format!("exact-{}-{}", &bundle[..bundle.len().min(16)], optimize::identity_hash(&space.identity_json()));
    (data_dir.join(format!("{stem}.json")), data_dir.join(format!("{stem}.f64")))
}

/// Whether the exact optimum of `space` on `data` is cached under `data_dir`.
pub(crate) fn is_cached(data_dir: &Path, data: &Data, space: &Space) -> bool {
    let (json, values) = paths(data_dir, data, space);
    json.is_file() && values.is_file()
}

/// The exact optimum of `space` for momentum on `data`: from the cache, or computed now on
/// `pool` (which must be a pool over `data`) and cached.
pub(crate) fn exact(pool: &mut Pool, data_dir: &Path, data: &Data, space: &Space) -> Result<Exact> {
    let (json_path, values_path) = paths(data_dir, data, space);
    if json_path.is_file() && values_path.is_file() {
        return load(&json_path, &values_path);
    }
    let strategies = Registry::builtin();
    let s = strategies.lookup("momentum")?.clone();
    let id = strategies.id_of("momentum")?;
    let base = engine::ParamValues::defaults(s.parameters());
    let mut searcher = SearchSpec { kind: SearchKind::Grid, ..SearchSpec::default() }.build(space)?;
    let mut ev = runner::PoolEvaluator::new(pool, s, id, base, None, RunOptions::DEFAULT_FEE);
    let mut sorted = Vec::new();
    let mut best: Option<(f64, u64, serde_json::Value)> = None;
    let mut observer = |p: &optimize::Progress<'_>| {
        let t = p.trial;
        if let (TrialStatus::Ok, Some(loss)) = (t.status, t.loss) {
            let sharpe = -loss;
            sorted.push(sharpe);
            let better = best.as_ref().is_none_or(|(b, bid, _)| sharpe > *b || (sharpe == *b && t.trial_id < *bid));
            if better {
                best = Some((sharpe, t.trial_id, optimize::config_to_json(&t.config)));
            }
        }
    };
    let options = optimize::SearchOptions { deterministic: false, reuse_results: false, streaming: true };
    let started = Instant::now();
    let summary = optimize::optimize(space, &mut *searcher, &mut ev, &mut optimize::NullStore, options, &mut observer)?;
    let seconds = started.elapsed().as_secs_f64();
    let (optimum, _, best_params) = best.ok_or_else(|| anyhow!("every point of the grid failed"))?;
    sorted.sort_by(f64::total_cmp);
    let exact = Exact { optimum, best_params, points: summary.evaluations, sorted, seconds, cached: false };
    save(&exact, &json_path, &values_path)?;
    Ok(exact)
}

fn save(e: &Exact, json_path: &Path, values_path: &Path) -> Result<()> {
    let bytes: Vec<u8> = e.sorted.iter().flat_map(|v| v.to_le_bytes()).collect();
    let tmp = values_path.with_extension("f64.partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("failed to write {}", tmp.display()))?;
    std::fs::rename(&tmp, values_path)?;
    let meta = serde_json::json!({
        "optimum_sharpe": e.optimum, "best_params": e.best_params, "points": e.points,
        "ok_points": e.sorted.len(), "seconds": e.seconds,
    });
    let tmp = json_path.with_extension("json.partial");
    std::fs::write(&tmp, serde_json::to_string_pretty(&meta)?)?;
    std::fs::rename(&tmp, json_path)?;
    Ok(())
}

fn load(json_path: &Path, values_path: &Path) -> Result<Exact> {
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json_path)?)
        .with_context(|| format!("bad cache file {}", json_path.display()))?;
    let bytes = std::fs::read(values_path)?;
    let sorted: Vec<f64> = bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
    let field = |k: &str| meta.get(k).cloned().ok_or_else(|| anyhow!("{} has no {k}", json_path.display()));
    let ok_points = field("ok_points")?.as_u64().unwrap_or(0) as usize;
    if sorted.len() != ok_points || bytes.len() % 8 != 0 {
        return Err(anyhow!("{} holds {} sharpes, its index says {ok_points}", values_path.display(), sorted.len()));
    }
    Ok(Exact {
        optimum: field("optimum_sharpe")?.as_f64().unwrap_or(f64::NAN),
        best_params: field("best_params")?,
        points: field("points")?.as_u64().unwrap_or(0),
        sorted,
        seconds: field("seconds")?.as_f64().unwrap_or(f64::NAN),
        cached: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(sorted: Vec<f64>) -> Exact {
        let optimum = *sorted.last().unwrap();
        Exact {
            optimum,
            best_params: serde_json::json!({"a": 1}),
            points: sorted.len() as u64 + 1,
            sorted,
            seconds: 2.5,
            cached: false,
        }
    }

    #[test]
    fn ranks_and_the_share_near_the_optimum_are_read_off_the_sorted_sharpes() {
        let e = exact(vec![-1.0, 0.2, 0.5, 0.9, 0.95, 1.0]);
        assert_eq!(e.percentile(1.0), 100.0);
        assert_eq!(e.percentile(0.5), 50.0);
        assert_eq!(e.percentile(-2.0), 0.0);
        // Within 10% of 1.0: sharpe >= 0.9, three of six.
        assert_eq!(e.fraction_within(0.10), 0.5);
        assert_eq!(e.fraction_within(0.0), 1.0 / 6.0);
    }

    #[test]
    fn the_cache_round_trips_and_refuses_a_short_values_file() {
        let dir = std::env::temp_dir().join(format!("btopt-exact-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (json, values) = (dir.join("e.json"), dir.join("e.f64"));
        let e = exact(vec![-0.5, 0.25, 0.75]);
        save(&e, &json, &values).unwrap();
        let back = load(&json, &values).unwrap();
        assert!(back.cached);
        assert_eq!((back.optimum, back.points, &back.sorted, &back.best_params), (0.75, 4, &e.sorted, &e.best_params));
        std::fs::write(&values, [0u8; 16]).unwrap();
        assert!(load(&json, &values).is_err(), "2 values where the index says 3");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
