"""Per-example history across versions: newly broken / fixed and flaky examples on hand-made values,
on SQLite and on PostgreSQL."""
from __future__ import annotations

import pytest

import db
from tests.support.review_data import RunSpec, make_store

FAIL = (None, "metric crashed")  # a failed metric value: neither pass nor fail
# example:   0     1     2     3     4     5     6
SCORES = {
    "v1": [0.9, 0.9, 0.1, 0.9, 0.1, 0.9, 0.5],
    "v2": [0.9, 0.1, 0.9, FAIL, 0.1, 0.1, 0.4],
    "v3": [0.9, 0.9, 0.1, 0.1, 0.9, None, 0.5],
    "v4": [0.9, 0.1, None, 0.9, 0.9, None, 0.5],
}
# pass = score >= 0.5: ex1 PFPF (3 flips), ex2 FPF. (2), ex3 P.FP (2), ex6 PFPP (2) are flaky;
# ex4 FFPP flips once; ex5 PF.. has only two versions.


def _store(store_url: str, *, columns: bool) -> dict:
    runs = [RunSpec(name, metrics={"score": vals, "loss": vals}, columns=columns) for name, vals in SCORES.items()]
    return make_store(store_url, runs, n_examples=7, higher_is_better={"score": True, "loss": False})


@pytest.fixture(scope="module", params=[True, False], ids=["metric-columns", "metric-values-fallback"])
def hand(request, new_store_url):
    """One read-only store per (backend, metric columns or not), shared by the module's tests."""
    url = new_store_url()
    ids = _store(url, columns=request.param)
    engine = db.make_engine(url)
    yield ids, db.session_factory(engine)
    engine.dispose()


def test_newly_broken_and_fixed_between_two_versions(hand):
    ids, Session = hand
    ex, runs = ids["example_ids"], ids["runs"]
    with Session() as s:
        bf = db.broken_and_fixed(session=s, before_run_id=runs["v1"], after_run_id=runs["v2"], metric="score",
                                 threshold=0.5)
    assert bf["n_shared"] == 6  # example 3's metric failed in v2
    assert [r["example_id"] for r in bf["broken"]] == [ex[1], ex[5], ex[6]]  # 0.5 passes, 0.4 fails
    assert [r["example_id"] for r in bf["fixed"]] == [ex[2]]
    assert (bf["n_broken"], bf["n_fixed"]) == (3, 1)
    assert bf["broken"][0] == dict(example_id=ex[1], key="key001", row_index=1, category=None, prompt="user: question 1",
                                   before=0.9, after=0.1)


def test_lower_is_better_metric_flips_the_meaning_of_broken(hand):
    ids, Session = hand
    ex, runs = ids["example_ids"], ids["runs"]
    with Session() as s:
        bf = db.broken_and_fixed(session=s, before_run_id=runs["v1"], after_run_id=runs["v2"], metric="loss",
                                 threshold=0.5, higher_is_better=False)
    assert [r["example_id"] for r in bf["broken"]] == [ex[2]]
    assert [r["example_id"] for r in bf["fixed"]] == [ex[1], ex[5]]


def test_flaky_examples_alternate_at_least_twice_over_three_versions(hand):
    ids, Session = hand
    ex, runs = ids["example_ids"], ids["runs"]
    with Session() as s:
        fl = db.flaky_examples(session=s, run_ids=list(runs.values())[::-1], metric="score", threshold=0.5)
    assert fl["total"] == 4
    got = [(r["example_id"], r["pattern"], r["flips"], r["versions"]) for r in fl["rows"]]
    assert got == [(ex[1], "PFPF", 3, 4), (ex[2], "FPF.", 2, 3), (ex[3], "P.FP", 2, 3), (ex[6], "PFPP", 2, 4)]


def test_flaky_over_versions_that_hold_the_same_examples(new_store_url):
    scores = {"r1": [0.9, 0.1, 0.9, 0.9], "r2": [0.1, 0.1, 0.9, 0.1], "r3": [0.9, 0.9, 0.1, 0.9]}
    url = new_store_url()
    ids = make_store(url, [RunSpec(n, metrics={"score": v}) for n, v in scores.items()], n_examples=4,
                     higher_is_better={"score": True})
    engine = db.make_engine(url)
    with db.session_factory(engine)() as s:
        fl = db.flaky_examples(session=s, run_ids=list(ids["runs"].values()), metric="score", threshold=0.5)
    engine.dispose()
    assert fl["total"] == 2
    assert [(r["key"], r["pattern"], r["flips"]) for r in fl["rows"]] == [("key000", "PFP", 2), ("key003", "PFP", 2)]


def test_flaky_needs_three_versions(hand):
    ids, Session = hand
    runs = ids["runs"]
    with Session() as s:
        assert db.flaky_examples(session=s, run_ids=[runs["v1"], runs["v2"]], metric="score", threshold=0.5) == \
            {"rows": [], "total": 0}
        assert db.flaky_examples(session=s, run_ids=list(runs.values()), metric="nope", threshold=0.5)["total"] == 0


def test_example_history_pass_pattern_and_flips(hand):
    ids, Session = hand
    with Session() as s:
        history = db.example_history(session=s, dataset_id=ids["dataset_id"], key="key003")
    assert [h["run_name"] for h in history] == ["v1", "v2", "v3", "v4"]
    pattern = db.pass_pattern(history, "score", 0.5)
    assert pattern == [True, None, False, True]
    assert db.count_flips(pattern) == 2
    assert db.count_flips([True, True, None, False]) == 1


def test_find_examples_by_key_prefix_or_prompt_text(hand):
    ids, Session = hand
    with Session() as s:
        assert [r["key"] for r in db.find_examples(session=s, dataset_id=ids["dataset_id"], text="key00")][:2] == \
            ["key000", "key001"]
        assert [r["key"] for r in db.find_examples(session=s, dataset_id=ids["dataset_id"], text="QUESTION 5")] == \
            ["key005"]
        assert db.find_examples(session=s, dataset_id=ids["dataset_id"], text="100%_") == []
        ref = db.example_ref(session=s, example_id=ids["example_ids"][3])
    assert (ref["dataset_id"], ref["key"]) == (ids["dataset_id"], "key003")
