//! How an FF MLP checkpoint's ways of predicting compare on held-out
//! training images: goodness summed over every subset of its layers, the
//! layers' scores standardised per image, the readout, and the readout's
//! standardised logits added to the standardised layer scores. Used to
//! choose a prediction method on validation images without touching the
//! test set (`benches/results/hinton-recipe-2026-12-06.md`).
//!
//! `cargo run --release --example prediction_scores -- CHECKPOINT [FIRST [N]]`
//!
//! Scores MNIST training images FIRST..FIRST+N (default 50,000..60,000, the
//! validation images of a run trained with `validation = 10000`) from
//! `$FFWD_DATA_DIR`.

use ffwd::data::{self, Name};
use ffwd::train::checkpoint;
use ffwd::train::config::Device;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().ok_or("usage: prediction_scores CHECKPOINT [FIRST [N]]")?;
    let first: usize = args.get(1).map_or(Ok(50_000), |s| s.parse())?;
    let count: usize = args.get(2).map_or(Ok(10_000), |s| s.parse())?;
    let (meta, mut net) = checkpoint::load(path.as_ref(), Device::Cpu)?;
    let splits = data::load(Name::Mnist, &data::data_root(None))?;
    let ds = splits.train.slice(first..(first + count).min(splits.train.len()));
    let (n, d, c, depth) = (ds.len(), ds.dim(), meta.classes, net.depth());
    let mut images = vec![0.0; n * d];
    for i in 0..n {
        ds.image_f32(i, &mut images[i * d..(i + 1) * d]);
    }
    // good[l][i * c + k]: layer l's goodness of image i with label k.
    let mut good = vec![Vec::with_capacity(n * c); depth];
    let chunk = 500;
    for start in (0..n).step_by(chunk) {
        let m = chunk.min(n - start);
        let mut x = Vec::with_capacity(m * c * d);
        let mut y = Vec::with_capacity(m * c);
        for i in start..start + m {
            for k in 0..c {
                x.extend_from_slice(&images[i * d..(i + 1) * d]);
                y.push(Some(k as u8));
            }
        }
        for (l, g) in net.goodness(&x, &y)?.into_iter().enumerate() {
            good[l].extend(g);
        }
    }
    let logits = if net.has_readout() { Some(net.label_scores(&images, n, 1000)?) } else { None };
    let labels = &ds.labels;
    let accuracy = |score: &dyn Fn(usize, usize) -> f64| -> f64 {
        let right = (0..n)
            .filter(|&i| {
                let best = (0..c).fold(0, |b, k| if score(i, k) > score(i, b) { k } else { b });
                best == labels[i] as usize
            })
            .count();
        100.0 * right as f64 / n as f64
    };
    let z = |v: &[f32], i: usize, k: usize| -> f64 {
        let row = &v[i * c..(i + 1) * c];
        let mean = row.iter().map(|&a| a as f64).sum::<f64>() / c as f64;
        let var = row.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / c as f64;
        if var > 0.0 {
            (row[k] as f64 - mean) / var.sqrt()
        } else {
            0.0
        }
    };
    println!("{n} images from {first}, {depth} layers, checkpoint {path}");
    println!("| layers | goodness summed | standardised | standardised + readout |");
    println!("| --- | ---: | ---: | ---: |");
    for mask in 1u32..(1 << depth) {
        let set: Vec<usize> = (0..depth).filter(|l| mask & (1 << l) != 0).collect();
        let sum = accuracy(&|i, k| set.iter().map(|&l| good[l][i * c + k] as f64).sum());
        let st = accuracy(&|i, k| set.iter().map(|&l| z(&good[l], i, k)).sum());
        let both =
            logits.as_ref().map(|r| accuracy(&|i, k| set.iter().map(|&l| z(&good[l], i, k)).sum::<f64>() + z(r, i, k)));
        let names: Vec<String> = set.iter().map(|l| (l + 1).to_string()).collect();
        let both = both.map_or("–".into(), |a| format!("{a:.2} %"));
        println!("| {} | {sum:.2} % | {st:.2} % | {both} |", names.join(","));
    }
    if let Some(r) = &logits {
        println!("readout alone: {:.2} %", accuracy(&|i, k| r[i * c + k] as f64));
    }
    Ok(())
}
