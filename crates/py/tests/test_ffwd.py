"""The Python package against the engine: the same bytes as the command
line, checkpoints readable by the safetensors package, clear exceptions for
bad arguments. Needs the `ffwd` binary of this checkout (FFWD_BIN, else
target/release/ffwd; `cargo build --release` makes it)."""

import _thread
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

import ffwd

ROOT = pathlib.Path(__file__).resolve().parents[3]


def ffwd_bin() -> str:
    b = os.environ.get("FFWD_BIN") or str(ROOT / "target" / "release" / "ffwd")
    if not os.path.isfile(b):
        pytest.fail(f"the ffwd binary is needed for this test: {b} is missing (cargo build --release, or set FFWD_BIN)")
    return b


def digits_config(out_dir, epochs=3, train=None, **model):
    d = ffwd.RunConfig().to_dict()
    d["train"]["epochs"] = epochs
    d["train"].update(train or {})
    d["output"]["dir"] = str(out_dir)
    d["model"].update(model)
    return ffwd.RunConfig.from_dict(d)


def metrics_without_timings(path):
    rows = []
    for line in pathlib.Path(path).read_text().splitlines():
        r = json.loads(line)
        for k in ("train_seconds", "samples_per_s", "threads"):
            r.pop(k, None)
        rows.append(r)
    return rows


def test_the_readme_example_trains_digits_and_prints_the_accuracy(tmp_path):
    example = ROOT / "crates" / "py" / "examples" / "train_digits.py"
    out = subprocess.run([sys.executable, str(example)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    line = out.stdout.splitlines()[0]
    assert line.startswith("test accuracy "), out.stdout
    acc = float(line.split()[2].rstrip("%"))
    # 30 epochs of the default run: well above chance (10 %)
    assert acc > 50.0, out.stdout
    assert (tmp_path / "runs" / "latest" / "model.safetensors").is_file()


def test_a_python_run_writes_the_same_checkpoint_and_metrics_as_the_cli(tmp_path):
    cfg = digits_config(tmp_path / "py", loss="symba")
    run = ffwd.train(cfg)
    toml = tmp_path / "run.toml"
    toml.write_text(cfg.to_toml())
    cli = tmp_path / "cli"
    out = subprocess.run([ffwd_bin(), "train", "--config", str(toml), "--out", str(cli), "--quiet"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    a = (tmp_path / "py" / "model.safetensors").read_bytes()
    b = (cli / "model.safetensors").read_bytes()
    assert a == b
    assert metrics_without_timings(tmp_path / "py" / "metrics.jsonl") == metrics_without_timings(cli / "metrics.jsonl")
    assert len(run.metrics) == 3 and run.metrics[-1]["epoch"] == 3


@pytest.mark.parametrize("train", [{"negatives": "random"}, {"negatives": "hard", "lr_schedule": "cosine", "cooldown_from": 0.25}])
def test_an_epoch_loop_over_numpy_arrays_gives_the_cli_checkpoint(tmp_path, train):
    # uniform wrong labels and no readout with the default's linear cool-down;
    # hard negatives (the default's) with a cosine one
    cfg = digits_config(tmp_path / "cli", epochs=2, train=train, readout=train["negatives"] == "hard")
    toml = tmp_path / "run.toml"
    toml.write_text(cfg.to_toml())
    out = subprocess.run([ffwd_bin(), "train", "--config", str(toml), "--quiet"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    x, y, _, _, classes = ffwd.datasets.load("digits")
    m = ffwd.Model(cfg, x.shape[1:], classes)
    for _ in range(2):
        m.train_epoch(x, y)
    m.save(tmp_path / "loop.safetensors")
    assert (tmp_path / "loop.safetensors").read_bytes() == (tmp_path / "cli" / "model.safetensors").read_bytes()
    # the schedule spans train.epochs: a third epoch is refused, not run at rate 0
    with pytest.raises(ValueError, match="train.epochs = 2"):
        m.train_epoch(x, y)


def test_an_epoch_loop_refuses_mlp_augmentation_it_would_skip(tmp_path):
    d = digits_config(tmp_path / "r").to_dict()
    d["data"]["augment"]["crop_padding"] = 1
    cfg = ffwd.RunConfig.from_dict(d)
    x, y, _, _, classes = ffwd.datasets.load("digits")
    m = ffwd.Model(cfg, x.shape[1:], classes)
    with pytest.raises(ValueError, match="augment"):
        m.train_epoch(x, y)


def skip_layers(model):
    """The first layers prediction leaves out: as configured, else 1 for
    nets of 3 or more layers and 0 for shallower ones."""
    return model.get("skip_layers", 1 if len(model["sizes"]) >= 3 else 0)


def numpy_goodness_predictions(tensors, cfg, x, classes):
    """Prediction A recomputed from the checkpoint in float64: each image
    with each label (concatenated in front of the pixels), every layer
    RMS-normalising its input, ReLU, goodness Σh², summed over the layers
    after `skip_layers`."""
    m = cfg["model"]
    assert m["label"] == "concat" and m["norm"] == "rms" and m["goodness"] == "sum"
    n = len(x)
    flat = x.reshape(n, -1).astype(np.float64)
    total = np.zeros((n, classes))
    for y in range(classes):
        lab = np.zeros((n, classes))
        lab[:, y] = 1.0
        h = np.concatenate([lab, flat], axis=1)
        score = np.zeros(n)
        for i in range(len(m["sizes"])):
            den = np.sqrt((h * h).mean(axis=1, keepdims=True)) + m["norm_eps"]
            h = np.maximum((h / den) @ tensors[f"layers.{i}.weight"].astype(np.float64) + tensors[f"layers.{i}.bias"], 0.0)
            if i >= skip_layers(m):
                score += (h * h).sum(axis=1)
        total[:, y] = score
    return total.argmax(axis=1)


def test_a_checkpoint_read_by_safetensors_predicts_in_numpy_as_the_model_does(tmp_path):
    from safetensors.numpy import load_file

    cfg = digits_config(tmp_path / "run", epochs=5)
    run = ffwd.train(cfg)
    _, _, x, y, classes = ffwd.datasets.load("digits")
    tensors = load_file(str(tmp_path / "run" / "model.safetensors"))
    sd = run.model.state_dict()
    assert sorted(tensors) == sorted(sd)
    for k, v in sd.items():
        assert v.dtype == np.float32 and np.array_equal(tensors[k], v)
    ours = run.model.predict(x, all=True)["goodness"]
    theirs = numpy_goodness_predictions(tensors, cfg.to_dict(), x, classes)
    # f32 against f64 sums: only a near tie may flip
    assert (ours == theirs).mean() >= 0.99, (ours != theirs).sum()


def test_a_loaded_checkpoint_predicts_as_the_trained_model(tmp_path):
    run = ffwd.train(digits_config(tmp_path / "run", epochs=2))
    _, _, x, _, _ = ffwd.datasets.load("digits")
    again = ffwd.load(tmp_path / "run" / "model.safetensors", device="cpu-scalar")
    assert again.backend == "cpu-scalar" and again.epoch == 2
    assert np.array_equal(again.predict(x), run.model.predict(x))


@pytest.mark.parametrize("bad, exc, words", [
    (lambda m, x, y: m.fit_batch(x.astype(str), y), TypeError, "dtype"),
    (lambda m, x, y: m.fit_batch(x[:, :, :4], y), ValueError, "values per image"),
    (lambda m, x, y: m.fit_batch(np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x), y), ValueError, "NaN"),
    (lambda m, x, y: m.fit_batch(x, y.astype(np.float32)), TypeError, "integer labels"),
    (lambda m, x, y: m.fit_batch(x, y[:-1]), ValueError, "labels for"),
    (lambda m, x, y: m.fit_batch(x, y + 10), ValueError, "0..9"),
    (lambda m, x, y: m.train_epoch(x, y, batch=0), ValueError, "batch"),
    (lambda m, x, y: m.features(x, form="cooked"), ValueError, "cooked"),
    (lambda m, x, y: m.fit_batch(x, y, layers=(2, 1)), ValueError, "layers"),
])
def test_bad_arguments_raise_clear_python_exceptions(bad, exc, words):
    x, y, _, _, classes = ffwd.datasets.load("digits")
    m = ffwd.Model(ffwd.RunConfig(), x.shape[1:], classes)
    with pytest.raises(exc, match=words):
        bad(m, x[:20], y[:20])


def test_bad_configs_files_and_devices_raise_clear_python_exceptions(tmp_path):
    with pytest.raises(ValueError, match="epochz"):
        ffwd.RunConfig.from_dict({"train": {"epochz": 3}})
    with pytest.raises(ValueError, match="imagenet"):
        ffwd.RunConfig.from_dict({"data": {"dataset": "imagenet"}})
    with pytest.raises(TypeError, match="config"):
        ffwd.train(42)
    with pytest.raises(FileNotFoundError, match="nowhere.toml"):
        ffwd.train(tmp_path / "nowhere.toml")
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        ffwd.load(tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match="mnist"):
        ffwd.datasets.load("mnist", data_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        ffwd.datasets.load("imagenet")
    with pytest.raises(ValueError, match="device"):
        ffwd.Model(ffwd.RunConfig(), (1, 8, 8), 10, device="tpu")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ffwd.FfwdError):
        ffwd.load(tmp_path / "junk.safetensors")


def test_asking_for_cuda_without_a_gpu_is_an_engine_error_not_a_crash():
    try:
        m = ffwd.Model(ffwd.RunConfig(), (1, 8, 8), 10, device="cuda")
    except ffwd.FfwdError as e:
        assert "CUDA" in str(e)
    else:
        assert m.backend == "cuda"


@pytest.fixture
def python_handles_sigint():
    """Python's own Ctrl-C handler for the test: a process started with
    SIGINT ignored (a background job of a non-interactive shell) has none,
    and then `_thread.interrupt_main` does nothing."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_ctrl_c_stops_training_after_a_whole_batch_and_leaves_a_usable_model(python_handles_sigint):
    x, y, _, _, classes = ffwd.datasets.load("digits")
    m = ffwd.Model(ffwd.RunConfig(), x.shape[1:], classes)
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        for _ in range(10_000):
            m.train_epoch(x, y, batch=10)
    timer.cancel()
    assert m.predict(x[:50]).shape == (50,)
    m.train_epoch(x, y)


def test_ctrl_c_stops_a_whole_run_after_a_batch(tmp_path, python_handles_sigint):
    cfg = digits_config(tmp_path / "run", epochs=1000)
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        ffwd.train(cfg)
    timer.cancel()


def test_an_interrupted_run_resumes_to_the_bits_of_an_uninterrupted_one(tmp_path, python_handles_sigint):
    ffwd.train(digits_config(tmp_path / "whole", epochs=60))
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        ffwd.train(digits_config(tmp_path / "run", epochs=60))
    timer.cancel()
    assert (tmp_path / "run" / "train-state.safetensors").is_file()
    run = ffwd.resume(tmp_path / "run", threads=1)
    assert 0 < len(run.metrics) < 60
    assert not (tmp_path / "run" / "train-state.safetensors").exists()
    for f in ("model.safetensors",):
        assert (tmp_path / "run" / f).read_bytes() == (tmp_path / "whole" / f).read_bytes()
    assert metrics_without_timings(tmp_path / "run" / "metrics.jsonl") == metrics_without_timings(
        tmp_path / "whole" / "metrics.jsonl")
    with pytest.raises(ValueError, match="finished run"):
        ffwd.resume(tmp_path / "run")


def test_per_layer_goodness_gives_the_goodness_prediction(tmp_path):
    run = ffwd.train(digits_config(tmp_path / "run", epochs=2))
    _, _, x, _, classes = ffwd.datasets.load("digits")
    x = x[:40]
    skip = skip_layers(run.model.config.to_dict()["model"])
    total = np.zeros((len(x), classes), dtype=np.float32)
    for y in range(classes):
        g = run.model.goodness(x, np.full(len(x), y))
        assert len(g) == run.model.depth and all(v.shape == (len(x),) for v in g)
        for v in g[skip:]:
            total[:, y] = total[:, y] + v
    assert np.array_equal(total.argmax(axis=1), run.model.predict(x, all=True)["goodness"])
    neutral = run.model.goodness(x, np.full(len(x), -1))
    assert all(np.isfinite(v).all() for v in neutral)
    with pytest.raises(ValueError, match="labels"):
        run.model.goodness(x, np.full(len(x), classes))


def test_block_goodness_of_the_conv_ff_net_gives_its_prediction():
    x, y, xt, _, classes = ffwd.datasets.load("digits")
    m = ffwd.Model(ffwd.RunConfig.from_dict({"train": {"batch": 50}, "conv": {"channels": [4] * 6}}), x.shape[1:], classes)
    m.train_epoch(x[:200], y[:200])
    xt = xt[:30]
    # the last block's output is 4 channels of 1×1 after the three pools
    last = np.stack([m.goodness(xt, np.full(len(xt), lab))[-1] for lab in range(classes)], axis=1)
    assert len(m.goodness(xt, np.zeros(len(xt), int))) == m.depth
    per_value = last / np.float32(4)
    assert np.array_equal(per_value.argmax(axis=1), m.predict(xt, all=True)["goodness"])
    with pytest.raises(ValueError, match="neutral"):
        m.goodness(xt, np.full(len(xt), -1))


def test_goodness_of_a_network_without_it_is_a_clear_error():
    cfg = ffwd.RunConfig.from_dict({"model": {"training": "cross-entropy", "sizes": [20, 20]}})
    m = ffwd.Model(cfg, (1, 8, 8), 10)
    with pytest.raises(ValueError, match="goodness"):
        m.goodness(np.zeros((2, 64), np.float32), [0, 1])


@pytest.mark.parametrize("table", [
    {"conv": {"channels": [4, 4, 4, 4, 4, 4]}},
    {"conv": {"channels": [4, 4, 4, 4, 4, 4], "algorithm": "backprop"}},
    {"ffcl": {}},
    {"uff": {"cells": ["cae", "dae", "gan"]}},
    {"model": {"training": "cross-entropy", "sizes": [30, 30]}},
    {"model": {"training": "goodness-backprop", "sizes": [30, 30]}},
])
def test_every_network_kind_trains_predicts_and_round_trips_from_python(tmp_path, table):
    x, y, xt, yt, classes = ffwd.datasets.load("digits")
    m = ffwd.Model(ffwd.RunConfig.from_dict({"train": {"batch": 50}, **table}), x.shape[1:], classes)
    m.train_epoch(x[:200], y[:200])
    assert m.epoch == 1
    p = m.predict(xt)
    assert p.shape == (len(xt),) and p.max() < classes
    m.save(tmp_path / "m.safetensors")
    again = ffwd.load(tmp_path / "m.safetensors")
    assert again.kind == m.kind
    assert np.array_equal(again.predict(xt), p)
    sd, sd2 = m.state_dict(), again.state_dict()
    assert sorted(sd) == sorted(sd2) and all(np.array_equal(sd[k], sd2[k]) for k in sd)
