//! `btopt study list`: the studies in a store, with their queue counts.

use anyhow::{Context, Result};

/// Prints `{"studies": [{"name", "state", "queued", "running", "done", "best_loss"}]}` with
/// `json`, else one line per study.
pub(crate) fn list(location: &str, json: bool) -> Result<()> {
    let studies = store::list(location).context("failed to list the studies")?;
    if json {
        let v = serde_json::json!({"studies": studies.iter().map(store::StudyInfo::to_json).collect::<Vec<_>>()});
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!("{:<24} {:<9} {:>8} {:>8} {:>8} best_loss", "name", "state", "queued", "running", "done");
        for s in &studies {
            let best = s.best_loss.map_or("-".to_string(), |l| format!("{l:.6}"));
            println!("{:<24} {:<9} {:>8} {:>8} {:>8} {best}", s.name, s.state, s.queued, s.running, s.done);
        }
    }
    Ok(())
}
