#!/usr/bin/env bash
# The k-point/cutoff convergence table of data/ag3sbri (data card "Label convergence in k-points"): every labelled
# setting that exists, against the Γ-centred 2x2x2 mesh; extra arguments go to capml.labels.convergence
# (e.g. --model NAME=MODEL for an MLIP as one more setting, --csv data/ag3sbri/kconv.csv).
set -e
cd "$(dirname "$0")/.."
D=data/ag3sbri
G=$D/relaxed.extxyz,$D/relaxed_rattle.extxyz,$D/relaxed_rattle_mixed.extxyz,$D/md_check_eg_map_rattle.extxyz,$D/kconv_cell_gamma.extxyz,$D/static_cells.extxyz,$D/md_check_paper300.extxyz
if [ -f $D/kmesh_gamma.extxyz ]; then G=$G,$D/kmesh_gamma.extxyz; fi
K2=$D/kconv_k2.extxyz,$D/kconv_cell_k2.extxyz
for f in $D/kmesh_k2.extxyz $D/kmesh_k2.shard*of*.extxyz; do  # merged, or shards still being labelled
  if [ -f $f ]; then K2=$K2,$f; fi
done
EXTRA=""
if [ -f $D/kconv_ecut450.extxyz ]; then EXTRA="$EXTRA --setting ecut450=$D/kconv_ecut450.extxyz"; fi
if [ -f $D/kconv_k2shift.extxyz ]; then EXTRA="$EXTRA --setting k2shift=$D/kconv_k2shift.extxyz"; fi
if [ -f $D/kconv_k3.extxyz ]; then EXTRA="$EXTRA --setting k3=$D/kconv_k3.extxyz"; fi
python -m capml.labels.convergence $D/kconv_structures.extxyz $D/kconv_cell_structures.extxyz $D/kmesh_structures.extxyz \
  --setting gamma=$G --setting k2=$K2 $EXTRA --reference k2 "$@"
