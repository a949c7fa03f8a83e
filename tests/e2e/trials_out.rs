//! `btopt optimize --trials-out FILE.parquet` (issue 11): the file holds exactly the trials of
//! the search, with the contract's columns and types, and `--json` then names it instead of
//! listing the trials.

use std::collections::BTreeMap;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use serde_json::Value;

use crate::optimize_cli::{optimize, space_1100};
use crate::support::p;

/// Rows by trial id, each as column name → value.
type Rows = BTreeMap<u64, BTreeMap<String, Value>>;

/// Every row of the file, and the (name, physical type) of every column.
fn read(path: &std::path::Path) -> (Rows, Vec<(String, String)>) {
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let schema = reader.metadata().file_metadata().schema_descr();
    let types = schema.columns().iter().map(|c| (c.name().to_string(), format!("{:?}", c.physical_type()))).collect();
    let mut rows = BTreeMap::new();
    for row in reader.get_row_iter(None).unwrap() {
        let row = row.unwrap();
        let mut m = BTreeMap::new();
        for (name, field) in row.get_column_iter() {
            let v = match field {
                Field::Null => Value::Null,
                Field::Long(i) => serde_json::json!(i),
                Field::Double(x) => serde_json::json!(x),
                Field::Str(s) => serde_json::json!(s),
                other => panic!("unexpected field {other:?}"),
            };
            m.insert(name.clone(), v);
        }
        rows.insert(m["trial_id"].as_u64().unwrap(), m);
    }
    (rows, types)
}

#[test]
fn the_parquet_file_holds_exactly_the_trials() {
    let tmp = tempfile::tempdir().unwrap();
    let space = space_1100();
    for (search, extra) in [("grid", vec!["--evaluations", "60"]), ("hyperband", vec!["--iterations", "2"])] {
        let file = tmp.path().join(format!("{search}.parquet"));
        let mut args = vec!["--space", p(&space), "--search", search, "--deterministic"];
        args.extend(extra.iter().copied());
        let listed = optimize(&args, "");
        args.extend(["--trials-out", p(&file)]);
        let named = optimize(&args, "");
        assert!(named.get("trials").is_none(), "{named}");
        assert_eq!(named["trials_file"], p(&file));
        let (rows, types) = read(&file);
        let want = [
            ("short_window", "INT64"),
            ("long_window", "INT64"),
            ("threshold", "DOUBLE"),
            ("budget", "DOUBLE"),
            ("loss", "DOUBLE"),
            ("sharpe", "DOUBLE"),
            ("status", "BYTE_ARRAY"),
            ("trial_id", "INT64"),
            ("bracket", "INT64"),
            ("stage", "INT64"),
        ];
        assert_eq!(types, want.map(|(a, b)| (a.to_string(), b.to_string())));
        let trials = listed["trials"].as_array().unwrap();
        assert_eq!(rows.len(), trials.len(), "{search}");
        for t in trials {
            let r = &rows[&t["trial_id"].as_u64().unwrap()];
            for k in ["short_window", "long_window", "threshold"] {
                assert_eq!(r[k], t["params"][k], "{search} {k}");
            }
            for k in ["budget", "loss", "status", "bracket", "stage"] {
                assert_eq!(r[k], t[k], "{search} {k}");
            }
            assert_eq!(r["sharpe"].as_f64(), t["loss"].as_f64().map(|l| -l));
        }
    }
}

/// A grid larger than one row group (65,536 trials) streams into several row groups and
/// still holds every trial exactly once, with the values `--json` lists.
#[test]
fn a_large_grid_streams_into_several_row_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let space = tmp.path().join("ma-70k.toml");
    std::fs::write(
        &space,
        "[[parameter]]\nname = \"short_window\"\ntype = \"discrete\"\nmin = 2\nmax = 281\nstep = 1\n\
         [[parameter]]\nname = \"long_window\"\ntype = \"discrete\"\nmin = 3\nmax = 252\nstep = 1\n",
    )
    .unwrap();
    let file = tmp.path().join("grid.parquet");
    let base = ["--space", p(&space), "--search", "grid", "--no-overfitting", "--workers", "2"];
    let mut args = base.to_vec();
    args.extend(["--trials-out", p(&file)]);
    let named = optimize(&args, "");
    assert_eq!(named["evaluations"], 70_000);
    let reader = SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    assert_eq!(reader.metadata().num_row_groups(), 2, "65,536 + 4,464 rows");
    let (rows, _) = read(&file);
    assert_eq!(rows.keys().copied().collect::<Vec<_>>(), (0..70_000).collect::<Vec<u64>>());
    let listed = optimize(&base, "");
    let trials = listed["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 70_000);
    for t in trials {
        let r = &rows[&t["trial_id"].as_u64().unwrap()];
        assert_eq!(
            (&r["short_window"], &r["long_window"], &r["loss"]),
            (&t["params"]["short_window"], &t["params"]["long_window"], &t["loss"])
        );
    }
    assert!(!tmp.path().join("grid.parquet.partial").exists());
}
