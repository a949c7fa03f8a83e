//! Generating and loading the mag-7 minute bundle (3,423,000 bars).
//!
//! `cargo bench -p bundle --bench load`. Throughput is reported in bars per second.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use bundle::{Bundle, Frequency, GenerateSpec};

fn bench(c: &mut Criterion) {
    let spec = GenerateSpec::mag7(Frequency::Minute);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mag7-minute");
    let data = bundle::generate::generate(&spec).unwrap();
    let bars: usize = data.bars.iter().map(|b| b.len()).sum();
    bundle::store::write(&data, &dir).unwrap();
    drop(data);

    let mut g = c.benchmark_group("mag7-minute");
    g.sample_size(10);
    g.throughput(Throughput::Elements(bars as u64));
    g.bench_function("load", |b| b.iter(|| Bundle::load(&dir).unwrap()));
    g.bench_function("generate", |b| b.iter(|| bundle::generate::generate(&spec).unwrap()));
    g.bench_function("write", |b| {
        let data = bundle::generate::generate(&spec).unwrap();
        let mut i = 0;
        b.iter(|| {
            i += 1;
            bundle::store::write(&data, &tmp.path().join(format!("w{i}"))).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
