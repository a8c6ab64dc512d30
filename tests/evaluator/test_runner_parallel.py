"""Data parallel runs: real ``torchrun --nproc_per_node 2 -m evaluator run`` subprocesses (gloo, CPU)
write one run that equals a single-process run example for example, on SQLite and PostgreSQL; a
2-process run killed mid-way finishes on 1 process."""
from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

import db
from evaluator._distributed import shard
from evaluator._runner import resume_config, run_evaluation
from evaluator.config import build_config
from tests.support.processes import kill_tree, result_count, torchrun
from tests.support.runner import chat_rows, make_varied_model, write_jsonl

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
METRICS = ["exact_match", "token_f1", "perplexity"]


def env() -> dict[str, str]:
    # EVAL_DIST_TIMEOUT_S: a rank waiting for a peer that will never come fails in minutes, not a day.
    out = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               EVAL_DIST_TIMEOUT_S="300")
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        out.pop(var, None)
    return out


@pytest.fixture(scope="module")
def varied_dir(tiny_model_dir, tmp_path_factory):
    return make_varied_model(tiny_model_dir, tmp_path_factory.mktemp("varied"))


def results(url: str, run_id: int) -> dict[str, tuple]:
    engine = db.make_engine(url)
    try:
        with db.session_factory(engine)() as s:
            return {r["example_key"]: (r["output"], r["finish_reason"], r["output_tokens"], r["metrics"])
                    for r in db.export_rows(session=s, run_id=run_id)}
    finally:
        engine.dispose()


def assert_same_results(got: dict, want: dict) -> None:
    """Outputs, finish reasons and metrics equal, example for example, perplexity included: teacher
    forcing runs each example alone (unpadded), so regrouping the examples over processes or a
    resume cannot change a rounding."""
    assert got.keys() == want.keys()
    for key, (out, finish, n, metrics) in got.items():
        w_out, w_finish, w_n, w_metrics = want[key]
        assert (out, finish, n) == (w_out, w_finish, w_n), key
        assert metrics.keys() == w_metrics.keys(), key
        for name, value in metrics.items():
            assert value == w_metrics[name], (key, name)


def single_process(model, data, tmp_path, max_new_tokens: int) -> dict:
    """The same evaluation in this process, on one thread like the torchrun workers (OMP_NUM_THREADS=1):
    a different thread count may split a kernel's sums differently."""
    url = f"sqlite:///{tmp_path / 'single.sqlite'}"
    cfg = build_config(overrides=dict(model=str(model), dataset=str(data), db=url, max_new_tokens=max_new_tokens,
                                      backend="transformers", metrics=METRICS, batch_size=4))
    with one_thread():
        return results(url, run_evaluation(cfg, progress=False).run_id)


@contextlib.contextmanager
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def test_shards_are_disjoint_cover_the_pending_examples_and_do_not_depend_on_history():
    pending = list(range(3, 40, 3))
    parts = [shard(pending, r, 4) for r in range(4)]
    assert sorted(x for p in parts for x in p) == pending
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert shard(pending, 0, 1) == pending


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_two_processes_write_one_run_equal_to_a_single_process_run(store, varied_dir, tmp_path, request):
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(9) + [{"messages": "not a conversation"}])
    url = f"sqlite:///{tmp_path / 'store.sqlite'}" if store == "sqlite" else request.getfixturevalue("pg_url")
    proc = subprocess.run(
        [*torchrun(2), "--model", str(varied_dir), "--dataset", str(data), "--db", url, "--name", "dp",
         "--max-new-tokens", "6", "--batch-size", "2", "--backend", "transformers", "--metric", *METRICS,
         "--no-progress"], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "run 1 'dp': finished on 2 processes" in proc.stdout
    assert proc.stdout.count("rows in 10 = 9 examples + 1 rejected") == 1  # rank 0 alone reports
    assert "rank 1 evaluates 4 of 9 pending examples" in proc.stderr

    engine = db.make_engine(url)
    try:
        with db.session_factory(engine)() as s:
            run = db.get_run(session=s, run_id=1)
            assert db.rejected_rows(session=s, run_id=1)[0]["row_index"] == 9
            assert db.run_aggregates(session=s, run_id=1)
        with engine.connect() as c:
            assert c.scalar(select(func.count()).select_from(db.Run)) == 1
    finally:
        engine.dispose()
    assert run["status"] == "finished" and run["n_examples"] == 9
    assert run["repro"]["world_size"] == 2 and run["repro"]["devices"] == ["cpu", "cpu"]
    assert_same_results(results(url, 1), single_process(varied_dir, data, tmp_path, 6))


def test_a_two_process_run_killed_mid_way_finishes_on_one_process(varied_dir, tmp_path):
    n = 24
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(n))
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    proc = subprocess.Popen(
        [*torchrun(2), "--model", str(varied_dir), "--dataset", str(data), "--db", url, "--name", "killed",
         "--max-new-tokens", "12", "--batch-size", "1", "--backend", "transformers", "--metric", *METRICS,
         "--no-progress"], cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while result_count(url) < 4:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the run committed nothing in time"
            time.sleep(0.05)
        kill_tree(proc.pid)  # the launcher and both workers, at once: as if the machine went down
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:  # never signal a pid that may have been reused
            kill_tree(proc.pid)
    killed_at = result_count(url)
    assert 4 <= killed_at < n, "the run finished before it could be killed"

    with one_thread():
        summary = run_evaluation(resume_config("killed", db_url=url), progress=False)  # one process
    assert summary.status == "finished" and summary.world_size == 1
    assert (summary.n_skipped, summary.n_generated) == (killed_at, n - killed_at)
    engine = db.make_engine(url)
    try:
        with engine.connect() as c:
            per_example = c.execute(select(db.Result.example_id, func.count()).where(db.Result.run_id == 1)
                                    .group_by(db.Result.example_id)).all()
        with db.session_factory(engine)() as s:
            run = db.get_run(session=s, run_id=1)
    finally:
        engine.dispose()
    assert len(per_example) == n and all(c == 1 for _, c in per_example)
    assert run["repro"]["world_size"] == 2 and run["repro"]["resumes"][0]["world_size"] == 1
    assert_same_results(results(url, 1), single_process(varied_dir, data, tmp_path, 12))


FAILING_RANK_SCRIPT = """
import os, sys
from evaluator._runner import RunError, run_evaluation
from evaluator.config import build_config
from evaluator.models import load_backend

def loader(model, adapter, **kw):
    backend = load_backend(model, adapter, **kw)
    if os.environ["RANK"] == "1":
        real = backend.generate
        def generate(convs, settings, *, on_batch=None, progress=True):
            def commit(idx, gens):
                on_batch(idx, gens)
                raise RuntimeError("simulated crash on rank 1")
            return real(convs, settings, on_batch=commit, progress=progress)
        backend.generate = generate
    return backend

model, data, url, out = sys.argv[1:5]
cfg = build_config(overrides=dict(model=model, dataset=data, db=url, max_new_tokens=2, batch_size=1,
                                  backend="transformers", metrics=["exact_match"]))
# Each rank writes its outcome to its own file: two processes printing to one shared pipe is not a
# record the test can rely on, and "returned" or another exception must show up too.
try:
    run_evaluation(cfg, loader=loader, progress=False)
    outcome = "returned without an error"
except RunError as exc:
    outcome = str(exc)
except BaseException as exc:
    outcome = f"raised {type(exc).__name__}: {exc}"
with open(os.path.join(out, f"rank{os.environ['RANK']}.txt"), "w") as f:
    f.write(outcome)
"""


def test_a_failure_on_one_rank_fails_the_run_on_every_rank_and_keeps_its_batches(varied_dir, tmp_path):
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(4))
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    script = tmp_path / "failing_rank.py"
    script.write_text(FAILING_RANK_SCRIPT)
    proc = subprocess.run(torchrun(2, str(script), str(varied_dir), str(data), url, str(tmp_path)), cwd=ROOT,
                          env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]  # every rank returned (nobody hung)
    outcomes = {rank: (tmp_path / f"rank{rank}.txt").read_text() for rank in (0, 1)
                if (tmp_path / f"rank{rank}.txt").is_file()}
    assert set(outcomes) == {0, 1}, (outcomes, proc.stdout, proc.stderr[-6000:])
    assert "failed: rank 1: RuntimeError: simulated crash on rank 1" in outcomes[0], outcomes  # names the rank
    assert "failed: RuntimeError: simulated crash on rank 1" in outcomes[1], outcomes
    engine = db.make_engine(url)
    try:
        with db.session_factory(engine)() as s:
            run = db.get_run(session=s, run_id=1)
    finally:
        engine.dispose()
    assert run["status"] == "failed" and "rank 1: RuntimeError: simulated crash" in run["error"]
    assert result_count(url) == 3  # rank 0's 2 examples and rank 1's first batch
