//! How many tasks go to a worker in one frame: fixed, or adapted to the measured task time.

use std::str::FromStr;

use crate::error::{Error, Kind};

/// How many tasks the pool hands a worker at once (one frame, one write each way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChunkSize {
    /// Always up to `n` tasks per chunk (at least 1). `Fixed(1)` is one round trip per task.
    Fixed(usize),
    /// Start at 1 and aim for [`TARGET_CHUNK_NANOS`] of work per chunk, from an
    /// exponentially weighted mean of the task time the workers measure (joblib's
    /// auto-batching, in spirit), up to [`MAX_CHUNK`] tasks.
    #[default]
    Adaptive,
}

/// The environment variable that sets the chunk size of pools built without
/// [`PoolBuilder::chunk_size`](crate::PoolBuilder::chunk_size): `auto` or a number of tasks.
pub const CHUNK_ENV: &str = "BTOPT_POOL_CHUNK";

impl ChunkSize {
    /// The chunk size [`CHUNK_ENV`] asks for; adaptive when it is unset or empty.
    pub(crate) fn from_env() -> Result<ChunkSize, Error> {
        match std::env::var(CHUNK_ENV) {
            Ok(s) if !s.trim().is_empty() => s.parse().map_err(|m| Error::new(Kind::ChunkSpec(m))),
            _ => Ok(ChunkSize::Adaptive),
        }
    }
}

impl FromStr for ChunkSize {
    type Err = String;
    /// `auto`, or a number of tasks of at least 1.
    fn from_str(s: &str) -> Result<ChunkSize, String> {
        match s.trim() {
            "auto" => Ok(ChunkSize::Adaptive),
            n => match n.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(ChunkSize::Fixed(n)),
                _ => Err(format!("expected auto or a number of tasks of at least 1, got {s:?}")),
            },
        }
    }
}

/// The work per chunk the adaptive size aims for: a few milliseconds, so that dispatch costs
/// are amortised without making the last chunks of a batch long stragglers.
pub const TARGET_CHUNK_NANOS: f64 = 3e6;
/// The adaptive size stays while a chunk takes between these two (nanoseconds).
const BAND: (f64, f64) = (2e6, 5e6);
/// The largest adaptive chunk.
pub const MAX_CHUNK: usize = 4096;
/// The adaptive size grows at most this much per measurement (it shrinks at once).
const GROWTH: usize = 8;
/// Weight of the newest measurement in the mean task time.
const ALPHA: f64 = 0.3;

/// The chunk size of one pool, updated from every result frame.
#[derive(Clone, Debug)]
pub(crate) struct Chunker {
    mode: ChunkSize,
    size: usize,
    /// Mean nanoseconds per task, once measured.
    per_task: Option<f64>,
}

impl Chunker {
    pub(crate) fn new(mode: ChunkSize) -> Chunker {
        let size = match mode {
            ChunkSize::Fixed(n) => n.max(1),
            ChunkSize::Adaptive => 1,
        };
        Chunker { mode, size, per_task: None }
    }

    /// The current chunk size.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Learns from `tasks` tasks that took `busy_ns` in a worker.
    pub(crate) fn observe(&mut self, tasks: usize, busy_ns: u64) {
        if self.mode != ChunkSize::Adaptive || tasks == 0 {
            return;
        }
        let x = busy_ns as f64 / tasks as f64;
        let per = self.per_task.map_or(x, |p| p + ALPHA * (x - p)).max(1.0);
        self.per_task = Some(per);
        let chunk = per * self.size as f64;
        if chunk < BAND.0 || chunk > BAND.1 {
            let ideal = (TARGET_CHUNK_NANOS / per) as usize;
            self.size = ideal.clamp(1, (self.size * GROWTH).min(MAX_CHUNK));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_auto_and_numbers() {
        assert_eq!("auto".parse(), Ok(ChunkSize::Adaptive));
        assert_eq!(" 7 ".parse(), Ok(ChunkSize::Fixed(7)));
        for bad in ["0", "-1", "x", ""] {
            assert!(bad.parse::<ChunkSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn fixed_never_moves() {
        let mut c = Chunker::new(ChunkSize::Fixed(7));
        c.observe(7, 1);
        c.observe(7, 1_000_000_000);
        assert_eq!(c.size(), 7);
        assert_eq!(Chunker::new(ChunkSize::Fixed(0)).size(), 1);
    }

    #[test]
    fn adaptive_grows_geometrically_to_the_target_and_shrinks_at_once() {
        let mut c = Chunker::new(ChunkSize::Adaptive);
        assert_eq!(c.size(), 1);
        // 10 µs tasks: the target is 300 per chunk, reached by steps of at most 8x.
        let mut sizes = Vec::new();
        for _ in 0..5 {
            let n = c.size();
            c.observe(n, n as u64 * 10_000);
            sizes.push(c.size());
        }
        assert_eq!(sizes, [8, 64, 300, 300, 300]);
        // Tasks turn 100x slower: the size falls in one step, within the band.
        let n = c.size();
        c.observe(n, n as u64 * 1_000_000);
        assert!(c.size() < 30, "{}", c.size());
        // Trivial tasks stop at the cap.
        let mut c = Chunker::new(ChunkSize::Adaptive);
        for _ in 0..10 {
            let n = c.size();
            c.observe(n, n as u64);
        }
        assert_eq!(c.size(), MAX_CHUNK);
    }
}
