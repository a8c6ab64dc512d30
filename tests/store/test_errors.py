"""Faults a user can cause give one-line StoreErrors; readers see only whole batches."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

import db

ROOT = Path(__file__).resolve().parents[2]


def _one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_missing_store_file_tells_how_to_create_one(tmp_path):
    with pytest.raises(db.StoreError) as e:
        db.open_store_readonly(f"sqlite:///{tmp_path / 'nope.sqlite'}")
    assert "python -m evaluator demo" in _one_line(e.value)


def test_corrupt_store_file_is_reported_not_a_traceback(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    for opener in (db.open_store, db.open_store_readonly):
        with pytest.raises(db.StoreError) as e:
            opener(f"sqlite:///{bad}")
        assert "not a store" in _one_line(e.value)


def test_unreachable_url_is_reported(tmp_path):
    with pytest.raises(db.StoreError) as e:
        db.open_store("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    assert "cannot open store" in _one_line(e.value)


def test_unknown_driver_is_reported():
    with pytest.raises(db.StoreError) as e:
        db.open_store("nosuchdb://x/y")
    assert "nosuchdb is not supported; use sqlite:///PATH" in _one_line(e.value)


def test_store_from_a_newer_version_is_refused_by_writer_and_reader(store_url):
    eng = db.make_engine(store_url)
    with eng.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
    eng.dispose()
    for opener in (db.open_store, db.open_store_readonly):
        with pytest.raises(db.StoreError) as e:
            opener(store_url)
        assert "newer version" in _one_line(e.value)


def test_reader_refuses_an_empty_store_and_writer_migrates_it(tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    db.make_engine(url).connect().close()  # creates an empty file
    with pytest.raises(db.StoreError, match="empty"):
        db.open_store_readonly(url)
    db.open_store(url)
    db.open_store_readonly(url)


def test_reader_on_an_older_store_says_what_to_run(store_url, monkeypatch):
    monkeypatch.setattr(db._engine, "head_revision", lambda: "999999999999")
    monkeypatch.setattr(db._engine, "_known_revisions", lambda: {"999999999999", db.current_revision(db.make_engine(store_url))})
    with pytest.raises(db.StoreError, match="alembic upgrade head"):
        db.open_store_readonly(store_url)


def test_readonly_engine_refuses_writes(store_url):
    eng = db.open_store_readonly(store_url)
    with pytest.raises(Exception, match="readonly|read-only|query_only"):
        with eng.begin() as conn:
            conn.execute(text("INSERT INTO metrics (name) VALUES ('x')"))


def test_url_resolution_prefers_flag_then_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(db.ENV_VAR, "sqlite:///from-env.sqlite")
    assert db.resolve_url("sqlite:///flag.sqlite") == "sqlite:///flag.sqlite"
    assert db.resolve_url(None) == "sqlite:///from-env.sqlite"
    monkeypatch.delenv(db.ENV_VAR)
    assert db.resolve_url(None) == db.DEFAULT_URL
    assert db.resolve_url(str(tmp_path / "plain.sqlite")) == f"sqlite:///{tmp_path / 'plain.sqlite'}"


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import db
    eng = db.open_store({url!r})
    S = db.session_factory(eng)
    with S.begin() as s:
        ds = db.get_or_create_dataset(session=s, name="w", split="test")
        ids = db.upsert_examples(session=s, dataset_id=ds, examples=[
            dict(key=f"k{{i}}", row_index=i, messages=[{{"role": "user", "content": "q"}}]) for i in range({n})])
        run = db.create_run(session=s, name="w", model="m", backend="t", dataset_id=ds)
    print(run, flush=True)
    for b in range({batches}):
        with S.begin() as s:
            db.insert_results(session=s, run_id=run, results=[
                dict(example_id=ids[f"k{{b * {size} + j}}"], output="o" * 200, output_tokens=1, finish_reason="stop",
                     metrics={{"bleu": 1.0, "chrf": 2.0}}) for j in range({size})])
""")


def test_reader_sees_only_whole_batches_while_a_writer_commits(store_url):
    batches, size = 40, 50
    code = WRITER.format(root=str(ROOT), url=store_url, n=batches * size, batches=batches, size=size)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    run = int(proc.stdout.readline())
    reader = db.open_store_readonly(store_url)
    Session = db.session_factory(reader)
    seen = []
    while proc.poll() is None or not seen or seen[-1] < batches * size:
        with Session() as s:
            n_results = s.scalar(select(func.count()).select_from(db.Result).where(db.Result.run_id == run))
            n_values = s.scalar(select(func.count()).select_from(db.MetricValue).where(db.MetricValue.run_id == run))
        seen.append(n_results)
        assert n_results % size == 0, f"saw a partial batch: {n_results}"
        assert n_values == 2 * n_results, "results visible without their metrics"
        if proc.poll() is not None and n_results == batches * size:
            break
    assert proc.wait() == 0
    assert seen[-1] == batches * size
    assert len(set(seen)) > 2, "the reader never overlapped the writer"
