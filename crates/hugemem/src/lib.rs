//! Large buffers that Linux is asked to back with transparent huge pages.
//!
//! A loaded minute bundle's columns (about 55 MB for the 2024 mag-7 bundle) and the shared
//! SMA tables of a grid over it (about 115 MB) are written once and then only read, by the
//! process that built them and by the workers it forks. Faulting them in 4 KiB at a time cost
//! more CPU than filling them: about 40,000 page faults, 20–30% of a process's start-up. With
//! `MADV_HUGEPAGE` set before the first touch (the machines' THP mode is usually `madvise`),
//! the same memory takes a few dozen 2 MiB faults.
//!
//! Only advice: where huge pages are off, unavailable or not Linux, the buffers are the same,
//! faulted in small pages. Nothing else changes either. Fork shares huge pages copy-on-write
//! like small ones, and a buffer that is never written after the fork is never copied.
//!
//! `engine` and `bundle` both use it and neither depends on the other, hence a crate of its
//! own (see docs/ARCHITECTURE.md).

/// Buffers smaller than this are left alone: at least two whole huge pages must fit inside.
const MIN_ADVISED: usize = 2 * HUGE_PAGE;

/// The x86-64 and aarch64 (4 KiB base pages) transparent huge page size.
const HUGE_PAGE: usize = 2 << 20;

/// `len` zeros. Large ones come straight from the kernel (untouched zero pages), advised.
pub fn zeroed(len: usize) -> Vec<f64> {
    let v = vec![0.0; len];
    advise(&v);
    v
}

/// A copy of `src`, written after the advice.
pub fn copied(src: &[f64]) -> Vec<f64> {
    let mut v = Vec::with_capacity(src.len());
    advise_ptr(v.as_ptr() as usize, size_of_val(src));
    v.extend_from_slice(src);
    v
}

/// `len` copies of `value`, written after the advice.
pub fn filled(len: usize, value: f64) -> Vec<f64> {
    let mut v = Vec::with_capacity(len);
    advise_ptr(v.as_ptr() as usize, len * size_of::<f64>());
    v.resize(len, value);
    v
}

fn advise(v: &[f64]) {
    advise_ptr(v.as_ptr() as usize, size_of_val(v));
}

/// Advises the whole huge pages inside `[start, start + bytes)`.
fn advise_ptr(start: usize, bytes: usize) {
    let (from, to) = (start.next_multiple_of(HUGE_PAGE), (start + bytes) / HUGE_PAGE * HUGE_PAGE);
    if bytes < MIN_ADVISED || to < from + HUGE_PAGE {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: [from, to) lies inside an allocation this process owns; MADV_HUGEPAGE
        // changes how its pages are backed, never their contents. An error (THP compiled
        // out, a kernel that refuses) leaves the buffer as it was.
        unsafe { libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_HUGEPAGE) };
    }
}

#[cfg(test)]
mod tests {
    /// The buffers hold what they promise whatever the kernel does with the advice, including
    /// sizes around the threshold and the huge page size.
    #[test]
    fn buffers_hold_their_values() {
        for len in [0, 1, 511, 512, 262_143, 262_144, 524_288, 524_289, 3_000_001] {
            let z = super::zeroed(len);
            assert_eq!(z.len(), len);
            assert!(z.iter().all(|&x| x.to_bits() == 0));
            let f = super::filled(len, f64::NAN);
            assert_eq!(f.len(), len);
            assert!(f.iter().all(|x| x.is_nan()));
            let src: Vec<f64> = (0..len).map(|i| i as f64 * 0.5 - 3.0).collect();
            let c = super::copied(&src);
            assert!(c.len() == len && c.iter().zip(&src).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }

    /// On Linux with THP in `madvise` or `always` mode, a large advised buffer is backed by
    /// huge pages once touched (read from this process's `/proc/self/smaps`). Skipped, with a
    /// line saying so, where THP is off.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_large_buffer_gets_huge_pages_where_thp_is_on() {
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
        if !(mode.contains("[madvise]") || mode.contains("[always]")) {
            eprintln!("transparent huge pages are off here ({}): not checked", mode.trim());
            return;
        }
        let mut v = super::filled(8 << 20, 1.0); // 64 MiB
        v[12345] = 2.0;
        let (start, end) = (v.as_ptr() as usize, v.as_ptr() as usize + size_of_val(v.as_slice()));
        // The advice splits the buffer's mapping: sum over every mapping that overlaps it.
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut huge_kib = 0u64;
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((a, b)) = range.split_once('-')
                && let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                inside = a < end && start < b;
            } else if inside && let Some(kib) = line.strip_prefix("AnonHugePages:") {
                huge_kib += kib.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap_or(0);
            }
        }
        // At least one huge page: how many the kernel finds free is up to it.
        assert!(huge_kib >= 2 << 10, "none of the 64 MiB buffer is in huge pages ({huge_kib} KiB)");
        assert_eq!(v[12345], 2.0);
    }
}
