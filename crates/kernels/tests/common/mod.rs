//! Helpers shared by the kernel test files.
#![allow(dead_code)]

use ffwd_kernels::CpuBackend;
use proptest::prelude::*;
use std::sync::OnceLock;

/// Matrix sizes the kernels must handle: 1, primes, non-multiples of 8 and 32.
pub fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![Just(1usize), Just(2), Just(7), Just(8), Just(13), Just(16), Just(31), Just(33), 1usize..80]
}

/// Inner (K) sizes: 0, 1, and past the CPU's 256-wide K block.
pub fn kdim() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0usize), Just(1), Just(5), Just(64), Just(257), Just(300), Just(521), 1usize..100]
}

/// Same bits, or both NaN.
pub fn assert_bits_eq(what: &str, got: &[f32], spec: &[f32]) {
    assert_eq!(got.len(), spec.len(), "{what}: lengths");
    for (i, (x, y)) in got.iter().zip(spec).enumerate() {
        assert!(
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
            "{what}: element {i}: got {x:e} ({:08x}) vs spec {y:e} ({:08x})",
            x.to_bits(),
            y.to_bits()
        );
    }
}

/// `n` values from a seeded xorshift: mostly in [-4, 4), with +0, −0,
/// subnormals and large/tiny magnitudes (1e30, −7e-30) mixed in.
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            match s % 16 {
                0 => 0.0,
                1 => -0.0,
                2 => f32::from_bits((s >> 8) as u32 & 0x007F_FFFF),
                3 => {
                    if s & 0x100 == 0 {
                        1e30
                    } else {
                        -7e-30
                    }
                }
                _ => ((s >> 40) as f32 / 8_388_608.0 - 1.0) * 4.0,
            }
        })
        .collect()
}

/// Rayon pools of 1 and 2 threads, and where the CPU has AVX-512 the same
/// again with their threads kept to the 256-bit microkernels, each with
/// what it runs.
pub fn pools() -> &'static [(String, rayon::ThreadPool)] {
    static P: OnceLock<Vec<(String, rayon::ThreadPool)>> = OnceLock::new();
    P.get_or_init(|| {
        let mk = |n, narrow: bool| {
            let p = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .start_handler(move |_| ffwd_kernels::cpu::narrow_kernels_on_this_thread(narrow))
                .build()
                .unwrap();
            let width = if p.install(ffwd_kernels::cpu::wide_kernels) { "512-bit" } else { "256-bit" };
            (format!("{n} thread(s), {width} kernels"), p)
        };
        let mut v = vec![mk(1, false), mk(2, false)];
        if ffwd_kernels::cpu::wide_kernels() {
            v.extend([mk(1, true), mk(2, true)]);
        }
        v
    })
}

pub fn avx2() -> Option<CpuBackend> {
    match CpuBackend::avx2() {
        Ok(b) => Some(b),
        Err(_) => {
            eprintln!("SKIP (no avx2/fma on this CPU)");
            None
        }
    }
}

/// Run `f` with the scalar spec once and with AVX2 at 1 and 2 threads (and
/// with the 256-bit microkernels alone too, where the CPU has AVX-512);
/// every output must match the spec's bits.
pub fn check<F: Fn(&CpuBackend) -> Vec<Vec<f32>> + Sync>(what: &str, f: F) {
    let Some(fast) = avx2() else { return };
    let want = f(&CpuBackend::scalar());
    for (name, pool) in pools() {
        let got = pool.install(|| f(&fast));
        for (o, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_bits_eq(&format!("{what} (output {o}, {name})"), g, w);
        }
    }
}

/// `rows × cols` values as [`values`] gives them, with zeros (of either
/// sign) in the blocks an image's background makes: most of a column
/// (every row but about one in ten) for a third of the columns, and runs
/// of eight within a row, so that six consecutive rows are often all zero
/// at a column (the forward's A panels) and six consecutive columns often
/// all zero in a row (the dW's, A being transposed there).
pub fn blocky_zeros(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut v = values(rows * cols, seed);
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let zero_col: Vec<bool> = (0..cols).map(|_| next() % 3 != 0).collect();
    let runs = cols.div_ceil(8);
    for i in 0..rows {
        let zero_run: Vec<bool> = (0..runs).map(|_| next() % 2 == 0).collect();
        for k in 0..cols {
            if (zero_col[k] && next() % 10 != 0) || zero_run[k / 8] {
                v[i * cols + k] = if next() % 2 == 0 { 0.0 } else { -0.0 };
            }
        }
    }
    v
}
