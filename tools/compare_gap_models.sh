#!/usr/bin/env bash
# The gap-model comparison of models/README.md: every candidate through the same grouped 5-fold cross-validation
# (capml.models.cv: groups = decoration or MD run, fold draws = cv.seeds) on every labelled frame of DATA, then one
# table (tools/cv_table.py). Runs one after another on one core; a finished candidate (cv_metrics.json there) is
# skipped, so a killed comparison resumes.
#   tools/compare_gap_models.sh DATA_DIR OUT_DIR [NAME ...]     # default: every candidate below
#   SYSTEM=cspbbri MLIP=models/cspbbri/mace_base.model tools/compare_gap_models.sh data/cspbbri runs/cv_cspbbri
# (SYSTEM: the conf/system/ name, default ag3sbri; MLIP: the MACE whose descriptors the *_mace candidates use;
# SETS: comma-separated labelled files to pool instead of those found in DATA_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(realpath "$1"); OUT=$2; shift 2; mkdir -p "$OUT"
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
SETS=${SETS:-$(ls "$DATA"/dataset.extxyz "$DATA"/relaxed.extxyz "$DATA"/relaxed_r2.extxyz "$DATA"/al_round*[0-9].extxyz \
        "$DATA"/md_check_*[0-9].extxyz 2>/dev/null | paste -sd, - || true)}
SYSTEM=${SYSTEM:-ag3sbri}
MACE="data.descriptors=\${capml_root:}/${MLIP:-models/mace_finetuned.model}"
declare -A RUN=(
  [calibration_hse06_mace]="data.target=gap_hse06 $MACE cv.members=5 cv.seeds=[0]"
  [calibration_pbesol_mace]="data.target=gap_pbesol $MACE cv.members=5 cv.seeds=[0]"
  [hse06_mace]="data.target=gap_hse06 $MACE"
  [pbesol_mace]="data.target=gap_pbesol $MACE"
  [hse06_paper]="data.target=gap_hse06"
  [pbesol_paper]="data.target=gap_pbesol"
  [calibration_hse06_correction_mace]="data.target=gap_hse06 cv.correction_of=gap_pbesol $MACE cv.members=5 cv.seeds=[0]"
  [hse06_correction_mace]="data.target=gap_hse06 cv.correction_of=gap_pbesol $MACE"
  [hse06_band_edges_mace]="data.target=gap_hse06 model=band_edges $MACE"
)
ORDER=(calibration_hse06_mace calibration_pbesol_mace hse06_mace pbesol_mace hse06_paper pbesol_paper
       hse06_correction_mace hse06_band_edges_mace)
[ $# -gt 0 ] && ORDER=("$@")
for name in "${ORDER[@]}"; do
  [ -n "${RUN[$name]:-}" ] || { echo "unknown candidate $name: one of ${!RUN[*]}" >&2; exit 2; }
  [ -f "$OUT/$name/cv_metrics.json" ] && { echo "[$name] done before"; continue; }
  echo "[$(date +%H:%M:%S) $name] ${RUN[$name]}"
  # shellcheck disable=SC2086
  $PY train.py system="$SYSTEM" experiment=cv "cv.datasets=[$SETS]" ${RUN[$name]} run_name=$name paths.output_dir="$OUT/$name" \
      > "$OUT.$name.log" 2>&1 || { echo "[$name] failed: $OUT.$name.log"; tail -5 "$OUT.$name.log"; exit 1; }
done
$PY tools/cv_table.py "$OUT"/*/cv_metrics.json
