//! Space validation, TOML files, cardinality and the grid bijection.

use optimize::{Param, Space, Value, render_pairs};
use proptest::prelude::*;

/// Data-driven check: `expect` is `card=N`, `card=inf` or `err:<substring>`.
fn check(toml: &str, expect: &str) {
    let got = match Space::from_toml_str(toml) {
        Ok(s) => match s.cardinality() {
            Some(n) => format!("card={n}"),
            None => "card=inf".to_owned(),
        },
        Err(e) => format!("err:{e}"),
    };
    match expect.strip_prefix("err:") {
        Some(sub) => {
            assert!(got.starts_with("err:") && got.contains(sub), "{toml}\nwanted error containing `{sub}`, got {got}")
        }
        None => assert_eq!(got, expect, "{toml}"),
    }
}

fn d(name: &str, min: i64, max: i64, step: i64) -> String {
    format!("[[parameter]]\nname = \"{name}\"\ntype = \"discrete\"\nmin = {min}\nmax = {max}\nstep = {step}\n")
}

#[test]
fn validation_names_the_parameter_and_problem() {
    check(&d("a", 1, 10, 1), "card=10");
    check(&d("a", 5, 5, 1), "err:parameter `a`: min (5) must be less than max (5)");
    check(&d("a", 9, 5, 1), "err:parameter `a`: min (9) must be less than max");
    check(&d("a", 1, 10, 0), "err:parameter `a`: step (0) must be positive");
    check(&d("a", 1, 10, -2), "err:step (-2) must be positive");
    check(&d("a", 1, 10, 2), "err:parameter `a`: step (2) does not divide the range 1..10");
    check(&(d("a", 1, 10, 1) + &d("a", 1, 3, 1)), "err:parameter `a`: duplicate parameter name");
    check(
        "[[parameter]]\nname = \"w\"\ntype = \"categorical\"\nchoices = [\"equal\"]\n",
        "err:parameter `w`: needs at least 2 choices, got 1",
    );
    check(
        "[[parameter]]\nname = \"w\"\ntype = \"categorical\"\nchoices = [\"a\", \"a\"]\n",
        "err:duplicate choice `a`",
    );
    check("[[parameter]]\nname = \"t\"\ntype = \"continuous\"\nmin = 0.001\nmax = 0.010\nstep = 0.003\n", "card=4");
    check(
        "[[parameter]]\nname = \"t\"\ntype = \"continuous\"\nmin = 0.0\nmax = 1.0\nstep = 0.3\n",
        "err:parameter `t`: step (0.3) does not divide the range",
    );
    check("[[parameter]]\nname = \"t\"\ntype = \"continuous\"\nmin = 0\nmax = 1\n", "card=inf");
    check(
        "[[parameter]]\nname = \"t\"\ntype = \"continuous\"\nmin = 0\nmax = 1\nlog = true\n",
        "err:log scale needs min > 0",
    );
    check(
        "[[parameter]]\nname = \"t\"\ntype = \"continuous\"\nmin = 1\nmax = 0\n",
        "err:parameter `t`: min (1) must be less than max (0)",
    );
    check(&(d("a", 1, 10, 1) + "[[constraint]]\nexpr = \"a < b\"\n"), "err:constraint `a < b`: unknown parameter `b`");
    check(&(d("a", 1, 10, 1) + "[[constraint]]\nexpr = \"a\"\n"), "err:expected `a OP b`");
    check(&(d("a", 1, 10, 1) + &d("b", 1, 10, 1) + "[[constraint]]\nexpr = \"a<=b\"\n"), "card=100");
    check("[[parameter]]\nname = \"a\"\ntype = \"ordinal\"\n", "err:unknown variant `ordinal`");
    check(
        "[[parameter]]\nname = \"a\"\ntype = \"discrete\"\nmin = 1\nmax = 3\nstepp = 1\n",
        "err:unknown field `stepp`",
    );
    check("", "err:at least one parameter");
}

#[test]
fn example_spaces_have_their_exact_cardinality() {
    for (file, card, feasible) in [
        ("ma-36.toml", 36u128, Some(36u128)),
        ("ma-1100.toml", 1100, Some(1100)),
        ("momentum-5m.toml", 5_400_000, None),
    ] {
        let space = Space::from_toml_file(&super::spaces_dir().join(file)).unwrap();
        assert_eq!(space.cardinality(), Some(card), "{file}");
        if let Some(f) = feasible {
            assert_eq!(space.count_feasible(), Some(f), "{file}");
        }
    }
}

#[test]
fn a_missing_space_file_names_its_path() {
    let e = Space::from_toml_file(std::path::Path::new("/nonexistent/space.toml")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/space.toml"), "{e}");
}

#[test]
fn constraints_filter_the_grid() {
    let text = std::fs::read_to_string(super::spaces_dir().join("ma-1100.toml")).unwrap()
        + "[[constraint]]\nexpr = \"short_window < long_window\"\n[[constraint]]\nexpr = \"threshold <= 0.005\"\n";
    let space = Space::from_toml_str(&text).unwrap();
    assert_eq!(space.cardinality(), Some(1100));
    // short=50,long=50 is out (10 thresholds of it), then half the thresholds remain.
    assert_eq!(space.count_feasible(), Some((1100 - 10) / 2));
    assert!(space.grid().all(|c| c["short_window"].as_f64() < c["long_window"].as_f64()));
}

#[test]
fn stepped_floats_render_as_written() {
    let space = Space::from_toml_file(&super::spaces_dir().join("ma-1100.toml")).unwrap();
    let thresholds: Vec<String> = (0..10).map(|k| space.config_at(k).unwrap()["threshold"].render()).collect();
    assert_eq!(thresholds, ["0.001", "0.002", "0.003", "0.004", "0.005", "0.006", "0.007", "0.008", "0.009", "0.01"]);
    let m = Space::from_toml_file(&super::spaces_dir().join("momentum-5m.toml")).unwrap();
    let last = m.config_at(5_399_999).unwrap();
    assert_eq!(last["volatility_threshold"], Value::Float(0.5));
    let pairs = render_pairs(&m.config_at(0).unwrap());
    let want: Vec<(String, String)> = [
        ("holding_period", "1"),
        ("lookback_period", "10"),
        ("max_position_size", "10"),
        ("min_position_size", "1"),
        ("rebalance_frequency", "1"),
        ("top_n_assets", "5"),
        ("volatility_threshold", "0.1"),
        ("weighting_scheme", "equal"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(pairs, want);
}

#[test]
fn grid_order_is_last_parameter_fastest() {
    let space =
        Space::new(vec![Param::discrete("a", 0, 1, 1), Param::categorical("b", &["x", "y", "z"])], &[]).unwrap();
    let got: Vec<String> = space.grid().map(|c| format!("{}{}", c["a"].render(), c["b"].render())).collect();
    assert_eq!(got, ["0x", "0y", "0z", "1x", "1y", "1z"]);
}

fn momentum() -> Space {
    Space::from_toml_file(&super::spaces_dir().join("momentum-5m.toml")).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn bijection_on_the_5_4m_space(i in 0u128..5_400_000) {
        let space = momentum();
        let c = space.config_at(i).unwrap();
        prop_assert_eq!(space.index_of(&c).unwrap(), i);
        prop_assert_eq!(space.decode(&space.encode(&c).unwrap()), c.clone());
        prop_assert!(space.validate_config(&c).is_ok());
    }

    #[test]
    fn cardinality_is_the_product_and_the_grid_enumerates_it(
        dims in proptest::collection::vec((-20i64..20, 1i64..5, 1i64..4), 1..4),
        cats in 2usize..4,
    ) {
        let mut params: Vec<Param> = dims.iter().enumerate()
            .map(|(i, (min, n, step))| Param::discrete(&format!("p{i}"), *min, min + n * step, *step))
            .collect();
        params.push(Param::categorical("c", &["a", "b", "c", "d"][..cats]));
        let want: u128 = dims.iter().map(|(_, n, _)| (*n as u128) + 1).product::<u128>() * cats as u128;
        let space = Space::new(params, &[]).unwrap();
        prop_assert_eq!(space.cardinality(), Some(want));
        let all: Vec<_> = space.grid().collect();
        prop_assert_eq!(all.len() as u128, want);
        for (i, c) in all.iter().enumerate() {
            prop_assert_eq!(space.index_of(c).unwrap(), i as u128);
        }
    }

    #[test]
    fn continuous_encoding_round_trips(x in 0.001f64..10.0, log in any::<bool>()) {
        let space = Space::new(vec![Param::continuous("x", 0.001, 10.0, None, log)], &[]).unwrap();
        let c: optimize::Config = [("x".to_owned(), Value::Float(x))].into_iter().collect();
        let u = space.encode(&c).unwrap();
        prop_assert!((0.0..=1.0).contains(&u[0]));
        let back = space.decode(&u)["x"].as_f64().unwrap();
        prop_assert!((back - x).abs() <= 1e-9 * x.max(1.0));
    }
}

#[test]
fn u128_cardinality_beyond_u64() {
    let params = (0..4).map(|i| Param::discrete(&format!("p{i}"), 0, 1_000_000_000 - 1, 1)).collect();
    let space = Space::new(params, &[]).unwrap();
    assert_eq!(space.cardinality(), Some(10u128.pow(36)));
    let i = 10u128.pow(36) - 12345;
    assert_eq!(space.index_of(&space.config_at(i).unwrap()).unwrap(), i);
}

proptest! {
    /// The stores write `config_json_text`; resume compares it with `config_to_json`'s text,
    /// so the two must agree byte for byte, floats and escapes included.
    #[test]
    fn config_json_text_is_the_json_values_text(
        i in any::<i64>(),
        bits in any::<u64>(),
        x in -1e300f64..1e300,
        s in ".{0,12}",
    ) {
        let c: optimize::Config = [
            ("a".to_owned(), Value::Int(i)),
            ("b\"\\".to_owned(), Value::Float(f64::from_bits(bits))),
            ("c".to_owned(), Value::Float(x)),
            ("d".to_owned(), Value::Str(s)),
            ("e".to_owned(), Value::Float(-0.0)),
        ]
        .into_iter()
        .collect();
        prop_assert_eq!(optimize::config_json_text(&c), optimize::config_to_json(&c).to_string());
    }
}

/// A grid over a constrained space suggests exactly the feasible points, in index order
/// (infeasible ones are skipped without being built).
#[test]
fn a_constrained_grid_suggests_exactly_the_feasible_points_in_order() {
    use optimize::{GridSearch, Mode, Searcher, Suggestion};
    let text = "[[parameter]]\nname = \"short\"\ntype = \"discrete\"\nmin = 1\nmax = 9\nstep = 1\n\
                [[parameter]]\nname = \"long\"\ntype = \"discrete\"\nmin = 1\nmax = 9\nstep = 1\n\
                [[constraint]]\nexpr = \"short < long\"\n";
    let space = Space::from_toml_str(text).expect("space");
    let want: Vec<optimize::Config> = (0..space.cardinality().expect("finite"))
        .map(|k| space.config_at(k).expect("point"))
        .filter(|c| space.is_feasible(c))
        .collect();
    let mut grid = GridSearch::new(space, 1.0, None).expect("grid");
    let mut got = Vec::new();
    while let Suggestion::Trial(t) = grid.suggest(Mode::Async).expect("suggest") {
        assert_eq!(t.id, got.len() as u64);
        got.push(t.config);
    }
    assert_eq!(want.len(), 36);
    assert_eq!(got, want);
    assert!(matches!(grid.suggest(Mode::Async).expect("suggest"), Suggestion::Done));
}
