//! The CUDA backend end to end: the same seed trains to byte-identical
//! checkpoints on the CPU and on a GPU, predictions agree, and asking for
//! CUDA where it cannot run is a clear error, never a panic.
//!
//! The GPU tests print `SKIP (no CUDA)` without a device and fail under
//! `FFWD_REQUIRE_GPU=1` (set on the GPU machine).

mod common;

use ffwd::kernels::cuda::cuda_device;
use ffwd::layers::config::{LossKind, OptimKind};
use ffwd::train::config::{Device, RunConfig, Schedule};
use ffwd::train::model::Model;
use ffwd::train::trainer::Trainer;
use std::path::Path;

fn gpu_present() -> bool {
    if cuda_device().is_some() {
        return true;
    }
    if std::env::var("FFWD_REQUIRE_GPU").as_deref() == Ok("1") {
        panic!("FFWD_REQUIRE_GPU=1 but no CUDA device/driver/NVRTC could be loaded");
    }
    eprintln!("SKIP (no CUDA)");
    false
}

fn mnist_cfg() -> RunConfig {
    let mut c = RunConfig::default();
    c.data.dataset = "mnist".into();
    c.model.sizes = vec![500, 300, 200];
    c.train.epochs = 2;
    c.train.batch = 100;
    c.train.seed = 11;
    c
}

/// Train on the first 2,000 MNIST images (test: 500) on `device`; the
/// checkpoint's bytes and every epoch's metrics line minus the timings.
fn run(mut cfg: RunConfig, device: Device, dir: &Path) -> (Vec<u8>, Vec<String>) {
    cfg.train.device = device;
    cfg.output.dir = dir.to_path_buf();
    let data = common::data_dir().expect("checked by the caller");
    // load the data on the CPU path, then train the subset on `device`
    let mut load = cfg.clone();
    load.train.device = Device::Cpu;
    let t = Trainer::new(load, Some(&data)).unwrap();
    let (train, test) = (t.train.slice(0..2000), t.test.slice(0..500));
    let net = Model::build(&cfg, train.shape, 10).unwrap();
    let mut t = Trainer::with_model(cfg, net, train, None, test).unwrap();
    let reports = t.run(&mut |_| {}).unwrap();
    let lines = reports
        .iter()
        .map(|r| {
            let mut r = r.clone();
            (r.train_seconds, r.samples_per_s, r.backend, r.threads) = (0.0, 0.0, "", 0);
            format!("{r:?}")
        })
        .collect();
    (std::fs::read(t.checkpoint_path()).unwrap(), lines)
}

fn assert_cpu_and_gpu_agree(cfg: RunConfig, what: &str) {
    let d = tempfile::tempdir().unwrap();
    let (cpu, cpu_m) = run(cfg.clone(), Device::Cpu, &d.path().join("cpu"));
    let (gpu, gpu_m) = run(cfg, Device::Cuda(0), &d.path().join("gpu"));
    assert!(cpu.len() > 100_000, "{what}: checkpoint too small");
    assert_eq!(cpu_m, gpu_m, "{what}: metrics (losses, goodness, accuracies) differ between CPU and GPU");
    assert!(cpu == gpu, "{what}: CPU and GPU checkpoints differ");
}

#[test]
fn cpu_and_gpu_training_give_byte_identical_checkpoints() {
    if common::data_dir().is_none() || !gpu_present() {
        return;
    }
    assert_cpu_and_gpu_agree(mnist_cfg(), "threshold loss, Adam, simultaneous");
    let mut c = mnist_cfg();
    c.model.loss = LossKind::Symba;
    c.model.optim.kind = OptimKind::Sgd;
    c.model.optim.lr = 0.01;
    c.model.optim.momentum = 0.9;
    c.train.schedule = Schedule::LayerByLayer;
    c.train.epochs = 1;
    assert_cpu_and_gpu_agree(c, "SymBa loss, SGD with momentum, layer by layer");
}

#[test]
fn asking_for_cuda_without_a_gpu_is_a_clear_error() {
    if cuda_device().is_some() {
        eprintln!("SKIP (a CUDA device is present)");
        return;
    }
    let mut c = RunConfig::default();
    c.train.device = Device::Cuda(0);
    c.train.epochs = 1;
    let e = Trainer::new(c, None).err().expect("no GPU: the trainer must refuse");
    let msg = e.to_string();
    assert!(msg.contains("train.device = \"cuda:0\"") && msg.contains("CUDA"), "unclear error: {msg}");
}

#[test]
fn a_model_the_cuda_backend_does_not_train_is_refused_by_name() {
    let mut c = RunConfig::default();
    c.train.device = Device::Cuda(0);
    c.model.training = ffwd::layers::config::MlpTraining::CrossEntropy;
    let e = Trainer::new(c, None).err().expect("the backprop MLP has no CUDA path");
    let msg = e.to_string();
    assert!(msg.contains("backprop MLP") && msg.contains("device = \"cpu\""), "unclear error: {msg}");
}

#[test]
fn device_names_parse_and_round_trip_through_toml() {
    for (s, d) in [("cpu", Device::Cpu), ("cuda", Device::Cuda(0)), ("cuda:1", Device::Cuda(1))] {
        assert_eq!(s.parse::<Device>().unwrap(), d);
        let text = format!("[train]\ndevice = \"{s}\"\n");
        let c = RunConfig::from_toml_str(&text, Path::new("t.toml")).unwrap();
        assert_eq!(c.train.device, d);
        let back = RunConfig::from_toml_str(&c.to_toml(), Path::new("t.toml")).unwrap();
        assert_eq!(back.train.device, d);
    }
    for bad in ["gpu", "cuda:", "cuda:x", "CUDA"] {
        let e = bad.parse::<Device>().unwrap_err();
        assert!(e.contains(bad) && e.contains("cuda:N"), "{e}");
        let e = RunConfig::from_toml_str(&format!("[train]\ndevice = \"{bad}\"\n"), Path::new("t.toml")).unwrap_err();
        assert!(e.to_string().contains("t.toml") && e.to_string().contains(bad), "{e}");
    }
}
