"""Review-mode store queries and saving verdicts: latest verdicts, pass rates, decision log, queues,
invalid verdicts, and two reviewers saving at once, on SQLite and on PostgreSQL; a write lock held past the
timeout, on SQLite."""
from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import threading
import time

import pytest
from sqlalchemy import event, select

import db
from dashboard import _links
from dashboard import _review as review
from tests.support.review_data import RunSpec, make_store


def _hand(url):
    ids = make_store(url, [RunSpec("r1", metrics={"q": [0.1 * i for i in range(8)]}),
                           RunSpec("r2", metrics={"q": [1.0] * 8})],
                     n_examples=8, categories=["a", "b"] * 4)
    engine = db.make_engine(url)
    yield ids, db.session_factory(engine)
    engine.dispose()


@pytest.fixture()
def hand(any_store_url):
    """The hand-made store on SQLite and on PostgreSQL."""
    yield from _hand(any_store_url)


@pytest.fixture()
def sqlite_hand(store_url):
    yield from _hand(store_url)


def _annotate(Session, run_id, example_id, reviewer, verdict, comment=""):
    with Session.begin() as s:
        db.add_annotation(session=s, run_id=run_id, example_id=example_id, reviewer=reviewer, verdict=verdict,
                          comment=comment)


def test_a_reviewers_later_verdict_replaces_the_earlier_one(hand):
    ids, Session = hand
    r1, ex = ids["runs"]["r1"], ids["example_ids"]
    _annotate(Session, r1, ex[0], "alice", "fail: model error")
    _annotate(Session, r1, ex[0], "alice", "pass", "on second look")
    _annotate(Session, r1, ex[0], "bob", "needs discussion")
    with Session() as s:
        latest = db.latest_verdicts(session=s, run_id=r1)
        log = db.decision_log(session=s, run_ids=[r1])
        summary = db.verdict_summaries(session=s, run_id=r1, example_ids=[ex[0], ex[1]])
    assert [(v["reviewer"], v["verdict"], v["comment"]) for v in latest] == [
        ("alice", "pass", "on second look"), ("bob", "needs discussion", "")]
    assert [(r["reviewer"], r["verdict"], r["latest"]) for r in log] == [
        ("alice", "fail: model error", False), ("alice", "pass", True), ("bob", "needs discussion", True)]
    assert log[0]["run_name"] == "r1" and log[0]["key"] == "key000"
    assert summary == {ex[0]: {"pass": 1, "needs discussion": 1}}


def test_human_pass_rate_is_the_share_of_reviewed_examples_most_reviewers_passed(hand):
    ids, Session = hand
    r1, r2, ex = ids["runs"]["r1"], ids["runs"]["r2"], ids["example_ids"]
    _annotate(Session, r1, ex[0], "bob", "pass")
    _annotate(Session, r1, ex[1], "alice", "fail: model error")
    _annotate(Session, r1, ex[1], "alice", "pass")  # replaces her fail
    _annotate(Session, r1, ex[5], "carol", "pass")
    _annotate(Session, r1, ex[5], "dave", "fail: model error")  # 1 of 2: no majority
    _annotate(Session, r1, ex[7], "alice", "fail: metric misleading")
    with Session() as s:
        rates = db.human_pass_rates(session=s, run_ids=[r1, r2])
    assert rates[r1] == dict(reviewed=4, passed=2, pass_rate=0.5, verdicts=5,
                             by_verdict={"pass": 3, "fail: model error": 1, "fail: metric misleading": 1})
    assert rates[r2] == dict(reviewed=0, passed=0, pass_rate=None, verdicts=0, by_verdict={})


def test_decision_log_filters_by_queue_time_and_reviewer(hand):
    ids, Session = hand
    r1, ex = ids["runs"]["r1"], ids["example_ids"]
    _annotate(Session, r1, ex[0], "alice", "pass")
    _annotate(Session, r1, ex[2], "bob", "pass")
    with Session() as s:
        assert [r["example_id"] for r in db.decision_log(session=s, run_ids=[r1], example_ids=[ex[2]])] == [ex[2]]
        assert [r["reviewer"] for r in db.decision_log(session=s, run_ids=[r1], reviewer="alice")] == ["alice"]
        later = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(hours=1)
        assert db.decision_log(session=s, run_ids=[r1], since=later) == []
        assert db.decision_log(session=s, run_ids=[]) == []


def test_queue_from_a_saved_browser_filter_and_verdicts_in_the_browser_filter(hand):
    ids, Session = hand
    r1, ex = ids["runs"]["r1"], ids["example_ids"]
    params = {"run": str(r1), "category": "b", "range": "q:0.25:", "page": "2"}
    with Session.begin() as s:
        db.save_view(session=s, name="b, q >= 0.25", params=params, created_by="alice")
    with Session() as s:
        view = db.saved_view(session=s, name="b, q >= 0.25")
        assert [v["name"] for v in db.saved_views(session=s)] == ["b, q >= 0.25"]
        query = _links.filters_from_params(view["params"])
        queue = db.queue_example_ids(session=s, query=query)
    assert queue == [ex[3], ex[5], ex[7]]  # category b (odd rows) with q = 0.3, 0.5, 0.7
    _annotate(Session, r1, queue[0], "alice", "pass")
    _annotate(Session, r1, queue[1], "alice", "fail: reference wrong")
    with Session() as s:
        passed = db.page_results(session=s, query=db.ResultQuery(run_id=r1, verdict="pass")).rows
        unreviewed = db.count_results(session=s, query=query.replace(verdict="unreviewed"))
    assert [r["example_id"] for r in passed] == [ex[3]]
    assert unreviewed == 1


@pytest.mark.parametrize("reviewer, verdict, example, message", [
    ("  ", "pass", 0, "enter your name"),
    ("alice", None, 0, "choose a verdict"),
    ("alice", "meh", 0, "unknown verdict"),
    ("alice", "pass", 999_999, "no longer in the run"),
])
def test_invalid_verdicts_are_refused_with_a_reason_and_nothing_stored(hand, reviewer, verdict, example, message):
    ids, Session = hand
    r1, ex = ids["runs"]["r1"], ids["example_ids"]
    example_id = ex[example] if example < len(ex) else example
    error = review.record_verdict(Session.begin, run_id=r1, example_id=example_id, reviewer=reviewer,
                                  verdict=verdict, comment="c")
    assert error is not None and message in error
    with Session() as s:
        assert db.latest_verdicts(session=s, run_id=r1) == []


def test_two_reviewers_saving_at_once_both_land(any_store_url, hand):
    ids, _ = hand
    r1, ex = ids["runs"]["r1"], ids["example_ids"]
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def reviewer(name: str, hold_s: float) -> None:
        engine = db.make_engine(any_store_url)  # as two dashboard processes would: separate engines
        Session = db.session_factory(engine)

        @contextlib.contextmanager
        def slow_transaction():
            barrier.wait()
            with Session.begin() as s:
                yield s
                time.sleep(hold_s)  # keep the write lock while the other reviewer saves

        try:
            results[name] = review.record_verdict(slow_transaction, run_id=r1, example_id=ex[0], reviewer=name,
                                                  verdict="pass", comment=f"{name} was here")
        finally:
            engine.dispose()

    threads = [threading.Thread(target=reviewer, args=(n, 0.3)) for n in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == {"alice": None, "bob": None}
    with hand[1]() as s:
        assert sorted((v["reviewer"], v["comment"]) for v in db.latest_verdicts(session=s, run_id=r1)) == [
            ("alice", "alice was here"), ("bob", "bob was here")]


def test_a_lock_held_past_the_timeout_is_a_message_and_the_retry_saves(store_url, sqlite_hand):
    ids, Session = sqlite_hand
    r1, ex = ids["runs"]["r1"], ids["example_ids"]
    engine = db.make_engine(store_url)

    @event.listens_for(engine, "connect")
    def _short_timeout(dbapi_conn, _record):  # after make_engine's own pragmas: wait 0.1 s, not 30 s
        dbapi_conn.execute("PRAGMA busy_timeout = 100")

    blocker = sqlite3.connect(store_url.removeprefix("sqlite:///"), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # an evaluator mid-write
    try:
        error = review.record_verdict(db.session_factory(engine).begin, run_id=r1, example_id=ex[1],
                                      reviewer="alice", verdict="pass", comment="kept")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert error is not None and "press Save again" in error
    assert review.record_verdict(db.session_factory(engine).begin, run_id=r1, example_id=ex[1], reviewer="alice",
                                 verdict="pass", comment="kept") is None
    with Session() as s:
        assert s.scalar(select(db.Annotation.comment)) == "kept"
    engine.dispose()
