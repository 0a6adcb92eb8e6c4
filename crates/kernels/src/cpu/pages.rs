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

use crate::error::{Error, Result};

/// Buffers from this size (4 MiB) on get the huge-page advice.
pub const HUGE_MIN_FLOATS: usize = 1 << 20;

/// `n` zeros, on huge pages where the buffer is large and the OS offers
/// them; an allocation the system refuses is an error, not an abort.
pub fn zeroed(n: usize) -> Result<Vec<f32>> {
    // A large zeroed allocation comes straight from the OS, untouched, so
    // the advice applies to every page the first write faults in.
    let v = try_zeros(n)?;
    if n >= HUGE_MIN_FLOATS {
        advise_huge(&v);
    }
    Ok(v)
}

/// `n` zeros, or [`Error::OutOfMemory`] where the allocation fails.
pub fn try_zeros(n: usize) -> Result<Vec<f32>> {
    let oom = || Error::OutOfMemory { bytes: n.saturating_mul(4) };
    if n == 0 {
        return Ok(Vec::new());
    }
    let layout = std::alloc::Layout::array::<f32>(n).map_err(|_| oom())?;
    // SAFETY: `layout` has a non-zero size (n > 0). `alloc_zeroed` returns
    // null or a block of `layout` filled with zero bytes, which are valid
    // f32 zeros; `Vec::from_raw_parts` takes it over with the same
    // allocator (the global one), alignment (f32's), length and capacity n.
    unsafe {
        let p = std::alloc::alloc_zeroed(layout).cast::<f32>();
        if p.is_null() {
            return Err(oom());
        }
        Ok(Vec::from_raw_parts(p, n, n))
    }
}

/// Make room for `n` values in `v` (an error rather than an abort where the
/// system refuses).
pub fn reserve<T>(v: &mut Vec<T>, n: usize) -> Result<()> {
    let bytes = n.saturating_mul(std::mem::size_of::<T>());
    v.try_reserve_exact(n.saturating_sub(v.len())).map_err(|_| Error::OutOfMemory { bytes })
}

/// `v` resized to `n` values, new ones zero: what every op does to its
/// outputs and scratch, failing with [`Error::OutOfMemory`] rather than
/// aborting where the system refuses the memory.
///
/// A float buffer that must move to reach [`HUGE_MIN_FLOATS`] or more is
/// taken fresh from [`zeroed`] (its contents copied over): untouched zero
/// pages with the huge-page advice, so its first writes fault in 2 MiB at
/// a time instead of a zero-fill pass faulting 4 KiB pages (a one-shot
/// evaluation's activations, 150 MB at quarter width and 500 images, spent
/// a quarter of the conv forward there).
pub fn grow<T: Clone + Default + 'static>(v: &mut Vec<T>, n: usize) -> Result<()> {
    if n > v.capacity() && n >= HUGE_MIN_FLOATS {
        if let Some(f) = (v as &mut dyn std::any::Any).downcast_mut::<Vec<f32>>() {
            let mut fresh = zeroed(n)?;
            fresh[..f.len()].copy_from_slice(f);
            *f = fresh;
            return Ok(());
        }
    }
    reserve(v, n)?;
    v.resize(n, T::default());
    Ok(())
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
        let mut v = super::zeroed(4 * super::HUGE_MIN_FLOATS).unwrap();
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
            let v = super::zeroed(n).unwrap();
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|x| x.to_bits() == 0));
        }
    }

    #[test]
    fn an_allocation_the_system_refuses_is_an_error() {
        let e = super::zeroed(usize::MAX / 8).unwrap_err().to_string();
        assert!(e.contains("out of memory"), "{e}");
        let mut v = vec![1.0f32];
        assert!(super::reserve(&mut v, usize::MAX / 8).is_err());
        assert_eq!(v, [1.0]);
    }
}
