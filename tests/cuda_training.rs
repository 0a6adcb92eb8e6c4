//! The CUDA backend end to end: the same seed trains to byte-identical
//! checkpoints on the CPU and on a GPU for every network kind, metrics and
//! probe reports agree, and asking for
//! CUDA where it cannot run is a clear error, never a panic.
//!
//! The GPU tests print `SKIP (no CUDA)` without a device and fail under
//! `FFWD_REQUIRE_GPU=1` (set on the GPU machine).

mod common;

use common::kinds::{mlp_symba_sgd_layer_by_layer, mnist_cfg, other_kinds};
use ffwd::kernels::cuda::cuda_device;
use ffwd::train::config::{Device, RunConfig};
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

/// Train on the first `subset` MNIST images (train, test) on `device`; the
/// checkpoint's bytes, every epoch's metrics line minus the timings, and
/// the probe's report when `[probe]` is set.
fn run(mut cfg: RunConfig, device: Device, dir: &Path, subset: (usize, usize)) -> (Vec<u8>, Vec<String>, String) {
    cfg.train.device = device;
    cfg.output.dir = dir.to_path_buf();
    let data = common::data_dir().expect("checked by the caller");
    // load the data on the CPU path, then train the subset on `device`
    let mut load = cfg.clone();
    load.train.device = Device::Cpu;
    let t = Trainer::new(load, Some(&data)).unwrap();
    let (train, test) = (t.train.slice(0..subset.0), t.test.slice(0..subset.1));
    let classes = t.net.classes();
    let net = ffwd::train::model::build(&cfg, train.shape, classes).unwrap();
    assert_eq!(net.backend_name(), if device == Device::Cpu { "cpu-avx2" } else { "cuda" });
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
    let probe = t.probe().unwrap().map(|p| format!("{p:?}")).unwrap_or_default();
    (std::fs::read(t.checkpoint_path()).unwrap(), lines, probe)
}

fn assert_cpu_and_gpu_agree(cfg: RunConfig, what: &str, subset: (usize, usize)) {
    let d = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let (cpu, cpu_m, cpu_p) = run(cfg.clone(), Device::Cpu, &d.path().join("cpu"), subset);
    let tc = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let (gpu, gpu_m, gpu_p) = run(cfg, Device::Cuda(0), &d.path().join("gpu"), subset);
    let tg = t.elapsed().as_secs_f64();
    eprintln!("{what}: CPU {tc:.2} s, GPU {tg:.2} s (both: build, train, evaluate, checkpoint)");
    assert!(cpu.len() > 1000, "{what}: checkpoint too small");
    assert_eq!(cpu_m, gpu_m, "{what}: metrics (losses, goodness, accuracies) differ between CPU and GPU");
    assert_eq!(cpu_p, gpu_p, "{what}: probe reports differ between CPU and GPU");
    assert!(cpu == gpu, "{what}: CPU and GPU checkpoints differ");
}

#[test]
fn cpu_and_gpu_training_give_byte_identical_checkpoints() {
    if common::data_dir().is_none() || !gpu_present() {
        return;
    }
    let sub = (2000, 500);
    assert_cpu_and_gpu_agree(mnist_cfg(), "FF MLP: threshold loss, Adam, simultaneous", sub);
    let c = mlp_symba_sgd_layer_by_layer();
    assert_cpu_and_gpu_agree(c, "FF MLP: SymBa loss, SGD with momentum, layer by layer", sub);
}

/// Every network kind: CPU and GPU give the same checkpoint bytes, metrics
/// and probe report.
#[test]
fn every_network_kind_trains_to_the_same_bits_on_cpu_and_gpu() {
    if common::data_dir().is_none() || !gpu_present() {
        return;
    }
    for (what, cfg, sub) in other_kinds() {
        assert_cpu_and_gpu_agree(cfg, what, sub);
    }
}

/// A run stopped on the GPU continues on the CPU, and one stopped on the
/// CPU continues on the GPU: both end with the checkpoint and metrics of
/// the CPU run that never stopped (the training state is the same on
/// every backend).
#[test]
fn a_run_stopped_on_one_backend_resumes_on_the_other_to_the_same_bits() {
    if common::data_dir().is_none() || !gpu_present() {
        return;
    }
    let data = common::data_dir().unwrap();
    let mut cfg = mnist_cfg();
    cfg.data.train_size = 2000;
    let d = tempfile::tempdir().unwrap();
    let finish = |mut t: Trainer| {
        t.run(&mut |_| {}).unwrap();
        let metrics = std::fs::read_to_string(t.metrics_path()).unwrap();
        let metrics: Vec<String> = metrics
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                for k in ["train_seconds", "samples_per_s", "threads", "backend", "fwd_steps", "dw_steps"] {
                    strip_key(&mut v, k);
                }
                v.to_string()
            })
            .collect();
        (std::fs::read(t.checkpoint_path()).unwrap(), metrics)
    };
    let mut c = cfg.clone();
    c.output.dir = d.path().join("whole");
    let whole = finish(Trainer::new(c, Some(&data)).unwrap());
    for (first, then) in [(Device::Cuda(0), Device::Cpu), (Device::Cpu, Device::Cuda(0))] {
        let dir = d.path().join(format!("{first}-then-{then}"));
        let mut c = cfg.clone();
        c.output.dir = dir.clone();
        c.train.device = first;
        let mut t = Trainer::new(c, Some(&data)).unwrap();
        let mut asked = 0;
        // 20 batches an epoch: stop in epoch 2 after batch 4
        t.interrupt = Some(Box::new(move || {
            asked += 1;
            asked == 25
        }));
        let e = t.run(&mut |_| {}).unwrap_err();
        assert!(matches!(e, ffwd::train::Error::Interrupted { epoch: 2, batch: 4, .. }), "{e}");
        drop(t);
        let t = Trainer::resume(&dir, Some(&data), None, Some(then)).unwrap();
        let resumed = finish(t);
        assert_eq!(resumed.1, whole.1, "{first} then {then}: metrics differ");
        assert!(resumed.0 == whole.0, "{first} then {then}: checkpoints differ");
    }
}

/// `v` without the key `k`, at any depth.
fn strip_key(v: &mut serde_json::Value, k: &str) {
    match v {
        serde_json::Value::Object(m) => {
            m.remove(k);
            m.values_mut().for_each(|x| strip_key(x, k));
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| strip_key(x, k)),
        _ => {}
    }
}

/// The GPU test's configs are valid networks (checked on any machine).
#[test]
fn every_kind_of_the_gpu_comparison_builds_on_the_cpu() {
    let kinds = other_kinds();
    assert!(kinds.len() >= 10);
    for (what, cfg, _) in kinds {
        cfg.validate().unwrap_or_else(|e| panic!("{what}: {e}"));
        let net = ffwd::train::model::build(&cfg, (1, 28, 28), 10).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(net.backend_name().starts_with("cpu"), "{what}");
    }
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
fn device_names_parse_and_round_trip_through_toml() {
    for (s, d) in [
        ("cpu", Device::Cpu),
        ("cpu-scalar", Device::CpuScalar),
        ("cuda", Device::Cuda(0)),
        ("cuda:1", Device::Cuda(1)),
    ] {
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
