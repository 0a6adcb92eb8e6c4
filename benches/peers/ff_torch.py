"""PyTorch peer of ffwd's FF training step, for the side-by-side benchmark.

The same workload as `ffwd train --dataset mnist`: MNIST pixels in [0, 1],
the one-hot label written over the first 10 pixels, one negative per image
with a label drawn uniformly from the 9 wrong ones, positives and negatives in
one batch, RMS normalisation of each layer's input (x / (sqrt(mean x^2) + 1e-8)),
Linear + ReLU, sum-of-squares goodness with threshold theta = width, loss
softplus(theta - G+) + softplus(G- - theta) averaged over pairs, one Adam
(lr 1e-3) per layer, layer inputs detached (layer-local learning).

Prints one JSON line: epoch seconds (median of the timed epochs), samples/s,
peak resident memory, and with --device cuda the peak device memory
(torch.cuda.max_memory_allocated); TF32 is off, so every matmul is FP32.
"""
import argparse, gzip, json, resource, statistics, struct, time
import numpy as np
import torch


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    if magic == 2051:
        n, r, c = struct.unpack(">III", data[4:16])
        return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, r * c)
    n = struct.unpack(">I", data[4:8])[0]
    return np.frombuffer(data, dtype=np.uint8, offset=8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="folder holding mnist/")
    ap.add_argument("--sizes", default="2000,2000,2000,2000")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--samples", type=int, default=10000, help="training images per epoch")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up batch)")
    ap.add_argument("--warmup-epochs", type=int, default=0, help="untimed epochs before the timed ones")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    x_all = torch.from_numpy(read_idx(f"{a.data}/mnist/train-images-idx3-ubyte.gz")[: a.samples].astype(np.float32) / 255.0).to(dev)
    y_all = torch.from_numpy(read_idx(f"{a.data}/mnist/train-labels-idx1-ubyte.gz")[: a.samples].astype(np.int64)).to(dev)
    sizes = [784] + [int(s) for s in a.sizes.split(",")]
    layers = [torch.nn.Linear(i, o).to(dev) for i, o in zip(sizes[:-1], sizes[1:])]
    opts = [torch.optim.Adam(l.parameters(), lr=1e-3) for l in layers]

    def embed(x, y):
        x = x.clone()
        x[:, :10] = 0.0
        x[torch.arange(x.shape[0], device=dev), y] = 1.0
        return x

    def step(xb, yb):
        neg = (yb + torch.randint(1, 10, yb.shape, device=dev)) % 10
        h = torch.cat([embed(xb, yb), embed(xb, neg)])
        n = xb.shape[0]
        for layer, opt in zip(layers, opts):
            h = h.detach()
            xn = h / (h.pow(2).mean(dim=1, keepdim=True).sqrt() + 1e-8)
            z = torch.relu(layer(xn))
            g = z.pow(2).sum(dim=1)
            theta = float(layer.out_features)
            loss = (torch.nn.functional.softplus(theta - g[:n]) + torch.nn.functional.softplus(g[n:] - theta)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            h = z

    step(x_all[: a.batch], y_all[: a.batch])  # warm-up
    sync()
    times = []
    for e in range(a.warmup_epochs + a.epochs):
        perm = torch.randperm(a.samples, device=dev)
        t = time.perf_counter()
        for s in range(0, a.samples, a.batch):
            idx = perm[s : s + a.batch]
            step(x_all[idx], y_all[idx])
        sync()
        if e >= a.warmup_epochs:
            times.append(time.perf_counter() - t)
    times.sort()
    med = statistics.median(times)
    print(json.dumps({
        "peer": "pytorch", "torch": torch.__version__, "threads": a.threads, "sizes": a.sizes,
        "batch": a.batch, "samples": a.samples, "epoch_seconds": med, "epoch_seconds_all": times,
        "samples_per_s": a.samples / med,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "device": a.device,
        "peak_device_mib": torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None,
    }))


if __name__ == "__main__":
    main()
