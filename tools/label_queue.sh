#!/usr/bin/env bash
# Label several structure sets in priority order on one core, a few structures at a time, so that labels of a
# set earlier in the list come first as soon as its structure file exists (an active-learning round still running
# its MD, say). Each set is labelled as shard I of N (`label.shard`), so N queues share the sets without overlap;
# HSE06 on every n-th structure of a set, n given after a second colon (default 1: every one; 0: none). Ends when no
# set has anything left and all files exist.
#   tools/label_queue.sh 0/2 STRUCTURES:DATASET[:HSE06_STRIDE] [STRUCTURES:DATASET ...] &
#   tools/label_queue.sh 1/2 STRUCTURES:DATASET [STRUCTURES:DATASET ...] &
# An unsharded `simulate.py stage=label label.structures=S label.out=D` (or `python -m capml.io.dataset D
# --merge-shards --structures S`) merges the shards afterwards.
set -uo pipefail
cd "$(dirname "$0")/.."
SHARD=$1; shift
BATCH=${BATCH:-2}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
while true; do
  did=0; waiting=0
  for set in "$@"; do
    structures=${set%%:*}; rest=${set#*:}; out=${rest%%:*}; hse06=1
    [ "$rest" != "$out" ] && hse06=${rest#*:}
    if [ ! -f "$structures" ]; then waiting=1; continue; fi
    log=$($PY simulate.py stage=label "label.structures=$structures" "label.out=$out" "labels.subsets.hse06=$hse06" \
          "label.shard=$SHARD" "label.limit=$BATCH" "workdir=runs/labels/queue${SHARD%%/*}" 2>&1)
    echo "$log" | grep -E "labelled [0-9]+, skipped|^error" | sed "s|^|[$(date +%H:%M:%S) $structures] |"
    if ! echo "$log" | grep -qE "labelled [0-9]+, skipped"; then  # an error, a traceback, a kill: not "done"
      echo "[label_queue $SHARD] the label run on $structures ended without a summary:"; echo "$log" | tail -5
      exit 1
    fi
    if echo "$log" | grep -qE "labelled [1-9][0-9]*, skipped|failed [1-9]"; then did=1; break; fi
  done
  if [ $did -eq 0 ]; then
    [ $waiting -eq 0 ] && { echo "[label_queue $SHARD] nothing left"; exit 0; }
    sleep 60
  fi
done
