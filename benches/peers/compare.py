#!/usr/bin/env python3
"""Side-by-side FF training benchmark: ffwd against PyTorch on this machine.

Creates benches/peers/.venv with PyTorch from PyPI (first run only), builds
ffwd in release mode, then for each workload runs ffwd and PyTorch
alternately, `--repeats` times each, with the same thread count, the same
training images and the same batch. Prints median epoch time, spread, the
ratio, and peak resident memory (of the whole process, from wait4), and
writes the results as JSON (and a Markdown table) under benches/results/.

    python3 benches/peers/compare.py --data ../shared/datasets

On a GPU machine (no Rust or network needed there): build on the build
machine (`cargo build --release`, `cargo bench --bench gpu --no-run`), copy
the binaries over, and run

    python3 benches/peers/compare.py --device cuda --binary ./ffwd \
        --gpu-bench ./gpu-bench --python python3 --data datasets

which times the FF epochs on the GPU (PyTorch on CUDA, TF32 off) and, with
`--gpu-bench`, our SGEMM against cuBLAS at the FF shapes, alternating, and
writes peers-gpu-<date>.{json,md}.
"""
import argparse, json, os, platform, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / "benches/peers/.venv"
TORCH = "torch==2.9.1"


def sh(cmd, **kw):
    print("+", " ".join(map(str, cmd)), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, **kw)


def ensure_venv():
    py = VENV / "bin/python"
    if not py.exists():
        sh([sys.executable, "-m", "venv", str(VENV)])
    try:
        sh([str(py), "-c", "import torch, numpy"], stdout=subprocess.DEVNULL)
    except subprocess.CalledProcessError:
        sh([str(py), "-m", "pip", "install", "-q", TORCH, "numpy"])
    return py


def run_measured(cmd, env=None):
    """Run cmd; return (stdout, peak RSS MiB) using wait4's rusage."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out = p.stdout.read().decode()
    err = p.stderr.read().decode()
    _, status, ru = os.wait4(p.pid, 0)
    if status != 0:
        raise RuntimeError(f"{cmd[0]} failed ({status}):\n{out}\n{err}")
    return out, ru.ru_maxrss / 1024.0


def ffwd_epoch(binary, data, sizes, batch, samples, epochs, warmup, threads, device="cpu"):
    with tempfile.TemporaryDirectory() as d:
        cmd = [str(binary), "train", "--dataset", "mnist", "--data-dir", str(data), "--train-size", str(samples),
               "--sizes", sizes, "--batch", str(batch), "--epochs", str(warmup + epochs), "--threads", str(threads),
               "--lr", "1e-3", "--eval-every", "0", "--quiet", "--out", d, "--device", device]
        _, rss = run_measured(cmd)
        lines = [json.loads(l) for l in open(Path(d) / "metrics.jsonl")]
    # The first `warmup` epochs are untimed, as in ff_torch.py.
    timed = lines[warmup:]
    return statistics.median(l["train_seconds"] for l in timed), rss, steps_run(timed, sizes)


def steps_run(epochs, sizes):
    """The share of the forward's and of the dW's multiply-add steps that ran
    (ffwd leaves out those whose six A values are all zero), over the timed
    epochs, each layer weighted by its in·out; None where not reported."""
    dims = [784] + [int(s) for s in sizes.split(",")]
    weights = [i * o for i, o in zip(dims, dims[1:])]
    out = []
    for key in ("fwd_steps", "dw_steps"):
        shares = []
        for e in epochs:
            per = [l.get(key) for l in e["layers"]]
            if all(v is not None for v in per) and len(per) == len(weights):
                shares.append(sum(w * v for w, v in zip(weights, per)) / sum(weights))
        out.append(statistics.mean(shares) if shares else None)
    return out


def fma_peak(binary, threads, avx2=False):
    """The machine's FMA peak in GFLOP/s on `threads` threads, as `ffwd bench` measures it: at the widest
    vector width the CPU has (or, with `avx2`, with 8-wide FMAs)."""
    out = subprocess.run([str(binary), "bench", "--peak-only", "--threads", str(threads)],
                         check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return r.get("fma_peak_avx2_gflops") if avx2 else r["fma_peak_gflops"]


def cpu_desc():
    """The CPU as /proc/cpuinfo names it, with its family and whether it has AVX-512F."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return platform.processor() or platform.machine()
    field = lambda k: next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith(k)), "?")
    flags = field("flags").split()
    return (f"{field('model name')}, family {field('cpu family')} model {field('model')}, "
            f"{'AVX-512F' if 'avx512f' in flags else 'no AVX-512'}")


def torch_epoch(py, data, sizes, batch, samples, epochs, warmup, threads, device="cpu"):
    cmd = [str(py), str(ROOT / "benches/peers/ff_torch.py"), "--data", str(data), "--sizes", sizes,
           "--batch", str(batch), "--samples", str(samples), "--epochs", str(epochs),
           "--warmup-epochs", str(warmup), "--threads", str(threads),
           "--device", device]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out, rss = run_measured(cmd, env)
    r = json.loads(out.strip().splitlines()[-1])
    return r["epoch_seconds"], rss, r["torch"]


CONV_SMALL = ([128, 128, 256, 256, 256, 512], [0, 2, 5])


def conv_config(algorithm, dataset, div, samples, batch, epochs, out):
    """The TOML of a conv workload: the Trifecta's small net (or its backprop
    baseline) at 1/div width, crop + rotation + normalisation, Adam 1e-3; or
    (algorithm cae) the UFF stack of `div` CAE cells, trained together."""
    if algorithm == "cae":
        cells = ", ".join(['"cae"'] * div)
        return (f'[data]\ndataset = "{dataset}"\ntrain_size = {samples}\n[uff]\ncells = [{cells}]\n'
                f'[train]\nepochs = {epochs}\nbatch = {batch}\nschedule = "simultaneous"\neval_every = 0\n'
                f'eval_chunk = 1000\n[output]\ndir = "{out}"\n'), None
    ch = [max(c // div, 1) for c in CONV_SMALL[0]]
    return (f'[data]\ndataset = "{dataset}"\ntrain_size = {samples}\n'
            f'[data.augment]\ncrop_padding = 4\nrotation_deg = 15.0\nnormalize = true\n'
            f'[conv]\nalgorithm = "{"backprop" if algorithm == "bp" else "ff"}"\nchannels = {ch}\npool = {CONV_SMALL[1]}\n'
            f'norm = "batch"\nloss = "symba"\nolu = true\n'
            f'[train]\nepochs = {epochs}\nbatch = {batch}\neval_every = 0\neval_chunk = 1000\n'
            f'[output]\ndir = "{out}"\n'), ch


def profile_seconds(stderr, row):
    """Seconds of a row of the FFWD_PROFILE table."""
    for line in stderr.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == row:
            return float(cells[2])
    return None


def ffwd_conv(binary, data, w, epochs, warmup, threads, eval_images):
    algorithm, dataset, div, samples, batch = w
    with tempfile.TemporaryDirectory() as d:
        cfg, _ = conv_config(algorithm, dataset, div, samples, batch, warmup + epochs, d)
        Path(d, "c.toml").write_text(cfg)
        _, rss = run_measured([str(binary), "train", "--config", str(Path(d, "c.toml")), "--data-dir", str(data),
                               "--threads", str(threads), "--quiet"])
        lines = [json.loads(l) for l in open(Path(d) / "metrics.jsonl")]
        ev = None
        if eval_images:
            env = dict(os.environ, FFWD_PROFILE="1")
            p = subprocess.run([str(binary), "eval", "--checkpoint", str(Path(d, "model.safetensors")), "--data-dir",
                                str(data), "--threads", str(threads), "--test-size", str(eval_images)],
                               capture_output=True, text=True, env=env, check=True)
            ev = profile_seconds(p.stderr, "trainer: evaluation (all its ops)")
    return statistics.median(l["train_seconds"] for l in lines[warmup:]), rss, ev


def torch_conv(py, data, w, epochs, warmup, threads, eval_images):
    algorithm, dataset, div, samples, batch = w
    ch = str(div) if algorithm == "cae" else ",".join(str(max(c // div, 1)) for c in CONV_SMALL[0])
    cmd = [str(py), str(ROOT / "benches/peers/trifecta_torch.py"), "--data", str(data), "--dataset", dataset,
           "--algorithm", algorithm, "--channels", ch, "--pool", ",".join(map(str, CONV_SMALL[1])),
           "--batch", str(batch), "--samples", str(samples), "--epochs", str(epochs), "--warmup-epochs", str(warmup),
           "--threads", str(threads), "--eval-images", str(eval_images)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out, rss = run_measured(cmd, env)
    r = json.loads(out.strip().splitlines()[-1])
    return r["epoch_seconds"], rss, r["eval_seconds"], r["torch"]


def conv_flop_per_sample(algorithm, dataset, div):
    """Nominal FLOP of one training sample: per block 2·Cout·Cin·9·H·W for the
    forward, twice that for dW and dX; FF runs two images (positive and
    negative) per sample and has one more input channel."""
    c, h, w = (3, 32, 32) if dataset == "cifar-10" else (1, 28, 28)
    if algorithm == "cae":
        # per cell: encoder forward and dW (its input is a constant), decoder
        # forward, dW and dX, each 2·2C·C·9·H·W (the decoder at full size)
        fl = 0
        for _ in range(div):
            fl += 5 * 2 * 2 * c * c * 9 * h * w
            c, h, w = 2 * c, h // 2, w // 2
        return fl
    ch = [max(x // div, 1) for x in CONV_SMALL[0]]
    cin, fl = c + (1 if algorithm == "ff" else 0), 0
    for k, co in enumerate(ch):
        fl += 3 * 2 * co * cin * 9 * h * w
        if k in CONV_SMALL[1]:
            h, w = h // 2, w // 2
        cin = co
    return fl * (2 if algorithm == "ff" else 1)


def conv_main(a, py, binary):
    rows, peaks, version = [], [], None
    for spec in a.conv_workloads.split(","):
        algorithm, dataset, div, samples, batch = spec.split(":")
        w = (algorithm, dataset, int(div), int(samples), int(batch))
        peaks.append(fma_peak(binary, a.threads))
        f_t, t_t, f_m, t_m, f_e, t_e = [], [], [], [], [], []
        for r in range(a.repeats):
            evaluate = a.conv_eval_images > 0
            order = ["ffwd", "torch"] if r % 2 == 0 else ["torch", "ffwd"]
            for name in order:
                if name == "ffwd":
                    s, m, e = ffwd_conv(binary, a.data, w, a.epochs, a.warmup_epochs, a.threads,
                                        a.conv_eval_images if evaluate else 0)
                    f_t.append(s); f_m.append(m)
                    if e is not None:
                        f_e.append(e)
                else:
                    s, m, e, version = torch_conv(py, a.data, w, a.epochs, a.warmup_epochs, a.threads,
                                                  a.conv_eval_images if evaluate else 0)
                    t_t.append(s); t_m.append(m)
                    if e is not None:
                        t_e.append(e)
                print(f"  {name:5s} {spec}: epoch {s:.2f}s, peak {m:.0f} MiB", file=sys.stderr)
        fl = conv_flop_per_sample(algorithm, dataset, int(div))
        n = int(samples)
        rows.append({
            "workload": spec, "threads": a.threads,
            "ffwd_epoch_s": statistics.median(f_t), "ffwd_spread_s": [min(f_t), max(f_t)],
            "torch_epoch_s": statistics.median(t_t), "torch_spread_s": [min(t_t), max(t_t)],
            "ffwd_samples_per_s": n / statistics.median(f_t), "torch_samples_per_s": n / statistics.median(t_t),
            "speedup": statistics.median(t_t) / statistics.median(f_t),
            "ffwd_peak_mib": statistics.median(f_m), "torch_peak_mib": statistics.median(t_m),
            "ffwd_eval_s": statistics.median(f_e) if f_e else None, "torch_eval_s": statistics.median(t_e) if t_e else None,
            "ffwd_eval_spread_s": [min(f_e), max(f_e)] if f_e else None,
            "torch_eval_spread_s": [min(t_e), max(t_e)] if t_e else None,
            "flop_per_sample": fl,
        })
    peaks.append(fma_peak(binary, a.threads))
    peak = max(peaks)
    peak8 = fma_peak(binary, a.threads, avx2=True)
    for r in rows:
        r["ffwd_pct_peak"] = 100 * r["ffwd_samples_per_s"] * r["flop_per_sample"] / 1e9 / peak
        r["torch_pct_peak"] = 100 * r["torch_samples_per_s"] * r["flop_per_sample"] / 1e9 / peak
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(), "cpu": cpu_desc(),
            "cpus": os.cpu_count(), "torch": version, "repeats": a.repeats, "epochs_per_run": a.epochs,
            "warmup_epochs": a.warmup_epochs, "fma_peak_gflops": peak, "fma_peak_readings": peaks,
            "fma_peak_avx2_gflops": peak8, "eval_images": a.conv_eval_images}
    stem = Path(a.out) / f"peers-conv-cpu-{meta['date']}"
    Path(a.out).mkdir(parents=True, exist_ok=True)
    json.dump({"meta": meta, "rows": rows}, open(f"{stem}.json", "w"), indent=1)
    lines = ["| workload (algorithm:dataset:width divisor:images:batch) | ffwd epoch (s) | PyTorch epoch (s) | speed-up | ffwd samples/s | PyTorch samples/s | ffwd % of peak | PyTorch % of peak | ffwd eval (s) | PyTorch eval (s) | ffwd peak MiB | PyTorch peak MiB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    f = lambda v, sp: "–" if v is None else f"{v:.2f} [{sp[0]:.2f}–{sp[1]:.2f}]"
    for r in rows:
        lines.append(f"| {r['workload']} | {r['ffwd_epoch_s']:.2f} [{r['ffwd_spread_s'][0]:.2f}–{r['ffwd_spread_s'][1]:.2f}] "
                     f"| {r['torch_epoch_s']:.2f} [{r['torch_spread_s'][0]:.2f}–{r['torch_spread_s'][1]:.2f}] | {r['speedup']:.2f}× "
                     f"| {r['ffwd_samples_per_s']:.0f} | {r['torch_samples_per_s']:.0f} | {r['ffwd_pct_peak']:.1f}% | {r['torch_pct_peak']:.1f}% "
                     f"| {f(r['ffwd_eval_s'], r['ffwd_eval_spread_s'])} | {f(r['torch_eval_s'], r['torch_eval_spread_s'])} "
                     f"| {r['ffwd_peak_mib']:.0f} | {r['torch_peak_mib']:.0f} |")
    table = "\n".join(lines)
    open(f"{stem}.md", "w").write(
        f"{meta['cpu']}; {a.threads} threads, torch {version}, medians of {a.repeats} alternating runs (each the median of {a.epochs} "
        f"timed epochs after {a.warmup_epochs} untimed); [min–max] spread; % of peak counts the nominal conv FLOP "
        f"(forward, dW, dX; FF: two images per sample; the dW in full, though ffwd skips the zero pixels of a pooled "
        f"block's gradient) against the measured FMA peak of {peak:.1f} GFLOP/s at the CPU's widest FMA"
        + (f" (8-wide AVX2 FMAs: {peak8:.1f} GFLOP/s)" if peak8 and peak8 < 0.8 * peak else "") + "; evaluation "
        f"of {a.conv_eval_images} test images (FF: once per label) after every run, median [min–max]; the CAE rows "
        f"(cae:DATASET:CELLS:IMAGES:BATCH) count per cell the encoder's forward and dW and the decoder's forward, dW "
        f"and dX.\n\n{table}\n")
    print(table)


def gemm_table(py, gpu_bench, repeats):
    """Our SGEMM (benches/gpu.rs) and cuBLAS (gemm_torch.py), alternating."""
    ours, theirs = {}, {}
    for r in range(repeats):
        runs = [("ffwd", [str(gpu_bench), "--json"]), ("cublas", [str(py), str(ROOT / "benches/peers/gemm_torch.py")])]
        for name, cmd in (runs if r % 2 == 0 else runs[::-1]):
            out, _ = run_measured(cmd)
            for line in out.splitlines():
                if line.startswith("{"):
                    j = json.loads(line)
                    if j.get("case") == "gemm":
                        (ours if name == "ffwd" else theirs).setdefault(j["name"], []).append(j["tflops"])
    rows = []
    for name, v in ours.items():
        o, t = statistics.median(v), statistics.median(theirs.get(name, [float("nan")]))
        rows.append({"case": name, "ffwd_tflops": o, "cublas_tflops": t, "ratio": o / t, "ffwd_pct_peak": 100 * o / 66.9})
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("FFWD_DATA_DIR", str(ROOT.parent / "shared/datasets")))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per run (median taken)")
    ap.add_argument("--warmup-epochs", type=int, default=1,
                    help="untimed epochs before them, the same for both (first-touch page faults, caches, pools)")
    ap.add_argument("--workloads", default="2000x4:100:5000,2000x4:1000:10000,500x2:100:20000,500x2:1000:20000",
                    help="WIDTHxLAYERS:BATCH:SAMPLES,...")
    ap.add_argument("--out", default=str(ROOT / "benches/results"))
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    ap.add_argument("--binary", help="a prebuilt ffwd binary (else cargo build --release)")
    ap.add_argument("--python", help="a Python with torch (else the local venv, installed from PyPI)")
    ap.add_argument("--gpu-bench", help="the prebuilt benches/gpu.rs binary: also compare SGEMM with cuBLAS")
    ap.add_argument("--conv-workloads",
                    help="compare conv nets instead (trifecta_torch.py): ALGORITHM:DATASET:WIDTH_DIVISOR:IMAGES:BATCH,... "
                         "with ALGORITHM ff (the Trifecta), bp, or cae (a UFF stack of CAE cells; its third field is the "
                         "number of cells), e.g. ff:cifar-10:4:10000:256,bp:cifar-10:4:10000:256,cae:cifar-10:3:10000:100")
    ap.add_argument("--conv-eval-images", type=int, default=10000,
                    help="conv workloads: test images evaluated (both sides) after every run; 0: none")
    a = ap.parse_args()
    py = a.python or ensure_venv()
    if a.binary:
        binary = Path(a.binary).resolve()
    else:
        sh(["cargo", "build", "--release", "--quiet"], cwd=ROOT)
        binary = ROOT / "target/release/ffwd"
    if a.conv_workloads:
        return conv_main(a, py, binary)
    rows = []
    torch_version = None
    # The peak is a ceiling that noise can only lower: measured before each
    # workload and once at the end, and the highest reading is used.
    peaks = []
    for w in a.workloads.split(","):
        if a.device == "cpu":
            peaks.append(fma_peak(binary, a.threads))
        shape, batch, samples = w.split(":")
        width, layers = shape.split("x")
        sizes = ",".join([width] * int(layers))
        batch, samples = int(batch), int(samples)
        f_t, t_t, f_m, t_m, f_steps = [], [], [], [], []
        for r in range(a.repeats):
            order = [("ffwd", 0), ("torch", 1)] if r % 2 == 0 else [("torch", 1), ("ffwd", 0)]
            for name, _ in order:
                if name == "ffwd":
                    s, m, st = ffwd_epoch(binary, a.data, sizes, batch, samples, a.epochs, a.warmup_epochs, a.threads, a.device)
                    f_t.append(s); f_m.append(m); f_steps.append(st)
                else:
                    s, m, torch_version = torch_epoch(py, a.data, sizes, batch, samples, a.epochs, a.warmup_epochs, a.threads, a.device)
                    t_t.append(s); t_m.append(m)
                print(f"  {name:5s} {shape} batch {batch}: epoch of {samples} in {s:.2f}s, peak {m:.0f} MiB", file=sys.stderr)
        fl = 8 * sum(i * o for i, o in zip([784] + [int(width)] * (int(layers) - 1), [int(width)] * int(layers)))
        row = {
            "workload": f"{layers}×{width}", "batch": batch, "samples": samples, "threads": a.threads,
            "ffwd_epoch_s": statistics.median(f_t), "ffwd_spread_s": [min(f_t), max(f_t)],
            "torch_epoch_s": statistics.median(t_t), "torch_spread_s": [min(t_t), max(t_t)],
            "ffwd_samples_per_s": samples / statistics.median(f_t),
            "torch_samples_per_s": samples / statistics.median(t_t),
            "speedup": statistics.median(t_t) / statistics.median(f_t),
            "ffwd_peak_mib": statistics.median(f_m), "torch_peak_mib": statistics.median(t_m),
            "flop_per_sample": fl,
        }
        for i, key in enumerate(("ffwd_fwd_steps", "ffwd_dw_steps")):
            got = [st[i] for st in f_steps if st[i] is not None]
            if got:
                row[key] = statistics.median(got)
        row["ffwd_gflops"] = row["ffwd_samples_per_s"] * fl / 1e9
        row["torch_gflops"] = row["torch_samples_per_s"] * fl / 1e9
        rows.append(row)
    if a.device == "cpu":
        peaks.append(fma_peak(binary, a.threads))
    peak = max((p for p in peaks if p), default=None)
    for row in rows if peak else []:
        row["ffwd_pct_peak"] = 100 * row["ffwd_gflops"] / peak
        row["torch_pct_peak"] = 100 * row["torch_gflops"] / peak
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(), "cpu": cpu_desc(),
            "cpus": os.cpu_count(), "torch": torch_version, "repeats": a.repeats, "epochs_per_run": a.epochs, "fma_peak_gflops": peak,
            "fma_peak_readings": peaks,
            "warmup_epochs": a.warmup_epochs}
    Path(a.out).mkdir(parents=True, exist_ok=True)
    meta["device"] = a.device
    stem = Path(a.out) / f"peers-{'gpu' if a.device == 'cuda' else 'cpu'}-{meta['date']}"
    gemm = gemm_table(py, a.gpu_bench, a.repeats) if a.gpu_bench else []
    json.dump({"meta": meta, "rows": rows, "gemm": gemm}, open(f"{stem}.json", "w"), indent=1)
    lines = ["| workload | batch | ffwd epoch (s) | PyTorch epoch (s) | speed-up | ffwd samples/s | PyTorch samples/s | ffwd GFLOP/s | ffwd % of peak | PyTorch % of peak | ffwd steps run (fwd / dW) | ffwd peak MiB | PyTorch peak MiB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    pct = lambda r, k: f"{r[k]:.1f}%" if k in r else "–"
    share = lambda r, k: f"{100 * r[k]:.0f}%" if k in r else "–"
    for r in rows:
        lines.append(f"| {r['workload']} ({r['samples']} images) | {r['batch']} | {r['ffwd_epoch_s']:.2f} [{r['ffwd_spread_s'][0]:.2f}–{r['ffwd_spread_s'][1]:.2f}] "
                     f"| {r['torch_epoch_s']:.2f} [{r['torch_spread_s'][0]:.2f}–{r['torch_spread_s'][1]:.2f}] | {r['speedup']:.2f}× "
                     f"| {r['ffwd_samples_per_s']:.0f} | {r['torch_samples_per_s']:.0f} | {r['ffwd_gflops']:.1f} "
                     f"| {pct(r, 'ffwd_pct_peak')} | {pct(r, 'torch_pct_peak')} | {share(r, 'ffwd_fwd_steps')} / {share(r, 'ffwd_dw_steps')} "
                     f"| {r['ffwd_peak_mib']:.0f} | {r['torch_peak_mib']:.0f} |")
    if gemm:
        lines += ["", "| SGEMM case | ffwd TFLOP/s | cuBLAS TFLOP/s (TF32 off) | ffwd / cuBLAS | ffwd % of 66.9 TFLOP/s |",
                  "| --- | --- | --- | --- | --- |"]
        for g in gemm:
            lines.append(f"| {g['case']} | {g['ffwd_tflops']:.2f} | {g['cublas_tflops']:.2f} | {g['ratio']:.2f} | {g['ffwd_pct_peak']:.1f}% |")
    table = "\n".join(lines)
    peak_note = (f"; % of peak against the measured FMA peak of {peak:.1f} GFLOP/s on {a.threads} threads "
                 f"(the highest of {len(peaks)} readings, one before each workload and one at the end)") if peak else ""
    steps_note = (" ffwd's GFLOP/s and % of peak count the nominal 8·Σ in·out FLOP per sample; it runs the dW only on rows "
                  "whose loss gradient is not zero, and leaves out the multiply-add steps at which six values of a product's "
                  "A are all zero (\"steps run\": the share that ran, weighted by layer size), so these are effective rates.")
    open(f"{stem}.md", "w").write(f"{a.threads} threads, torch {torch_version}, medians of {a.repeats} alternating runs "
                                   f"(each the median of {a.epochs} timed epochs after {a.warmup_epochs} untimed){peak_note}; [min–max] spread."
                                   f"{steps_note}\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
