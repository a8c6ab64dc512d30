"""A pytest plugin for ``make mutation`` only (``-p tests.support.mutation_preload`` in ``[tool.mutmut]``).

mutmut forks every mutant's pytest session from one server process. Importing the heavy libraries
here, once, in that server saves each session about 4 seconds (transformers alone is about 3) — most
of what a mutant's tests cost. Imports only: nothing here starts a thread, so forking stays safe.

It also runs a mutant's tests fastest first (durations from mutmut's own first pass), so that a
mutant dies on the cheapest test that catches it (``-x`` stops there).
"""
import gc
import json
import os
import tempfile
from pathlib import Path

import alembic.command
import pandas
import pytest
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

# The first store a process migrates costs about 0.5 s (alembic's runtime, the revision scripts, SQLite's
# dialect); each one after it about 0.05 s. Migrating one here, in the server, saves every store test's
# session the difference. The engine is disposed: no connection or thread is left to fork.
with tempfile.TemporaryDirectory() as _warm:
    db.open_store(f"sqlite:///{_warm}/warm.sqlite").dispose()

# Every session forked from the server ends with pytest's gc.collect() calls; without this they walk
# every object torch and transformers made (about 0.35 s each). Frozen objects are never collected.
gc.freeze()


# mutmut's first pass times only each test's call, but a test's fixtures can cost far more (a seeded store, a
# scored run: 0.1-1.5 s against calls of milliseconds), and ordering by calls alone ran those files first.
FIXTURE_TIMES = "mutation-fixture-times.json"
_fixture_times: dict[str, float] = {}


def _durations() -> dict[str, float]:
    """Each test's measured time: its call (mutmut's first pass, which records only calls) plus its set-up and
    tear-down (recorded by this plugin in that same pass). Each session runs in mutants/."""
    try:
        calls = json.loads(Path("mutmut-stats.json").read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return {}
    try:
        fixtures = json.loads(Path(FIXTURE_TIMES).read_text())
    except (OSError, ValueError):
        fixtures = {}
    return {test: seconds + fixtures.get(test, 0.0) for test, seconds in calls.items()}


def pytest_runtest_logreport(report):
    if os.environ.get("MUTANT_UNDER_TEST") == "stats" and report.when in ("setup", "teardown"):
        _fixture_times[report.nodeid] = _fixture_times.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session):
    if os.environ.get("MUTANT_UNDER_TEST") == "stats" and _fixture_times:
        Path(FIXTURE_TIMES).write_text(json.dumps(_fixture_times))


# A mutant that makes a loop endless (a page offset that never advances, a reader that never reaches
# the end) would otherwise run until mutmut's CPU limit, about 15 times the tests' measured time: two
# minutes of a worker for one mutant. pytest-timeout fails the test instead, once it has taken ten
# times as long as it did unmutated, and never sooner than HANG_FLOOR seconds (fixtures such as a tiny
# model built on the spot are not in the measured time). A failed test kills the mutant.
HANG_FACTOR, HANG_FLOOR = 10, 15.0


# The tests that cover each mutated module: a mutant runs those of them that reach its function (mutmut's
# own map), not every test that happens to call it on the way (the end-to-end `score` command tests call
# the statistics, the resume tests the scoring). A mutant killed only by such a test counts as survived.
MODULE_TESTS = {
    "db._query": ("tests/store/",),
    "db._query_runs": ("tests/store/", "tests/evaluator/test_runner_resume.py"),
    "evaluator.data._read": ("tests/evaluator/test_data_",),
    "evaluator.scoring._stats": ("tests/scoring/test_stats.py", "tests/scoring/test_compare_rows.py",
                                 "tests/scoring/test_store.py::test_stored_p_holm"),
    "evaluator.scoring._compare": ("tests/scoring/test_compare_rows.py", "tests/scoring/test_store.py"),
    "evaluator.scoring._text": ("tests/scoring/test_metrics.py", "tests/scoring/test_stats.py",
                                "tests/scoring/test_compare_rows.py"),
    "evaluator.scoring._model_metrics": ("tests/scoring/test_model_metrics.py", "tests/scoring/test_perplexity.py",
                                         "tests/scoring/test_store.py"),
}


def _module_of_mutant() -> str:
    name = os.environ.get("MUTANT_UNDER_TEST", "")
    return name.rsplit(".", 1)[0] if "__mutmut_" in name else ""


def pytest_collection_modifyitems(config, items):
    """Only the tests of the mutated module (MODULE_TESTS); then cheapest file first, cheapest test first
    within it. A file's tests stay together, so its module-scoped fixtures (a seeded store) are built once."""
    allowed = MODULE_TESTS.get(_module_of_mutant())
    if allowed:
        kept = [item for item in items if item.nodeid.startswith(allowed)]
        if kept:  # never none: mutmut would read "no tests collected" as a broken setup
            config.hook.pytest_deselected(items=[item for item in items if item not in kept])
            items[:] = kept
    durations = _durations()
    for item in items:
        item.add_marker(pytest.mark.timeout(max(HANG_FLOOR, HANG_FACTOR * durations.get(item.nodeid, 0.0)),
                                            method="signal"))
    if not durations:
        return
    cost = {item.nodeid: durations.get(item.nodeid, 1.0) for item in items}
    first = {}
    for item in items:
        path = item.nodeid.split("::")[0]
        first[path] = min(first.get(path, cost[item.nodeid]), cost[item.nodeid])
    items.sort(key=lambda item: (first[item.nodeid.split("::")[0]], item.nodeid.split("::")[0], cost[item.nodeid]))
