//! Integration tests of the bundle crate: calendar, generator, format, ingest, export, loader.

mod calendar;
mod csvdir;
mod format;
mod generate;

use std::path::Path;

/// A small daily mag-7 bundle spec (two months), quick to generate in tests.
pub(crate) fn small_spec(frequency: bundle::Frequency) -> bundle::GenerateSpec {
    bundle::GenerateSpec {
        preset: bundle::Preset::Mag7,
        frequency,
        start: "2020-07-01".parse().unwrap(),
        end: "2020-09-30".parse().unwrap(),
        seed: 7,
        plant_edge: None,
    }
}

/// Generates and writes a bundle at `dir`.
pub(crate) fn write_bundle(spec: &bundle::GenerateSpec, dir: &Path) -> String {
    let data = bundle::generate::generate(spec).unwrap();
    bundle::store::write(&data, dir).unwrap()
}

/// Names in `parent` that start with a dot: leftovers of an interrupted atomic write.
pub(crate) fn hidden_entries(parent: &Path) -> Vec<String> {
    std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}
