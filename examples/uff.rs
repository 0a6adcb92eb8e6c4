//! An unsupervised FF stack (a convolutional AE cell, a denoising AE cell, a
//! GAN cell) with a classifier on the concatenated latents, trained through
//! the library's one network interface on a chosen device.
//!
//! `cargo run --release --example uff [cpu|cpu-scalar|cuda] [train images]`
//!
//! Needs MNIST under `$FFWD_DATA_DIR/mnist/` (`ffwd data fetch mnist`).
//! Every cell learns its own local loss on its own input, the classifier
//! learns on the latents (the "simultaneous" mode); then the first cell's
//! reconstructions are compared with their inputs. The network is built on
//! the chosen backend and then used as a `Box<dyn Network>`, as the trainer
//! uses every network kind.

use ffwd::data::{self, Name};
use ffwd::kernels::{Backend, CpuBackend, CudaBackend};
use ffwd::layers::uff::{CellKind, SamplePos, UffConfig, UffNet};
use ffwd::layers::{Batch, Network};
use ffwd::tensor::{stream, Philox};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = std::env::args().nth(1).unwrap_or_else(|| "cpu".into());
    let n: usize = std::env::args().nth(2).map(|s| s.parse()).transpose()?.unwrap_or(6000);
    let splits = data::load(Name::Mnist, &data::data_root(None))?;
    let (shape, classes) = (splits.train.shape, splits.train.classes);
    let cfg = UffConfig { cells: vec![CellKind::Cae, CellKind::Dae, CellKind::Gan], ..UffConfig::default() };
    let seed = 3;
    // Pick the backend once; everything after works on any of them.
    let net: Box<dyn Network> = match device.as_str() {
        "cpu" => build(CpuBackend::best(), cfg, shape, classes, seed)?,
        "cpu-scalar" => build(CpuBackend::scalar(), cfg, shape, classes, seed)?,
        "cuda" => build(CudaBackend::new(0)?, cfg, shape, classes, seed)?,
        other => return Err(format!("unknown device {other:?}: cpu, cpu-scalar or cuda").into()),
    };
    run(net, &splits.train.slice(0..n.min(splits.train.len())), &splits.test.slice(0..2000), seed)
}

fn build<B: Backend>(
    be: B,
    cfg: UffConfig,
    shape: (usize, usize, usize),
    classes: usize,
    seed: u64,
) -> ffwd::layers::Result<Box<dyn Network>> {
    Ok(Box::new(UffNet::new(be, cfg, shape, classes, seed)?))
}

fn run(
    mut net: Box<dyn Network>,
    train: &data::Dataset,
    test: &data::Dataset,
    seed: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    println!("training: {}, on {} ({} images)", net.kind_name(), net.backend_name(), train.len());
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let batch = 100;
    // The cells and the classifier (the last "layer") all learn.
    let layers = 0..net.depth();
    for epoch in 0..3u32 {
        let order = Philox::new(seed, stream::shuffle(epoch)).permutation(train.len());
        let mut stats = Vec::new();
        for (b, idx) in order.chunks(batch).enumerate() {
            train.gather(idx, &mut x, &mut y);
            let first = (b * batch) as u64;
            let pos = SamplePos { seed, epoch, first, cell: 0 };
            let step = Batch { images: &x, labels: &y, neg: &[], layers: layers.clone(), pos };
            stats.extend(net.train_batch(&step)?);
        }
        stats.extend(net.flush_stats()?);
        let mean = |f: &dyn Fn(&ffwd::layers::BatchStats) -> Option<f32>| {
            let v: Vec<f32> = stats.iter().filter_map(f).collect();
            v.iter().sum::<f32>() / v.len().max(1) as f32
        };
        let cells: Vec<String> =
            (0..net.depth() - 1).map(|k| format!("{:.4}", mean(&|s| s.layers[k].map(|l| l.loss)))).collect();
        println!(
            "epoch {}: cell losses [{}], classifier {:.4}",
            epoch + 1,
            cells.join(", "),
            mean(&|s| s.readout_loss)
        );
    }
    let all: Vec<u32> = (0..test.len() as u32).collect();
    test.gather(&all, &mut x, &mut y);
    let p = net.predict(&x, test.len(), 500)?;
    let correct = p.overall.iter().zip(&y).filter(|(a, b)| a == b).count();
    println!("test accuracy {:.2}% ({correct}/{})", 100.0 * correct as f64 / y.len() as f64, y.len());
    let (recon, target) = net.reconstruct(&x[..16 * train.dim()], 16)?;
    let mse = recon.iter().zip(&target).map(|(a, b)| (a - b) * (a - b)).sum::<f32>() / recon.len() as f32;
    println!("first cell's reconstruction MSE on 16 test images: {mse:.4}");
    Ok(())
}
