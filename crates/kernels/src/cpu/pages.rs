//! Large buffers on transparent huge pages.
//!
//! A 2000 × 2000 layer's weights, Adam moments and packed copies are 16 MB
//! each, and the fused backward walks them tile by tile, a new 4 KiB page
//! every few tiles: with the kernel's default 4 KiB pages that is a stream
//! of TLB misses. On Linux, [`zeroed`] asks for 2 MiB pages on buffers of
//! at least [`HUGE_MIN_FLOATS`] floats, before their first write (the
//! advice is ignored where the kernel does not offer it; nothing changes
//! in the values). Measured on the 4×2000 FF batch (`examples/chain_step`,
//! with and without the advice, processes alternating): batch 1000 0.3–2.1 %
//! faster (four pairs), batch 100 about 0.5 % (eight triples, within the
//! noise).

/// Buffers from this size (4 MiB) on get the huge-page advice.
pub const HUGE_MIN_FLOATS: usize = 1 << 20;

/// `n` zeros, on huge pages where the buffer is large and the OS offers them.
pub fn zeroed(n: usize) -> Vec<f32> {
    // A large zeroed allocation comes straight from the OS, untouched, so
    // the advice applies to every page the first write faults in.
    let v = vec![0.0f32; n];
    if n >= HUGE_MIN_FLOATS {
        advise_huge(&v);
    }
    v
}

#[cfg(target_os = "linux")]
fn advise_huge(v: &[f32]) {
    const PAGE: usize = 4096;
    let start = v.as_ptr() as usize;
    let first = start.next_multiple_of(PAGE);
    let end = start + std::mem::size_of_val(v);
    if end > first {
        // SAFETY: [first, end) lies inside `v`'s allocation and is page
        // aligned at its start; MADV_HUGEPAGE only changes how the kernel
        // backs those pages, never their contents, and its failure (an
        // older kernel, THP switched off) leaves the pages as they were.
        unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_: &[f32]) {}

#[cfg(test)]
mod tests {
    /// `AnonHugePages` (kB) of the mapping holding `addr`, from /proc/self/smaps.
    #[cfg(target_os = "linux")]
    fn huge_kb_at(addr: usize) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_whitespace().next().and_then(|r| r.split_once('-'));
            if let Some((a, b)) = range.filter(|_| !line.ends_with(" kB")) {
                let (a, b) = (usize::from_str_radix(a, 16).ok()?, usize::from_str_radix(b, 16).ok()?);
                inside = (a..b).contains(&addr);
            } else if inside {
                if let Some(kb) = line.strip_prefix("AnonHugePages:") {
                    return kb.trim().trim_end_matches("kB").trim().parse().ok();
                }
            }
        }
        None
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn large_zeroed_buffers_are_backed_by_huge_pages_where_the_kernel_offers_them() {
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
        if !(mode.contains("[madvise]") || mode.contains("[always]")) {
            eprintln!("skipped: transparent huge pages are off here ({})", mode.trim());
            return;
        }
        let mut v = super::zeroed(4 * super::HUGE_MIN_FLOATS);
        for (i, x) in v.iter_mut().enumerate() {
            *x = i as f32;
        }
        let kb = huge_kb_at(v.as_ptr() as usize + (8 << 20)).expect("the buffer's mapping is in smaps");
        assert!(kb >= 2048, "a 16 MiB advised buffer has {kb} kB on huge pages");
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as f32));
    }

    #[test]
    fn zeroed_buffers_of_every_size_hold_zeros() {
        for n in [0, 1, super::HUGE_MIN_FLOATS - 1, super::HUGE_MIN_FLOATS + 3] {
            let v = super::zeroed(n);
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|x| x.to_bits() == 0));
        }
    }
}
