"""PyTorch peer of ffwd's convolutional networks, for the side-by-side benchmark.

The same work as `ffwd train` with a `[conv]` table (crates/layers/src/conv.rs):

* blocks `BatchNorm2d(input channels) -> Conv2d 3x3 (pad 1, no bias) -> ReLU
  -> [2x2 max-pool]`, PyTorch's default initialisation;
* `--algorithm ff` (the Trifecta): a learned HxW map per class appended to the
  image as one more input channel (uniform in [-1, 1], its own Adam), the batch
  `[x; x]` with labels `[y+; y-]` (the negative uniform over the 9 wrong
  classes), each block's goodness the mean of squares of its output over
  C*H*W, the SymBa loss `softplus(-alpha (G+ - G-))` (alpha 4) averaged over the
  pairs, and overlapping local updates: on even steps the losses of blocks
  1, 3, 5, ... update the pairs (0,1), (2,3), ...; on odd steps those of blocks
  0, 2, 4, ... update (embedding, 0), (1,2), (3,4), ...; the gradient of block
  k's loss crosses exactly one block boundary, and each pair has its own Adam
  state (a block's parameters live in two optimisers);
* `--algorithm bp`: the same blocks on the plain image, a linear head on the
  flattened last block, softmax cross-entropy, one Adam, end to end;
* Adam lr 1e-3; inputs scaled to [0, 1], random crop (padding 4) and rotation
  (+-15 degrees, bilinear) per image, then per-channel normalisation;
* `--algorithm cae`: the unsupervised FF stack of CAE cells (ffwd's `[uff]`
  table with `cells = ["cae", ...]`, `schedule = "simultaneous"`;
  crates/layers/src/uff.rs): each cell standardises its input per image
  (layer norm without gain or bias, eps 1e-5), encodes with Conv2d 3x3
  (C -> 2C, no bias) -> ReLU -> 2x2 max-pool, decodes with nearest 2x
  upsampling -> Conv2d 3x3 (2C -> C, no bias), and learns by the MSE against
  its standardised input, AdamW lr 1e-3, weight decay 1e-2; each cell's input
  is the previous latent, detached; a linear softmax classifier (Adam 1e-3)
  reads all latents, detached; plain [0, 1] pixels, no augmentation;
  `--channels` gives the number of cells;
* evaluation (`--eval-images`): BN in evaluation mode, the FF net run once per
  label (prediction by the last block's goodness), the BP net and the CAE
  stack once.

Prints one JSON line: the median training epoch time, samples/s, the
evaluation time, and with --device cuda the peak device memory (TF32 off).
The peak resident memory is measured by the caller (benches/peers/compare.py).
"""
import argparse, gzip, json, math, statistics, struct, time
import numpy as np
import torch
import torch.nn.functional as F

STATS = {
    "cifar-10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
}


def load(data, name, samples, test):
    """uint8 images (n, c, h, w) and labels of the first `samples` training and `test` test images."""
    if name == "cifar-10":
        def part(files, n):
            xs, ys = [], []
            for f in files:
                raw = np.frombuffer(gzip.open(f"{data}/cifar-10/cifar-10-batches-bin/{f}.bin.gz").read(), np.uint8)
                raw = raw.reshape(-1, 3073)
                ys.append(raw[:, 0])
                xs.append(raw[:, 1:].reshape(-1, 3, 32, 32))
                if sum(len(y) for y in ys) >= n:
                    break
            return np.concatenate(xs)[:n], np.concatenate(ys)[:n]
        xtr, ytr = part([f"data_batch_{i}" for i in range(1, 6)], samples)
        xte, yte = part(["test_batch"], test)
        return xtr, ytr, xte, yte

    def idx(f):
        d = gzip.open(f"{data}/{name}/{f}.gz").read()
        if struct.unpack(">I", d[:4])[0] == 2051:
            n, r, c = struct.unpack(">III", d[4:16])
            return np.frombuffer(d, np.uint8, offset=16).reshape(n, 1, r, c)
        return np.frombuffer(d, np.uint8, offset=8)
    return (idx("train-images-idx3-ubyte")[:samples], idx("train-labels-idx1-ubyte")[:samples],
            idx("t10k-images-idx3-ubyte")[:test], idx("t10k-labels-idx1-ubyte")[:test])


class CaeCell(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.enc = torch.nn.Conv2d(c, 2 * c, 3, padding=1, bias=False)
        self.dec = torch.nn.Conv2d(2 * c, c, 3, padding=1, bias=False)

    def encode(self, x):
        xn = F.layer_norm(x, x.shape[1:], eps=1e-5)
        return xn, F.max_pool2d(F.relu(self.enc(xn)), 2)

    def forward(self, x):
        xn, lat = self.encode(x)
        r = self.dec(F.interpolate(lat, scale_factor=2, mode="nearest"))
        return lat, F.mse_loss(r, xn)


class Block(torch.nn.Module):
    def __init__(self, cin, cout, pool):
        super().__init__()
        self.bn = torch.nn.BatchNorm2d(cin)
        self.conv = torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.pool = pool

    def forward(self, x):
        y = F.relu(self.conv(self.bn(x)))
        return F.max_pool2d(y, 2) if self.pool else y


def augment(x, gen, pad, degrees):
    """Random crop of the zero-padded image and a random rotation, per image."""
    n, _, h, w = x.shape
    dev = x.device
    if pad:
        xp = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(dev)
        ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(dev)
        rows = (oy[:, None] + torch.arange(h, device=dev)[None, :])[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=dev)[None, :])[:, None, None, :]
        x = xp[torch.arange(n, device=dev)[:, None, None, None], torch.arange(x.shape[1], device=dev)[None, :, None, None],
               rows, cols]
    if degrees:
        a = (torch.rand(n, generator=gen) * 2 - 1).to(dev) * (degrees * math.pi / 180)
        c, s = torch.cos(a), torch.sin(a)
        theta = torch.stack([torch.stack([c, -s, torch.zeros_like(c)], 1), torch.stack([s, c, torch.zeros_like(c)], 1)], 1)
        grid = F.affine_grid(theta, x.shape, align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--dataset", default="cifar-10", choices=sorted(STATS))
    ap.add_argument("--algorithm", default="ff", choices=["ff", "bp", "cae"])
    ap.add_argument("--channels", default="128,128,256,256,256,512")
    ap.add_argument("--pool", default="0,2,5")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--samples", type=int, default=10000, help="training images per epoch")
    ap.add_argument("--epochs", type=int, default=1, help="timed epochs")
    ap.add_argument("--warmup-epochs", type=int, default=0, help="untimed epochs before the timed ones")
    ap.add_argument("--eval-images", type=int, default=0, help="test images to evaluate after training (0: none)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    dev = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    xtr, ytr, xte, yte = load(a.data, a.dataset, a.samples, max(a.eval_images, 1))
    mean, std = (torch.tensor(v, device=dev).view(1, -1, 1, 1) for v in STATS[a.dataset])
    x_all = torch.from_numpy(xtr.astype(np.float32) / 255.0).to(dev)
    y_all = torch.from_numpy(ytr.astype(np.int64)).to(dev)
    n, c, h, w = x_all.shape
    classes = 10
    chans = [int(v) for v in a.channels.split(",")]
    pools = {int(v) for v in a.pool.split(",") if v != ""}
    ff, cae = a.algorithm == "ff", a.algorithm == "cae"
    cin = c + (1 if ff else 0)
    blocks = []
    if cae:
        for _ in range(chans[0]):
            blocks.append(CaeCell(cin).to(dev))
            cin *= 2
        latent = sum(c * 2**(k + 1) * (h // 2**(k + 1)) * (w // 2**(k + 1)) for k in range(chans[0]))
        head = torch.nn.Linear(latent, classes).to(dev)
        cell_opt = torch.optim.AdamW([p for b in blocks for p in b.parameters()], lr=1e-3, weight_decay=1e-2)
        head_opt = torch.optim.Adam(head.parameters(), lr=1e-3)
        chans = []
    for k, co in enumerate(chans):
        blocks.append(Block(cin, co, k in pools).to(dev))
        cin = co
    hh, ww = h, w
    for k in range(len(chans)):
        if k in pools:
            hh, ww = hh // 2, ww // 2
    if cae:
        pass
    elif ff:
        emb = torch.nn.Parameter(torch.empty(classes, h, w, device=dev).uniform_(-1.0, 1.0, generator=None))
        emb_opt = torch.optim.Adam([emb], lr=1e-3)
        # the pair (k-1, k) trained by block k's loss; pair 0 is (embedding, 0) (block 0 alone here)
        pair_opt = [torch.optim.Adam(list(blocks[k].parameters()) + (list(blocks[k - 1].parameters()) if k else []),
                                     lr=1e-3) for k in range(len(blocks))]
    else:
        head = torch.nn.Linear(chans[-1] * hh * ww, classes).to(dev)
        params = [p for b in blocks for p in b.parameters()] + list(head.parameters())
        opt = torch.optim.Adam(params, lr=1e-3)
    step = 0

    def prep(x):
        return x if cae else (augment(x, gen, 4, 15.0) - mean) / std

    def cae_step(x, y):
        hcur, lats, loss = x, [], 0.0
        for cell in blocks:
            lat, l = cell(hcur)
            loss = loss + l
            hcur = lat.detach()
            lats.append(hcur.flatten(1))
        loss = loss + F.cross_entropy(head(torch.cat(lats, 1)), y)
        cell_opt.zero_grad(set_to_none=True)
        head_opt.zero_grad(set_to_none=True)
        loss.backward()
        cell_opt.step()
        head_opt.step()

    def ff_step(x, y):
        nonlocal step
        neg = (y + torch.randint(1, classes, y.shape, generator=gen).to(dev)) % classes
        xx = torch.cat([x, x])
        lab = torch.cat([y, neg])
        upper = [k for k in range(len(blocks)) if k % 2 == (1 if step % 2 == 0 else 0)]
        hcur = torch.cat([xx, emb[lab][:, None]], 1)
        losses = []
        for k, b in enumerate(blocks):
            inp = hcur if k in upper else hcur.detach()
            out = b(inp)
            g = out.pow(2).mean(dim=(1, 2, 3))
            gp, gn = g[: len(y)], g[len(y):]
            if k in upper:
                losses.append(F.softplus(-4.0 * (gp - gn)).mean())
            hcur = out
        for o in pair_opt:
            o.zero_grad(set_to_none=True)
        emb.grad = None
        sum(losses).backward()
        for k in upper:
            pair_opt[k].step()
        if 0 in upper:
            emb_opt.step()
        step += 1

    def bp_step(x, y):
        hcur = x
        for b in blocks:
            hcur = b(hcur)
        loss = F.cross_entropy(head(hcur.flatten(1)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def epoch():
        for b in blocks:
            b.train()
        perm = torch.randperm(n, generator=gen).to(dev)
        for i in range(0, n, a.batch):
            idx = perm[i:i + a.batch]
            x = prep(x_all[idx])
            (cae_step if cae else ff_step if ff else bp_step)(x, y_all[idx])

    for _ in range(a.warmup_epochs):
        epoch()
    times = []
    for _ in range(a.epochs):
        sync()
        t = time.perf_counter()
        epoch()
        sync()
        times.append(time.perf_counter() - t)

    eval_s, acc = None, None
    if a.eval_images:
        xt = torch.from_numpy(xte.astype(np.float32) / 255.0).to(dev)
        if not cae:
            xt = (xt - mean) / std
        yt = torch.from_numpy(yte.astype(np.int64)).to(dev)
        for b in blocks:
            b.eval()
        sync()
        t = time.perf_counter()
        with torch.no_grad():
            preds = []
            for i in range(0, len(yt), 1000):
                xb = xt[i:i + 1000]
                if cae:
                    lats, hcur = [], xb
                    for cell in blocks:
                        hcur = cell.encode(hcur)[1]
                        lats.append(hcur.flatten(1))
                    preds.append(head(torch.cat(lats, 1)).argmax(1))
                elif ff:
                    scores = []
                    for lab in range(classes):
                        hcur = torch.cat([xb, emb[lab].expand(len(xb), 1, h, w)], 1)
                        for b in blocks:
                            hcur = b(hcur)
                        scores.append(hcur.pow(2).mean(dim=(1, 2, 3)))
                    preds.append(torch.stack(scores, 1).argmax(1))
                else:
                    hcur = xb
                    for b in blocks:
                        hcur = b(hcur)
                    preds.append(head(hcur.flatten(1)).argmax(1))
        sync()
        eval_s = time.perf_counter() - t
        acc = (torch.cat(preds) == yt).float().mean().item()
    med = statistics.median(times)
    out = {"epoch_seconds": med, "samples_per_s": n / med, "epoch_times": times, "eval_seconds": eval_s,
           "eval_images": a.eval_images, "eval_acc": acc, "torch": torch.__version__, "threads": a.threads}
    if dev.type == "cuda":
        out["peak_device_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(out))


if __name__ == "__main__":
    main()
