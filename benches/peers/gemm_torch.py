"""cuBLAS SGEMM through PyTorch at the FF shapes of benches/gpu.rs, TF32 off
(every product FP32), timed like ours: after a warm-up, the median of
--reps launches, each closed by a synchronisation. Prints one JSON line per
shape with the same case names as `benches/gpu.rs --json`.
"""
import argparse, json, time
import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--peak", type=float, default=66.9, help="FP32 peak, TFLOP/s")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device("cuda")
    for b in [100, 1000, 10000]:
        rows = 2 * b
        for din, dout in [(784, 2000), (2000, 2000)]:
            for name, (m, n, k), trans in [
                (f"fwd: A[{rows}×{din}]·B[{din}×{dout}]", (rows, dout, din), False),
                (f"dW: Aᵀ[{din}×{rows}]·B[{rows}×{dout}]", (din, dout, rows), True),
            ]:
                # dW reads Xn (rows × din) transposed, as ours does
                # operands uniform in [-1, 1), as ours: zeros would multiply faster
                u = lambda *shape: torch.rand(*shape, device=dev) * 2 - 1
                a_op = u(k, m).t() if trans else u(m, k)
                b_op = u(k, n)
                c = torch.empty(m, n, device=dev)
                torch.matmul(a_op, b_op, out=c)
                torch.cuda.synchronize()
                times = []
                for _ in range(a.reps):
                    t = time.perf_counter()
                    torch.matmul(a_op, b_op, out=c)
                    torch.cuda.synchronize()
                    times.append(time.perf_counter() - t)
                times.sort()
                t = times[len(times) // 2]
                tf = 2.0 * m * n * k / t / 1e12
                print(json.dumps({"case": "gemm", "name": name, "m": m, "n": n, "k": k, "ms": t * 1e3,
                                  "tflops": tf, "pct_peak": 100.0 * tf / a.peak, "peer": "cublas",
                                  "torch": torch.__version__}))


if __name__ == "__main__":
    main()
