//! The same seed gives byte-identical checkpoints: run to run, at 1 and 2
//! threads, and on the scalar specification vs the AVX2 backend.

mod common;

use ffwd::kernels::CpuBackend;
use ffwd::train::config::{Device, RunConfig};
use ffwd::train::trainer::Trainer;
use std::path::Path;

fn train_bytes(
    mut cfg: RunConfig,
    threads: usize,
    scalar: bool,
    dir: &Path,
    subset: Option<(usize, usize)>,
) -> Vec<u8> {
    cfg.train.threads = threads;
    if scalar {
        cfg.train.device = Device::CpuScalar;
    }
    cfg.output.dir = dir.to_path_buf();
    let data_dir = common::data_dir();
    let mut t = Trainer::new(cfg.clone(), data_dir.as_deref()).unwrap();
    if let Some((ntrain, ntest)) = subset {
        let (train, test) = (t.train.slice(0..ntrain), t.test.slice(0..ntest));
        let net = ffwd::train::model::build(&cfg, train.shape, 10).unwrap();
        t = Trainer::with_model(cfg, net, train, None, test).unwrap();
    }
    assert_eq!(t.backend_name(), if scalar { "cpu-scalar" } else { "cpu-avx2" });
    t.run(&mut |_| {}).unwrap();
    std::fs::read(t.checkpoint_path()).unwrap()
}

fn mnist_cfg() -> RunConfig {
    let mut c = RunConfig::default();
    c.data.dataset = "mnist".into();
    c.model.sizes = vec![96, 64];
    c.model.label = ffwd::layers::config::LabelMode::Overwrite;
    c.model.predict = ffwd::layers::config::PredictKind::Readout;
    c.train.epochs = 2;
    c.train.batch = 64;
    c.train.seed = 7;
    c
}

#[test]
fn same_seed_gives_identical_checkpoints_at_1_and_2_threads() {
    if common::data_dir().is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let a = train_bytes(mnist_cfg(), 2, false, &d.path().join("a"), Some((3000, 500)));
    let b = train_bytes(mnist_cfg(), 2, false, &d.path().join("b"), Some((3000, 500)));
    let c = train_bytes(mnist_cfg(), 1, false, &d.path().join("c"), Some((3000, 500)));
    assert!(a.len() > 100_000);
    assert!(a == b, "two runs with the same seed differ");
    assert!(a == c, "1 thread and 2 threads differ");
    let mut other = mnist_cfg();
    other.train.seed = 8;
    let e = train_bytes(other, 2, false, &d.path().join("e"), Some((3000, 500)));
    assert!(a != e, "a different seed must give different weights");
}

#[test]
fn avx2_training_matches_the_scalar_specification_byte_for_byte() {
    if CpuBackend::avx2().is_err() {
        eprintln!("SKIP (no avx2/fma)");
        return;
    }
    let mut cfg = RunConfig::default();
    cfg.model.sizes = vec![48, 40];
    cfg.model.predict = ffwd::layers::config::PredictKind::Readout;
    cfg.train.epochs = 2;
    for loss in [ffwd::layers::config::LossKind::Threshold, ffwd::layers::config::LossKind::Symba] {
        cfg.model.loss = loss;
        let d = tempfile::tempdir().unwrap();
        let fast = train_bytes(cfg.clone(), 2, false, &d.path().join("f"), Some((600, 100)));
        let spec = train_bytes(cfg.clone(), 1, true, &d.path().join("s"), Some((600, 100)));
        assert!(fast == spec, "{loss:?}: AVX2 and scalar checkpoints differ");
    }
}

/// A narrow Trifecta (batch norm, SymBa, OLU) on CIFAR-10 with crop and
/// rotation augmentation.
fn conv_cfg() -> RunConfig {
    let mut c = RunConfig::default();
    c.data.dataset = "cifar-10".into();
    c.data.augment =
        ffwd::train::config::AugmentConfig { crop_padding: 4, rotation_deg: 15.0, normalize: true, dropout: 0.0 };
    let mut conv = ffwd::layers::conv::ConvFfConfig::trifecta_small();
    conv.channels = vec![4, 6, 8];
    conv.pool = vec![0, 2];
    c.conv = Some(conv);
    c.train.epochs = 2;
    c.train.batch = 16;
    c.train.seed = 5;
    c
}

#[test]
fn conv_training_gives_identical_checkpoints_across_threads_and_backends() {
    if common::data_dir().is_none() || CpuBackend::avx2().is_err() {
        eprintln!("SKIP (no data or no avx2/fma)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let sub = Some((96, 20));
    let a = train_bytes(conv_cfg(), 2, false, &d.path().join("a"), sub);
    let b = train_bytes(conv_cfg(), 1, false, &d.path().join("b"), sub);
    let s = train_bytes(conv_cfg(), 1, true, &d.path().join("s"), sub);
    assert!(a == b, "1 thread and 2 threads differ");
    assert!(a == s, "AVX2 and the scalar specification differ");
    let mut other = conv_cfg();
    other.conv.as_mut().unwrap().olu = false;
    let o = train_bytes(other, 2, false, &d.path().join("o"), sub);
    assert!(a != o, "OLU on and off must train differently");
}

#[test]
fn backprop_conv_baseline_gives_identical_checkpoints_across_threads_and_backends() {
    if common::data_dir().is_none() || CpuBackend::avx2().is_err() {
        eprintln!("SKIP (no data or no avx2/fma)");
        return;
    }
    let mut cfg = conv_cfg();
    cfg.conv.as_mut().unwrap().algorithm = ffwd::layers::conv::ConvAlgorithm::Backprop;
    let d = tempfile::tempdir().unwrap();
    let sub = Some((96, 20));
    let a = train_bytes(cfg.clone(), 2, false, &d.path().join("a"), sub);
    let b = train_bytes(cfg.clone(), 1, false, &d.path().join("b"), sub);
    let s = train_bytes(cfg.clone(), 1, true, &d.path().join("s"), sub);
    assert!(a == b, "1 thread and 2 threads differ");
    assert!(a == s, "AVX2 and the scalar specification differ");
    let ff = train_bytes(conv_cfg(), 2, false, &d.path().join("f"), sub);
    assert!(a != ff, "backprop and FF must train differently");
}

#[test]
fn ffcl_twins_give_identical_checkpoints_across_threads_and_backends() {
    if common::data_dir().is_none() || CpuBackend::avx2().is_err() {
        eprintln!("SKIP (no data or no avx2/fma)");
        return;
    }
    let mut local = None;
    for detach_inputs in [true, false] {
        let mut cfg = RunConfig::default_for("mnist");
        cfg.ffcl = Some(ffwd::layers::ffcl::FfclConfig { detach_inputs, ..Default::default() });
        cfg.train.epochs = 2;
        let d = tempfile::tempdir().unwrap();
        let sub = Some((2000, 300));
        let a = train_bytes(cfg.clone(), 2, false, &d.path().join("a"), sub);
        let b = train_bytes(cfg.clone(), 1, false, &d.path().join("b"), sub);
        let s = train_bytes(cfg.clone(), 1, true, &d.path().join("s"), sub);
        assert!(a == b, "detach_inputs = {detach_inputs}: 1 thread and 2 threads differ");
        assert!(a == s, "detach_inputs = {detach_inputs}: AVX2 and the scalar specification differ");
        match &local {
            None => local = Some(a),
            Some(l) => assert!(*l != a, "detach_inputs = false changed nothing"),
        }
    }
}

#[test]
fn uff_stacks_give_identical_checkpoints_across_threads_and_backends_in_both_modes() {
    use ffwd::layers::uff::{CellKind, UffConfig};
    if common::data_dir().is_none() || CpuBackend::avx2().is_err() {
        eprintln!("SKIP (no data or no avx2/fma)");
        return;
    }
    for schedule in [ffwd::train::config::Schedule::Simultaneous, ffwd::train::config::Schedule::LayerByLayer] {
        let mut cfg = RunConfig::default_for("mnist");
        cfg.uff = Some(UffConfig { cells: vec![CellKind::Cae, CellKind::Dae, CellKind::Gan], ..UffConfig::default() });
        cfg.train.epochs = 1;
        cfg.train.schedule = schedule;
        let d = tempfile::tempdir().unwrap();
        let sub = Some((300, 100));
        let a = train_bytes(cfg.clone(), 2, false, &d.path().join("a"), sub);
        let b = train_bytes(cfg.clone(), 1, false, &d.path().join("b"), sub);
        let s = train_bytes(cfg.clone(), 1, true, &d.path().join("s"), sub);
        assert!(a == b, "{schedule:?}: 1 thread and 2 threads differ");
        assert!(a == s, "{schedule:?}: AVX2 and the scalar specification differ");
    }
}

/// The small digits MLP of the option tests (None, with a SKIP line,
/// without AVX2).
fn small_mlp() -> Option<RunConfig> {
    if CpuBackend::avx2().is_err() {
        eprintln!("SKIP (no avx2/fma)");
        return None;
    }
    let mut c = RunConfig::default();
    c.model.sizes = vec![48, 40, 32];
    // the threshold loss at a constant rate, without peer normalisation:
    // each test adds the option it checks
    c.model.loss = ffwd::layers::config::LossKind::Threshold;
    c.model.peer = None;
    c.train.lr_schedule = ffwd::train::config::LrSchedule::Constant;
    Some(c)
}

/// The checkpoint of `cfg` on 600 digits, checked to be the same at 2 and
/// 1 threads and on the scalar specification.
fn bytes_everywhere(cfg: &RunConfig, dir: &Path, what: &str) -> Vec<u8> {
    let sub = Some((600, 100));
    let a = train_bytes(cfg.clone(), 2, false, &dir.join(format!("{what}-2")), sub);
    let b = train_bytes(cfg.clone(), 1, false, &dir.join(format!("{what}-1")), sub);
    let s = train_bytes(cfg.clone(), 1, true, &dir.join(format!("{what}-s")), sub);
    assert!(a == b && a == s, "{what}: threads or backends differ");
    a
}

/// The learning-rate schedules and per-group weight decay keep the
/// contract: the same bytes at 1 and 2 threads and on the scalar
/// specification; each option changes the weights.
#[test]
fn schedules_and_weight_decay_groups_are_bit_exact_across_threads_and_backends() {
    use ffwd::layers::config::OptimKind;
    use ffwd::train::config::LrSchedule;
    let Some(mut base) = small_mlp() else { return };
    let d = tempfile::tempdir().unwrap();
    base.model.optim.kind = OptimKind::Sgd;
    base.model.optim.lr = 0.01;
    base.train.epochs = 3;
    let plain = train_bytes(base.clone(), 2, false, &d.path().join("plain"), Some((600, 100)));
    for schedule in [LrSchedule::Linear, LrSchedule::Cosine] {
        let mut c = base.clone();
        c.train.lr_schedule = schedule;
        c.train.cooldown_from = 0.25;
        let a = bytes_everywhere(&c, d.path(), &format!("{schedule:?}"));
        assert!(a != plain, "{schedule:?} changed nothing");
    }
    let mut c = base.clone();
    c.model.optim.weight_decay = 0.05;
    c.model.optim.bias_weight_decay = Some(0.0);
    let a = bytes_everywhere(&c, d.path(), "weights-only");
    c.model.optim.bias_weight_decay = None;
    let all = train_bytes(c, 2, false, &d.path().join("wd-all"), Some((600, 100)));
    assert!(a != all && a != plain, "bias_weight_decay = 0 must differ from decaying everything and from none");
}

/// Hard negatives (drawn from the readout's softmax each epoch) keep the
/// contract and change the run; asking for them without a readout is an
/// error naming the fields; a readout beside prediction by goodness serves them.
#[test]
fn hard_negatives_are_bit_exact_across_threads_and_backends() {
    use ffwd::layers::config::PredictKind;
    use ffwd::train::config::Negatives;
    let Some(mut c) = small_mlp() else { return };
    let d = tempfile::tempdir().unwrap();
    c.model.predict = PredictKind::Readout;
    c.train.epochs = 3;
    let random = train_bytes(c.clone(), 2, false, &d.path().join("random"), Some((600, 100)));
    c.train.negatives = Negatives::Hard;
    let a = bytes_everywhere(&c, d.path(), "hard");
    assert!(a != random, "hard negatives changed nothing");
    c.model.predict = PredictKind::Goodness;
    let e = c.validate().unwrap_err();
    assert!(e.contains("train.negatives") && e.contains("model.readout"), "{e}");
    // a readout trained beside prediction by goodness serves them too
    c.model.readout = true;
    let g = bytes_everywhere(&c, d.path(), "hard-goodness");
    assert!(g != a, "hard negatives with prediction by goodness");
}

/// `[data.augment]` shifts the MLP's images too (random crops of the
/// padded image: jitter) and drops input values, on every backend and
/// thread count the same; each changes the run.
#[test]
fn mlp_jitter_and_input_dropout_are_bit_exact_across_threads_and_backends_and_change_the_run() {
    let Some(mut c) = small_mlp() else { return };
    let d = tempfile::tempdir().unwrap();
    c.train.epochs = 2;
    let plain = train_bytes(c.clone(), 2, false, &d.path().join("plain"), Some((600, 100)));
    let mut j = c.clone();
    j.data.augment.crop_padding = 1;
    let a = bytes_everywhere(&j, d.path(), "jitter");
    assert!(a != plain, "crop_padding = 1 changed nothing on the MLP");
    c.data.augment.dropout = 0.2;
    let b = bytes_everywhere(&c, d.path(), "dropout");
    assert!(b != plain && b != a, "dropout = 0.2 changed nothing on the MLP");
}

/// Peer normalisation keeps the contract (its running means and gradient
/// term on every backend and thread count the same) and changes the run;
/// with the goodness-backprop ablation it is an error naming the fields.
#[test]
fn peer_normalisation_is_bit_exact_across_threads_and_backends_and_changes_the_run() {
    use ffwd::layers::config::{MlpTraining, PeerConfig};
    let Some(mut c) = small_mlp() else { return };
    let d = tempfile::tempdir().unwrap();
    c.train.epochs = 2;
    let plain = train_bytes(c.clone(), 2, false, &d.path().join("plain"), Some((600, 100)));
    c.model.peer = Some(PeerConfig::default());
    let a = bytes_everywhere(&c, d.path(), "peer");
    assert!(a != plain, "peer normalisation changed nothing");
    c.model.training = MlpTraining::GoodnessBackprop;
    let e = c.validate().unwrap_err();
    assert!(e.contains("model.peer") && e.contains("model.training"), "{e}");
}
