//! `btopt bundle …`.

use crate::{btopt, check_error, p};

#[test]
fn generate_info_verify_export_ingest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    let args = ["bundle", "generate", "--preset", "mag7", "--frequency", "daily", "--start", "2021-01-04"];
    let r = btopt(&[&args[..], &["--end", "2021-03-31", "--out", p(&dir)]].concat());
    assert_eq!(r.code, 0, "{}", r.stderr);

    let r = btopt(&["bundle", "info", p(&dir), "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 1, "one JSON object on one line");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["sessions"], 61);
    assert_eq!(v["assets"].as_array().unwrap().len(), 7);

    let r = btopt(&["bundle", "verify", p(&dir)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("ok:"));

    let csv = tmp.path().join("csv");
    assert_eq!(btopt(&["bundle", "export", "csvdir", p(&dir), "--out", p(&csv)]).code, 0);
    let back = tmp.path().join("back");
    let r = btopt(&["bundle", "ingest", "csvdir", "--source", p(&csv), "--out", p(&back)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r2 = btopt(&["bundle", "info", p(&back), "--json"]);
    let w: serde_json::Value = serde_json::from_str(&r2.stdout).unwrap();
    assert_eq!(w["assets"], v["assets"]);
}

#[test]
fn same_seed_same_hash_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let mut hashes = vec![];
    for (name, seed) in [("a", "5"), ("b", "5"), ("c", "6")] {
        let dir = tmp.path().join(name);
        let r = btopt(&[
            "bundle",
            "generate",
            "--preset",
            "universe",
            "--assets",
            "12",
            "--start",
            "2022-01-03",
            "--end",
            "2022-06-30",
            "--seed",
            seed,
            "--out",
            p(&dir),
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let info: serde_json::Value =
            serde_json::from_str(&btopt(&["bundle", "info", p(&dir), "--json"]).stdout).unwrap();
        hashes.push(info["content_hash"].as_str().unwrap().to_string());
    }
    assert_eq!(hashes[0], hashes[1]);
    assert_ne!(hashes[0], hashes[2]);
}

#[test]
fn errors_are_one_line_and_non_zero() {
    let tmp = tempfile::tempdir().unwrap();
    check_error(&btopt(&["bundle", "info", p(&tmp.path().join("missing"))]), "not a bundle directory");
    check_error(&btopt(&["bundle", "generate", "--preset", "mag7", "--out", p(tmp.path())]), "already exists");
    check_error(&btopt(&["bundle", "generate", "--preset", "nope", "--out", "x"]), "nope");
    let r =
        btopt(&["bundle", "generate", "--preset", "mag7", "--start", "1990-01-02", "--out", p(&tmp.path().join("z"))]);
    check_error(&r, "outside the supported calendar years");
    assert!(!tmp.path().join("z").exists());
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("daily")).unwrap();
    std::fs::write(src.join("daily/XYZ.csv"), "date,open,high,low,close,volume\n2024-01-02,1,2,0.5,1.5,-3\n").unwrap();
    let r = btopt(&["bundle", "ingest", "csvdir", "--source", p(&src), "--out", p(&tmp.path().join("o"))]);
    check_error(&r, "XYZ.csv:2: volume -3 is negative");
    assert!(!tmp.path().join("o").exists());
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("assets.sqlite"), vec![7u8; 4096]).unwrap();
    check_error(&btopt(&["bundle", "verify", p(&foreign)]), "assets.sqlite");
}

#[test]
fn plant_edge_values_are_checked_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("b");
    let generate = |edge: &str| {
        btopt(&[
            "bundle",
            "generate",
            "--preset",
            "mag7",
            "--start",
            "2021-01-04",
            "--end",
            "2021-06-30",
            "--plant-edge",
            edge,
            "--out",
            p(&out),
        ])
    };
    for (edge, expect) in [
        ("20", "expected SHORT,LONG[,STRENGTH[,THRESHOLD]]"),
        ("20,110,1,0.001,9", "expected SHORT,LONG[,STRENGTH[,THRESHOLD]]"),
        ("x,110", "short window `x` is not a whole number"),
        ("20,-5", "long window `-5` is not a whole number"),
        ("110,20", "1 <= short < long"),
        ("20,110,zero", "strength `zero` is not a number"),
        ("20,110,0", "strength must be in (0, 10]"),
        ("20,110,2,1.5", "threshold must be in [0, 1)"),
    ] {
        let r = generate(edge);
        assert_eq!(r.code, 2, "{edge}: {}", r.stderr);
        check_error(&r, expect);
        assert!(!out.exists());
    }
    let r = generate("10,50");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let info: serde_json::Value = serde_json::from_str(&btopt(&["bundle", "info", p(&out), "--json"]).stdout).unwrap();
    // The option reached the generator: a planted-edge bundle has no dividends (a plain
    // mag-7 2021H1 has AAPL's, MSFT's and NVDA's).
    assert_eq!(info["dividends"], 0, "{info}");
}
