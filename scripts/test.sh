#!/usr/bin/env bash
# Run every test: the main suite in .venv, then the real-Unsloth backend test in .venv-unsloth.
# pytest's own exit status is kept (5 = no tests collected is a failure here, not a pass).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export ARTIFACTS_DIR="${ARTIFACTS_DIR:-$PWD/artifacts}"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
if [ -x .venv-unsloth/bin/python ]; then
    UNSLOTH_REQUIRED=1 UNSLOTH_SKIP_TORCHVISION_CHECK=1 .venv-unsloth/bin/python -m pytest -q -p no:cacheprovider \
        tests/test_unsloth_backend.py
fi
