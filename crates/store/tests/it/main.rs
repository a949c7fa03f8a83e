//! Integration tests for the store crate: the optimizer's store and resume behaviour on every
//! store (memory, SQLite, PostgreSQL), PostgreSQL specifics, locks and redaction.

mod locks;
mod postgres;
mod redact;
mod resume;
mod tls;

use optimize::{CountingOnes, HyperbandSettings, TrialStore};

/// Counting-ones with N_cat = N_cont = 8 and 729 draws at budget 1.
fn counting_ones(seed: u64) -> CountingOnes {
    CountingOnes { n_cat: 8, n_cont: 8, max_draws: 729, seed }
}

/// HpBandSter's counting-ones settings: budgets 1/81 … 1 (9 … 729 draws), eta 3.
fn co_settings(iterations: usize) -> HyperbandSettings {
    HyperbandSettings { min_budget: 1.0 / 81.0, max_budget: 1.0, eta: 3.0, iterations }
}

/// The workspace's `spaces/` directory.
fn spaces_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spaces")
}

/// Where a test's study lives; [`Place::open`] opens it again each time, like a new process.
enum Place {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Place {
    /// The places every shared test body runs on: SQLite always, PostgreSQL when a server
    /// is available (else the skip line is printed).
    fn all() -> Vec<Place> {
        let mut v = vec![Place::Sqlite(tempfile::tempdir().unwrap())];
        if let Some(server) = store::testing::server() {
            v.push(Place::Postgres(server.create_database()));
        }
        v
    }

    fn url(&self) -> String {
        match self {
            Place::Sqlite(dir) => dir.path().join("study.sqlite").to_str().unwrap().to_string(),
            Place::Postgres(url) => url.clone(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Place::Sqlite(_) => "sqlite",
            Place::Postgres(_) => "postgres",
        }
    }

    fn open(&self) -> Box<dyn TrialStore> {
        match store::open(&self.url(), None, None).unwrap() {
            store::Opened::Sqlite(s) => Box::new(s),
            store::Opened::Postgres { store, .. } => store,
        }
    }
}
