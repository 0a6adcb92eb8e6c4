#!/usr/bin/env python3
"""Print the README's results tables (markdown) from the runs' files in
benches/results/runs/: `<name>.toml` (the config), `<name>.jsonl` (metrics,
one line per epoch) and, where there is one, `<name>.probe.json` (the
linear probe).

    python3 benches/results/tables.py ssl    # SSL, its BP baselines, FFCL
    python3 benches/results/tables.py uff    # unsupervised FF and its comparisons
"""
import json
import pathlib
import sys
import tomllib

RUNS = pathlib.Path(__file__).parent / "runs"
SSL = [
    "ssl-mnist-rotation-ff-10k-10ep",
    "ssl-mnist-rotation-bp-10k-10ep",
    "ssl-mnist-rotation-bp-goodness-10k-10ep",
    "ssl-mnist-supervised-bp-10k-10ep",
    "ssl-mnist-rotation-ff-60k-10ep",
    "ssl-mnist-rotation-bp-60k-10ep",
    "ssl-mnist-rotation-ff-60k-60ep",
    "ssl-mnist-rotation-bp-60k-60ep",
    "ssl-cifar10-supervised-ff-10k-5ep",
    "ssl-cifar10-supervised-bp-10k-5ep",
    "ffcl-mnist-30ep",
]
UFF = [
    "uff-aeff-mnist-20ep",
    "uff-daeff-mnist-20ep",
    "uff-caeff-mnist-20ep",
    "uff-ganff-mnist-20ep",
    "uff-caeff-cifar10-5ep",
    "uff-ff-cifar10-sequence-5ep",
    "uff-caeff-cifar10-separate-5ep",
    "uff-ff-cifar10-separate-5ep",
]


def pct(x):
    return f"{100 * x:.2f}%"


def load(name):
    cfg = tomllib.loads((RUNS / f"{name}.toml").read_text())
    lines = [json.loads(l) for l in (RUNS / f"{name}.jsonl").read_text().splitlines() if l.strip()]
    return cfg, lines


def describe(cfg):
    if "ffcl" in cfg:
        return "FF contrastive twins", "labels (BCE)"
    if "uff" in cfg:
        return "UFF " + "/".join(c.upper() for c in cfg["uff"]["cells"]), "unsupervised cells + classifier"
    training = cfg.get("model", {}).get("training", "local")
    kind = {"local": "FF", "cross-entropy": "BP, cross-entropy", "goodness-backprop": "BP, goodness loss on every layer"}[training]
    return kind, cfg.get("ssl", {}).get("task", "labels")


def budget(cfg, lines, full):
    n = cfg.get("data", {}).get("train_size", 0) or full
    return f"{n // 1000}k images × {lines[-1]['epoch']} epochs"


def ssl():
    print("| run | training | learns | budget | test accuracy (on what it learns) | probe per layer | probe, all layers |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in SSL:
        if not (RUNS / f"{name}.jsonl").exists():
            continue  # configured, not (yet) run
        cfg, lines = load(name)
        last = [r for r in lines if r.get("test")][-1]
        kind, task = describe(cfg)
        per, cat = "—", "—"
        probe = RUNS / f"{name}.probe.json"
        if probe.exists():
            p = json.loads(probe.read_text())
            per = ", ".join(pct(a) for a in p["per_layer"])
            cat = f"{pct(p['concat'])} ({p['epochs']} epochs)"
        print(f"| `{name}` | {kind} | {task} | {budget(cfg, lines, 60000)} | {pct(last['test']['acc'])} | {per} | {cat} |")


def uff():
    print("| run | network | mode | budget | first / last epoch loss per cell | test accuracy | samples/s (median epoch) | train time |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in UFF:
        cfg, lines = load(name)
        last = [r for r in lines if r.get("test")][-1]
        kind, _ = describe(cfg)
        if "uff" not in cfg:
            kind = f"FF {cfg['model']['sizes']} + readout"
        mode = {"simultaneous": "sequence", "layer-by-layer": "separate"}[cfg.get("train", {}).get("schedule", "simultaneous")]
        cells = []
        for l in range(len(lines[0]["layers"])):
            ls = [r["layers"][l]["loss"] for r in lines if r["layers"][l]["loss"] is not None]
            gs = [r["layers"][l]["aux_loss"] for r in lines if r["layers"][l].get("aux_loss") is not None]
            if gs:
                cells.append(f"D {ls[0]:.3f} → {ls[-1]:.3f}, G {gs[0]:.3f} → {gs[-1]:.3f}")
            elif ls:
                cells.append(f"{ls[0]:.3f} → {ls[-1]:.3f}")
        sps = sorted(r["samples_per_s"] for r in lines)[len(lines) // 2]
        secs = sum(r["train_seconds"] for r in lines)
        full = 50000 if cfg["data"]["dataset"] == "cifar-10" else 60000
        spent = budget(cfg, lines, full)
        phases = len({r["training_layer"] for r in lines})
        if mode == "separate":
            spent = f"{spent.split(' × ')[0]} × {cfg['train']['epochs']} epochs per phase, {phases} phases"
        print(
            f"| `{name}` | {kind} | {mode} | {spent} | {'; '.join(cells)} | "
            f"{pct(last['test']['acc'])} | {sps:,.0f} | {secs / 60:.1f} min |"
        )


if __name__ == "__main__":
    {"ssl": ssl, "uff": uff}[sys.argv[1] if len(sys.argv) > 1 else "ssl"]()
