//! GPU benchmark of the CUDA backend: the SGEMM at FF shapes in TFLOP/s
//! against the device's FP32 peak, and one FF training epoch on MNIST.
//!
//! `cargo bench --bench gpu` (or the prebuilt binary from
//! `cargo bench --bench gpu --no-run`, run on the GPU machine). Without a
//! device it prints `SKIP (no CUDA)` and exits 0 (1 under
//! `FFWD_REQUIRE_GPU=1`). Options (after `--`):
//! `--peak TFLOPS` (default 66.9, one H100 SXM's FP32 peak), `--reps N`,
//! `--json` (one JSON line per case instead of the table). The FF epochs
//! need MNIST under `$FFWD_DATA_DIR`; without it they are skipped.
//!
//! Every GEMM case is timed after a warm-up as the median of `reps`
//! launches, each closed by a stream synchronisation, on operands uniform
//! in [-1, 1); the FLOP count is 2·m·n·k.

use ffwd::kernels::ops::{Backend, GemmOps, Mat, Storage};
use ffwd::kernels::{CudaBackend, Epilogue};
use ffwd::train::config::{Device, RunConfig};
use ffwd::train::trainer::Trainer;
use std::time::Instant;

struct Opts {
    peak_tflops: f64,
    reps: usize,
    json: bool,
}

fn opts() -> Opts {
    let mut o = Opts { peak_tflops: 66.9, reps: 20, json: false };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--peak" => {
                o.peak_tflops = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(o.peak_tflops);
                i += 1;
            }
            "--reps" => {
                o.reps = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(o.reps).max(1);
                i += 1;
            }
            "--json" => o.json = true,
            _ => {} // cargo bench passes --bench
        }
        i += 1;
    }
    o
}

/// `n` values uniform in [-1, 1) from a xorshift stream.
fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The FF shapes: forward X·W and the dW GEMM Xnᵀ·dz, for B ∈ {100, 1000,
/// 10000} rows per half-batch (2B rows: positives and negatives).
fn gemm_cases() -> Vec<(String, (usize, usize, usize), bool)> {
    let mut v = Vec::new();
    for b in [100usize, 1000, 10000] {
        let rows = 2 * b;
        for (din, dout) in [(784usize, 2000usize), (2000, 2000)] {
            v.push((format!("fwd: A[{rows}×{din}]·B[{din}×{dout}]"), (rows, dout, din), false));
            v.push((format!("dW: Aᵀ[{din}×{rows}]·B[{rows}×{dout}]"), (din, dout, rows), true));
        }
    }
    v
}

fn bench_gemm(be: &CudaBackend, o: &Opts) -> Result<(), Box<dyn std::error::Error>> {
    for (name, (m, n, k), transposed_a) in gemm_cases() {
        // random operands: a GPU multiplies zeros faster than data (less power)
        let (mut a, mut b) = (Default::default(), Default::default());
        be.upload(&uniform(m * k, 1), &mut a)?;
        be.upload(&uniform(k * n, 2), &mut b)?;
        let mut c = be.zeros(m * n)?;
        // dW reads its A operand (Xn, rows × din) transposed.
        let av = if transposed_a { Mat::new(&a, k, m)?.t() } else { Mat::new(&a, m, k)? };
        let bv = Mat::new(&b, k, n)?;
        be.gemm(av, bv, &mut c, Epilogue::None)?;
        be.synchronize()?;
        let mut times = Vec::with_capacity(o.reps);
        for _ in 0..o.reps {
            let t = Instant::now();
            be.gemm(av, bv, &mut c, Epilogue::None)?;
            be.synchronize()?;
            times.push(t.elapsed().as_secs_f64());
        }
        let t = median(times);
        let tflops = 2.0 * (m * n * k) as f64 / t / 1e12;
        let pct = 100.0 * tflops / o.peak_tflops;
        if o.json {
            println!(
                "{{\"case\":\"gemm\",\"name\":\"{name}\",\"m\":{m},\"n\":{n},\"k\":{k},\"ms\":{:.4},\"tflops\":{tflops:.3},\"pct_peak\":{pct:.1}}}",
                t * 1e3
            );
        } else {
            println!("{name:<40} {:>9.4} ms {tflops:>8.2} TFLOP/s {pct:>6.1}% of peak", t * 1e3);
        }
    }
    Ok(())
}

fn bench_epochs(o: &Opts) -> Result<(), Box<dyn std::error::Error>> {
    let Some(data) = std::env::var_os("FFWD_DATA_DIR").map(std::path::PathBuf::from) else {
        println!("SKIP FF epochs (set FFWD_DATA_DIR to the folder holding mnist/)");
        return Ok(());
    };
    let dir = std::env::temp_dir().join("ffwd-gpu-bench");
    for batch in [100usize, 1000] {
        let mut c = RunConfig::default_for("mnist");
        c.model.sizes = vec![2000; 4];
        c.model.optim.lr = 1e-3;
        c.train.batch = batch;
        c.train.epochs = 4;
        c.train.eval_every = 0;
        c.train.device = Device::Cuda(0);
        c.output.dir = dir.clone();
        let _ = std::fs::remove_dir_all(&dir);
        let mut t = Trainer::new(c, Some(&data))?;
        let reports = t.run(&mut |_| {})?;
        // the median of the last three epochs: the first pays for module
        // loading and allocation
        let mut timed: Vec<_> = reports.iter().skip(1).collect();
        timed.sort_by(|a, b| a.train_seconds.total_cmp(&b.train_seconds));
        let r = timed[timed.len() / 2];
        let flop_per_sample = 8.0 * (784.0 * 2000.0 + 3.0 * 2000.0 * 2000.0);
        let tflops = r.samples_per_s * flop_per_sample / 1e12;
        if o.json {
            println!(
                "{{\"case\":\"ff_epoch\",\"sizes\":\"4x2000\",\"batch\":{batch},\"samples\":{},\"epoch_s\":{:.3},\"samples_per_s\":{:.0},\"tflops\":{tflops:.3}}}",
                t.train.len(),
                r.train_seconds,
                r.samples_per_s
            );
        } else {
            println!(
                "FF epoch 4×2000, batch {batch:<5} ({} images) {:>8.2} s {:>9.0} samples/s {tflops:>6.2} TFLOP/s",
                t.train.len(),
                r.train_seconds,
                r.samples_per_s
            );
        }
    }
    Ok(())
}

fn main() {
    let o = opts();
    let be = match CudaBackend::new(0) {
        Ok(b) => b,
        Err(e) => {
            if std::env::var("FFWD_REQUIRE_GPU").as_deref() == Ok("1") {
                eprintln!("error: FFWD_REQUIRE_GPU=1 but {e}");
                std::process::exit(1);
            }
            println!("SKIP (no CUDA): {e}");
            return;
        }
    };
    if !o.json {
        println!("ffwd GPU bench: FP32 peak taken as {} TFLOP/s; median of {} launches", o.peak_tflops, o.reps);
    }
    if let Err(e) = bench_gemm(&be, &o).and_then(|_| bench_epochs(&o)) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
