"""A pytest plugin for ``make mutation`` only (``-p tests.support.mutation_preload`` in ``[tool.mutmut]``).

mutmut forks every mutant's pytest session from one server process. Importing the heavy libraries
here, once, in that server saves each session about 4 seconds (transformers alone is about 3) — most
of what a mutant's tests cost. Imports only: nothing here starts a thread, so forking stays safe.

It also runs a mutant's tests fastest first (durations from mutmut's own first pass), so that a
mutant dies on the cheapest test that catches it (``-x`` stops there).
"""
import gc
import json
from pathlib import Path

import alembic.command
import pandas
import rouge_score.rouge_scorer
import sacrebleu
import scipy.stats
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM, PreTrainedTokenizerFast

import db
import evaluator._runner
import evaluator.models
import evaluator.scoring

# Every session forked from the server ends with pytest's gc.collect() calls; without this they walk
# every object torch and transformers made (about 0.35 s each). Frozen objects are never collected.
gc.freeze()


def _durations() -> dict[str, float]:
    try:  # written by mutmut's first pass over the tests; each session runs in mutants/
        return json.loads(Path("mutmut-stats.json").read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return {}


def pytest_collection_modifyitems(items):
    """Cheapest file first, cheapest test first within it. A file's tests stay together, so its
    module-scoped fixtures (a seeded store) are built once."""
    durations = _durations()
    if not durations:
        return
    cost = {item.nodeid: durations.get(item.nodeid, 1.0) for item in items}
    first = {}
    for item in items:
        path = item.nodeid.split("::")[0]
        first[path] = min(first.get(path, cost[item.nodeid]), cost[item.nodeid])
    items.sort(key=lambda item: (first[item.nodeid.split("::")[0]], item.nodeid.split("::")[0], cost[item.nodeid]))
