#!/usr/bin/env bash
# Create or reuse the project-local virtual environment and install capml with everything it needs.
# torch==2.13.0 goes in first and stays pinned through constraints.txt (any other torch spec pulls GBs of
# CUDA wheels). GPAW builds against Debian's libxc, OpenBLAS and FFTW with tools/gpaw_siteconfig.py.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.capml-installed"

missing=()
for pkg in libxc-dev libopenblas-dev libfftw3-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[install] Debian packages for GPAW: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# Reinstall only when the dependency spec changed.
want=$(cat pyproject.toml constraints.txt tools/gpaw_siteconfig.py | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
PIP="$VENV/bin/pip --disable-pip-version-check"
$PIP install -q "torch==2.13.0"
export GPAW_CONFIG="$PWD/tools/gpaw_siteconfig.py"
$PIP install -q -c constraints.txt -e ".[dft,dev]"
echo "$want" > "$STAMP"
echo "[install] done: $($VENV/bin/python -c 'import torch, gpaw; print("torch", torch.__version__, "gpaw", gpaw.__version__)')"
