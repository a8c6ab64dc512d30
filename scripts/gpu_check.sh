#!/usr/bin/env bash
# The GPU check (docs/gpu.md): every GPU step in one command, one JSON and a log in the output folder.
#
#   bash scripts/gpu_check.sh [--out DIR]      # on the GPU machine: at most 8 minutes on an H200
#   bash scripts/gpu_check.sh --dry-run        # the same steps on CPU, a tiny model, under 2 minutes
#
# --out defaults to $OUT when set, else artifacts/gpu/. On the GPU machine, the wheels that
# scripts/gpu_wheels.sh put in .whl/ are installed first (no network there) into a private folder.
# Other arguments go to benchmarks/gpu_check.py (--only STEPS, --work DIR, --unsloth-python PY).
# GPU_CHECK_TIMEOUT (seconds, default 480) bounds the whole check, leaving room for one rerun
# in a 15-minute window.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT_DIR="${OUT:-artifacts/gpu}"
DRY=0
ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT_DIR="$2"; shift 2 ;;
        --dry-run) DRY=1; ARGS+=("$1"); shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.log"

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false UNSLOTH_SKIP_TORCHVISION_CHECK=1

if [ "$DRY" = 0 ] && compgen -G ".whl/*.whl" > /dev/null; then
    SITE="${GPU_CHECK_SITE:-/tmp/evalbench-site}"
    echo "gpu_check: installing $(ls .whl/*.whl | wc -l) carried wheels into $SITE" | tee "$LOG"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .whl/*.whl 2>&1 | tee -a "$LOG"
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi

timeout --signal=TERM --kill-after=20 "${GPU_CHECK_TIMEOUT:-480}" \
    "$PY" benchmarks/gpu_check.py --out "$OUT_DIR" "${ARGS[@]}" 2>&1 | tee -a "$LOG"
status=${PIPESTATUS[0]}
echo "gpu_check: exit $status; $OUT_DIR/gpu_check.json and $LOG" >&2
exit "$status"
