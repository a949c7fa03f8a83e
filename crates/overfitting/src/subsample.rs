//! A seeded, documented subsample of trials, for the `--overfitting-max-trials` cap, chosen
//! while the trials stream by.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// The default cap on the number of trials the statistics use (`--overfitting-max-trials`).
pub const DEFAULT_MAX_TRIALS: usize = 20_000;

/// The splitmix64 finalizer: a bijection of `u64`.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key that decides whether trial `id` is kept under `seed`: `mix(id ^ mix(seed ^ C))`
/// with `mix` the splitmix64 finalizer and `C = 0x9e37_79b9_7f4a_7c15`. For one seed it is a
/// bijection of the id, so two trials never tie.
pub fn sample_key(seed: u64, id: u64) -> u64 {
    mix(id ^ mix(seed ^ 0x9e37_79b9_7f4a_7c15))
}

/// The trials kept under a cap, chosen as they stream by, in any order: the `cap` trials with
/// the smallest [`sample_key`] ("bottom-k" sampling). Over seeds every subset of `cap` trials
/// is equally likely; for one seed the subset depends on the set of ids alone, never on the
/// order they arrive in, so an asynchronous search, a resumed one and a deterministic one keep
/// the same trials. With at most `cap` trials, every one is kept.
///
/// Memory is O(cap) whatever the number of trials.
///
/// ```
/// let mut s = overfitting::Sample::new(2, 7);
/// for id in [5u64, 1, 9, 3] {
///     s.push(id, id * 10);
/// }
/// assert_eq!(s.seen(), 4);
/// let kept = s.into_sorted();
/// assert_eq!(kept.len(), 2);
/// assert!(kept.windows(2).all(|w| w[0].0 < w[1].0));
/// ```
#[derive(Debug, Clone)]
pub struct Sample<T> {
    cap: usize,
    seed: u64,
    seen: usize,
    heap: BinaryHeap<Entry<T>>,
}

#[derive(Debug, Clone)]
struct Entry<T> {
    key: u64,
    id: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

impl<T> Sample<T> {
    /// An empty sample keeping at most `cap` trials, chosen by `seed`.
    pub fn new(cap: usize, seed: u64) -> Sample<T> {
        Sample { cap, seed, seen: 0, heap: BinaryHeap::new() }
    }

    /// Offers trial `id` (each id once) with what to keep of it.
    pub fn push(&mut self, id: u64, item: T) {
        self.seen += 1;
        if self.cap == 0 {
            return;
        }
        let key = sample_key(self.seed, id);
        if self.heap.len() < self.cap {
            self.heap.push(Entry { key, id, item });
        } else if self.heap.peek().is_some_and(|top| key < top.key) {
            self.heap.pop();
            self.heap.push(Entry { key, id, item });
        }
    }

    /// Whether [`Sample::push`] would keep trial `id` now (so a caller can skip building an
    /// item it would drop).
    pub fn would_keep(&self, id: u64) -> bool {
        self.cap > 0
            && (self.heap.len() < self.cap || self.heap.peek().is_some_and(|top| sample_key(self.seed, id) < top.key))
    }

    /// Offers trial `id` without an item, when [`Sample::would_keep`] said no: it only counts.
    pub fn skip(&mut self) {
        self.seen += 1;
    }

    /// Trials offered so far.
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// Trials kept so far (at most the cap).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The kept trials, in id order.
    pub fn into_sorted(self) -> Vec<(u64, T)> {
        let mut kept: Vec<(u64, T)> = self.heap.into_iter().map(|e| (e.id, e.item)).collect();
        kept.sort_by_key(|k| k.0);
        kept
    }
}
