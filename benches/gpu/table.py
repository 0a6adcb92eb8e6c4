"""The GPU results table in Markdown from the logs of target/gpu-stage/run.sh
(gpu-bench.jsonl, gemm-torch.jsonl, ff-torch.jsonl): per case the median of
the rounds of each side, every round's value, and the ratio of medians.

Usage: python3 benches/gpu/table.py DIR
"""
import json, statistics, sys
from pathlib import Path


def rows(path):
    return [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]


def main():
    d = Path(sys.argv[1])
    ours, peer, ff_ours, ff_peer = {}, {}, {}, {}
    for j in rows(d / "gpu-bench.jsonl"):
        if j["case"] == "gemm":
            ours.setdefault(j["name"], []).append(j["tflops"])
        else:
            ff_ours.setdefault(j["batch"], []).append(j["epoch_s"])
    for j in rows(d / "gemm-torch.jsonl"):
        peer.setdefault(j["name"], []).append(j["tflops"])
    for j in rows(d / "ff-torch.jsonl"):
        ff_peer.setdefault(j["batch"], []).append(j["epoch_seconds"])
    med = statistics.median
    fmt = lambda v: ", ".join(f"{x:.1f}" for x in v)
    print("| SGEMM case | ffwd TFLOP/s | % of 66.9 | cuBLAS TFLOP/s (TF32 off) | ffwd / cuBLAS |")
    print("| --- | --- | --- | --- | --- |")
    for name, o in ours.items():
        p = peer.get(name, [float("nan")])
        print(f"| {name} | {med(o):.1f} ({fmt(o)}) | {100 * med(o) / 66.9:.0f} % | {med(p):.1f} ({fmt(p)}) | {med(o) / med(p):.2f} |")
    print()
    print("| FF epoch, 4×2000, 60,000 MNIST images | ffwd s | PyTorch s | PyTorch / ffwd |")
    print("| --- | --- | --- | --- |")
    for b, o in ff_ours.items():
        p = ff_peer.get(b, [float("nan")])
        f3 = lambda v: ", ".join(f"{x:.3f}" for x in v)
        print(f"| batch {b} | {med(o):.3f} ({f3(o)}) | {med(p):.3f} ({f3(p)}) | {med(p) / med(o):.2f}× |")


if __name__ == "__main__":
    main()
