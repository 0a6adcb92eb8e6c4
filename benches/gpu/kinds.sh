#!/usr/bin/env bash
# Epoch time of every network kind on the CPU and on the GPU of one machine:
# one config per kind, the first N MNIST training images (default 2000),
# 2 epochs without evaluation; the second epoch's time is the one reported
# (the first pays for module loading and warm-up). Writes
# <out>/<kind>-<device>/metrics.jsonl and prints the table
# (benches/gpu/kinds.py).
# Usage, from the repository root: bash benches/gpu/kinds.sh FFWD_BINARY OUT [N]
set -uo pipefail
BIN=$1
O=$2
N=${3:-2000}
mkdir -p "$O"
rc=0
# kind | config | extra flags
while IFS='|' read -r kind cfg flags; do
    [ -z "$kind" ] && continue
    for dev in cpu cuda; do
        rm -rf "$O/$kind-$dev"
        # shellcheck disable=SC2086
        "$BIN" train --config "configs/$cfg" --device "$dev" --train-size "$N" --validation 0 \
            --epochs 2 --eval-every 0 --quiet --out "$O/$kind-$dev" $flags \
            > "$O/$kind-$dev.log" 2>&1 || { echo "FAILED: $kind on $dev (see $O/$kind-$dev.log)"; rc=1; }
    done
done <<'KINDS'
ff-threshold|ff-mnist-4x2000.toml|
ff-symba|ff-mnist-4x2000.toml|--loss symba
ff-readout|ff-mnist-4x2000.toml|--predict readout
goodness-bp|ssl-mnist-rotation-bp-goodness.toml|
bp-mlp|ssl-mnist-supervised-bp.toml|
trifecta|trifecta-mnist-small.toml|
bp-cnn|trifecta-mnist-bp.toml|
ffcl|ffcl-mnist.toml|
uff-cae|uff-caeff-mnist.toml|
uff-dae|uff-daeff-mnist.toml|
uff-gan|uff-ganff-mnist.toml|
KINDS
python3 "$(dirname "$0")/kinds.py" "$O" || rc=1
exit $rc
