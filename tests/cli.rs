//! The `ffwd` binary as a user runs it.

mod common;

use std::process::Command;

fn ffwd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ffwd"))
}

/// `ffwd train --dry-run ARGS`, its output.
fn dry_run(args: &[&str]) -> std::process::Output {
    ffwd().args(["train", "--dry-run"]).args(args).output().unwrap()
}

/// The model section of the configuration `ffwd train --dry-run ARGS`
/// resolves (the run must succeed).
fn dry_run_model(args: &[&str]) -> ffwd::layers::config::FfConfig {
    let out = dry_run(args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    ffwd::train::config::RunConfig::from_toml_str(&text, std::path::Path::new("dry-run")).unwrap().model
}

#[test]
fn train_without_arguments_uses_the_embedded_digits_and_eval_reads_the_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let out = ffwd().args(["train", "--quiet", "--epochs", "3", "--out"]).arg(d.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("digits (1500 train") && stdout.contains("epoch   3"), "{stdout}");
    let ck = d.path().join("model.safetensors");
    assert!(ck.is_file());
    assert_eq!(std::fs::read_to_string(d.path().join("metrics.jsonl")).unwrap().lines().count(), 3);
    // the curves picture beside the metrics, and `ffwd plot` of the run
    assert!(std::fs::read_to_string(d.path().join("curves.svg")).unwrap().contains("accuracy (%)"));
    let pic = d.path().join("again.svg");
    let p = ffwd().arg("plot").arg(d.path()).arg("--out").arg(&pic).output().unwrap();
    assert!(p.status.success() && pic.is_file(), "{}", String::from_utf8_lossy(&p.stderr));
    let ev = ffwd().args(["eval", "--checkpoint"]).arg(&ck).output().unwrap();
    let s = String::from_utf8_lossy(&ev.stdout);
    assert!(ev.status.success() && s.contains("accuracy") && s.contains("epoch 3"), "{s}");
    // eval reproduces the trainer's final test accuracy exactly
    let acc = |text: &str, key: &str| text.split(key).nth(1).map(|r| r.split('%').next().unwrap().trim().to_string());
    assert_eq!(acc(&stdout, "done: test accuracy"), acc(&s, "accuracy"), "{stdout}\n{s}");
    // the first N test images only, with the time per op on request
    let ev =
        ffwd().args(["eval", "--test-size", "100", "--checkpoint"]).arg(&ck).env("FFWD_PROFILE", "1").output().unwrap();
    let (s, e) = (String::from_utf8_lossy(&ev.stdout), String::from_utf8_lossy(&ev.stderr));
    assert!(ev.status.success() && s.contains("on 100 test"), "{s}");
    assert!(e.contains("| trainer: evaluation (all its ops) | 1 |") && e.contains("| linear_forward_packed |"), "{e}");
    let ev = ffwd().args(["eval", "--test-size", "298", "--checkpoint"]).arg(&ck).output().unwrap();
    let e = String::from_utf8_lossy(&ev.stderr);
    assert!(ev.status.code() == Some(1) && e.contains("the test split has 297 images"), "{e}");
    // another prediction method on the same checkpoint: the accuracies the
    // trainer printed for its goodness and its readout
    let last = stdout.lines().rfind(|l| l.starts_with("epoch   3")).unwrap();
    for (method, key) in [("readout", "readout"), ("goodness", "(goodness")] {
        let ev = ffwd().args(["eval", "--predict", method, "--checkpoint"]).arg(&ck).output().unwrap();
        let s = String::from_utf8_lossy(&ev.stdout);
        assert!(ev.status.success(), "{s}");
        assert_eq!(acc(last, key), acc(&s, "accuracy"), "{method}: {last}\n{s}");
    }
}

#[test]
fn eval_refuses_a_prediction_method_the_checkpoint_cannot_give() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, "[data]\ndataset = \"digits\"\n[model]\nsizes = [20]\n[train]\nepochs = 1\n").unwrap();
    let out = ffwd().args(["train", "--quiet", "--config"]).arg(&cfg).arg("--out").arg(d.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ck = d.path().join("model.safetensors");
    let ev = ffwd().args(["eval", "--predict", "readout", "--checkpoint"]).arg(&ck).output().unwrap();
    let e = String::from_utf8_lossy(&ev.stderr);
    assert!(ev.status.code() == Some(1) && e.contains("has no readout"), "{e}");
    let ev = ffwd().args(["eval", "--combine", "standardized", "--checkpoint"]).arg(&ck).output().unwrap();
    assert!(ev.status.success(), "{}", String::from_utf8_lossy(&ev.stderr));
}

#[test]
fn a_second_run_into_the_same_folder_leaves_the_first_alone_and_takes_the_next_number() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("exp");
    let train =
        || ffwd().args(["train", "--quiet", "--epochs", "1", "--sizes", "20,20", "--out"]).arg(&run).output().unwrap();
    assert!(train().status.success());
    let first = std::fs::read(run.join("model.safetensors")).unwrap();
    let metrics = std::fs::read(run.join("metrics.jsonl")).unwrap();
    let out = train();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("holds an earlier run") && stdout.contains("exp-2"), "{stdout}");
    assert_eq!(std::fs::read(run.join("model.safetensors")).unwrap(), first);
    assert_eq!(std::fs::read(run.join("metrics.jsonl")).unwrap(), metrics);
    assert!(d.path().join("exp-2").join("model.safetensors").is_file());
    // a file where the run folder should be is an error naming it
    let f = d.path().join("afile");
    std::fs::write(&f, b"keep me").unwrap();
    let out = ffwd().args(["train", "--quiet", "--epochs", "1", "--out"]).arg(&f).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("afile") && stderr.contains("not a folder"), "{stderr}");
    assert_eq!(std::fs::read(&f).unwrap(), b"keep me");
}

#[test]
fn malformed_config_fails_with_a_message_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bad.toml");
    std::fs::write(&p, "[train]\nbatch = 0\n").unwrap();
    let out = ffwd().args(["train", "--config"]).arg(&p).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("bad.toml") && err.contains("train.batch"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    std::fs::write(&p, "[model\nsizes = [1]\n").unwrap();
    let out = ffwd().args(["train", "--config"]).arg(&p).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("bad.toml") && !err.contains("panicked"), "{err}");
}

#[test]
fn checkpoint_from_another_architecture_is_rejected_by_name() {
    let d = tempfile::tempdir().unwrap();
    let ok =
        ffwd().args(["train", "--quiet", "--epochs", "1", "--sizes", "20,20", "--out"]).arg(d.path()).output().unwrap();
    assert!(ok.status.success());
    let ck = d.path().join("model.safetensors");
    let (_, net) = ffwd::train::checkpoint::load(&ck, Default::default()).unwrap();
    // rewrite the checkpoint with a layer of the wrong shape
    let mut tensors = net.named_tensors().unwrap();
    tensors[0].1 = ffwd::tensor::Tensor::zeros(&[3, 3]);
    let bytes = std::fs::read(&ck).unwrap();
    let meta = ffwd::tensor::io::load_safetensors(&ck).unwrap().metadata;
    let refs: Vec<(String, &ffwd::tensor::Tensor)> = tensors.iter().map(|(n, t)| (n.clone(), t)).collect();
    ffwd::tensor::io::save_safetensors(&ck, &refs, &meta).unwrap();
    assert_ne!(bytes, std::fs::read(&ck).unwrap());
    let out = ffwd().args(["eval", "--checkpoint"]).arg(&ck).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("layers.0.weight") && err.contains("[3, 3]"), "{err}");
}

#[test]
fn every_shipped_config_parses_validates_and_builds_its_network() {
    // (building also checks the size limits: every shipped config is within them)
    for common::Shipped { path: p, cfg, shape, .. } in common::shipped_configs() {
        ffwd::train::model::build(&cfg, shape, 10).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
}

/// Every network kind builds on the CUDA backend: on a machine with a GPU
/// every shipped config builds there; without one, each fails only because
/// the device is missing (driver, NVRTC or GPU), never because its kind
/// "runs on the CPU".
#[test]
fn every_shipped_config_builds_on_cuda_or_fails_only_for_the_missing_device() {
    use ffwd::train::config::Device;
    let has_gpu = ffwd::kernels::cuda::cuda_device_checked().is_ok();
    for common::Shipped { path: p, cfg, shape, .. } in common::shipped_configs() {
        let r = ffwd::train::model::build_on_device(Device::Cuda(0), &cfg, shape, 10);
        match r {
            Ok(net) => {
                assert!(has_gpu, "{}: built on CUDA without a device", p.display());
                assert_eq!(net.backend_name(), "cuda");
            }
            Err(e) => {
                let e = e.to_string();
                assert!(!has_gpu, "{}: {e}", p.display());
                assert!(
                    e.contains("train.device = \"cuda:0\"")
                        && (e.contains("libcuda") || e.contains("libnvrtc") || e.contains("device")),
                    "{}: {e}",
                    p.display()
                );
                assert!(!e.contains("runs on the CPU"), "{}: {e}", p.display());
            }
        }
    }
}

#[test]
fn a_pretext_run_reports_its_probe_and_probe_reads_the_checkpoint_again() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("ssl.toml");
    let text = format!(
        "[model]\nsizes = [60, 60]\nlabel = \"concat\"\n[ssl]\ntask = \"flip4\"\n[probe]\nepochs = 3\n\
         [train]\nepochs = 2\n[output]\ndir = {:?}\n",
        d.path().join("run")
    );
    std::fs::write(&cfg, text).unwrap();
    let out = ffwd().args(["train", "--quiet", "--config"]).arg(&cfg).output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{s}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        s.contains("flip4 pretext test accuracy") && s.contains("linear probe (3 epochs, 1500 train / 297 test"),
        "{s}"
    );
    let ck = d.path().join("run/model.safetensors");
    let pr = ffwd().args(["probe", "--epochs", "3", "--checkpoint"]).arg(&ck).output().unwrap();
    let p = String::from_utf8_lossy(&pr.stdout);
    assert!(pr.status.success(), "{p}\n{}", String::from_utf8_lossy(&pr.stderr));
    // The probe of the saved network repeats the run's probe exactly.
    let concat = |t: &str| t.split("concatenation ").nth(1).map(|r| r.split('%').next().unwrap().to_string());
    assert_eq!(concat(&s), concat(&p), "{s}\n{p}");
}

#[test]
fn a_uff_run_saves_its_reconstructions_as_a_png_grid_and_recon_reads_the_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("uff.toml");
    let text =
        format!("[uff]\ncells = [\"cae\", \"dae\"]\n[train]\nepochs = 2\n[output]\ndir = {:?}\n", d.path().join("run"));
    std::fs::write(&cfg, text).unwrap();
    let png = d.path().join("grid.png");
    let out = ffwd().args(["train", "--quiet", "--config"]).arg(&cfg).arg("--recon-png").arg(&png).output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{s}\n{}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // 8 columns of 8×8 digits with 1-pixel gaps; two rows of pairs.
    let dims = |b: &[u8]| {
        (u32::from_be_bytes(b[16..20].try_into().unwrap()), u32::from_be_bytes(b[20..24].try_into().unwrap()))
    };
    assert_eq!(dims(&bytes), (8 * 9 + 1, 4 * 9 + 1));
    let again = d.path().join("again.png");
    let r = ffwd()
        .args(["recon", "--checkpoint"])
        .arg(d.path().join("run/model.safetensors"))
        .arg("--out")
        .arg(&again)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::read(&again).unwrap(), bytes, "the checkpoint reconstructs the same grid");
    let e = ffwd()
        .args(["recon", "--checkpoint"])
        .arg(d.path().join("missing.safetensors"))
        .arg("--out")
        .arg(&again)
        .output()
        .unwrap();
    assert_eq!(e.status.code(), Some(1));
}

#[test]
fn bench_prints_peak_share_and_samples_and_reads_a_peers_file() {
    let d = tempfile::tempdir().unwrap();
    let peers = d.path().join("peers.json");
    std::fs::write(
        &peers,
        r#"{"meta": {"date": "2026-11-23", "torch": "2.9.1"},
            "rows": [{"workload": "2×48", "batch": 10, "threads": 2, "torch_samples_per_s": 1000.0}]}"#,
    )
    .unwrap();
    let out = ffwd()
        .args(["bench", "--workloads", "48x2:10,32x1:4", "--batches", "3", "--threads", "2", "--peers"])
        .arg(&peers)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{s}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(s.contains("% of peak") && s.contains("samples/s") && s.contains("2 thread(s)"), "{s}");
    let row = s.lines().find(|l| l.starts_with("2×48")).expect("a row per workload");
    assert!(row.contains("1000") && row.contains('×'), "the ratio to the file's PyTorch row: {row}");
    let row = s.lines().find(|l| l.starts_with("1×32")).expect("a row per workload");
    assert!(row.contains("not in the file"), "{row}");
    // Bad input: an error naming what is wrong, never a panic.
    for (args, want) in [
        (vec!["bench", "--workloads", "48x2"], "WIDTHxLAYERS:BATCH"),
        (vec!["bench", "--workloads", "48x2:10", "--peers", "/nonexistent/peers.json"], "/nonexistent/peers.json"),
        (vec!["bench", "--threads", "0"], "--threads"),
    ] {
        let out = ffwd().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want) && !err.contains("panicked"), "{args:?}: {err}");
    }
    let out = ffwd().args(["bench", "--peak-only", "--threads", "1"]).output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && s.contains("\"fma_peak_gflops\"") && s.contains("\"threads\": 1"), "{s}");
}

#[test]
fn no_output_of_a_command_replaces_a_checkpoint_and_a_reprobe_keeps_the_first_report() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("uff");
    let cfg = d.path().join("uff.toml");
    std::fs::write(&cfg, "[uff]\ncells = [\"ae\"]\n[train]\nepochs = 1\n[probe]\nepochs = 1\n").unwrap();
    let out = ffwd().args(["train", "--quiet", "--config"]).arg(&cfg).arg("--out").arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ck = run.join("model.safetensors");
    let before = std::fs::read(&ck).unwrap();
    // a PNG grid aimed at the checkpoint is refused, before training too
    let recon = ffwd().args(["recon", "--checkpoint"]).arg(&ck).arg("--out").arg(&ck).output().unwrap();
    let e = String::from_utf8_lossy(&recon.stderr);
    assert!(!recon.status.success() && e.contains("not a PNG"), "{e}");
    let other = d.path().join("other");
    let t = ffwd()
        .args(["train", "--quiet", "--config"])
        .arg(&cfg)
        .arg("--recon-png")
        .arg(&ck)
        .arg("--out")
        .arg(&other)
        .output()
        .unwrap();
    assert!(!t.status.success() && String::from_utf8_lossy(&t.stderr).contains("not a PNG"));
    assert!(!other.exists(), "refused before training");
    assert_eq!(std::fs::read(&ck).unwrap(), before);
    // probing again writes probe-2.json beside the first report
    let first = std::fs::read(run.join("probe.json")).unwrap();
    let p = ffwd().args(["probe", "--epochs", "1", "--checkpoint"]).arg(&ck).output().unwrap();
    let s = String::from_utf8_lossy(&p.stdout);
    assert!(p.status.success() && s.contains("probe-2.json"), "{s}{}", String::from_utf8_lossy(&p.stderr));
    assert_eq!(std::fs::read(run.join("probe.json")).unwrap(), first);
}

#[test]
fn a_long_user_string_is_echoed_cut_short() {
    let long = "z".repeat(5000);
    for args in [
        vec!["train", "--dataset", &long],
        vec!["train", "--device", &long],
        vec!["train", "--epochs", &long],
        vec!["train", "--loss", &long],
        vec![long.as_str()],
    ] {
        let out = ffwd().args(&args).output().unwrap();
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && e.contains("zzzz") && e.len() < 600, "{} bytes: {e:.300}", e.len());
    }
}

#[test]
fn a_dataset_with_an_empty_split_is_an_error_not_an_accuracy() {
    let d = tempfile::tempdir().unwrap();
    let mnist = d.path().join("mnist");
    std::fs::create_dir(&mnist).unwrap();
    for (split, n) in [("train", 5u32), ("t10k", 0)] {
        let mut img = Vec::new();
        for v in [0x803u32, n, 28, 28] {
            img.extend_from_slice(&v.to_be_bytes());
        }
        img.resize(16 + n as usize * 784, 0);
        std::fs::write(mnist.join(format!("{split}-images-idx3-ubyte")), img).unwrap();
        let mut lab = Vec::new();
        for v in [0x801u32, n] {
            lab.extend_from_slice(&v.to_be_bytes());
        }
        lab.resize(8 + n as usize, 0);
        std::fs::write(mnist.join(format!("{split}-labels-idx1-ubyte")), lab).unwrap();
    }
    let out = ffwd()
        .args(["train", "--quiet", "--dataset", "mnist", "--data-dir"])
        .arg(d.path())
        .arg("--out")
        .arg(d.path().join("run"))
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("0 test images"), "{e}");
    assert!(!d.path().join("run").exists(), "refused before the run folder");
}

/// A network or batch within the size limits that the machine cannot hold
/// (here: an address-space limit of the child) is an error naming the
/// memory asked for, exit code 1 — not an abort.
#[test]
fn memory_the_system_refuses_is_an_error_not_an_abort() {
    let bin = env!("CARGO_BIN_EXE_ffwd");
    let d = tempfile::tempdir().unwrap();
    for (limit_kb, args) in [
        // the weights: a 20000×20000 layer
        ("1500000", "--sizes 20000,20000 --batch 50"),
        // the activations: 2·1797 rows of 20000 units
        ("700000", "--sizes 20000,64 --batch 1797"),
    ] {
        let script = format!("ulimit -v {limit_kb} && exec \"{bin}\" train --epochs 1 --quiet {args} --out run");
        let out = Command::new("sh").arg("-c").arg(&script).current_dir(d.path()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args}: {err}");
        assert!(err.contains("out of memory: the system refused") && err.contains("MiB"), "{args}: {err}");
    }
}

/// Prediction uses every layer of a 1- or 2-layer net unless told, and
/// `--skip-layers` says how many first layers to leave out.
#[test]
fn prediction_skips_the_first_layer_only_of_deeper_nets_and_the_flag_sets_it() {
    let toml = dry_run_model;
    assert_eq!(toml(&["--sizes", "50"]).skip(), 0);
    assert_eq!(toml(&["--sizes", "50,50"]).skip(), 0);
    assert_eq!(toml(&["--sizes", "50,50,50"]).skip(), 1);
    assert_eq!(toml(&["--sizes", "50,50", "--skip-layers", "1"]).skip(), 1);
    let out = ffwd().args(["train", "--sizes", "50,50", "--skip-layers", "2", "--dry-run"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("skip_layers = 2 leaves no layer"), "{err}");
}

/// `--combine` sets how prediction adds up the layers (summed unless
/// told), and `data.augment.dropout` must be a rate in [0, 1).
#[test]
fn combine_flag_sets_model_combine_and_a_bad_dropout_rate_is_an_error_naming_the_field() {
    use ffwd::layers::config::Combine;
    let (dry, model) = (dry_run, dry_run_model);
    assert_eq!(model(&[]).combine, Combine::Sum);
    assert_eq!(model(&["--combine", "standardized"]).combine, Combine::Standardized);
    assert_eq!(model(&["--dataset", "mnist", "--combine", "sum"]).combine, Combine::Sum);
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    for bad in ["1.0", "-0.1", "nan"] {
        std::fs::write(&cfg, format!("[data.augment]\ndropout = {bad}\n")).unwrap();
        let out = dry(&["--config", cfg.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad}: {err}");
        assert!(err.contains("data.augment.dropout must lie in [0, 1)"), "{bad}: {err}");
    }
}

/// `--peer-norm λ` turns peer normalisation on with Hinton's momentum and
/// first means (or those of `[model.peer]`), 0 turns it off, and a bad λ
/// is an error naming the field.
#[test]
fn peer_norm_flag_sets_and_clears_model_peer_and_rejects_bad_values() {
    let (dry, model) = (dry_run, dry_run_model);
    // the digits default trains with it; MNIST's reference setting without
    assert_eq!(model(&[]).peer, Some(ffwd::layers::config::PeerConfig::default()));
    assert_eq!(model(&["--peer-norm", "0"]).peer, None);
    assert_eq!(model(&["--dataset", "mnist"]).peer, None);
    let p = model(&["--dataset", "mnist", "--peer-norm", "0.03"]).peer.expect("on");
    assert_eq!((p.lambda, p.momentum, p.init), (0.03, 0.9, 0.5));
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, "[model.peer]\nlambda = 0.1\nmomentum = 0.5\n").unwrap();
    let c = cfg.to_str().unwrap();
    let p = model(&["--config", c, "--peer-norm", "0.2"]).peer.expect("on");
    assert_eq!((p.lambda, p.momentum, p.init), (0.2, 0.5, 0.5));
    assert_eq!(model(&["--config", c, "--peer-norm", "0"]).peer, None);
    for (args, want) in
        [(&["--peer-norm", "nan"][..], "model.peer.lambda"), (&["--peer-norm=-1"][..], "model.peer.lambda")]
    {
        let out = dry(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    std::fs::write(&cfg, "[model.peer]\nmomentum = 1.0\n").unwrap();
    let err = String::from_utf8_lossy(&dry(&["--config", c]).stderr).to_string();
    assert!(err.contains("model.peer.momentum must lie in [0, 1)"), "{err}");
}

/// `--lr` and `--optim` set the optimiser of the network the config
/// chooses (they used to change `model.optim` only, unused by a conv,
/// twins or UFF config).
#[test]
fn lr_and_optim_flags_reach_the_chosen_networks_optimiser() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    for (file, table) in [
        ("trifecta-mnist-bp.toml", "conv"),
        ("ffcl-mnist.toml", "ffcl"),
        ("uff-aeff-mnist.toml", "uff"),
        ("ff-mnist-3x1000.toml", "model"),
    ] {
        let path = root.join(file);
        let out = ffwd()
            .args(["train", "--config"])
            .arg(&path)
            .args(["--lr", "0.125", "--optim", "sgd", "--dry-run"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let c = ffwd::train::config::RunConfig::from_toml_str(&text, &path).unwrap();
        let mut c2 = c.clone();
        let o = c2.optim_mut();
        assert_eq!((o.lr, o.kind), (0.125, ffwd::layers::config::OptimKind::Sgd), "{file}");
        assert!(text.contains(&format!("[{table}.optim]")), "{file}");
    }
}
