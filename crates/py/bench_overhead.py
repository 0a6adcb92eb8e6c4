"""Samples/s of 2x500 FF training on MNIST through Python against the
`ffwd` binary, alternating, ROUNDS rounds (order flipped each round):
`ffwd train` (the CLI), `ffwd.train` (the same run from Python) and a loop of
`Model.train_epoch` over numpy arrays. Each run: 2 epochs of all 60,000
images, batch 100, no evaluation; the second epoch's samples/s counts.
Usage: FFWD_DATA_DIR=... python crates/py/bench_overhead.py FFWD_BINARY WORK_DIR [ROUNDS]"""

import json
import pathlib
import statistics
import subprocess
import sys
import time

import ffwd

BIN, WORK = sys.argv[1], pathlib.Path(sys.argv[2])
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
WORK.mkdir(parents=True, exist_ok=True)
CFG = {"data": {"dataset": "mnist", "validation": 0}, "model": {"sizes": [500, 500]},
       "train": {"epochs": 2, "batch": 100, "eval_every": 0, "threads": 2}}


def last_rate(path):
    return json.loads(pathlib.Path(path).read_text().splitlines()[-1])["samples_per_s"]


def cli(r):
    out = WORK / f"cli-{r}"
    cfg = ffwd.RunConfig.from_dict({**CFG, "output": {"dir": str(out)}})
    (WORK / "run.toml").write_text(cfg.to_toml())
    subprocess.run([BIN, "train", "--config", str(WORK / "run.toml"), "--quiet"], check=True, capture_output=True)
    return last_rate(out / "metrics.jsonl")


def py_train(r):
    out = WORK / f"py-{r}"
    run = ffwd.train({**CFG, "output": {"dir": str(out)}})
    return run.metrics[-1]["samples_per_s"]


x, y, _, _, k = ffwd.datasets.load("mnist")


def py_loop(r):
    m = ffwd.Model(ffwd.RunConfig.from_dict(CFG), x.shape[1:], k)
    m.train_epoch(x, y)
    t = time.perf_counter()
    m.train_epoch(x, y)
    return len(x) / (time.perf_counter() - t)


cases = {"ffwd train (CLI)": cli, "ffwd.train (Python)": py_train, "Model.train_epoch loop (Python)": py_loop}
rates = {name: [] for name in cases}
for r in range(ROUNDS):
    order = list(cases) if r % 2 == 0 else list(reversed(cases))
    for name in order:
        rates[name].append(cases[name](r))
        print(f"round {r + 1}: {name}: {rates[name][-1]:.0f} samples/s", flush=True)
base = statistics.median(rates["ffwd train (CLI)"])
print("| path | rounds | median samples/s | against the CLI |")
print("| --- | --- | --- | --- |")
for name, v in rates.items():
    print(f"| {name} | {len(v)} | {statistics.median(v):.0f} | {statistics.median(v) / base:.3f} |")
