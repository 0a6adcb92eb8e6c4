//! The machine's FMA limit, measured: what "% of peak" is relative to.
//!
//! Each thread runs 12 independent chains of 8-wide FMAs (enough to fill
//! two FMA pipes of 4-cycle latency), all threads at once; the best of
//! three runs counts 16 FLOP per FMA instruction.

/// FLOP/s of `threads` threads running FMA chains at the same time, or
/// `None` where the CPU has no AVX2 + FMA. Takes about 0.1–0.5 s per run
/// (three runs).
pub fn fma_peak(threads: usize) -> Option<f64> {
    if !super::avx2_available() {
        return None;
    }
    let threads = threads.max(1);
    #[cfg(target_arch = "x86_64")]
    {
        const ITERS: u64 = 20_000_000;
        let mut best = 0.0f64;
        for _ in 0..3 {
            let t = std::time::Instant::now();
            std::thread::scope(|s| {
                for _ in 0..threads {
                    // SAFETY: avx2 and fma were detected above.
                    s.spawn(|| std::hint::black_box(unsafe { avx2::chains(ITERS) }));
                }
            });
            let flops = threads as f64 * ITERS as f64 * 12.0 * 16.0;
            best = best.max(flops / t.elapsed().as_secs_f64());
        }
        Some(best)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
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
        match super::fma_peak(1) {
            // 32 FLOP per cycle at up to ~6 GHz is below 200 GFLOP/s per core.
            Some(p) => assert!(p > 1e9 && p < 2e11, "{p}"),
            None => eprintln!("skipped: no AVX2 + FMA here"),
        }
    }
}
