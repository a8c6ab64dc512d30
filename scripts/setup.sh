#!/usr/bin/env bash
# Set up everything the project needs on a fresh Debian/Ubuntu machine with Python 3.11:
#   bash scripts/setup.sh           # .venv with the runtime + test requirements
#   bash scripts/setup.sh --tests   # also: Chromium (browser tests), PostgreSQL server binaries,
#                                   # and .venv-unsloth (the real-Unsloth backend test)
# Idempotent: a second run only checks. System packages need root (CI runs as root); without root
# it says what to install and the tests that need them fail with that message.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
WITH_TESTS=0
[ "${1:-}" = "--tests" ] && WITH_TESTS=1
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PY" -m venv .venv
fi
stamp=.venv/.requirements-stamp
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing requirements (first time: a few minutes)"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r requirements-dev.txt
    echo "$want" > "$stamp"
fi
# The checkout itself, editable: `streamlit run dashboard/server.py` and scripts find evaluator/, db/ and
# dashboard/ from any directory, and `evalbench` is on the venv's PATH.
if ! (cd / && "$ROOT/.venv/bin/python" -c "import db, dashboard, evaluator" 2>/dev/null); then
    echo "setup: installing this checkout into .venv (editable)"
    .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
fi

[ "$WITH_TESTS" = 1 ] || exit 0

need=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "setup: apt-get install ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "setup: please install with root: apt-get install ${need[*]}" >&2
    fi
fi
if [ ! -f .venv-unsloth/.ok ]; then
    echo "setup: creating .venv-unsloth (real Unsloth, CPU fallback; ~2 minutes)"
    bash .ci/unsloth_env.sh && touch .venv-unsloth/.ok
fi
