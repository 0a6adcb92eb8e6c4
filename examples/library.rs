//! Using ffwd as a library: pick a backend once, build an FF network on it,
//! train it with your own loop on the embedded digits, predict by goodness
//! (method A).
//!
//! `cargo run --release --example library [cpu|cpu-scalar|cuda]`
//!
//! Every network type is generic over `ffwd::kernels::Backend`: the same
//! code runs on the AVX2 CPU backend, the scalar specification and a CUDA
//! device, with the same bits.

use ffwd::data;
use ffwd::kernels::{Backend, CpuBackend, CudaBackend};
use ffwd::layers::config::{FfConfig, LabelMode, LossKind};
use ffwd::layers::ff::{negative_labels, FfNet};
use ffwd::tensor::{stream, Philox};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::args().nth(1).as_deref().unwrap_or("cpu") {
        "cpu" => train(CpuBackend::best()),          // AVX2 where available
        "cpu-scalar" => train(CpuBackend::scalar()), // the specification
        "cuda" => train(CudaBackend::new(0)?),
        other => Err(format!("unknown device {other:?}: cpu, cpu-scalar or cuda").into()),
    }
}

fn train<B: Backend>(be: B) -> Result<(), Box<dyn std::error::Error>> {
    println!("training on {}", be.name());
    let splits = data::digits()?;
    let (train, test) = (&splits.train, &splits.test);
    let cfg = FfConfig {
        sizes: vec![300, 300],
        label: LabelMode::Concat, // 8×8 images: append the label instead of overwriting pixels
        loss: LossKind::Symba,
        goodness: ffwd::layers::config::GoodnessKind::Mean,
        ..FfConfig::default()
    };
    let seed = 42;
    let mut net = FfNet::new(be, cfg, train.dim(), train.classes, seed)?;
    let (mut x, mut y, mut neg) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    for epoch in 0..20u32 {
        let order = Philox::new(seed, stream::shuffle(epoch)).permutation(train.len());
        for (b, idx) in order.chunks(50).enumerate() {
            train.gather(idx, &mut x, &mut y);
            negative_labels(seed, epoch, (b * 50) as u64, &y, 10, &mut neg);
            // The statistics of the batches the backend has handed back
            // (every batch on the CPU; blocks of them on a GPU).
            last = net.train_batch(&x, &y, &neg, 0..net.layers.len())?.pop().or(last);
        }
        last = net.flush_stats()?.pop().or(last);
        if epoch % 5 == 0 {
            if let Some(Some(l0)) = last.as_ref().map(|s| s.layers[0]) {
                println!("epoch {epoch}: layer 0 loss {:.4}, G+ {:.3}, G- {:.3}", l0.loss, l0.g_pos, l0.g_neg);
            }
        }
    }
    let all: Vec<u32> = (0..test.len() as u32).collect();
    test.gather(&all, &mut x, &mut y);
    let p = net.predict(&x, test.len(), 256)?;
    let correct = p.overall.iter().zip(&y).filter(|(a, b)| a == b).count();
    println!("test accuracy {:.2}% ({correct}/{})", 100.0 * correct as f64 / y.len() as f64, y.len());
    Ok(())
}
