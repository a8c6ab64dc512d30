#!/usr/bin/env bash
# Wheels for the GPU machine (docs/gpu.md): it has Python 3.12 with torch (CUDA), transformers, peft,
# accelerate, pandas, scipy and sacrebleu, but no network. What else `scripts/gpu_check.sh` needs is
# downloaded here as cp312 manylinux x86_64 wheels into the git-ignored .whl/ folder, which travels with
# the working tree; everything that travels must stay under 64 MiB.
#
#   bash scripts/gpu_wheels.sh                 # into .whl/
#   bash scripts/gpu_wheels.sh --dest DIR      # elsewhere (the test suite checks the list this way)
#
# Two tiers: the evaluator's own needs (the store, its migrations, the rouge scorer, the config
# models) always; Unsloth with what its import needs beyond that machine's packages when the budget
# allows. Not carried, by size: bitsandbytes (its CUDA wheel alone is over the budget; so no 4-bit),
# xformers (Unsloth falls back to PyTorch's attention), datasets with pyarrow (assumed present there;
# gpu_check.sh says so in its JSON when Unsloth cannot import).
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=.whl
BUDGET_MIB=64
while [ $# -gt 0 ]; do
    case "$1" in
        --dest) DEST="$2"; shift 2 ;;
        --budget-mib) BUDGET_MIB="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "gpu_wheels.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi

# The evaluator on a machine with torch, transformers, peft, accelerate, pandas, scipy, sacrebleu.
# typing-extensions too: pydantic 2.14 needs >= 4.16, newer than torch asks for.
CORE=(
    "sqlalchemy==2.1.9" "greenlet==3.5.6" "alembic==1.20.1" "mako==1.4.3"
    "pydantic==2.14.4" "pydantic-core==2.50.5" "annotated-types==0.8.0" "typing-inspection==0.4.5"
    "typing-extensions==4.16.0" "absl-py==2.5.1" "nltk==3.10.4" "joblib==1.6.0" "click==8.5.1" "six==1.17.0"
)
# rouge-score is published as a source archive only: built here into a pure-Python wheel.
SOURCE_ONLY=("rouge-score==0.1.2")
# Unsloth's import on top of that (unsloth_zoo, trl and their small dependencies).
UNSLOTH=(
    "unsloth==2026.10.9" "unsloth-zoo==2026.10.9" "trl==1.15.0" "tyro==1.0.17" "typeguard==4.6.1"
    "docstring-parser==0.18.0" "msgspec==0.23.0" "cut-cross-entropy==25.1.1"
    "torchao==0.18.0" "einops==0.8.2" "rich==15.0.0" "markdown-it-py==4.3.0"
    "mdurl==0.1.2" "pygments==2.21.0"
)

mkdir -p "$DEST"
download() {  # download DIR SPEC...
    local dir="$1"; shift
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --abi cp312 --abi abi3 --abi none --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform any -d "$dir" "$@"
}
size_mib() { du -sm --apparent-size "$@" | awk '{s += $1} END {print s + 0}'; }
tree_mib() { git ls-files -z | xargs -0 du -cb | tail -1 | awk '{printf "%d", $1 / 1048576 + 1}'; }

download "$DEST" "${CORE[@]}"
"$PY" -m pip wheel -q --no-deps -w "$DEST" "${SOURCE_ONLY[@]}"

tree=$(tree_mib)
core=$(size_mib "$DEST")
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
download "$staging" "${UNSLOTH[@]}"
extra=$(size_mib "$staging")
if [ $((tree + core + extra)) -lt "$BUDGET_MIB" ]; then
    mv "$staging"/*.whl "$DEST"/
    echo "gpu_wheels: Unsloth travels (+${extra} MiB)"
else
    echo "gpu_wheels: Unsloth left out: ${extra} MiB more would exceed ${BUDGET_MIB} MiB" >&2
fi
total=$((tree + $(size_mib "$DEST")))
echo "gpu_wheels: $(ls "$DEST"/*.whl | wc -l) wheels in $DEST, $(size_mib "$DEST") MiB; with the working tree ${total} MiB of ${BUDGET_MIB}"
if [ "$total" -ge "$BUDGET_MIB" ]; then
    echo "gpu_wheels: over the ${BUDGET_MIB} MiB that travels" >&2
    exit 1
fi
