#!/usr/bin/env bash
# Create .venv-unsloth: a separate virtual environment with Unsloth, used only by
# tests/evaluator/test_unsloth_backend.py (run with that venv's python by .ci/run).
#
#   bash .ci/unsloth_env.sh            # creates/refreshes ./.venv-unsloth
#   UNSLOTH_VENV=/path bash .ci/unsloth_env.sh
#
# Unsloth is kept out of the main venv: it patches transformers on import.
# Known CPU-machine obstacles (see shared ENVIRONMENT.md):
#  * pip pulls a torchvision that does not match the local CPU torch ("operator torchvision::nms does
#    not exist"), which breaks transformers' Trainer import inside unsloth: we uninstall torchvision and
#    the test sets UNSLOTH_SKIP_TORCHVISION_CHECK=1.
#  * torch is pinned to <2.14 so pip takes the CPU build already on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${UNSLOTH_VENV:-.venv-unsloth}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
# pip on the project's machines warns about configured index folders that do not exist; drop that noise.
NOISE="is ignored: it is neither a file nor a directory"
pip_() {
    local log rc=0
    log="$(mktemp)"
    "$VENV/bin/python" -m pip "$@" >"$log" 2>&1 || rc=$?
    grep -v "$NOISE" "$log" || true
    rm -f "$log"
    return "$rc"
}
pip_ install --quiet --upgrade pip
# requirements-gpu.txt = requirements.txt + unsloth + trl (versions kept inside Unsloth's ranges).
pip_ install --quiet "torch>=2.4,<2.14" -r requirements-gpu.txt "pytest>=8,<10"
pip_ uninstall --yes --quiet torchvision || true
# Smoke check: importing unsloth must work (it prints a banner; CPU fallback is fine).
UNSLOTH_SKIP_TORCHVISION_CHECK=1 HF_HUB_OFFLINE=1 "$VENV/bin/python" -c "import unsloth; from unsloth import FastLanguageModel; print('unsloth', unsloth.__version__)"
