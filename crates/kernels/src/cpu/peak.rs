//! The machine's FMA limit, measured: what "% of peak" is relative to.
//!
//! Each thread runs 12 independent chains of FMAs (enough to fill two FMA
//! pipes of 4-cycle latency), all threads at once; the best of three runs
//! counts 2 FLOP per lane of each FMA instruction. The limit is that of
//! the widest FMA the CPU has: 16-wide (AVX-512F) where present, else
//! 8-wide (AVX2); [`fma_peak_avx2`] gives the 8-wide figure on any CPU.

/// FLOP/s of `threads` threads running FMA chains at the same time at the
/// widest vector width the CPU offers, or `None` where the CPU has no AVX2
/// + FMA. Takes about 0.1–0.5 s per run (three runs).
pub fn fma_peak(threads: usize) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if super::avx2_available() && is_x86_feature_detected!("avx512f") {
        // SAFETY: avx512f was detected just above.
        return Some(best_of_three(threads, 32.0, || unsafe { avx512::chains(ITERS) }));
    }
    fma_peak_avx2(threads)
}

/// [`fma_peak`] with 8-wide (AVX2) FMAs, whatever the CPU offers beyond.
pub fn fma_peak_avx2(threads: usize) -> Option<f64> {
    if !super::avx2_available() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: avx2 and fma were detected above.
        Some(best_of_three(threads, 16.0, || unsafe { avx2::chains(ITERS) }))
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

const ITERS: u64 = 20_000_000;

/// The best of three runs of `threads` threads each running `chains` (12
/// chains of `ITERS` FMAs of `flop_per_fma`).
#[cfg(target_arch = "x86_64")]
fn best_of_three(threads: usize, flop_per_fma: f64, chains: impl Fn() -> f32 + Sync) -> f64 {
    let threads = threads.max(1);
    let mut best = 0.0f64;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| std::hint::black_box(chains()));
            }
        });
        let flops = threads as f64 * ITERS as f64 * 12.0 * flop_per_fma;
        best = best.max(flops / t.elapsed().as_secs_f64());
    }
    best
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// 12 chains × `iters` dependent 16-wide FMAs; returns their sum so
    /// that none is optimised away.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn chains(iters: u64) -> f32 {
        let mut a = [_mm512_set1_ps(1.0); 12];
        let m = _mm512_set1_ps(0.999_999);
        let c = _mm512_set1_ps(1e-7);
        for _ in 0..iters {
            for x in a.iter_mut() {
                *x = _mm512_fmadd_ps(*x, m, c);
            }
        }
        let mut s = _mm512_setzero_ps();
        for x in a {
            s = _mm512_add_ps(s, x);
        }
        _mm512_reduce_add_ps(s)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// 12 chains × `iters` dependent FMAs; returns their sum so that none
    /// is optimised away.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn chains(iters: u64) -> f32 {
        let mut a = [_mm256_set1_ps(1.0); 12];
        let m = _mm256_set1_ps(0.999_999);
        let c = _mm256_set1_ps(1e-7);
        for _ in 0..iters {
            for x in a.iter_mut() {
                *x = _mm256_fmadd_ps(*x, m, c);
            }
        }
        let mut s = _mm256_setzero_ps();
        for x in a {
            s = _mm256_add_ps(s, x);
        }
        let mut out = [0.0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), s);
        out.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_measured_peak_is_positive_and_at_most_a_few_hundred_gflops_per_core() {
        match (super::fma_peak(1), super::fma_peak_avx2(1)) {
            // 64 FLOP per cycle (two 16-wide FMA pipes) at up to ~6 GHz is
            // below 400 GFLOP/s per core, 32 (8-wide) below 200; the widest
            // is at least the 8-wide figure (within the noise).
            (Some(p), Some(p8)) => {
                assert!(p > 1e9 && p < 4e11 && p8 > 1e9 && p8 < 2e11, "{p} {p8}");
                assert!(p > 0.8 * p8, "{p} {p8}");
            }
            _ => eprintln!("skipped: no AVX2 + FMA here"),
        }
    }
}
