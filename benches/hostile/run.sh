#!/usr/bin/env bash
# Bad input, as a hostile user would give it: every case must end with a
# non-zero exit code and a message in words (no panic, abort or hang).
# Prints a Markdown table: case, exit code, first line of the message.
#
#   bash benches/hostile/run.sh [path/to/ffwd] > benches/results/hostile-inputs-DATE.md
#
# Needs MNIST in $FFWD_DATA_DIR (damaged copies are made in a temp folder).
set -uo pipefail
BIN="$(realpath "${1:-target/release/ffwd}")"
DATA="${FFWD_DATA_DIR:?set FFWD_DATA_DIR to the datasets folder}"
W="$(mktemp -d)"
trap 'rm -rf "$W"' EXIT
cd "$W"

n=0
bad=0
echo "| # | input | exit | the message (on one line) |"
echo "|---|---|---|---|"
case_() {
    local what="$1"
    shift
    n=$((n + 1))
    local out rc
    out="$(timeout 120 "$@" 2>&1 >/dev/null)"
    rc=$?
    local first
    # the message on one line: up to three lines, without clap's usage
    # lines and the source excerpt of a TOML error (whose last line names
    # the field)
    first="$(printf '%s\n' "$out" | awk '/^Usage:/ {exit} NF && !/^ *[0-9]* *\|/ && !/^For more/' | head -3 |
        tr -s ' \n' ' ' | cut -c1-260 | sed 's/|/\\|/g')"
    # a pass: non-zero, not a signal (abort 134, kill 137, timeout 124), no panic
    if [ "$rc" -eq 0 ] || [ "$rc" -ge 124 ] && [ "$rc" -ne 130 ] || printf '%s' "$out" | grep -q "panicked"; then
        bad=$((bad + 1))
        first="**FAILS THE RULE** $first"
    fi
    echo "| $n | $what | $rc | ${first//$W/TMP} |"
}
t() { case_ "$1" "$BIN" train --quiet --out "run$n" "${@:2}"; }

# flags
t "--epochs 0" --epochs 0
t "--epochs -1" --epochs -1
t "--batch 0" --batch 0
t "--batch 99999999999" --batch 99999999999
t "--threads 100000" --threads 100000
t "--sizes 0,10" --sizes 0,10
t "--sizes 100000,100000 (10^10 weights)" --sizes 100000,100000
t "--lr nan" --lr nan
t "--lr inf" --lr inf
t "--lr=-1" --lr=-1
t "--theta=-5" --theta=-5
t "--alpha nan" --alpha nan
t "--dataset nosuch" --dataset nosuch
t "--device gpu" --device gpu
t "--device cuda:99 (no GPU here)" --device cuda:99
t "--train-size 100000 (1,797 digits)" --train-size 100000
t "--validation 5000" --validation 5000
t "--seed 18446744073709551616 (2^64)" --seed 18446744073709551616
t "--dataset of 5,000 characters" --dataset "$(printf 'a%.0s' $(seq 5000))"
t "--data-dir /nonexistent with mnist" --dataset mnist --data-dir /nonexistent
printf 'x' > afile
case_ "--out is a file" "$BIN" train --quiet --epochs 1 --out afile
case_ "--out under /proc (not writable)" "$BIN" train --quiet --epochs 1 --out /proc/ffwd-run
"$BIN" train --quiet --epochs 1 --out done >/dev/null 2>&1
case_ "--recon-png at a checkpoint" "$BIN" train --quiet --epochs 1 --out r2 --recon-png done/model.safetensors
case_ "--resume a folder that does not exist" "$BIN" train --resume nothing-here
case_ "--resume a finished run" "$BIN" train --resume done
case_ "--resume with --epochs" "$BIN" train --resume done --epochs 3
case_ "unknown subcommand" "$BIN" fly

# configs
cfg() { printf '%s\n' "$2" > "c$n.toml"; case_ "config: $1" "$BIN" train --quiet --config "c$n.toml" --out "run$n"; }
case_ "config file missing" "$BIN" train --config missing.toml
head -c 300 /dev/urandom > garbage.toml
case_ "config of random bytes" "$BIN" train --config garbage.toml
cfg "unknown field" $'[train]\nepochz = 3'
cfg "wrong type" $'[train]\nepochs = "ten"'
cfg "NaN learning rate" $'[model.optim]\nlr = nan'
cfg "beta1 = 1.5" $'[model.optim]\nbeta1 = 1.5'
cfg "momentum = -0.1" $'[model.optim]\nkind = "sgd"\nmomentum = -0.1'
cfg "[conv] and [uff] both" $'[conv]\n[uff]'
cfg "conv channels of 10^6" $'[data]\ndataset = "mnist"\n[conv]\nchannels = [1000000, 1000000]\npool = [0]'
cfg "unknown pretext task" $'[ssl]\ntask = "spin"'
cfg "probe epochs 0" $'[probe]\nepochs = 0'
cfg "checkpoint_every of 2^40" $'[train]\ncheckpoint_every = 1099511627776'
cfg "augment rotation NaN" $'[data.augment]\nrotation_deg = nan'

# checkpoints
ev() { case_ "checkpoint: $1" "$BIN" eval --checkpoint "$2"; }
ev "missing" missing.safetensors
: > empty.safetensors
ev "empty file" empty.safetensors
head -c 4096 /dev/urandom > random.safetensors
ev "random bytes" random.safetensors
head -c 5000 done/model.safetensors > trunc.safetensors
ev "truncated" trunc.safetensors
python3 - "$PWD" <<'EOF'
import json, struct, sys, os
d = sys.argv[1]
raw = open(os.path.join(d, "done/model.safetensors"), "rb").read()
hl = struct.unpack("<Q", raw[:8])[0]
head = json.loads(raw[8:8 + hl])
body = bytearray(raw[8 + hl:])
def write(name, h, b):
    hb = json.dumps(h).encode()
    open(os.path.join(d, name), "wb").write(struct.pack("<Q", len(hb)) + hb + bytes(b))
# a NaN in the first tensor
name = sorted(k for k in head if k != "__metadata__")[0]
b = bytearray(body); s = head[name]["data_offsets"][0]; b[s:s + 4] = struct.pack("<f", float("nan"))
write("nan.safetensors", head, b)
# metadata: 0 classes
h = json.loads(json.dumps(head)); m = json.loads(h["__metadata__"]["ffwd"]); m["classes"] = 0
h["__metadata__"]["ffwd"] = json.dumps(m); write("classes0.safetensors", h, body)
# a tensor stored as F16
h = json.loads(json.dumps(head)); h[name]["dtype"] = "F16"; write("f16.safetensors", h, body)
# a tensor of another shape
h = json.loads(json.dumps(head)); sh = h[name]["shape"]; h[name]["shape"] = [sh[0] * 2] + sh[1:]
write("shape.safetensors", h, body)
# a header length of 2^60
open(os.path.join(d, "hlen.safetensors"), "wb").write(struct.pack("<Q", 1 << 60) + raw[8:])
# metadata that is not JSON
h = json.loads(json.dumps(head)); h["__metadata__"]["ffwd"] = "{not json"; write("meta.safetensors", h, body)
EOF
ev "a NaN weight" nan.safetensors
ev "metadata with 0 classes" classes0.safetensors
ev "a tensor in F16" f16.safetensors
ev "a tensor of another shape" shape.safetensors
ev "header length 2^60" hlen.safetensors
ev "metadata that is not JSON" meta.safetensors
case_ "probe --label 200" "$BIN" probe --checkpoint done/model.safetensors --label 200

# datasets (damaged copies of MNIST)
mk() { rm -rf "d$n"; mkdir -p "d$n/mnist"; cp "$DATA"/mnist/* "d$n/mnist/"; chmod -R u+w "d$n"; }
dt() { case_ "MNIST: $1" "$BIN" train --quiet --epochs 1 --dataset mnist --data-dir "d$n" --out "run$n"; }
mk; head -c 100000 "$DATA/mnist/train-images-idx3-ubyte.gz" > "d$n/mnist/train-images-idx3-ubyte.gz"; dt "truncated gzip"
mk; gzip -dc "$DATA/mnist/t10k-labels-idx1-ubyte.gz" | head -c 8 | gzip > "d$n/mnist/t10k-labels-idx1-ubyte.gz"; dt "test labels file holds 0 labels"
mk; gzip -dc "$DATA/mnist/train-labels-idx1-ubyte.gz" | python3 -c "
import sys; b = bytearray(sys.stdin.buffer.read()); b[4:8] = (0xffffffff).to_bytes(4, 'big'); sys.stdout.buffer.write(bytes(b))" | gzip > "d$n/mnist/train-labels-idx1-ubyte.gz"; dt "label count 2^32-1 in the header"
mk; head -c 4096 /dev/urandom > "d$n/mnist/t10k-images-idx3-ubyte.gz"; dt "random bytes as test images"
mk; gzip -dc "$DATA/mnist/train-labels-idx1-ubyte.gz" | python3 -c "
import sys; b = bytearray(sys.stdin.buffer.read()); b[8] = 77; sys.stdout.buffer.write(bytes(b))" | gzip > "d$n/mnist/train-labels-idx1-ubyte.gz"; dt "a label of 77"
mkdir -p "c10/cifar-10/cifar-10-batches-bin"; for f in data_batch_1 data_batch_2 data_batch_3 data_batch_4 data_batch_5 test_batch; do head -c 3000 /dev/zero > "c10/cifar-10/cifar-10-batches-bin/$f.bin"; done
case_ "CIFAR-10: batch files of 3,000 bytes" "$BIN" train --quiet --epochs 1 --dataset cifar-10 --data-dir c10 --out "run$n"

# memory
case_ "a 20000×20000 layer under a 1.5 GB address-space limit" sh -c "ulimit -v 1500000 && exec \"$BIN\" train --quiet --epochs 1 --sizes 20000,20000 --out run$n"

echo
echo "$n cases; $bad break the rule (exit 0, a signal or a panic)."
[ "$bad" -eq 0 ]
