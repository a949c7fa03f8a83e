//! Criterion benchmarks for the engine: MA-crossover sweeps on one daily series, and one
//! backtest over a synthetic mag-7-sized minute market.
fn main() {}
