#!/usr/bin/env bash
# The MLIP refit's sets from the k-mesh labels (models/README.md, "The MLIP refitted on k-mesh labels"):
# data/ag3sbri/kmesh_heldout.extxyz = the static cells' distorted minima and soft-mode probes that are labelled,
# data/ag3sbri/kmesh_train.extxyz   = every other k-mesh label (kconv_k2, kconv_cell_k2, kmesh_k2 and its shards).
set -e
cd "$(dirname "$0")/.."
D=data/ag3sbri
INPUTS="$D/kconv_k2.extxyz $D/kconv_cell_k2.extxyz"
for f in $D/kmesh_k2.extxyz $D/kmesh_k2.shard*of*.extxyz; do  # merged, or shards still being labelled
  if [ -f "$f" ]; then INPUTS="$INPUTS $f"; fi
done
HELD=""
for id in static_min_Ag3SI static_min_Ag3SBr static_paper_Ag3SI_mode0 static_paper_Ag3SBr_mode0; do
  if grep -q "structure_id=$id " $INPUTS 2>/dev/null; then HELD="$HELD $id"; fi
done
if [ -z "$HELD" ]; then echo "kmesh_sets.sh: none of the held-out structures is labelled yet" >&2; exit 2; fi
python -m capml.io.dataset $D/kmesh_heldout.extxyz --concat $INPUTS $(for id in $HELD; do echo --structure $id; done)
python -m capml.io.dataset $D/kmesh_train.extxyz --concat $INPUTS $(for id in $HELD; do echo --exclude $id; done)
