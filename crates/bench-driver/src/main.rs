//! bench-driver: btopt's main job.
//!
//! For now it prepares the benchmark bundles (mag-7 daily and minute, and the 100-asset
//! universe), cached under a data directory and keyed by the generator's inputs and content
//! hash, then measures generating and loading them and prints their summaries. The sequential
//! evaluation of the guidance (statistics, decisions, plots) is added by its own issue.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;

use bundle::{Bundle, Frequency, GenerateSpec, Preset};

/// Prepare btopt's benchmark bundles and measure generating and loading them.
#[derive(Parser, Debug)]
#[command(name = "bench-driver", version, about)]
struct Cli {
    /// Where generated bundles are cached.
    #[arg(long, default_value = "target/bench-driver/data")]
    data_dir: PathBuf,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", msg.join(": "));
            std::process::ExitCode::from(1)
        }
    }
}

/// Resident set size of this process in bytes (Linux; 0 elsewhere).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Returns the cached bundle for `spec`, generating it first if needed.
fn ensure(data_dir: &Path, name: &str, spec: &GenerateSpec) -> Result<PathBuf> {
    let dir = data_dir.join(format!("{name}-seed{}", spec.seed));
    if dir.exists() {
        bundle::summary::info(&dir)
            .with_context(|| format!("cached bundle {} is unreadable; delete it", dir.display()))?;
        println!("{name}: cached at {}", dir.display());
        return Ok(dir);
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("failed to create {}", data_dir.display()))?;
    let t = Instant::now();
    let data = bundle::generate::generate(spec)?;
    let gen_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    bundle::store::write(&data, &dir)?;
    let bars: usize = data.bars.iter().map(|b| b.len()).sum();
    println!(
        "{name}: generated {bars} bars in {gen_s:.3} s, wrote in {:.3} s -> {}",
        t.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(dir)
}

fn run(cli: &Cli) -> Result<()> {
    let universe = GenerateSpec { preset: Preset::Universe { assets: 100 }, ..GenerateSpec::mag7(Frequency::Daily) };
    let sets = [
        ("mag7-daily", GenerateSpec::mag7(Frequency::Daily)),
        ("mag7-minute", GenerateSpec::mag7(Frequency::Minute)),
        ("universe100-daily", universe),
    ];
    for (name, spec) in &sets {
        let dir = ensure(&cli.data_dir, name, spec)?;
        let rss0 = rss_bytes();
        let t = Instant::now();
        let b = Bundle::load(&dir).with_context(|| format!("failed to load {}", dir.display()))?;
        let secs = t.elapsed().as_secs_f64();
        let bars: usize = b.assets().iter().map(|a| a.bars()).sum();
        println!(
            "{name}: loaded {bars} bars in {:.1} ms ({:.2} M bars/s), {:.1} MiB of columns, RSS +{:.1} MiB, hash {}",
            secs * 1e3,
            bars as f64 / secs / 1e6,
            b.value_bytes() as f64 / (1 << 20) as f64,
            rss_bytes().saturating_sub(rss0) as f64 / (1 << 20) as f64,
            b.content_hash()
        );
        drop(b);
    }
    let dir = cli.data_dir.join("mag7-daily-seed42");
    print!("{}", bundle::summary::info(&dir)?.to_text());
    Ok(())
}
