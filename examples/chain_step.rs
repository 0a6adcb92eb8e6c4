//! A whole FF training batch through a chain of layers: how far the 4×2000
//! network's batch gets from the machine's peak, scheduled as the trainer
//! runs it (each layer's update beside the forward of the layer above)
//! and layer after layer, with each layer timed in the second schedule
//! (how much slower a layer runs in the chain, where its weights and
//! optimiser state compete with the other layers' for the caches, than
//! alone).
//!
//! ```text
//! cargo build --release --example chain_step
//! target/release/examples/chain_step 2000 4 100 30   # width depth batch batches
//! ```
//!
//! The input is 784 wide (an MNIST image with its label); each layer
//! trains on the previous layer's output: RMS normalisation, the forward
//! with the goodness epilogue, the threshold loss and the fused backward +
//! Adam. The two schedules alternate batch by batch (which goes first,
//! too), on two copies of the network. GFLOP/s count the nominal FLOP of
//! a batch; rows whose loss gradient is exactly zero are left out of dW,
//! so once the loss saturates they are effective rates.

use ffwd::kernels::{CpuBackend, FfLoss, GoodnessForm, Norm, StatSlot};
use ffwd::layers::config::OptimConfig;
use ffwd::layers::ff::{train_stack, FfLayer, Objective};
use ffwd::tensor::{stream, Philox};
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let [width, depth, batch, batches] = match args[..] {
        [a, b, c, d] if a > 0 && b > 0 && c > 0 && d > 0 => [a, b, c, d],
        _ => {
            eprintln!("usage: chain_step WIDTH DEPTH BATCH BATCHES (all positive)");
            std::process::exit(2);
        }
    };
    let be = CpuBackend::best();
    let rows = 2 * batch;
    let dims: Vec<usize> = std::iter::once(784).chain(std::iter::repeat_n(width, depth)).collect();
    // Two networks built alike (a clone would not get the huge-page advice).
    let build = || -> Vec<FfLayer<CpuBackend>> {
        (0..depth)
            .map(|l| FfLayer::new(&be, dims[l], dims[l + 1], &OptimConfig::default(), 0, l as u32).expect("a layer"))
            .collect()
    };
    let mut stats = vec![0.0f32; 3 * depth];
    let (mut layers, mut piped) = (build(), build());
    let mut x = vec![0.0f32; rows * 784];
    Philox::new(1, stream::noise(0)).fill_uniform(&mut x, 0.0, 1.0);
    // The objective of a layer `width` units wide (θ = width).
    let obj = |width: usize| Objective {
        norm: Norm::Rms,
        eps: 1e-8,
        loss: FfLoss::Threshold { theta: width as f32 },
        form: GoodnessForm::Sum,
    };
    let fail = |e: ffwd::layers::Error| -> ! {
        eprintln!("chain_step: {e}");
        std::process::exit(1);
    };
    let mut sequential = |layers: &mut [FfLayer<CpuBackend>], secs: &mut [f64]| {
        for l in 0..depth {
            let (prev, rest) = layers.split_at_mut(l);
            let input = if l == 0 { &x } else { prev[l - 1].activity() };
            let t = Instant::now();
            let slot = StatSlot::new(&mut stats, 3 * l);
            rest[0].train_step(&be, input, rows, obj(dims[l + 1]), slot).unwrap_or_else(|e| fail(e));
            secs[l] += t.elapsed().as_secs_f64();
        }
    };
    let mut piped_stats = vec![0.0f32; 3 * depth];
    let mut pipelined = |layers: &mut [FfLayer<CpuBackend>]| {
        let objective = |ly: &FfLayer<CpuBackend>| obj(ly.out_dim);
        train_stack(&be, layers, &x, rows, objective, (&mut piped_stats, 0)).unwrap_or_else(|e| fail(e));
    };
    for _ in 0..2 {
        sequential(&mut layers, &mut vec![0.0; depth]);
        pipelined(&mut piped);
    }
    let mut secs = vec![0.0f64; depth];
    let (mut seq_s, mut pipe_s) = (0.0, 0.0);
    for i in 0..batches {
        for first in [i % 2 == 0, i % 2 == 1] {
            let t = Instant::now();
            if first {
                sequential(&mut layers, &mut secs);
                seq_s += t.elapsed().as_secs_f64();
            } else {
                pipelined(&mut piped);
                pipe_s += t.elapsed().as_secs_f64();
            }
        }
    }
    let flops = |l: usize| 4.0 * (rows * dims[l] * dims[l + 1]) as f64;
    let total: f64 = (0..depth).map(flops).sum();
    for (name, secs) in [("pipelined", pipe_s), ("layer after layer", seq_s)] {
        let per_batch = secs / batches as f64;
        println!(
            "{depth}×{width}, batch {batch}, {name}: {:.2} ms per batch, {:.1} GFLOP/s, {:.0} samples/s",
            per_batch * 1e3,
            total / per_batch / 1e9,
            batch as f64 / per_batch
        );
    }
    for (l, s) in secs.iter().enumerate() {
        let ms = s / batches as f64 * 1e3;
        println!("  layer {l} ({}→{}): {ms:.2} ms, {:.1} GFLOP/s", dims[l], dims[l + 1], flops(l) / ms / 1e6);
    }
}
