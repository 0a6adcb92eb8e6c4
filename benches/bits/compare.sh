#!/usr/bin/env bash
# Byte-compare two ffwd binaries on every network kind: for one config of
# each kind (small subsets, narrowed nets: benches/bits/cfg/ holds the
# narrowed copies), the OLD binary at 1 and 2 threads and the NEW binary at
# 1 and 2 threads must write byte-identical checkpoints and identical
# metrics and probe reports (timings aside), and NEW's cpu-scalar (the
# specification) must equal its AVX2 backend (without evaluation: the
# scalar spec is slow). Prints one SAME line per kind, or what differs.
# Usage, from the repository root (needs $FFWD_DATA_DIR):
#   bash benches/bits/compare.sh OLD_BINARY NEW_BINARY WORK_DIR
set -u
OLD=$(realpath "$1")
NEW=$(realpath "$2")
W=$3
ROOT=$(pwd)
mkdir -p $W
strip() { sed -E 's/"train_seconds":[^,]*,//g; s/"samples_per_s":[^,]*,//g; s/"probe_seconds":[^,]*,//g' "$1"; }
# the AVX2 kernels skip zero blocks; the scalar spec runs every step: a counter, not a result
nosteps() { sed -E 's/"(fwd|dw)_steps":[^,}]*,?//g; s/"backend":"[^"]*",//'; }
run() { # name config extra-args...
  local name=$1 cfg=$2; shift 2
  local C=$ROOT/configs; [ -f $ROOT/benches/bits/cfg/$cfg ] && C=$ROOT/benches/bits/cfg
  for t in 1 2; do
    [ -f $W/$name-old-$t/model.safetensors ] || $OLD train --config $C/$cfg --quiet --threads $t --eval-every 2 --out $W/$name-old-$t "$@" >$W/$name-old-$t.log 2>&1 || echo "OLD FAIL $name"
    [ -f $W/$name-new-$t/model.safetensors ] || $NEW train --config $C/$cfg --quiet --threads $t --eval-every 2 --out $W/$name-new-$t "$@" >$W/$name-new-$t.log 2>&1 || echo "NEW FAIL $name"
  done
  # scalar vs AVX2 without evaluation (the scalar spec is slow): checkpoints and losses
  rm -rf $W/$name-scalar $W/$name-avx2
  $NEW train --config $C/$cfg --quiet --threads 2 --device cpu-scalar --eval-every 0 --out $W/$name-scalar "$@" >$W/$name-scalar.log 2>&1 || echo "SCALAR FAIL $name"
  $NEW train --config $C/$cfg --quiet --threads 2 --device cpu --eval-every 0 --out $W/$name-avx2 "$@" >$W/$name-avx2.log 2>&1 || echo "AVX2 FAIL $name"
  local ok=1
  for d in $name-new-1 $name-new-2 $name-old-2; do
    cmp -s $W/$name-old-1/model.safetensors $W/$d/model.safetensors || { echo "  $name: model differs $d"; ok=0; }
    diff -q <(strip $W/$name-old-1/metrics.jsonl | sed -E 's/"backend":"[^"]*",//; s/"threads":[0-9]+,//') <(strip $W/$d/metrics.jsonl | sed -E 's/"backend":"[^"]*",//; s/"threads":[0-9]+,//') >/dev/null || { echo "  $name: metrics differ $d"; ok=0; }
    for f in probe.json; do
      [ -f $W/$name-old-1/$f ] && { diff -q <(sed -E 's/"[a-z_]*seconds":[^,}]*//g' $W/$name-old-1/$f) <(sed -E 's/"[a-z_]*seconds":[^,}]*//g' $W/$d/$f) >/dev/null || { echo "  $name: $f differs $d"; ok=0; }; }
    done
  done
  cmp -s $W/$name-avx2/model.safetensors $W/$name-scalar/model.safetensors || { echo "  $name: scalar model differs"; ok=0; }
  diff -q <(strip $W/$name-avx2/metrics.jsonl | nosteps) <(strip $W/$name-scalar/metrics.jsonl | nosteps) >/dev/null || { echo "  $name: scalar metrics differ"; ok=0; }
  if [ -f $W/$name-avx2/probe.json ]; then
    diff -q <(sed -E 's/"[a-z_]*seconds":[^,}]*//g' $W/$name-avx2/probe.json) <(sed -E 's/"[a-z_]*seconds":[^,}]*//g' $W/$name-scalar/probe.json) >/dev/null || { echo "  $name: scalar probe.json differs"; ok=0; }
  fi
  [ $ok = 1 ] && echo "SAME $name: checkpoint and metrics of old t1 = old t2 = new t1 = new t2; new cpu-avx2 = new cpu-scalar"
}
S="--train-size 600 --epochs 2 --validation 0"
run ff-threshold ff-mnist-3x1000.toml $S --sizes 200,200
run ff-symba ff-mnist-3x1000.toml $S --sizes 200,200 --loss symba
run ff-readout ff-mnist-3x1000.toml $S --sizes 200,200 --predict readout
run ff-lbl ff-mnist-3x1000.toml $S --sizes 200,200 --schedule layer-by-layer --optim sgd
run ff-concat ff-mnist-3x1000.toml $S --sizes 200,200 --label concat --optim adamw --norm l2
run bp-goodness ssl-mnist-rotation-bp-goodness.toml $S
run bp-mlp ssl-mnist-supervised-bp.toml $S
run ssl-rot-ff ssl-mnist-rotation-ff.toml $S
run ssl-jigsaw-ff ssl-mnist-jigsaw-ff.toml $S
run trifecta trifecta-mnist-small.toml $S
run trifecta-vanilla trifecta-cifar10-ablation-vanilla.toml --train-size 300 --epochs 2 --validation 0
run trifecta-all trifecta-cifar10-ablation-all.toml --train-size 300 --epochs 2 --validation 0
run bp-cnn trifecta-mnist-bp.toml $S
run ffcl ffcl-mnist.toml $S
run uff-ae uff-aeff-mnist.toml $S
run uff-dae uff-daeff-mnist.toml $S
run uff-cae uff-caeff-mnist.toml $S
run uff-gan uff-ganff-mnist.toml $S
run uff-ff-seq uff-ff-mnist-sequence.toml $S
run uff-ff-sep uff-ff-mnist-separate.toml $S
run uff-bp uff-bp-mnist.toml $S
