"""Summarise benches/bits/perf.sh: per case the median over rounds of the
old and the new binary (ms per batch of `ffwd bench`; seconds of the
Trifecta epoch), and new/old. Usage: python3 benches/bits/perf.py WORK_DIR"""
import json
import pathlib
import re
import statistics
import sys


def bench_cases(text):
    """`ffwd bench` rows: workload, batch -> median ms per batch."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(\d+×\d+)\s+(\d+)\s+([\d.]+) \(", line)
        if m:
            out[f"{m.group(1)} batch {m.group(2)} (ms/batch)"] = float(m.group(3))
    return out


def main(root):
    root = pathlib.Path(root)
    runs = {"old": {}, "new": {}}
    for who in runs:
        for f in sorted(root.glob(f"bench-{who}-*.txt")):
            for k, v in bench_cases(f.read_text()).items():
                runs[who].setdefault(k, []).append(v)
        # a run folder (perf.sh) or its metrics copied as tri-WHO-ROUND.jsonl
        for d in sorted(root.glob(f"tri-{who}-*")):
            m = d / "metrics.jsonl" if d.is_dir() else d
            if m.suffix == ".jsonl" and m.exists():
                e = json.loads(m.read_text().splitlines()[-1])
                n = round(e["train_seconds"] * e["samples_per_s"])
                runs[who].setdefault(f"Trifecta quarter width, CIFAR-10, {n:,} images (s/epoch)", []).append(e["train_seconds"])
    print("| case | rounds | old median | new median | new / old |")
    print("| --- | --- | --- | --- | --- |")
    for k in runs["old"]:
        o, n = runs["old"][k], runs["new"].get(k, [])
        if not n:
            continue
        mo, mn = statistics.median(o), statistics.median(n)
        print(f"| {k} | {len(o)}/{len(n)} | {mo:.3f} | {mn:.3f} | {mn / mo:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1])
