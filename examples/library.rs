//! Using ffwd as a library: build an FF network, train it with your own
//! loop on the embedded digits, predict by goodness (method A).
//!
//! `cargo run --release --example library`

use ffwd::data;
use ffwd::kernels::CpuBackend;
use ffwd::layers::config::{FfConfig, LabelMode, LossKind};
use ffwd::layers::ff::{negative_labels, FfNet};
use ffwd::tensor::{stream, Philox};

fn main() -> Result<(), Box<dyn std::error::Error>> {
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
    let mut net = FfNet::new(cfg, train.dim(), train.classes, seed)?;
    let be = CpuBackend::best(); // AVX2 where available; CpuBackend::scalar() is the spec
    let (mut x, mut y, mut neg) = (Vec::new(), Vec::new(), Vec::new());
    for epoch in 0..20u32 {
        let order = Philox::new(seed, stream::shuffle(epoch)).permutation(train.len());
        for (b, idx) in order.chunks(50).enumerate() {
            train.gather(idx, &mut x, &mut y);
            negative_labels(seed, epoch, (b * 50) as u64, &y, 10, &mut neg);
            let stats = net.train_batch(&be, &x, &y, &neg, 0..net.layers.len())?;
            if b == 0 && epoch % 5 == 0 {
                let l0 = stats.layers[0].unwrap();
                println!("epoch {epoch}: layer 0 loss {:.4}, G+ {:.3}, G- {:.3}", l0.loss, l0.g_pos, l0.g_neg);
            }
        }
    }
    let all: Vec<u32> = (0..test.len() as u32).collect();
    test.gather(&all, &mut x, &mut y);
    let p = net.predict(&be, &x, test.len(), 256)?;
    let correct = p.overall.iter().zip(&y).filter(|(a, b)| a == b).count();
    println!("test accuracy {:.2}% ({correct}/{})", 100.0 * correct as f64 / y.len() as f64, y.len());
    Ok(())
}
