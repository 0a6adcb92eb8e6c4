"""Table of the epoch time per network kind, CPU vs GPU, from the run
folders that benches/gpu/kinds.sh leaves: <dir>/<kind>-<cpu|cuda>/metrics.jsonl.
The last epoch's train_seconds of each run (the first pays for warm-up)."""
import json
import pathlib
import sys


def last_epoch(path):
    lines = [l for l in path.read_text().splitlines() if l.strip()]
    return json.loads(lines[-1]) if lines else None


def main(root):
    root = pathlib.Path(root)
    kinds = sorted({p.name.rsplit("-", 1)[0] for p in root.iterdir() if p.is_dir()})
    print("| kind | images | CPU epoch (s) | GPU epoch (s) | GPU speed-up |")
    print("| --- | --- | --- | --- | --- |")
    for k in kinds:
        row = {}
        for dev in ("cpu", "cuda"):
            m = root / f"{k}-{dev}" / "metrics.jsonl"
            row[dev] = last_epoch(m) if m.exists() else None
        cpu, gpu = row["cpu"], row["cuda"]
        n = next((round(r["train_seconds"] * r["samples_per_s"]) for r in (cpu, gpu) if r), "?")
        c = f"{cpu['train_seconds']:.3f}" if cpu else "failed"
        g = f"{gpu['train_seconds']:.3f}" if gpu else "failed"
        x = f"{cpu['train_seconds'] / gpu['train_seconds']:.1f}×" if cpu and gpu else "–"
        print(f"| {k} | {n} | {c} | {g} | {x} |")


if __name__ == "__main__":
    main(sys.argv[1])
