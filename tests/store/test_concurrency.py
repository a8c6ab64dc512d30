"""Two evaluators writing to one store at once while the dashboard reads it, on SQLite and PostgreSQL.

Two real ``python -m evaluator run`` processes (the CLI's ``main`` in a subprocess) start on the same
fresh store and the same dataset. Both wait at a file barrier right before the store is opened (so
both migrate the empty store at once) and again right after (so both create the same dataset, the
same examples and the same metric names at the same moment), then commit a batch of two results at a
time. Meanwhile this test reads the store the way the dashboard does (``db.list_runs``,
``db.page_results`` on a read-only engine) in a loop. Nothing may fail, be lost or be duplicated.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

import db
from tests.support.runner import CHAT_JSONL

ROOT = Path(__file__).resolve().parents[2]
N_EXAMPLES = 12  # chat.jsonl: 12 examples and one malformed row

# `python -m evaluator` with a barrier around db.open_store (the runner's first store access).
RACER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import alembic.command, alembic.config, alembic.script  # noqa: E401  (so both migrate at the same moment)
    import db

    barrier, me, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    real_open = db.open_store

    def wait(stage):
        (barrier / f"{stage}-{me}").touch()
        deadline = time.monotonic() + 60
        while len(list(barrier.glob(f"{stage}-*"))) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"barrier {stage}: the other evaluator never arrived")
            time.sleep(0.005)

    def open_store(url=None):
        wait("migrate")
        engine = real_open(url)
        wait("write")
        return engine

    db.open_store = open_store
    from evaluator.cli import main
    sys.exit(main(sys.argv[4:]))
""")


def _start(url: str, barrier: Path, name: str, model: Path) -> subprocess.Popen:
    args = ["run", "--model", str(model), "--dataset", str(CHAT_JSONL), "--db", url, "--name", name,
            "--backend", "transformers", "--batch-size", "2", "--max-new-tokens", "4",
            "--metric", "exact_match", "token_f1", "--no-progress"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", RACER, str(barrier), name, "2", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class Reader(threading.Thread):
    """The dashboard's reads in a loop until stopped; records every exception."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.stop, self.errors = url, threading.Event(), []
        self.reads = self.while_running = 0  # reads done, and reads that saw a run being written

    def run(self) -> None:
        engine = None
        while not self.stop.is_set():
            try:
                if engine is None:
                    try:
                        engine = db.open_store_readonly(self.url)
                    except db.StoreError:  # not created or not migrated yet: the dashboard says so
                        time.sleep(0.05)
                        continue
                with db.session_factory(engine)() as s:  # one snapshot: counts and pages agree
                    runs = db.list_runs(session=s)
                    for run in runs:
                        page = db.page_results(session=s, query=db.ResultQuery(run_id=run["id"]), page_size=100)
                        assert page.total == len(page.rows) == run["n_results"] <= N_EXAMPLES
                        assert len({r["example_id"] for r in page.rows}) == len(page.rows)
                    self.reads += 1
                    self.while_running += any(r["status"] == "running" for r in runs)
            except Exception as exc:
                self.errors.append(repr(exc))
                time.sleep(0.05)
        if engine is not None:
            engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request, tmp_path) -> str:
    """An empty store nobody has migrated yet."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return request.getfixturevalue("pg_url")


def test_two_evaluators_and_a_reader_on_one_store(fresh_url, tiny_model_dir, tmp_path):
    pytest.importorskip("torch")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    reader = Reader(fresh_url)
    reader.start()
    procs = {name: _start(fresh_url, barrier, name, tiny_model_dir) for name in ("alpha", "beta")}
    try:
        outs = {name: p.communicate(timeout=600) for name, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
        reader.stop.set()
        reader.join(timeout=60)
    both = "\n".join(f"--- {n} (exit {p.returncode}):\n{outs[n][1][-3000:]}" for n, p in procs.items())
    for name, p in procs.items():
        assert p.returncode == 0, f"{name} failed; both evaluators' stderr:\n{both}"
    assert reader.errors == []
    assert reader.while_running > 0

    engine = db.make_engine(fresh_url)
    try:
        with db.session_factory(engine)() as s:
            datasets = s.execute(select(db.Dataset.id, db.Dataset.name)).all()
            assert len(datasets) == 1
            n_examples, n_keys = s.execute(select(func.count(), func.count(db.ExampleRow.key.distinct()))).one()
            assert n_examples == n_keys == N_EXAMPLES
            runs = {r["name"]: r for r in db.list_runs(session=s)}
            assert set(runs) == {"alpha", "beta"}
            example_ids = set(s.scalars(select(db.ExampleRow.id)))
            for name, run in runs.items():
                assert run["status"] == "finished", run["error"]
                got = list(s.scalars(select(db.Result.example_id).where(db.Result.run_id == run["id"])))
                assert len(got) == N_EXAMPLES and set(got) == example_ids, name
                assert set(run["aggregates"]) >= {"exact_match", "token_f1"}
            names = list(s.scalars(select(db.Metric.name)))
            assert len(names) == len(set(names))
    finally:
        engine.dispose()
