//! A resumed run ends with the bits of the run that never stopped: for
//! every network kind, stopped in the middle of an epoch or between epochs,
//! resumed at another thread count, from the state written when the run is
//! interrupted or from the one written periodically (a copy of the run
//! folder taken mid-run, as a crash leaves it); and SIGINT or SIGTERM to
//! the `ffwd` binary saves the state, `ffwd train --resume` finishes the
//! run. Compared: `model.safetensors` byte for byte and every line of
//! `metrics.jsonl` but its timings and thread count.

mod common;

use common::kinds::{mlp_symba_sgd_layer_by_layer, mnist_cfg, other_kinds};
use ffwd::data::Dataset;
use ffwd::train::config::RunConfig;
use ffwd::train::trainer::{Splits, Trainer};
use ffwd::train::Error;
use std::path::Path;
use std::process::Command;

struct Mnist {
    train: Dataset,
    test: Dataset,
}

fn mnist() -> Option<Mnist> {
    let dir = common::data_dir()?;
    let s = ffwd::data::load(ffwd::data::Name::Mnist, &dir).unwrap();
    Some(Mnist { train: s.train, test: s.test })
}

/// The first `sub.0` training images, 200 held out from the end of the
/// split, the first `sub.1` test images.
fn splits(d: &Mnist, sub: (usize, usize)) -> Splits {
    let n = d.train.len();
    (d.train.slice(0..sub.0), Some(d.train.slice(n - 200..n)), d.test.slice(0..sub.1), 10)
}

/// A metrics line without what may differ between runs of the same bits.
fn strip(line: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
    let m = v.as_object_mut().unwrap();
    for k in ["train_seconds", "samples_per_s", "threads"] {
        assert!(m.remove(k).is_some(), "metrics line without {k}: {line}");
    }
    v.to_string()
}

/// What a finished run leaves: the checkpoint's bytes and the metrics.
fn outputs(dir: &Path) -> (Vec<u8>, Vec<String>) {
    assert!(!dir.join("train-state.safetensors").exists(), "a finished run keeps no training state");
    let model = std::fs::read(dir.join("model.safetensors")).unwrap();
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap().lines().map(strip).collect();
    (model, metrics)
}

fn trainer(cfg: &RunConfig, dir: &Path, d: &Mnist, sub: (usize, usize), threads: usize) -> Trainer {
    let mut cfg = cfg.clone();
    cfg.output.dir = dir.to_path_buf();
    cfg.train.threads = threads;
    let (train, val, test, classes) = splits(d, sub);
    let net = ffwd::train::model::build(&cfg, train.shape, classes).unwrap();
    Trainer::with_model(cfg, net, train, val, test).unwrap()
}

fn uninterrupted(cfg: &RunConfig, d: &Mnist, sub: (usize, usize), dir: &Path) -> (Vec<u8>, Vec<String>) {
    trainer(cfg, dir, d, sub, 2).run(&mut |_| {}).unwrap();
    outputs(dir)
}

/// Resume the run in `dir` at `threads` threads and finish it.
fn resume(dir: &Path, d: &Mnist, sub: (usize, usize), threads: usize) -> Trainer {
    Trainer::resume_with(dir, Some(threads), None, &mut |_| Ok(splits(d, sub))).unwrap()
}

/// Train at `threads.0` threads, stop when the interrupt hook is asked
/// the `stop`-th time (it is asked after every batch and after every
/// epoch), resume at `threads.1` threads and finish. Returns where it
/// stopped (epoch, batches done in it) and the outputs.
fn stopped_and_resumed(
    cfg: &RunConfig,
    d: &Mnist,
    sub: (usize, usize),
    dir: &Path,
    stop: usize,
    threads: (usize, usize),
) -> ((usize, usize), (Vec<u8>, Vec<String>)) {
    let mut t = trainer(cfg, dir, d, sub, threads.0);
    let mut asked = 0;
    t.interrupt = Some(Box::new(move || {
        asked += 1;
        asked == stop
    }));
    let e = t.run(&mut |_| {}).expect_err("the hook stops the run");
    let Error::Interrupted { epoch, batch, .. } = e else { panic!("not an interruption: {e}") };
    assert!(e.to_string().contains("--resume"), "{e}");
    drop(t);
    let mut t = resume(dir, d, sub, threads.1);
    assert_eq!(t.start(), (epoch - 1, batch));
    t.run(&mut |_| {}).unwrap();
    ((epoch, batch), outputs(dir))
}

/// Every kind of network, stopped in epoch 2 after 3 batches, and (the
/// FF MLP and the Trifecta) also between epochs 1 and 2, at 1 and 2
/// threads both ways round.
#[test]
fn a_resumed_run_is_byte_identical_to_an_uninterrupted_one_for_every_kind() {
    let Some(d) = mnist() else { return };
    let mut linear = mnist_cfg();
    linear.train.lr_schedule = ffwd::train::config::LrSchedule::Linear;
    linear.train.cooldown_from = 0.25;
    let mut hard = mnist_cfg();
    hard.model.predict = ffwd::layers::config::PredictKind::Readout;
    hard.train.negatives = ffwd::train::config::Negatives::Hard;
    let mut kinds = vec![
        ("FF MLP: threshold loss, Adam, linear cool-down", linear, (2000, 500)),
        ("FF MLP: hard negatives from its readout", hard, (2000, 500)),
        ("FF MLP: SymBa, SGD with momentum, layer by layer", mlp_symba_sgd_layer_by_layer(), (2000, 500)),
    ];
    kinds.extend(other_kinds());
    let tmp = tempfile::tempdir().unwrap();
    for (i, (what, cfg, sub)) in kinds.into_iter().enumerate() {
        let nb = sub.0.div_ceil(cfg.train.batch);
        let t0 = std::time::Instant::now();
        let whole = uninterrupted(&cfg, &d, sub, &tmp.path().join(format!("{i}-whole")));
        assert!(whole.0.len() > 1000 && !whole.1.is_empty(), "{what}");
        let mut stops = vec![(nb + 1 + 3, (1, 2), (2, 3))];
        if i <= 1 || what.starts_with("Trifecta") {
            stops.push((nb + 1, (2, 1), (2, 0)));
            stops.push((3, (2, 2), (1, 3)));
        }
        for (k, (stop, threads, at)) in stops.into_iter().enumerate() {
            let dir = tmp.path().join(format!("{i}-stopped-{k}"));
            let (pos, resumed) = stopped_and_resumed(&cfg, &d, sub, &dir, stop, threads);
            assert_eq!(pos, at, "{what}: stopped elsewhere than asked");
            assert_eq!(resumed.1, whole.1, "{what}: stopped at {at:?}, threads {threads:?}: metrics differ");
            assert!(resumed.0 == whole.0, "{what}: stopped at {at:?}, threads {threads:?}: checkpoints differ");
        }
        eprintln!("{what}: {:.1} s", t0.elapsed().as_secs_f64());
    }
}

/// The state written every few batches continues a run that died after
/// it (a copy of the folder taken later stands for the crash): the metrics
/// written after the state are dropped and written again, to the same
/// bytes.
#[test]
fn the_periodic_state_continues_a_run_that_died_after_it() {
    let Some(d) = mnist() else { return };
    let sub = (1500, 300);
    let mut cfg = mnist_cfg();
    cfg.model.sizes = vec![300, 200];
    cfg.train.epochs = 3;
    cfg.train.checkpoint_every = 0;
    cfg.train.checkpoint_every_batches = 4;
    let nb = sub.0 / cfg.train.batch;
    let tmp = tempfile::tempdir().unwrap();
    let whole = uninterrupted(&cfg, &d, sub, &tmp.path().join("whole"));
    // copy the folder when the hook is asked after epoch 2
    let (run, crash) = (tmp.path().join("run"), tmp.path().join("crash"));
    let mut t = trainer(&cfg, &run, &d, sub, 1);
    let (from, to) = (run.clone(), crash.clone());
    let mut asked = 0;
    t.interrupt = Some(Box::new(move || {
        asked += 1;
        if asked == 2 * (nb + 1) {
            std::fs::create_dir_all(&to).unwrap();
            for f in ["metrics.jsonl", "model.safetensors", "train-state.safetensors"] {
                std::fs::copy(from.join(f), to.join(f)).unwrap();
            }
        }
        false
    }));
    t.run(&mut |_| {}).unwrap();
    assert_eq!(outputs(&run), whole, "saving the state changes nothing");
    let lines = std::fs::read_to_string(crash.join("metrics.jsonl")).unwrap().lines().count();
    assert_eq!(lines, 2, "the crash copy holds epochs 1 and 2");
    let mut t = resume(&crash, &d, sub, 2);
    assert_eq!(t.start(), (1, 12), "the last state: epoch 2, batch 12 of {nb}");
    t.run(&mut |_| {}).unwrap();
    assert_eq!(outputs(&crash), whole);
}

/// What `--resume` refuses: a finished run, a folder without a state, a
/// state whose data no longer fits, a damaged state file.
#[test]
fn resume_refuses_what_it_cannot_continue() {
    let Some(d) = mnist() else { return };
    let sub = (600, 100);
    let mut cfg = mnist_cfg();
    cfg.model.sizes = vec![50, 50];
    cfg.train.epochs = 2;
    let tmp = tempfile::tempdir().unwrap();
    let done = tmp.path().join("done");
    uninterrupted(&cfg, &d, sub, &done);
    let err = |dir: &Path, sub| Trainer::resume_with(dir, None, None, &mut |_| Ok(splits(&d, sub))).err().unwrap();
    let e = err(&done, sub).to_string();
    assert!(e.contains("finished run") && e.contains("done"), "{e}");
    let e = err(&tmp.path().join("nothing"), sub).to_string();
    assert!(e.contains("no such folder") && e.contains("nothing"), "{e}");

    let run = tmp.path().join("run");
    let mut t = trainer(&cfg, &run, &d, sub, 1);
    t.interrupt = Some(Box::new(|| true));
    t.run(&mut |_| {}).unwrap_err();
    let state = run.join("train-state.safetensors");
    let good = std::fs::read(&state).unwrap();
    // other data: CIFAR-sized images
    let e = Trainer::resume_with(&run, None, None, &mut |_| {
        let (mut tr, v, te, c) = splits(&d, sub);
        tr.shape = (3, 32, 32);
        Ok((tr, v, te, c))
    })
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("train-state.safetensors") && e.contains("(3, 32, 32)"), "{e}");
    // a NaN in a moment, a truncated file, a wrong metadata entry
    let mut nan = good.clone();
    let at = nan.len() - 4;
    nan[at..].copy_from_slice(&f32::NAN.to_le_bytes());
    for (bytes, want) in
        [(nan, "NaN"), (good[..good.len() / 2].to_vec(), "truncated"), (renamed_key(&good), "not a training state")]
    {
        std::fs::write(&state, &bytes).unwrap();
        let e = err(&run, sub).to_string();
        assert!(e.contains(want) && e.contains("train-state.safetensors"), "want `{want}`: {e}");
    }
    std::fs::write(&state, &good).unwrap();
    let mut t = resume(&run, &d, sub, 1);
    t.run(&mut |_| {}).unwrap();
    assert_eq!(outputs(&run), outputs(&done));
}

/// `bytes` with its first `ffwd.state` renamed `ffwd.other`.
fn renamed_key(bytes: &[u8]) -> Vec<u8> {
    let at = bytes.windows(10).position(|w| w == b"ffwd.state").expect("the metadata key");
    let mut out = bytes.to_vec();
    out[at..at + 10].copy_from_slice(b"ffwd.other");
    out
}

/// The binary: SIGINT, then SIGTERM, each stops the run after a batch with
/// exit code 130 and a message naming `--resume`; resumed twice, the run
/// ends as the uninterrupted one.
#[test]
fn sigint_and_sigterm_save_the_state_and_the_run_resumes_to_the_same_bytes() {
    let Some(data) = common::data_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let ffwd = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ffwd"));
        c.env("FFWD_DATA_DIR", &data).current_dir(tmp.path()).stdout(std::process::Stdio::null());
        c
    };
    let args = [
        "train",
        "--dataset",
        "mnist",
        "--train-size",
        "6000",
        "--validation",
        "500",
        "--sizes",
        "400,400",
        "--epochs",
        "6",
        "--batch",
        "100",
        "--threads",
        "2",
        "--quiet",
        "--out",
    ];
    let whole = ffwd().args(args).arg("whole").output().unwrap();
    assert!(whole.status.success(), "{}", String::from_utf8_lossy(&whole.stderr));
    let run = tmp.path().join("run");
    let metrics = run.join("metrics.jsonl");
    let lines = || std::fs::read_to_string(&metrics).map_or(0, |t| t.lines().count());
    let mut child = ffwd().args(args).arg("run").stderr(std::process::Stdio::piped()).spawn().unwrap();
    for (signal, resume_threads) in [("-INT", "1"), ("-TERM", "2")] {
        // wait for one more epoch, then signal
        let before = lines();
        let t0 = std::time::Instant::now();
        while lines() == before && t0.elapsed().as_secs() < 120 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let pid = child.id().to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
        let out = child.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{signal}: {said}");
        assert!(said.contains("continue with `ffwd train --resume run`"), "{signal}: {said}");
        assert!(run.join("train-state.safetensors").is_file(), "{signal}: no training state");
        assert!(lines() < 6, "{signal} came after the run ended; the test needs a longer run");
        child = ffwd()
            .args(["train", "--resume", "run", "--quiet", "--threads", resume_threads])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(outputs(&run), outputs(&tmp.path().join("whole")));
}
