#!/usr/bin/env python3
"""Run btopt and vectorbt side by side on the same data: check that they agree, print both speeds.

One run does all of it, on one deterministic one-asset random walk of 2,520 XNYS sessions:
- the 4,851-pair MA-crossover sweep (short 2..99 < long 3..100) through `btopt optimize`
  (thread pool with 1 worker, fork pool with 2 workers, end to end) and through vectorbt's
  `MA.run_combs` + `Portfolio.from_signals` (warm, after its Numba JIT);
- per pair, btopt's sharpe (loss = -sharpe) against vectorbt's; on a sample of pairs, every
  metric of `btopt backtest --json` against vectorbt's;
- one channel-breakout backtest (entry 20, exit 10) of the example binary against the same rule
  built from vectorbt's rolling max/min.

It exits 1 when a comparison is outside the tolerance, 2 on a usage or setup error.

First use creates a venv (default target/vectorbt-venv) from scripts/requirements-vectorbt.txt
with pip, then re-executes itself inside it:

    python3 scripts/compare-vectorbt.py

vectorbt cannot be told "fill at the next open" directly, so the script shifts each signal one
bar and passes price=open; everything else (long/flat, fee on traded notional, all-in buys
C/(p(1+fee)), equity at the close, returns against the initial capital) is vectorbt's own.
"""

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "scripts" / "requirements-vectorbt.txt"
MARKER = ".compare-vectorbt"
SYMBOL = "WALK"
PERIODS = 252  # daily bars
FEE = 0.001


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--venv", type=Path, default=ROOT / "target" / "vectorbt-venv", help="venv to create and use")
    p.add_argument("--work", type=Path, default=ROOT / "target" / "compare-vectorbt", help="scratch dir (recreated)")
    p.add_argument("--sessions", type=int, default=2520, help="XNYS sessions of the random walk, ending 2024-12-31")
    p.add_argument("--seed", type=int, default=7, help="seed of the random walk")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each arm, interleaved; the median counts")
    p.add_argument("--sample", type=int, default=50, help="pairs checked on every metric with `btopt backtest`")
    p.add_argument("--rtol", type=float, default=1e-9, help="relative tolerance")
    p.add_argument("--atol", type=float, default=1e-12, help="absolute tolerance, for values near 0")
    p.add_argument("--no-build", action="store_true", help="use the release binaries as they are")
    return p.parse_args()


# ---------------------------------------------------------------------------------------------
# The venv: created on first use, then this script re-executes itself inside it.


def ensure_venv(venv: Path):
    if Path(sys.prefix).resolve() == venv.resolve():
        return
    if sys.version_info < (3, 11):
        sys.exit("error: vectorbt 1.2.0 needs python 3.11 or later")
    if os.environ.get("COMPARE_VECTORBT_REEXEC"):
        sys.exit(f"error: re-executed but not running inside {venv}")
    python = venv / "bin" / "python"
    stamp = venv / "requirements.sha256"
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if not python.exists() or not stamp.exists() or stamp.read_text().strip() != want:
        print(f"setting up {venv} from {REQUIREMENTS.relative_to(ROOT)} (first use only)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)], check=True)
        stamp.write_text(want + "\n")
    os.environ["COMPARE_VECTORBT_REEXEC"] = "1"
    os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])


# ---------------------------------------------------------------------------------------------
# Subprocesses.


def run(cmd, **kw):
    """Runs cmd, returns its stdout; on failure prints the command and its stderr and exits 2."""
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.stderr.write(f"error: {' '.join(map(str, cmd))} exited {r.returncode}\n{r.stderr}")
        sys.exit(2)
    return r.stdout


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed_json(cmd):
    """Runs cmd; returns (wall s, CPU s of it and the workers it waited for, its JSON)."""
    t, c = time.perf_counter(), children_cpu()
    out = run(cmd)
    return time.perf_counter() - t, children_cpu() - c, json.loads(out)


# ---------------------------------------------------------------------------------------------
# Data: a random walk on real XNYS sessions, written as a csvdir without dividend/split columns
# (so raw = adjusted), ingested, exported, and read back from the export.


def make_data(args, btopt, work: Path):
    # Valid XNYS sessions come from btopt's own calendar, through a generated mag-7 bundle.
    cal = work / "calendar-bundle"
    start_year = 2024 - (args.sessions // 250 + 1)
    run([btopt, "bundle", "generate", "--preset", "mag7", "--frequency", "daily", "--start",
         f"{start_year}-01-02", "--end", "2024-12-31", "--out", cal])
    run([btopt, "bundle", "export", "csvdir", cal, "--out", work / "calendar-csv"])
    dates = max((read_csv(f)["date"] for f in (work / "calendar-csv" / "daily").glob("*.csv")), key=len)
    if len(dates) < args.sessions:
        sys.exit(f"error: the calendar bundle has only {len(dates)} sessions")
    dates = dates[-args.sessions:]

    rng = np.random.default_rng(args.seed)
    n = len(dates)
    close = 100.0 * np.exp(np.cumsum(0.0003 + 0.015 * rng.standard_normal(n)))
    prev = np.concatenate([[100.0], close[:-1]])
    open_ = prev * np.exp(0.004 * rng.standard_normal(n))
    # Rounding is monotonic, so high >= max(open, close) and low <= min(open, close) survive it.
    high = np.round(np.maximum(open_, close) * np.exp(np.abs(0.006 * rng.standard_normal(n))), 6)
    low = np.round(np.minimum(open_, close) * np.exp(-np.abs(0.006 * rng.standard_normal(n))), 6)
    open_, close = np.round(open_, 6), np.round(close, 6)
    volume = rng.integers(1_000_000, 5_000_000, n)

    src = work / "walk-csv" / "daily"
    src.mkdir(parents=True)
    with open(src / f"{SYMBOL}.csv", "w") as f:
        f.write("date,open,high,low,close,volume\n")
        # Python floats print the shortest text that reads back as the same f64.
        for d, *ohlc, v in zip(dates, *(x.tolist() for x in (open_, high, low, close)), volume.tolist()):
            f.write(f"{d},{','.join(map(repr, ohlc))},{v}\n")
    bundle = work / "walk-bundle"
    run([btopt, "bundle", "ingest", "csvdir", "--source", work / "walk-csv", "--out", bundle, "--frequency", "daily"])
    info = json.loads(run([btopt, "bundle", "info", bundle, "--json"]))
    if info["sessions"] != n or info["splits"] != 0 or info["dividends"] != 0:
        sys.exit(f"error: unexpected bundle: {info}")

    run([btopt, "bundle", "export", "csvdir", bundle, "--out", work / "walk-export"])
    bars = read_csv(work / "walk-export" / "daily" / f"{SYMBOL}.csv")
    if bars["date"] != list(dates) or any(bars["dividend"] != 0.0) or any(bars["split"] != 1.0):
        sys.exit("error: the export does not match what was ingested, or it has adjustments")
    for k, v in (("open", open_), ("high", high), ("low", low), ("close", close)):
        if not np.array_equal(bars[k], v):
            sys.exit(f"error: exported {k} differs from the written one")
    return bundle, bars, info


def read_csv(path: Path):
    lines = path.read_text().splitlines()
    cols = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:]]
    out = {"date": [r[0] for r in rows]}
    for i, c in enumerate(cols[1:], start=1):
        out[c] = np.array([float(r[i]) for r in rows])
    return out


# ---------------------------------------------------------------------------------------------
# The two sides.

SPACE = """# 4,851 MA pairs: short 2..99, long 3..100, short < long (written by scripts/compare-vectorbt.py)
[[parameter]]
name = "short_window"
type = "discrete"
min = 2
max = 99
step = 1

[[parameter]]
name = "long_window"
type = "discrete"
min = 3
max = 100
step = 1

[[constraint]]
expr = "short_window < long_window"
"""


def btopt_sweep(btopt, bundle, space, pool, workers, *extra):
    wall, cpu, out = timed_json([btopt, "optimize", "--bundle", bundle, "--strategy", "ma-crossover", "--space", space,
                                 "--search", "grid", "--pool", pool, "--workers", workers, "--deterministic", "--json",
                                 *extra])
    bad = [t for t in out["trials"] if t["status"] != "ok"]
    if bad:
        sys.exit(f"error: {len(bad)} btopt trials did not finish, e.g. {bad[0]}")
    losses = {(int(t["params"]["short_window"]), int(t["params"]["long_window"])): t["loss"] for t in out["trials"]}
    return (wall, cpu), out["evaluations"], losses


def metrics_from_value(value, trades):
    """The contract's metrics (design-notes section 3) of equity curves, one per column."""
    prev = np.vstack([np.ones((1, value.shape[1])), value[:-1]])
    r = value / prev - 1.0
    mean, sd = r.mean(axis=0), r.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(sd == 0, 0.0, mean / sd * np.sqrt(PERIODS))
        down = np.sqrt((np.minimum(r, 0.0) ** 2).mean(axis=0))
        sortino = np.where(down == 0, 0.0, mean / down * np.sqrt(PERIODS))
        mdd = (value / np.maximum(1.0, np.maximum.accumulate(value, axis=0)) - 1.0).min(axis=0)
        calmar = np.where(mdd == 0, 0.0, (value[-1] ** (PERIODS / len(value)) - 1.0) / np.abs(mdd))
    return {"total_return": value[-1] - 1.0, "sharpe": sharpe, "max_drawdown": mdd, "sortino": sortino,
            "calmar": calmar, "trades": np.asarray(trades, dtype=float), "final_equity": value[-1]}


def long_flat(close, open_, long_when, flat_when):
    """vectorbt's portfolio for a target decided at close t and filled at open t+1."""
    return vbt.Portfolio.from_signals(
        close, long_when.vbt.signals.fshift(1), flat_when.vbt.signals.fshift(1), price=open_, fees=FEE,
        init_cash=1.0, size=np.inf, direction="longonly", freq="1D")


def vbt_sweep(close, open_, windows):
    """The timed vectorbt arm: every pair's portfolio, its total return and sharpe (252, ddof=1)."""
    fast, slow = vbt.MA.run_combs(close, window=windows, r=2, short_names=["fast", "slow"])
    pf = long_flat(close, open_, fast.ma_above(slow), fast.ma_below(slow))
    r = np.asarray(pf.returns())
    mean, sd = r.mean(axis=0), r.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(sd == 0, 0.0, mean / sd * np.sqrt(PERIODS))
    total_return = np.asarray(pf.total_return())
    pairs = list(zip(fast.ma.columns.get_level_values(0), slow.ma.columns.get_level_values(0)))
    return pairs, pf, sharpe, total_return


def all_metrics(pf, n):
    """Every metric of the contract, from vectorbt's equity curves (not timed)."""
    m = metrics_from_value(np.asarray(pf.value()).reshape(n, -1), np.asarray(pf.orders.count()).ravel())
    m["vbt_total_return"] = np.asarray(pf.total_return()).ravel()
    return m


# ---------------------------------------------------------------------------------------------
# Comparison.


class Check:
    def __init__(self, rtol, atol):
        self.rtol, self.atol, self.lines, self.ok = rtol, atol, [], True

    def identical(self, what, a: dict, b: dict):
        same = sum(a[k] == b.get(k) for k in a)
        self.ok &= same == len(a) == len(b)
        self.lines.append(f"  {what:<48} {same:>5}/{len(a):<5} bit-identical")

    def compare(self, what, a, b):
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        diff = np.abs(a - b)
        good = diff <= self.rtol * np.maximum(np.abs(a), np.abs(b)) + self.atol
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(diff == 0, 0.0, diff / np.maximum(np.abs(a), np.abs(b)))
        n_ok = int(good.sum())
        self.ok &= n_ok == a.size
        self.lines.append(f"  {what:<48} {n_ok:>5}/{a.size:<5} agree  max abs diff {diff.max():.2e}"
                          f"  max rel diff {rel.max():.2e}")


def main():
    args = parse_args()
    ensure_venv(args.venv)
    # Only the venv has these; every function above uses them as module globals.
    global np, pd, vbt
    import numpy as np
    import pandas as pd
    import vectorbt as vbt

    work = args.work
    if work.exists():
        if not (work / MARKER).exists():
            sys.exit(f"error: {work} exists and was not made by this script; refusing to delete it")
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / MARKER).touch()

    if not args.no_build:
        print("building: cargo build --release -p btopt -p channel-breakout", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "-p", "btopt", "-p", "channel-breakout"], cwd=ROOT, check=True)
    release = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
    btopt, breakout = release / "btopt", release / "channel-breakout"
    for b in (btopt, breakout):
        if not b.exists():
            sys.exit(f"error: {b} does not exist (run without --no-build)")

    bundle, bars, info = make_data(args, btopt, work)
    index = pd.DatetimeIndex(bars["date"])
    close, open_ = pd.Series(bars["close"], index=index), pd.Series(bars["open"], index=index)
    high, low = pd.Series(bars["high"], index=index), pd.Series(bars["low"], index=index)
    space = work / "ma-4851.toml"
    space.write_text(SPACE)
    windows = np.arange(2, 101)

    print("warming vectorbt (Numba JIT)", file=sys.stderr)
    t = time.perf_counter()
    vbt_sweep(close, open_, windows[:4])
    jit = time.perf_counter() - t

    # Interleaved timed runs: thread, fork, thread with 2-trial statistics, vectorbt, and again.
    # `optimize` computes overfitting statistics over every full-budget trial (PBO, deflated
    # sharpe); one more arm caps them at 2 trials, to show what the backtests alone cost.
    walls = {"thread": [], "fork": [], "thread-min-stats": [], "vbt": []}
    for i in range(args.repeats):
        print(f"timed run {i + 1}/{args.repeats}", file=sys.stderr)
        w, n_thread, thread_losses = btopt_sweep(btopt, bundle, space, "thread", 1)
        walls["thread"].append(w)
        w, n_fork, fork_losses = btopt_sweep(btopt, bundle, space, "fork", 2)
        walls["fork"].append(w)
        w, _, min_stats_losses = btopt_sweep(btopt, bundle, space, "thread", 1, "--overfitting-max-trials", 2)
        walls["thread-min-stats"].append(w)
        t, c = time.perf_counter(), time.process_time()
        pairs, pf, vbt_sharpe, _ = vbt_sweep(close, open_, windows)
        walls["vbt"].append((time.perf_counter() - t, time.process_time() - c))
    vm = all_metrics(pf, len(close))

    check = Check(args.rtol, args.atol)
    if len(pairs) != 4851 or n_thread != 4851 or n_fork != 4851 or set(pairs) != set(thread_losses):
        sys.exit(f"error: expected the same 4,851 pairs: vectorbt {len(pairs)}, btopt {n_thread} and {n_fork}")
    order = list(thread_losses)
    check.identical("btopt thread vs fork, every trial", thread_losses, fork_losses)
    check.identical("btopt thread vs 2-trial overfitting, every trial", thread_losses, min_stats_losses)
    col = {p: i for i, p in enumerate(pairs)}
    idx = np.array([col[p] for p in order])
    check.compare("ma-crossover sharpe, every pair", [-thread_losses[p] for p in order], vbt_sharpe[idx])

    # Every metric of `btopt backtest` on a seeded sample of pairs (plus the two extremes).
    rng = np.random.default_rng(args.seed)
    sample = [order[0], order[-1]] + [order[i] for i in rng.choice(len(order), max(args.sample - 2, 0), replace=False)]
    keys = ["total_return", "sharpe", "max_drawdown", "sortino", "calmar", "trades", "final_equity"]
    got = {k: [] for k in keys}
    for s, lw in sample:
        out = json.loads(run([btopt, "backtest", "--bundle", bundle, "--strategy", "ma-crossover",
                              "--set", f"short_window={s}", "--set", f"long_window={lw}", "--json"]))
        for k in keys:
            got[k].append(out[k])
    sidx = np.array([col[p] for p in sample])
    for k in keys:
        check.compare(f"ma-crossover {k}, {len(sample)} pairs", got[k], vm[k][sidx])
    check.compare(f"ma-crossover total_return (vbt's), {len(sample)} pairs", got["total_return"],
                  vm["vbt_total_return"][sidx])

    # Channel breakout: long if close_t > max(high over the 20 bars before t), flat if
    # close_t < min(low over the 10 bars before t).
    cb = json.loads(run([breakout, "backtest", "--bundle", bundle, "--strategy", "channel-breakout",
                         "--set", "entry_window=20", "--set", "exit_window=10", "--json"]))
    upper = high.vbt.rolling_max(20, minp=20).vbt.fshift(1)
    lower = low.vbt.rolling_min(10, minp=10).vbt.fshift(1)
    cm = all_metrics(long_flat(close, open_, close > upper, close < lower), len(close))
    for k in keys:
        check.compare(f"channel-breakout 20/10 {k}", [cb[k]], cm[k])

    def row(name, runs, n):
        wall, cpu = statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)
        return (f"  {name:<44} {n:>5}  {wall:>7.3f}  {n / wall:>11,.0f}  {cpu:>7.3f}  {n / cpu:>11,.0f}"
                f"   {', '.join(f'{w:.3f}' for w, _ in runs)}")

    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end "
          f"(other work on the machine stretches the wall times); python {sys.version.split()[0]}, "
          f"vectorbt {vbt.__version__}, numba {__import__('numba').__version__}, numpy {np.__version__}")
    print(f"data: one asset, {info['sessions']} XNYS sessions {info['first_session']}..{info['last_session']}, "
          f"random walk seed {args.seed}, no splits or dividends (raw = adjusted); bundle {info['content_hash'][:16]}")
    print(f"ma-crossover sweep: 4,851 pairs (short 2..99 < long 3..100), fee {FEE}, budget 1.0; "
          f"median of {args.repeats} interleaved runs, end to end")
    head = ("arm", "evals", "wall s", "backtests/s", "CPU s", "per CPU s")
    print("  {:<44} {:>5}  {:>7}  {:>11}  {:>7}  {:>11}   wall of each run".format(*head))
    print(row("btopt optimize --pool thread --workers 1", walls["thread"], n_thread))
    print(row("btopt optimize --pool fork --workers 2", walls["fork"], n_fork))
    print(row("btopt (thread, 1) --overfitting-max-trials 2", walls["thread-min-stats"], n_thread))
    print(row(f"vectorbt {vbt.__version__} (warm, Numba)", walls["vbt"], len(pairs)))
    print(f"  vectorbt's first call, 6 pairs (Numba JIT, or its on-disk cache after the first run): {jit:.1f} s")
    print("  backtests/s = evaluations / median wall, end to end (btopt: process start, bundle load, pool, search,")
    print("  JSON; vectorbt: MA.run_combs, signals, from_signals, returns, sharpe, total return). CPU s: of the")
    print("  btopt process and its workers (getrusage), of this process for vectorbt. With")
    print("  --overfitting-max-trials 2, optimize's PBO/deflated-sharpe step uses 2 trials instead of all 4,851.")
    print(f"agreement (|a - b| <= {args.rtol:g}·max(|a|, |b|) + {args.atol:g}):")
    print("\n".join(check.lines))
    print("result: AGREE" if check.ok else "result: DISAGREE")
    return 0 if check.ok else 1


if __name__ == "__main__":
    sys.exit(main())
