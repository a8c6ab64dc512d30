#!/usr/bin/env bash
# Run every test: the main suite in .venv, then the real-Unsloth backend test in .venv-unsloth.
# Both always run (a failure in the first does not hide the second) and both results are reported;
# the script fails if either failed. pytest's exit 5 (no tests collected) counts as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export ARTIFACTS_DIR="${ARTIFACTS_DIR:-$PWD/artifacts}"
# The tests must leave the checkout as they found it (they write under artifacts/ or temporary dirs).
tree_state() { git status --porcelain=v1 --untracked-files=all 2>/dev/null; git diff 2>/dev/null | sha1sum; }
before="$(tree_state)"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
main=$?
after="$(tree_state)"
if [ "$before" != "$after" ]; then
    echo "test.sh: the tests changed the checkout (they may write only under artifacts/ or temp dirs):" >&2
    diff <(echo "$before") <(echo "$after") >&2 || true
    main=1
fi
unsloth=0
if [ -x .venv-unsloth/bin/python ]; then
    UNSLOTH_REQUIRED=1 UNSLOTH_SKIP_TORCHVISION_CHECK=1 .venv-unsloth/bin/python -m pytest -q -p no:cacheprovider \
        tests/evaluator/test_unsloth_backend.py
    unsloth=$?
else
    echo "test.sh: no .venv-unsloth (run 'bash scripts/setup.sh --tests'): the Unsloth backend test did not run" >&2
    unsloth=1
fi
echo "test.sh: main suite exit $main, Unsloth backend suite exit $unsloth"
[ "$main" -eq 0 ] && [ "$unsloth" -eq 0 ]
