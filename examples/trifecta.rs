//! The Trifecta (SymBa loss, overlapping local updates, batch norm) on a
//! convolutional network, trained through the library on a chosen device.
//!
//! `cargo run --release --example trifecta [cpu|cpu-scalar|cuda] [train images]`
//!
//! Needs MNIST under `$FFWD_DATA_DIR/mnist/` (`ffwd data fetch mnist`). A
//! quarter-width small Trifecta, 2 epochs on the first 2000 training images
//! (by default) and the first 1000 test images: a minute on two CPU cores.
//! The network type is the same on every backend; only `be` differs.

use ffwd::data::{self, Name};
use ffwd::kernels::{Backend, CpuBackend, CudaBackend};
use ffwd::layers::conv::{ConvFfConfig, ConvFfNet};
use ffwd::layers::ff::negative_labels;
use ffwd::tensor::{stream, Philox};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = std::env::args().nth(1).unwrap_or_else(|| "cpu".into());
    let n: usize = std::env::args().nth(2).map(|s| s.parse()).transpose()?.unwrap_or(2000);
    match device.as_str() {
        "cpu" => train(CpuBackend::best(), n),
        "cpu-scalar" => train(CpuBackend::scalar(), n),
        "cuda" => train(CudaBackend::new(0)?, n),
        other => Err(format!("unknown device {other:?}: cpu, cpu-scalar or cuda").into()),
    }
}

/// MNIST's pixel mean and standard deviation: inputs are standardised.
const MEAN: f32 = 0.1307;
const STD: f32 = 0.3081;

fn train<B: Backend>(be: B, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let splits = data::load(Name::Mnist, &data::data_root(None))?;
    let train = splits.train.slice(0..n.min(splits.train.len()));
    let test = splits.test.slice(0..1000);
    // 32↓ 32 64↓ 64 64 128↓, SymBa, OLU, batch norm; predict by the last block.
    let cfg = ConvFfConfig::trifecta_small().narrowed(4);
    println!("training {:?} on {} ({} images)", cfg.channels, be.name(), train.len());
    let seed = 7;
    let mut net = ConvFfNet::new(be, cfg, train.shape, train.classes, seed)?;
    let standardise = |x: &mut Vec<f32>| x.iter_mut().for_each(|v| *v = (*v - MEAN) / STD);
    let (mut x, mut y, mut neg) = (Vec::new(), Vec::new(), Vec::new());
    let batch = 100;
    for epoch in 0..2u32 {
        let order = Philox::new(seed, stream::shuffle(epoch)).permutation(train.len());
        let mut stats = Vec::new();
        for (b, idx) in order.chunks(batch).enumerate() {
            train.gather(idx, &mut x, &mut y);
            standardise(&mut x);
            negative_labels(seed, epoch, (b * batch) as u64, &y, train.classes, &mut neg);
            // On a GPU the statistics come back in blocks of batches.
            stats.extend(net.train_batch(&x, &y, &neg)?);
        }
        stats.extend(net.flush_stats()?);
        // Under OLU each block learns in every other batch: average the
        // batches in which it did.
        let losses: Vec<String> = (0..net.blocks.len())
            .map(|k| {
                let l: Vec<f32> = stats.iter().filter_map(|s| s.layers[k].map(|l| l.loss)).collect();
                format!("{:.3}", l.iter().sum::<f32>() / l.len().max(1) as f32)
            })
            .collect();
        println!("epoch {}: block losses [{}]", epoch + 1, losses.join(", "));
    }
    let all: Vec<u32> = (0..test.len() as u32).collect();
    test.gather(&all, &mut x, &mut y);
    standardise(&mut x);
    let p = net.predict(&x, test.len(), 250)?;
    let correct = p.overall.iter().zip(&y).filter(|(a, b)| a == b).count();
    println!("test accuracy {:.2}% ({correct}/{})", 100.0 * correct as f64 / y.len() as f64, y.len());
    Ok(())
}
