//! Training on real data: a short MNIST run must learn, and bad input must
//! give clear errors.

mod common;

use ffwd::train::config::RunConfig;
use ffwd::train::trainer::Trainer;

#[test]
fn ff_learns_mnist_subset_above_80_percent_in_three_epochs() {
    let Some(dir) = common::data_dir() else { return };
    let mut c = RunConfig::default();
    c.data.dataset = "mnist".into();
    c.data.train_size = 20_000;
    c.model.sizes = vec![500, 500];
    c.model.label = ffwd::layers::config::LabelMode::Overwrite;
    c.model.optim.lr = 1e-3;
    c.train.epochs = 3;
    c.train.batch = 100;
    let out = tempfile::tempdir().unwrap();
    c.output.dir = out.path().to_path_buf();
    let mut t = Trainer::new(c, Some(&dir)).unwrap();
    t.test = t.test.slice(0..2000);
    let r = t.run(&mut |_| {}).unwrap();
    let acc = r.last().unwrap().test.as_ref().unwrap().acc;
    let first_loss = r[0].layers[0].loss.unwrap();
    let last_loss = r[2].layers[0].loss.unwrap();
    assert!(last_loss < first_loss, "layer 0 loss did not fall: {first_loss} → {last_loss}");
    assert!(acc > 0.80, "test accuracy {acc}");
    // the metrics file has one line per epoch with per-layer stats
    let m = std::fs::read_to_string(out.path().join("metrics.jsonl")).unwrap();
    assert_eq!(m.lines().count(), 3);
    assert!(m.contains("\"g_pos\"") && m.contains("\"samples_per_s\""));
    // MNIST's background: six images are often all zero at a pixel, and the
    // AVX2 forward leaves those steps out of layer 0 (the spec runs all).
    let (f0, d0) = (r[0].layers[0].fwd_steps.unwrap(), r[0].layers[0].dw_steps.unwrap());
    if ffwd::kernels::cpu::avx2_available() {
        assert!(f0 > 0.3 && f0 < 0.6 && d0 > 0.2 && d0 < 0.6, "layer 0 ran {f0} of its forward steps, {d0} of dW's");
    } else {
        assert_eq!((f0, d0), (1.0, 1.0));
    }
}

/// A narrow conv net (8↓ 16↓ 16, batch norm) trained 2 epochs on the first
/// 2,000 Fashion-MNIST images; tested on the first 1,000 test images.
fn fashion_subset_run(
    dir: &std::path::Path,
    algorithm: ffwd::layers::conv::ConvAlgorithm,
) -> Vec<ffwd::train::trainer::EpochReport> {
    let mut c = RunConfig::default();
    c.data.dataset = "fashion-mnist".into();
    c.data.train_size = 2_000;
    c.data.augment.normalize = true;
    let mut conv = ffwd::layers::conv::ConvFfConfig::trifecta_small();
    conv.algorithm = algorithm;
    conv.channels = vec![8, 16, 16];
    conv.pool = vec![0, 1];
    c.conv = Some(conv);
    c.train.epochs = 2;
    c.train.batch = 64;
    let out = tempfile::tempdir().unwrap();
    c.output.dir = out.path().to_path_buf();
    let mut t = Trainer::new(c, Some(dir)).unwrap();
    t.test = t.test.slice(0..1000);
    t.run(&mut |_| {}).unwrap()
}

#[test]
fn trifecta_learns_fashion_mnist_subset_and_beats_chance_by_far() {
    let Some(dir) = common::data_dir() else { return };
    let r = fashion_subset_run(&dir, ffwd::layers::conv::ConvAlgorithm::Ff);
    let e = r.last().unwrap().test.as_ref().unwrap();
    eprintln!("trifecta fashion-mnist subset: test {:.2}%, per block {:?}", 100.0 * e.acc, e.per_layer);
    let (first, last) = (r[0].layers[2].loss.unwrap(), r[1].layers[2].loss.unwrap());
    assert!(last < first, "block 2 loss did not fall: {first} → {last}");
    assert!(first < std::f32::consts::LN_2 + 0.01, "SymBa loss starts at ln 2 or below: {first}");
    assert!(e.acc > 0.30, "test accuracy {} (chance is 0.10)", e.acc);
}

#[test]
fn backprop_baseline_on_the_trifecta_blocks_learns_fashion_mnist_subset() {
    let Some(dir) = common::data_dir() else { return };
    let r = fashion_subset_run(&dir, ffwd::layers::conv::ConvAlgorithm::Backprop);
    let e = r.last().unwrap().test.as_ref().unwrap();
    let (first, last) = (r[0].readout_loss.unwrap(), r[1].readout_loss.unwrap());
    eprintln!("backprop fashion-mnist subset: test {:.2}%, loss {first} → {last}", 100.0 * e.acc);
    assert!(e.goodness_acc.is_none() && e.per_layer.is_empty(), "a backprop net has no goodness");
    assert!(first < 10f32.ln() + 0.5 && last < first, "cross-entropy must start near ln 10 and fall");
    assert!(e.acc > 0.5, "test accuracy {} (chance is 0.10)", e.acc);
}

#[test]
fn ff_rotation_pretext_learns_and_its_features_transfer_through_the_linear_probe() {
    let Some(dir) = common::data_dir() else { return };
    let mut c = RunConfig::default_for("mnist");
    c.data.train_size = 5_000;
    c.model.sizes = vec![200, 200, 200];
    c.model.skip_layers = Some(1);
    c.ssl = Some(ffwd::train::config::SslConfig { task: "rotation".into() });
    c.probe = Some(ffwd::layers::probe::ProbeConfig { epochs: 5, ..Default::default() });
    c.train.epochs = 3;
    let out = tempfile::tempdir().unwrap();
    c.output.dir = out.path().to_path_buf();
    let mut t = Trainer::new(c, Some(&dir)).unwrap();
    assert_eq!((t.net.classes(), t.test.classes), (4, 4));
    t.test = t.test.slice(0..2000);
    t.real_test = Some(t.real_test.take().unwrap().slice(0..2000));
    let r = t.run(&mut |_| {}).unwrap();
    let e = r.last().unwrap().test.as_ref().unwrap();
    let p = t.probe().unwrap().unwrap();
    eprintln!("rotation pretext: test {:.2}% (per layer {:?}); probe {p:?}", 100.0 * e.acc, e.per_layer);
    assert!(e.per_layer[0] > 0.5, "layer 0 pretext accuracy {} (chance 0.25)", e.per_layer[0]);
    assert_eq!(p.per_layer.len(), 3);
    assert!(p.concat > 0.8, "probe on the concatenation: {}", p.concat);
    assert!(out.path().join("probe.json").is_file());
}

#[test]
fn uff_cells_learn_mnist_subset_in_both_training_modes() {
    use ffwd::layers::uff::{CellKind, UffConfig};
    let Some(dir) = common::data_dir() else { return };
    for (cells, mode) in [
        (vec![CellKind::Ae, CellKind::Dae], ffwd::train::config::Schedule::Simultaneous),
        (vec![CellKind::Cae, CellKind::Gan], ffwd::train::config::Schedule::LayerByLayer),
    ] {
        let mut c = RunConfig::default_for("mnist");
        c.data.train_size = 3_000;
        c.uff = Some(UffConfig { cells: cells.clone(), ..UffConfig::default() });
        c.train.epochs = 2;
        c.train.schedule = mode;
        let out = tempfile::tempdir().unwrap();
        c.output.dir = out.path().to_path_buf();
        let mut t = Trainer::new(c, Some(&dir)).unwrap();
        t.test = t.test.slice(0..1000);
        let r = t.run(&mut |_| {}).unwrap();
        let acc = r.last().unwrap().test.as_ref().unwrap().acc;
        eprintln!("uff {cells:?} {mode:?}: test {:.2}%", 100.0 * acc);
        // The first cell's loss falls between its first and its last epoch
        // (for a GAN cell, the discriminator's; a CAE/AE/DAE reconstructs).
        let first_cell: Vec<f32> = r.iter().filter_map(|e| e.layers[0].loss).collect();
        assert!(first_cell.len() == 2 && first_cell[1] < first_cell[0], "{cells:?}: {first_cell:?}");
        assert!(acc > 0.7, "{cells:?} {mode:?}: test accuracy {acc}");
    }
}

#[test]
fn truncated_mnist_file_is_a_clear_error() {
    let Some(dir) = common::data_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("mnist");
    std::fs::create_dir_all(&m).unwrap();
    for f in ["train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::fs::copy(dir.join("mnist").join(f), m.join(f)).unwrap();
    }
    let full = std::fs::read(dir.join("mnist/train-images-idx3-ubyte.gz")).unwrap();
    let raw = ffwd::data::idx::decompress(std::path::Path::new("x"), &full).unwrap();
    // a raw (uncompressed) file cut short
    std::fs::write(m.join("train-images-idx3-ubyte"), &raw[..raw.len() - 1000]).unwrap();
    let e = ffwd::data::load(ffwd::data::Name::Mnist, tmp.path()).unwrap_err().to_string();
    assert!(e.contains("train-images-idx3-ubyte") && e.contains("truncated"), "{e}");
    // a gzip file cut short
    std::fs::remove_file(m.join("train-images-idx3-ubyte")).unwrap();
    std::fs::write(m.join("train-images-idx3-ubyte.gz"), &full[..full.len() / 2]).unwrap();
    let e = ffwd::data::load(ffwd::data::Name::Mnist, tmp.path()).unwrap_err().to_string();
    assert!(e.contains("train-images-idx3-ubyte.gz"), "{e}");
}

#[test]
fn label_count_disagreeing_with_images_is_a_clear_error() {
    let Some(dir) = common::data_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("mnist");
    std::fs::create_dir_all(&m).unwrap();
    for f in ["train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"] {
        std::fs::copy(dir.join("mnist").join(f), m.join(f)).unwrap();
    }
    // t10k labels: a valid IDX label file with 9,999 labels
    let full = std::fs::read(dir.join("mnist/t10k-labels-idx1-ubyte.gz")).unwrap();
    let mut raw = ffwd::data::idx::decompress(std::path::Path::new("x"), &full).unwrap();
    raw.truncate(raw.len() - 1);
    raw[4..8].copy_from_slice(&9999u32.to_be_bytes());
    std::fs::write(m.join("t10k-labels-idx1-ubyte"), &raw).unwrap();
    let e = ffwd::data::load(ffwd::data::Name::Mnist, tmp.path()).unwrap_err().to_string();
    assert!(e.contains("9999 labels") && e.contains("10000 images"), "{e}");
}

#[test]
fn missing_dataset_folder_says_how_to_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let e = ffwd::data::load(ffwd::data::Name::FashionMnist, tmp.path()).unwrap_err().to_string();
    assert!(e.contains("ffwd data fetch fashion-mnist"), "{e}");
}

#[test]
fn layer_by_layer_schedule_trains_one_layer_per_phase() {
    let mut c = RunConfig::default();
    c.model.sizes = vec![40, 30];
    c.train.epochs = 2;
    let out = tempfile::tempdir().unwrap();
    c.output.dir = out.path().to_path_buf();
    c.train.schedule = ffwd::train::config::Schedule::LayerByLayer;
    let mut t = Trainer::new(c, None).unwrap();
    let r = t.run(&mut |_| {}).unwrap();
    assert_eq!(r.len(), 4);
    let phases: Vec<_> = r.iter().map(|e| e.training_layer).collect();
    assert_eq!(phases, vec![Some(0), Some(0), Some(1), Some(1)]);
    assert!(r[0].layers[0].loss.is_some() && r[0].layers[1].loss.is_none());
    assert!(r[3].layers[0].loss.is_none() && r[3].layers[1].loss.is_some());
    assert!(r[3].layers[0].fwd_steps.is_none() && r[3].layers[1].fwd_steps.is_some());
    // layer 0 was frozen during phase 1: its weights equal the phase-0 end state
    let ck = ffwd::train::checkpoint::load(&t.checkpoint_path(), Default::default()).unwrap().1;
    let w0 =
        |n: &ffwd::train::model::Model| n.named_tensors().unwrap().into_iter().find(|(k, _)| k == "layers.0.weight");
    assert!(w0(&ck).is_some());
    assert_eq!(w0(&ck), w0(&t.net));
}

#[test]
fn prediction_b_readout_learns_the_digits() {
    let mut c = RunConfig::default();
    c.model.predict = ffwd::layers::config::PredictKind::Readout;
    c.train.epochs = 10;
    let out = tempfile::tempdir().unwrap();
    c.output.dir = out.path().to_path_buf();
    let mut t = Trainer::new(c, None).unwrap();
    let r = t.run(&mut |_| {}).unwrap();
    let last = r.last().unwrap();
    let test = last.test.as_ref().unwrap();
    let ra = test.readout_acc.unwrap();
    assert_eq!(test.acc, ra, "overall accuracy must be the readout's under prediction B");
    assert!(ra > 0.7, "readout accuracy {ra}");
    assert!(last.readout_loss.unwrap() < r[0].readout_loss.unwrap());
}

/// Prediction C (`model.predict = "ensemble"`): per image, the label with
/// the most of each scored layer's standardised goodness plus the
/// readout's standardised logits — checked against that sum worked out
/// here from the net's own per-label goodness and readout logits (the
/// same arithmetic: each term's z-score in f64, added as f32 from +0.0 in
/// layer order, the readout last), and the same labels from the
/// checkpoint on the scalar specification at 1 thread.
#[test]
fn ensemble_prediction_adds_standardised_layer_scores_and_readout_logits() {
    use ffwd::layers::config::{GoodnessKind, PredictKind};
    let mut c = RunConfig::default_for("digits");
    c.model.predict = PredictKind::Ensemble;
    c.train.epochs = 4;
    assert_eq!(c.model.goodness, GoodnessKind::Sum);
    let out = tempfile::tempdir().unwrap();
    c.output.dir = out.path().to_path_buf();
    let mut t = Trainer::new(c.clone(), None).unwrap();
    t.run(&mut |_| {}).unwrap();
    let test = ffwd::data::digits().unwrap().test;
    let (n, d, k) = (test.len(), test.dim(), 10);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    test.gather(&(0..n as u32).collect::<Vec<_>>(), &mut x, &mut y);
    let p = t.net.predict(&x, n, 100).unwrap();
    // every image once per candidate label
    let (mut xs, mut ys) = (Vec::with_capacity(n * k * d), Vec::with_capacity(n * k));
    for i in 0..n {
        for label in 0..k {
            xs.extend_from_slice(&x[i * d..(i + 1) * d]);
            ys.push(Some(label as u8));
        }
    }
    let good = t.net.goodness(&xs, &ys).unwrap();
    let logits = t.net.label_scores(&x, n, 100).unwrap();
    let z_into = |v: &[f32], total: &mut [f32]| {
        let mean = v.iter().map(|&a| f64::from(a)).sum::<f64>() / k as f64;
        let sd = (v.iter().map(|&a| (f64::from(a) - mean).powi(2)).sum::<f64>() / k as f64).sqrt();
        if sd > 0.0 {
            total.iter_mut().zip(v).for_each(|(t, &a)| *t += ((f64::from(a) - mean) / sd) as f32);
        }
    };
    let skip = c.model.skip();
    let expected: Vec<u8> = (0..n)
        .map(|i| {
            let mut total = vec![0.0f32; k];
            for g in &good[skip..] {
                z_into(&g[i * k..(i + 1) * k], &mut total);
            }
            z_into(&logits[i * k..(i + 1) * k], &mut total);
            (0..k).fold(0, |b, j| if total[j] > total[b] { j } else { b }) as u8
        })
        .collect();
    assert_eq!(p.overall, expected);
    assert!(p.overall != p.goodness && p.overall != p.readout.clone().unwrap(), "C differs from A and B here");
    let right = |v: &[u8]| v.iter().zip(&y).filter(|(a, b)| a == b).count();
    assert!(right(&p.overall) * 10 >= n * 9, "ensemble: {} of {n}", right(&p.overall));
    // the checkpoint, on the scalar specification at 1 thread
    let device = ffwd::train::config::Device::CpuScalar;
    let (_, mut s) = ffwd::train::checkpoint::load(&t.checkpoint_path(), device).unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    assert_eq!(pool.install(|| s.predict(&x, n, 64)).unwrap().overall, p.overall);
}

/// The run `ffwd train` makes with no arguments (the embedded digits):
/// at least 95 % on the 297 held-out digits (it ends at 95.62 % on every
/// backend and thread count), and its last five epochs within a point of
/// each other.
#[test]
fn the_default_run_holds_its_accuracy_floor_and_ends_steady() {
    let mut c = RunConfig::default_for("digits");
    let out = tempfile::tempdir().unwrap();
    c.output.dir = out.path().to_path_buf();
    let mut t = Trainer::new(c, None).unwrap();
    let r = t.run(&mut |_| {}).unwrap();
    let acc: Vec<f32> = r.iter().map(|e| e.test.as_ref().unwrap().acc).collect();
    let last5 = &acc[acc.len() - 5..];
    let (lo, hi) = last5.iter().fold((f32::MAX, f32::MIN), |(l, h), &a| (l.min(a), h.max(a)));
    assert!(*acc.last().unwrap() >= 0.95, "the default run ends at {}", acc.last().unwrap());
    assert!(hi - lo <= 0.01, "the last five epochs spread over {lo}..{hi}");
}
