//! The building blocks a strategy of one's own uses: a strategy written only with
//! `Run::sma` and `Run::long_flat` reproduces the built-in MA kernel bit for bit.

use proptest::prelude::*;

use engine::{Error, Metrics, ParamKind, ParamSpec, ParamValues, Registry, Run, Strategy};

use crate::{Data, assert_same, ma, opts};

/// The MA crossover again, the slow and obvious way.
struct PlainMa;

const TABLE: &[ParamSpec] = &[
    ParamSpec { name: "short", kind: ParamKind::Integer { default: 2, min: 1, max: None }, doc: "short window" },
    ParamSpec { name: "long", kind: ParamKind::Integer { default: 5, min: 1, max: None }, doc: "long window" },
];

impl Strategy for PlainMa {
    type Params = (usize, usize);
    type Scratch = Vec<(Vec<f64>, Vec<f64>)>;
    fn name(&self) -> &'static str {
        "plain-ma"
    }
    fn parameters(&self) -> &'static [ParamSpec] {
        TABLE
    }
    fn build(&self, v: &ParamValues) -> Result<(usize, usize), Error> {
        Ok((v.int(0) as usize, v.int(1) as usize))
    }
    fn run(&self, p: &(usize, usize), run: &mut Run<'_, '_>, smas: &mut Self::Scratch) -> Result<Metrics, Error> {
        smas.clear();
        for k in 0..run.n_assets() {
            let short = run.sma(k, p.0).to_vec();
            smas.push((short, run.sma(k, p.1).to_vec()));
        }
        let firsts: Vec<usize> = (0..run.n_assets()).map(|k| run.asset(k).first_bar).collect();
        Ok(run.long_flat(|k, t| {
            let (s, l) = (smas[k].0[t - firsts[k]], smas[k].1[t - firsts[k]]);
            if s > l {
                Some(true)
            } else if s < l {
                Some(false)
            } else {
                None
            }
        }))
    }
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 64, rng_seed: proptest::test_runner::RngSeed::Fixed(11), ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn long_flat_and_the_sma_cache_reproduce_the_ma_kernel(
        seed in any::<u64>(), short in 1usize..30, long in 1usize..60, intraday in any::<bool>(),
        budget in 0.05f64..=1.0,
    ) {
        let registry = Registry::new().with(PlainMa);
        let pairs = [("short".to_string(), short.to_string()), ("long".to_string(), long.to_string())];
        let plain = registry.configure("plain-ma", &pairs).unwrap();
        let data = Data::random(seed, 4, 90, if intraday { 3 } else { 1 });
        let market = data.market();
        let o = opts(budget, None, 0.001);
        let mut bt = engine::Backtester::new(&market).unwrap();
        let (mut e1, mut e2) = (Vec::new(), Vec::new());
        let a = bt.run_with_equity(&plain, &o, &mut e1).unwrap();
        let b = bt.run_with_equity(&ma(short, long, 0.0), &o, &mut e2).unwrap();
        assert_same(&a, &b);
        prop_assert_eq!(e1, e2);
    }
}

#[test]
fn registries_refuse_duplicates_and_list_names() {
    let r = Registry::builtin().with(PlainMa);
    assert_eq!(r.names(), ["ma-crossover", "momentum", "plain-ma"]);
    assert_eq!(r.id_of("plain-ma").unwrap().0, 2);
    assert_eq!(
        r.lookup("nope").unwrap_err().to_string(),
        "unknown strategy `nope` (expected one of: ma-crossover, momentum, plain-ma)"
    );
    let again = std::panic::catch_unwind(|| Registry::builtin().with(PlainMa).with(PlainMa));
    assert!(again.is_err(), "a second registration of one name is a bug");
}

/// Equal weights bought once, on W's first close, through `Run::shared_cash`.
struct BuyAll;

impl Strategy for BuyAll {
    type Params = ();
    type Scratch = engine::SharedCash;
    fn name(&self) -> &'static str {
        "buy-all"
    }
    fn parameters(&self) -> &'static [ParamSpec] {
        &[]
    }
    fn build(&self, _: &ParamValues) -> Result<(), Error> {
        Ok(())
    }
    fn run(&self, _: &(), run: &mut Run<'_, '_>, cash: &mut Self::Scratch) -> Result<Metrics, Error> {
        let first = run.window().start;
        Ok(run.shared_cash(cash, |t, w| {
            let k = w.len() as f64;
            w.iter_mut().for_each(|x| *x = 1.0 / k);
            t == first
        }))
    }
}

#[test]
fn shared_cash_fills_at_the_next_open_with_one_scale_for_all_buys() {
    let mut data = Data::daily(&[10.0, 11.0, 12.0, 13.0], &[10.0, 12.0, 11.0, 14.0]);
    let mut b = data.assets[0].clone();
    (b.sid, b.open, b.close) = (1, vec![20.0, 20.0, 22.0, 21.0], vec![20.0, 21.0, 20.0, 22.0]);
    data.assets.push(b);
    let market = data.market();
    let s = Registry::new().with(BuyAll).configure("buy-all", &[]).unwrap();
    let mut eq = Vec::new();
    let m = engine::Backtester::new(&market).unwrap().run_with_equity(&s, &opts(1.0, None, 0.001), &mut eq).unwrap();
    // Decided on close 0, filled at the opens of bar 1 (11 and 20) with V = 1: the buys cost
    // 0.5·1.001 each, more than the cash, so both are scaled by 1/1.001.
    let fee = 1.001;
    let (a, b) = (0.5 / 11.0 / fee, 0.5 / 20.0 / fee);
    let want = [1.0, a * 12.0 + b * 21.0, a * 11.0 + b * 20.0, a * 14.0 + b * 22.0];
    for (got, want) in eq.iter().zip(want) {
        crate::assert_close(*got, want, 1e-14, "equity");
    }
    assert_eq!((m.trades, m.bars), (2, 4));
    crate::assert_close(m.final_equity, want[3], 1e-14, "final equity");
}
