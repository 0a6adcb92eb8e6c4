#!/usr/bin/env bash
# Old and new binaries alternating: `ffwd bench` (4x2000, 2x500 at batch 100
# and 1000) and the quarter-width Trifecta on CIFAR-10 (1 epoch on the
# first TRI_IMAGES images, default 2,000), ROUNDS rounds, the order flipped
# every round. BENCH=0 leaves out `ffwd bench`.
# Usage, from the repository root (needs $FFWD_DATA_DIR with cifar-10/):
#   ROUNDS=4 bash benches/bits/perf.sh OLD_BINARY NEW_BINARY WORK_DIR
# then python3 benches/bits/perf.py WORK_DIR
set -u
OLD=$(realpath "$1")
NEW=$(realpath "$2")
P=$3
CFG=$(pwd)/benches/bits/cfg/trifecta-cifar10-quarter.toml
mkdir -p $P
ROUNDS=${ROUNDS:-4}
for r in $(seq 1 $ROUNDS); do
  if [ $((r % 2)) = 1 ]; then order="old new"; else order="new old"; fi
  for who in $order; do
    bin=$OLD; [ $who = new ] && bin=$NEW
    [ "${BENCH:-1}" = 0 ] || $bin bench --threads 2 > $P/bench-$who-$r.txt 2>&1
    rm -rf $P/tri-$who-$r
    $bin train --config $CFG --train-size ${TRI_IMAGES:-2000} --validation 0 --epochs 1 \
        --eval-every 0 --threads 2 --quiet --out $P/tri-$who-$r > $P/tri-$who-$r.log 2>&1
    echo "round $r $who done $(date +%T)"
  done
done
