//! Memory of a set of processes: the sum of PSS and RSS from `/proc/PID/smaps_rollup`, and a
//! process's own private dirty memory.
//!
//! RSS counts every shared page in full in every process; PSS divides each page among the
//! processes that share it, so the sum of PSS over a pool is the fair figure.

/// Memory summed over some processes, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Sum of proportional set sizes.
    pub pss: u64,
    /// Sum of resident set sizes (shared pages counted once per process).
    pub rss: u64,
    /// How many processes were measured (processes that vanished meanwhile are skipped).
    pub processes: usize,
}

/// Sums PSS and RSS over `pids` (Linux only; elsewhere an `Unsupported` error).
pub fn of_pids(pids: &[u32]) -> std::io::Result<Memory> {
    if !cfg!(target_os = "linux") {
        return Err(std::io::ErrorKind::Unsupported.into());
    }
    let mut m = Memory::default();
    for pid in pids {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else { continue };
        m.pss += field(&text, "Pss:");
        m.rss += field(&text, "Rss:");
        m.processes += 1;
    }
    Ok(m)
}

/// This process's private dirty memory in bytes (`Private_Dirty` of
/// `/proc/self/smaps_rollup`; Linux only, elsewhere an `Unsupported` error): the pages it
/// wrote itself, including its copies of pages it shared copy-on-write with its parent.
pub fn own_private_dirty() -> std::io::Result<u64> {
    if !cfg!(target_os = "linux") {
        return Err(std::io::ErrorKind::Unsupported.into());
    }
    let text = std::fs::read_to_string("/proc/self/smaps_rollup")?;
    Ok(field(&text, "Private_Dirty:"))
}

/// The `kB` field `name` of an smaps_rollup text, in bytes (0 when absent).
fn field(text: &str, name: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()).unwrap_or(0)
        * 1024
}
