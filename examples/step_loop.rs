//! One FF layer's training step in a loop, for profilers: where does the
//! step's time go (microkernel, packing, optimiser, the rest)?
//!
//! ```text
//! cargo build --release --example step_loop
//! RAYON_NUM_THREADS=1 perf record -e cpu-clock -F 2000 \
//!     target/release/examples/step_loop 2000 2000 100 120
//! perf report --no-children --sort symbol
//! ```
//!
//! Arguments: inputs, outputs, batch (rows = 2 × batch, positives and
//! negatives together), steps. The step is the one the trainer runs:
//! RMS normalisation, the forward with W packed and the goodness epilogue,
//! the threshold loss, and the fused backward + Adam.

use ffwd::kernels::{CpuBackend, FfLoss, GoodnessForm, Norm, StatSlot};
use ffwd::layers::config::OptimConfig;
use ffwd::layers::ff::{FfLayer, Objective};
use ffwd::tensor::{stream, Philox};
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let [din, dout, batch, steps] = match args[..] {
        [a, b, c, d] if a > 0 && b > 0 && c > 0 && d > 0 => [a, b, c, d],
        _ => {
            eprintln!("usage: step_loop INPUTS OUTPUTS BATCH STEPS (all positive)");
            std::process::exit(2);
        }
    };
    let be = CpuBackend::best();
    let mut layer = FfLayer::new(&be, din, dout, &OptimConfig::default(), 0, 0).expect("a layer");
    let mut stat = vec![0.0f32; 3];
    let rows = 2 * batch;
    let mut x = vec![0.0f32; rows * din];
    Philox::new(1, stream::noise(0)).fill_uniform(&mut x, 0.0, 1.0);
    let loss = FfLoss::Threshold { theta: dout as f32 };
    let obj = Objective { norm: Norm::Rms, eps: 1e-8, loss, form: GoodnessForm::Sum };
    let mut step = || {
        let t = Instant::now();
        if let Err(e) = layer.train_step(&be, &x, rows, obj, StatSlot::new(&mut stat, 0)) {
            eprintln!("step_loop: {e}");
            std::process::exit(1);
        }
        t.elapsed().as_secs_f64()
    };
    for _ in 0..3 {
        step();
    }
    let mut times: Vec<f64> = (0..steps).map(|_| step()).collect();
    let mean = times.iter().sum::<f64>() / steps as f64;
    times.sort_by(f64::total_cmp);
    let (fastest, median) = (times[0], times[steps / 2]);
    let flops = 4.0 * (rows * din * dout) as f64;
    // The fastest step is the one the host disturbed least.
    println!(
        "{din}→{dout}, batch {batch}: {:.3} ms per step (median {:.3}, fastest {:.3}), {:.1} GFLOP/s, fastest {:.1}",
        mean * 1e3,
        median * 1e3,
        fastest * 1e3,
        flops / mean / 1e9,
        flops / fastest / 1e9
    );
}
