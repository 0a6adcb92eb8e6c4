#!/usr/bin/env python3
"""Print the README's SSL / FFCL results table (markdown) from the runs'
files in benches/results/runs/: `<name>.toml` (the config), `<name>.jsonl`
(metrics, one line per epoch) and `<name>.probe.json` (the linear probe).

    python3 benches/results/ssl_table.py
"""
import json
import pathlib
import tomllib

RUNS = pathlib.Path(__file__).parent / "runs"
NAMES = [
    "ssl-mnist-rotation-ff-10k-10ep",
    "ssl-mnist-rotation-bp-10k-10ep",
    "ssl-mnist-rotation-bp-goodness-10k-10ep",
    "ssl-mnist-supervised-bp-10k-10ep",
    "ffcl-mnist-30ep",
]


def pct(x):
    return f"{100 * x:.2f}%"


def describe(cfg):
    if "ffcl" in cfg:
        return "FF contrastive twins", "labels (BCE)"
    training = cfg.get("model", {}).get("training", "local")
    kind = {"local": "FF", "cross-entropy": "BP, cross-entropy", "goodness-backprop": "BP, goodness loss on every layer"}[training]
    task = cfg.get("ssl", {}).get("task", "labels")
    return kind, task


def main():
    print("| run | training | learns | budget | test accuracy (on what it learns) | probe per layer | probe, all layers |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in NAMES:
        cfg = tomllib.loads((RUNS / f"{name}.toml").read_text())
        lines = [json.loads(l) for l in (RUNS / f"{name}.jsonl").read_text().splitlines() if l.strip()]
        last = [r for r in lines if r.get("test")][-1]
        kind, task = describe(cfg)
        n = cfg.get("data", {}).get("train_size", 0) or 60000
        budget = f"{n // 1000}k images × {last['epoch']} epochs"
        probe = RUNS / f"{name}.probe.json"
        per, cat = "—", "—"
        if probe.exists():
            p = json.loads(probe.read_text())
            per = ", ".join(pct(a) for a in p["per_layer"])
            cat = f"{pct(p['concat'])} ({p['epochs']} epochs)"
        print(f"| `{name}` | {kind} | {task} | {budget} | {pct(last['test']['acc'])} | {per} | {cat} |")


if __name__ == "__main__":
    main()
