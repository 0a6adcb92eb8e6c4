#!/usr/bin/env bash
# Stage everything a GPU machine without Rust needs to check and benchmark
# the CUDA backend, into target/gpu-stage/ (git-ignored):
#   bin/      the ffwd binary, the test binaries with GPU tests, the GPU bench
#   data/     MNIST (from $FFWD_DATA_DIR)
#   run.sh    runs the bit-exact tests, the whole-run CPU == GPU test of every
#             network kind, the epoch time of every kind on CPU and GPU
#             (benches/gpu/kinds.sh) and the benchmarks (ours, then PyTorch's: benches/peers/gemm_torch.py
#             and ff_torch.py --device cuda, twice over), with
#             FFWD_REQUIRE_GPU=1, writing logs under $OUT (or ./gpu-out)
# Usage (build machine): bash benches/gpu/stage.sh
# Then on the GPU machine, from the repository root:
#   LD_LIBRARY_PATH=<libnvrtc dir> bash target/gpu-stage/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${FFWD_DATA_DIR:=$(cd .. && pwd)/shared/datasets}"
S=target/gpu-stage
rm -rf "$S"
mkdir -p "$S/bin" "$S/data/mnist"
cargo build --release --quiet
cp target/release/ffwd "$S/bin/"
# test binaries: the last "executable" line per test target
for t in conformance cuda_training; do
    exe=$(cargo test --release --no-run --message-format=json --test "$t" 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    j=json.loads(l)
    if j.get("reason")=="compiler-artifact" and j.get("executable") and j["target"]["name"]==sys.argv[1]: print(j["executable"])' "$t" | tail -1)
    cp "$exe" "$S/bin/$t"
done
exe=$(cargo bench --bench gpu --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    j=json.loads(l)
    if j.get("reason")=="compiler-artifact" and j.get("executable") and j["target"]["name"]=="gpu": print(j["executable"])' | tail -1)
cp "$exe" "$S/bin/gpu-bench"
# without debug info the four binaries fit in one transfer (< 64 MiB with MNIST)
strip "$S"/bin/*
cp "$FFWD_DATA_DIR"/mnist/*.gz "$S/data/mnist/"
cat > "$S/run.sh" <<'RUN'
#!/usr/bin/env bash
# Run on the GPU machine from the repository root (see benches/gpu/stage.sh).
set -uo pipefail
S=$(cd "$(dirname "$0")" && pwd)
O=${OUT:-$PWD/gpu-out}
mkdir -p "$O"
export FFWD_REQUIRE_GPU=1 FFWD_DATA_DIR="$S/data"
nvidia-smi > "$O/nvidia-smi.txt" 2>&1
rc=0
"$S/bin/conformance" --test-threads=1 > "$O/conformance.txt" 2>&1 || rc=1
"$S/bin/cuda_training" --test-threads=1 > "$O/cuda_training.txt" 2>&1 || rc=1
# epoch time per network kind, this machine's CPU cores vs its GPU
bash benches/gpu/kinds.sh "$S/bin/ffwd" "$O/kinds" > "$O/kinds.md" 2>&1 || rc=1
# the benchmarks, ffwd and PyTorch (cuBLAS, TF32 off) in the same run,
# alternating, twice
P=benches/peers
for round in 1 2; do
    "$S/bin/gpu-bench" --json >> "$O/gpu-bench.jsonl" 2>> "$O/gpu-bench.err" || rc=1
    python3 $P/gemm_torch.py >> "$O/gemm-torch.jsonl" 2>> "$O/torch.err" || rc=1
    for b in 100 1000; do
        python3 $P/ff_torch.py --data "$S/data" --device cuda --batch $b --samples 60000 \
            --warmup-epochs 1 --epochs 3 >> "$O/ff-torch.jsonl" 2>> "$O/torch.err" || rc=1
    done
done
tail -n 3 "$O"/conformance.txt "$O"/cuda_training.txt
cat "$O"/kinds.md
cat "$O"/*.jsonl "$O"/*.err
exit $rc
RUN
chmod +x "$S/run.sh"
du -sh "$S"
