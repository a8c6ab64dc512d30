"""Crash safety: a real ``python -m evaluator run`` killed with SIGKILL mid-run, then ``--resume``."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

import db
from evaluator._runner import run_evaluation
from evaluator.config import build_config
from tests.support.runner import chat_rows, make_varied_model, write_jsonl

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
N = 24
KILL_AFTER = 3  # committed results seen before the kill
COMMON = ["--max-new-tokens", "12", "--backend", "transformers", "--metric", "exact_match", "token_f1",
          "--no-progress"]


def _env():
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _count(engine) -> int:
    try:
        with engine.connect() as c:
            return int(c.scalar(select(func.count()).select_from(db.Result)) or 0)
    except Exception:  # the store may not have its tables yet
        return 0


def test_run_killed_mid_way_resumes_to_exactly_the_uninterrupted_result(tiny_model_dir, tmp_path):
    model = make_varied_model(tiny_model_dir, tmp_path / "model")
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(N))
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    cmd = [sys.executable, "-m", "evaluator", "run", "--model", str(model), "--dataset", str(data), "--db", url,
           "--name", "killed", "--batch-size", "1", *COMMON]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    engine = db.make_engine(url)
    try:
        deadline = time.monotonic() + 600
        while _count(engine) < KILL_AFTER:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the run committed nothing in time"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        killed_at = _count(engine)
        assert KILL_AFTER <= killed_at < N, "the run finished before it could be killed"
        with db.session_factory(engine)() as s:
            assert db.get_run(session=s, run_id=1)["status"] == "running"  # nobody could mark it

        resumed = subprocess.run(
            [sys.executable, "-m", "evaluator", "run", "--resume", "killed", "--db", url, "--batch-size", "5",
             "--no-progress"], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert f"skipped {killed_at} already committed" in resumed.stdout

        with engine.connect() as c:
            per_example = c.execute(select(db.Result.example_id, func.count()).where(db.Result.run_id == 1)
                                    .group_by(db.Result.example_id)).all()
            n_examples = c.scalar(select(func.count()).select_from(db.ExampleRow))
        assert len(per_example) == n_examples == N and all(n == 1 for _, n in per_example)
        with db.session_factory(engine)() as s:
            run = db.get_run(session=s, run_id=1)
            got = {r["example_key"]: (r["output"], r["finish_reason"], r["metrics"])
                   for r in db.export_rows(session=s, run_id=1)}
        assert run["status"] == "finished"
    finally:
        if proc.poll() is None:
            proc.kill()
        engine.dispose()

    # The same run, uninterrupted, in another store.
    other = f"sqlite:///{tmp_path / 'other.sqlite'}"
    cfg = build_config(overrides=dict(model=str(model), dataset=str(data), db=other, max_new_tokens=12,
                                      backend="transformers", metrics=["exact_match", "token_f1"], batch_size=8))
    clean = run_evaluation(cfg, progress=False)
    other_engine = db.make_engine(other)
    try:
        with db.session_factory(other_engine)() as s:
            want = {r["example_key"]: (r["output"], r["finish_reason"], r["metrics"])
                    for r in db.export_rows(session=s, run_id=clean.run_id)}
    finally:
        other_engine.dispose()
    assert got == want


def _crash_after(batches: int):
    """A loader whose backend commits ``batches`` batches, then raises (as a crash between batches)."""
    from evaluator.models import load_backend

    def loader(model, adapter, **kw):
        backend = load_backend(model, adapter, **kw)
        real = backend.generate

        def generate(convs, settings, *, on_batch=None, progress=True):
            seen = []

            def commit(idx, gens):
                if len(seen) == batches:
                    raise RuntimeError("crash between batches")
                on_batch(idx, gens)
                seen.append(idx)
            return real(convs, settings, on_batch=commit, progress=progress)

        backend.generate = generate
        return backend
    return loader


def _cfg(model, data, url, **kw):
    return build_config(overrides=dict(model=str(model), dataset=str(data), db=url, max_new_tokens=3,
                                       backend="transformers", metrics=["exact_match"], perplexity=False, **kw))


def test_resume_skips_only_its_own_runs_results_not_another_runs_of_the_same_dataset(tiny_model_dir, tmp_path):
    """Example ids are shared by every run of a dataset: the first run finished them all, and the second,
    crashed after one batch, must still evaluate every example it has not done itself."""
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(6))
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    first = run_evaluation(_cfg(tiny_model_dir, data, url, name="first", batch_size=2), progress=False)
    assert first.n_generated == 6
    with pytest.raises(Exception, match="crash between batches"):
        run_evaluation(_cfg(tiny_model_dir, data, url, name="second", batch_size=2), loader=_crash_after(1),
                       progress=False)
    resumed = run_evaluation(_cfg(tiny_model_dir, data, url, name="second", batch_size=2, resume="second"),
                             progress=False)
    assert (resumed.run_id, resumed.n_skipped, resumed.n_generated) == (2, 2, 4)
    engine = db.make_engine(url)
    try:
        with engine.connect() as c:
            counts = dict(c.execute(select(db.Result.run_id, func.count()).group_by(db.Result.run_id)).all())
    finally:
        engine.dispose()
    assert counts == {1: 6, 2: 6}


def test_a_batch_lands_whole_or_not_at_all(tiny_model_dir, tmp_path, monkeypatch):
    """The store refuses one row of the second batch: the first batch stays, and no row of the second
    (not even the ones before the refused row) is committed."""
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(9))
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    real_insert = db.insert_results
    calls = []

    def insert_results(*, session, run_id, results, **kw):
        calls.append(len(results))
        real_insert(session=session, run_id=run_id, results=results, **kw)
        if len(calls) == 2:  # the second batch's rows are written in its transaction, then it fails
            session.flush()
            raise RuntimeError("the store refused a row")

    monkeypatch.setattr(db, "insert_results", insert_results)
    with pytest.raises(Exception, match="the store refused a row"):
        run_evaluation(_cfg(tiny_model_dir, data, url, batch_size=3), progress=False)
    engine = db.make_engine(url)
    try:
        with engine.connect() as c:
            stored = c.scalar(select(func.count()).select_from(db.Result))
            values = c.scalar(select(func.count()).select_from(db.MetricValue))
            status = c.scalar(select(db.Run.status))
    finally:
        engine.dispose()
    assert calls[0] == 3  # one insert (one transaction) per batch of three
    assert stored == 3 and values == 3  # the first batch, whole; nothing of the second
    assert status == "failed"
