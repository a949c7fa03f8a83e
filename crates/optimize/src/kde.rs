//! BOHB's model: two product-kernel densities (good and bad configs) per budget, fitted and
//! sampled exactly as HpBandSter 0.7.4's `BOHB` config generator with statsmodels'
//! `KDEMultivariate` (normal-reference bandwidths), minus its known faults.
//!
//! Vectors: a non-categorical parameter is its unit-cube coordinate (Gaussian kernel); a
//! categorical one is its choice index (Aitchison-Aitken kernel).
//!
//! Faults avoided: the Aitchison-Aitken kernel uses the parameter's real number of choices
//! (statsmodels counts the levels present in the data, dividing by zero when only one is),
//! and a categorical bandwidth is capped at `(c−1)/c`, where the kernel is uniform, so it
//! never goes negative.

use std::collections::BTreeMap;

use rand::RngExt;
use statrs::function::erf::{erfc, erfc_inv};

/// BOHB's model settings, with HpBandSter's defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BohbSettings {
    /// Percentage of points (by loss) that make the good density. Default 15.
    pub top_n_percent: usize,
    /// Candidates drawn per model-based suggestion. Default 64.
    pub num_samples: usize,
    /// Probability of sampling from the prior even when a model exists. Default 1/3.
    pub random_fraction: f64,
    /// Factor widening the bandwidth when drawing candidates. Default 3.
    pub bandwidth_factor: f64,
    /// Smallest bandwidth. Default 1e-3.
    pub min_bandwidth: f64,
    /// Points needed on a budget before a fit is tried; `None` (and anything smaller) means d+1.
    pub min_points_in_model: Option<usize>,
}

impl Default for BohbSettings {
    fn default() -> Self {
        BohbSettings {
            top_n_percent: 15,
            num_samples: 64,
            random_fraction: 1.0 / 3.0,
            bandwidth_factor: 3.0,
            min_bandwidth: 1e-3,
            min_points_in_model: None,
        }
    }
}

/// A product-kernel density over BOHB vectors.
#[derive(Debug, Clone)]
pub struct Kde {
    data: Vec<Vec<f64>>,
    bw: Vec<f64>,
    /// 0 for a Gaussian dimension, else the number of choices.
    levels: Vec<usize>,
}

impl Kde {
    /// Fit with statsmodels' normal-reference rule, `1.06·σ·n^(−1/(4+d))` (σ with ddof 0),
    /// clipped below at `min_bandwidth`.
    pub fn fit(data: Vec<Vec<f64>>, levels: &[usize], min_bandwidth: f64) -> Kde {
        let n = data.len() as f64;
        let d = levels.len();
        let bw = (0..d)
            .map(|j| {
                let mean = data.iter().map(|x| x[j]).sum::<f64>() / n;
                let var = data.iter().map(|x| (x[j] - mean).powi(2)).sum::<f64>() / n;
                let mut bw = (1.06 * var.sqrt() * n.powf(-1.0 / (4.0 + d as f64))).max(min_bandwidth);
                if levels[j] > 0 {
                    bw = bw.min((levels[j] - 1) as f64 / levels[j] as f64);
                }
                bw
            })
            .collect();
        Kde { data, bw, levels: levels.to_vec() }
    }

    /// The fitted bandwidths.
    pub fn bandwidths(&self) -> &[f64] {
        &self.bw
    }

    /// The training points.
    pub fn data(&self) -> &[Vec<f64>] {
        &self.data
    }

    /// Density at `x`.
    pub fn pdf(&self, x: &[f64]) -> f64 {
        let sum: f64 = self
            .data
            .iter()
            .map(|xi| {
                let mut k = 1.0;
                for j in 0..x.len() {
                    let h = self.bw[j];
                    k *= if self.levels[j] == 0 {
                        let z = (x[j] - xi[j]) / h;
                        (-0.5 * z * z).exp() / ((2.0 * std::f64::consts::PI).sqrt() * h)
                    } else if x[j] == xi[j] {
                        1.0 - h
                    } else {
                        h / (self.levels[j] - 1) as f64
                    };
                }
                k
            })
            .sum();
        sum / self.data.len() as f64
    }
}

fn std_normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

fn std_normal_inv_cdf(p: f64) -> f64 {
    -std::f64::consts::SQRT_2 * erfc_inv(2.0 * p)
}

/// A standard normal truncated to `[a, b]`, by inverting the CDF (scipy's `truncnorm`).
pub fn truncated_std_normal<R: rand::Rng + ?Sized>(rng: &mut R, a: f64, b: f64) -> f64 {
    if a > 0.0 {
        // Work in the left tail, where the CDF keeps its precision.
        return -truncated_std_normal(rng, -b, -a);
    }
    let (pa, pb) = (std_normal_cdf(a), std_normal_cdf(b));
    let u: f64 = rng.random();
    if pb - pa <= 0.0 {
        return a.max(0.0f64.min(b));
    }
    let z = std_normal_inv_cdf(pa + u * (pb - pa));
    if z.is_finite() { z.clamp(a, b) } else { a.max(0.0f64.min(b)) }
}

/// Good and bad densities for one budget.
#[derive(Debug, Clone)]
pub struct KdePair {
    /// l(x): density of the good configs.
    pub good: Kde,
    /// g(x): density of the bad configs.
    pub bad: Kde,
}

/// Sizes of the good and bad sets for `n` points in `d` dimensions:
/// `n_good = max(m, top·n/100)`, `n_bad = max(m, (100−top)·n/100)` (integer division),
/// where m = min_points_in_model, then clipped to the data (`bad` takes what `good` left).
pub fn split_sizes(n: usize, min_points: usize, top_n_percent: usize) -> (usize, usize) {
    let n_good = min_points.max(top_n_percent * n / 100);
    let n_bad = min_points.max((100 - top_n_percent) * n / 100);
    let good = n_good.min(n);
    let bad = n_bad.min(n - good);
    (good, bad)
}

/// Observations per budget and the fitted models.
#[derive(Debug, Clone)]
pub struct BohbModel {
    settings: BohbSettings,
    levels: Vec<usize>,
    min_points: usize,
    /// Keyed by `f64::to_bits` of the (positive) budget, which orders like the budget.
    observations: BTreeMap<u64, Vec<(Vec<f64>, f64)>>,
    models: BTreeMap<u64, KdePair>,
}

impl BohbModel {
    /// An empty model for vectors with the given per-dimension levels (0 = continuous).
    pub fn new(settings: BohbSettings, levels: Vec<usize>) -> BohbModel {
        let d = levels.len();
        let min_points = settings.min_points_in_model.unwrap_or(d + 1).max(d + 1);
        BohbModel { settings, levels, min_points, observations: BTreeMap::new(), models: BTreeMap::new() }
    }

    /// The settings.
    pub fn settings(&self) -> &BohbSettings {
        &self.settings
    }

    /// The budget of the current model (the largest budget with one), if any.
    pub fn model_budget(&self) -> Option<f64> {
        self.models.keys().next_back().map(|b| f64::from_bits(*b))
    }

    /// The model for `budget`, if fitted.
    pub fn model(&self, budget: f64) -> Option<&KdePair> {
        self.models.get(&budget.to_bits())
    }

    /// Number of observations kept for `budget`.
    pub fn observations(&self, budget: f64) -> usize {
        self.observations.get(&budget.to_bits()).map_or(0, Vec::len)
    }

    /// HpBandSter's `new_result`: failures count as loss +inf (bad configs); a result on a
    /// budget below the current model's is dropped; refit once enough points exist.
    pub fn observe(&mut self, budget: f64, vector: Vec<f64>, loss: Option<f64>) {
        let loss = loss.filter(|l| l.is_finite()).unwrap_or(f64::INFINITY);
        let key = budget.to_bits();
        self.observations.entry(key).or_default();
        if self.models.keys().next_back().is_some_and(|m| *m > key) {
            return;
        }
        let obs = self.observations.get_mut(&key).expect("inserted above");
        obs.push((vector, loss));
        if obs.len() < self.min_points {
            return;
        }
        let mut idx: Vec<usize> = (0..obs.len()).collect();
        idx.sort_by(|a, b| obs[*a].1.total_cmp(&obs[*b].1));
        let d = self.levels.len();
        let (n_good, n_bad) = split_sizes(obs.len(), self.min_points, self.settings.top_n_percent);
        if n_good <= d || n_bad <= d {
            return;
        }
        let rows = |r: &[usize]| r.iter().map(|i| obs[*i].0.clone()).collect::<Vec<_>>();
        let good = Kde::fit(rows(&idx[..n_good]), &self.levels, self.settings.min_bandwidth);
        let bad = Kde::fit(rows(&idx[n_good..n_good + n_bad]), &self.levels, self.settings.min_bandwidth);
        self.models.insert(key, KdePair { good, bad });
    }

    /// Propose a vector: `None` means "sample from the prior" (no model yet, the random
    /// fraction fired, or no candidate passed `feasible`). Otherwise the feasible candidate
    /// with the smallest `g(x)/l(x)` among `num_samples` drawn around random good points.
    pub fn propose<R: rand::Rng + ?Sized>(&self, rng: &mut R, feasible: &dyn Fn(&[f64]) -> bool) -> Option<Vec<f64>> {
        let pair = self.models.values().next_back()?;
        if rng.random::<f64>() < self.settings.random_fraction {
            return None;
        }
        let (l, g) = (&pair.good, &pair.bad);
        let mut best = f64::INFINITY;
        let mut best_vector = None;
        for _ in 0..self.settings.num_samples {
            let datum = &l.data[rng.random_range(0..l.data.len())];
            let mut v = Vec::with_capacity(datum.len());
            for (j, &m) in datum.iter().enumerate() {
                let bw = l.bw[j].max(self.settings.min_bandwidth);
                if self.levels[j] == 0 {
                    let bw = self.settings.bandwidth_factor * bw;
                    v.push(m + bw * truncated_std_normal(rng, -m / bw, (1.0 - m) / bw));
                } else if rng.random::<f64>() < 1.0 - bw {
                    v.push(m);
                } else {
                    v.push(rng.random_range(0..self.levels[j]) as f64);
                }
            }
            if !feasible(&v) {
                continue;
            }
            let lv = l.pdf(&v);
            let val = g.pdf(&v).max(1e-32) / lv.max(1e-32);
            if !val.is_finite() {
                if lv.is_finite() {
                    best_vector = Some(v);
                    break;
                }
                continue;
            }
            if val < best {
                best = val;
                best_vector = Some(v);
            }
        }
        best_vector
    }
}
