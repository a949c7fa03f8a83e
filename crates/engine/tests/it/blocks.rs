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
