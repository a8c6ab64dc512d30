"""The run lease (db/_lease.py) on SQLite and PostgreSQL: one writer at a time, a stale lease is free,
a writer known dead is replaced at once, and the status a person reads says so."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import update

import db
from tests.support.store_seed import seed_minimal


@pytest.fixture()
def run(any_engine):
    ids = seed_minimal(any_engine, n_examples=2)
    return db.session_factory(any_engine), ids["candidate"]


def _take(sf, run_id, writer, **kw):
    with sf.begin() as s:
        return db.acquire_run(session=s, run_id=run_id, writer=writer, **kw)


def _get(sf, run_id):
    with sf() as s:
        return db.get_run(session=s, run_id=run_id)


def _age(sf, run_id, seconds):
    with sf.begin() as s:
        s.execute(update(db.Run).where(db.Run.id == run_id)
                  .values(heartbeat_at=db.utcnow() - dt.timedelta(seconds=seconds)))


def test_one_writer_at_a_time_and_the_holder_is_named(run):
    sf, run_id = run
    assert _take(sf, run_id, "host-a:1:x") is None
    assert _take(sf, run_id, "host-a:1:x") is None  # the holder may take it again
    holder = _take(sf, run_id, "host-b:2:y")
    assert holder["writer"] == "host-a:1:x" and holder["heartbeat_at"] is not None
    assert _get(sf, run_id)["writer"] == "host-a:1:x"


def test_a_stale_lease_is_free_and_a_renewed_one_is_not(run, monkeypatch):
    sf, run_id = run
    monkeypatch.setenv(db.LEASE_ENV, "60")
    _take(sf, run_id, "a:1:x")
    _age(sf, run_id, 30)
    assert _take(sf, run_id, "b:2:y") is not None  # 30 s of silence: still alive
    _age(sf, run_id, 61)
    with sf.begin() as s:
        assert db.renew_runs(session=s, run_ids=[run_id], writer="a:1:x") == 1  # a heartbeat just in time
    assert _take(sf, run_id, "b:2:y") is not None
    _age(sf, run_id, 61)
    assert _take(sf, run_id, "b:2:y") is None  # silent for longer than the lease: gone
    with sf.begin() as s:
        assert db.renew_runs(session=s, run_ids=[run_id], writer="a:1:x") == 0  # the old writer lost it


def test_a_writer_known_dead_is_replaced_at_once_and_release_frees_the_run(run):
    sf, run_id = run
    _take(sf, run_id, "a:1:x")
    assert _take(sf, run_id, "b:2:y", dead_writer="a:9:other") is not None  # not the holder: no effect
    assert _take(sf, run_id, "b:2:y", dead_writer="a:1:x") is None
    with sf.begin() as s:
        db.release_run(session=s, run_id=run_id, writer="a:1:x")  # a release by a non-holder changes nothing
    assert _get(sf, run_id)["writer"] == "b:2:y"
    with sf.begin() as s:
        db.release_run(session=s, run_id=run_id, writer="b:2:y")
    assert _get(sf, run_id)["writer"] is None and _take(sf, run_id, "c:3:z") is None


def test_of_many_writers_racing_for_a_free_run_exactly_one_wins(run):
    sf, run_id = run
    results: dict[str, object] = {}
    start = threading.Barrier(6)

    def contend(name):
        start.wait()
        results[name] = _take(sf, run_id, name)

    threads = [threading.Thread(target=contend, args=(f"w{i}:{i}:t",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    winners = [name for name, holder in results.items() if holder is None]
    assert len(results) == 6 and len(winners) == 1
    assert _get(sf, run_id)["writer"] == winners[0]
    assert all(h["writer"] == winners[0] for h in results.values() if h is not None)


def test_status_text_reads_interrupted_once_a_running_runs_writer_is_silent(run, monkeypatch):
    sf, run_id = run
    monkeypatch.setenv(db.LEASE_ENV, "60")
    with sf.begin() as s:
        db.update_run(session=s, run_id=run_id, status="running")
    _take(sf, run_id, "a:1:x")
    assert _get(sf, run_id)["status_text"] == "running"
    _age(sf, run_id, 61)
    got = _get(sf, run_id)
    beat = got["heartbeat_at"].strftime("%Y-%m-%d %H:%M:%S")
    assert got["status"] == "running" and got["status_text"] == f"interrupted (no writer since {beat} UTC)"
    with sf() as s:
        assert [r["id"] for r in db.list_runs(session=s, status="interrupted")] == [run_id]
        assert run_id not in [r["id"] for r in db.list_runs(session=s, status="running")]
