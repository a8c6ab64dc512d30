"""The example browser's queries against a plain-Python oracle, on SQLite and PostgreSQL.

``db/_query.py`` builds one SQL statement per filter combination and picks between two page plans.
Hand-written cases cover a few combinations; this module seeds one store with two runs whose data
has ties, missing and failed metric values, several reviewers who change their minds, and row order
unlike id order, then checks a few hundred generated queries against the same selection computed in
Python from the raw tables. Counts, every page, a review queue's example ids and the CSV iterator
must all agree, under both page plans.
"""
from __future__ import annotations

import itertools
import os
import random

import pytest
from sqlalchemy import select

import db
from db import _query

N_EXAMPLES = 40
PAGE = 7
CATEGORIES = ("math", "chat", None)
TAGS = ("t1", "t2", "hard", "a_b")  # "_" is a LIKE wildcard: searched literally
WORDS = ("alpha", "beta", "gamma", "delta", "100%", "a_b")
REVIEWERS = ("ann", "bob")


def _seed(engine) -> dict:
    """Two runs of one dataset. Run A has every example; run B lacks every fifth, and its results were
    written in shuffled order, so result ids do not follow the dataset."""
    rng = random.Random(20261203)
    Session = db.session_factory(engine)
    with Session.begin() as s:
        ds = db.get_or_create_dataset(session=s, name="oracle.jsonl", split="test")
        # Inserted in key order, with row_index running the other way: "row" order is not id order.
        examples = []
        for i in range(N_EXAMPLES):
            words = " ".join(rng.sample(WORDS, 2))
            examples.append(dict(
                key=f"e{i:02d}", row_index=N_EXAMPLES - i,
                messages=[{"role": "user", "content": f"Q{i} {words}"}],
                reference=None if i % 9 == 0 else f"ref {rng.choice(WORDS)}",
                category=CATEGORIES[i % 3], tags=[t for t in TAGS if rng.random() < 0.4]))
        keys = db.upsert_examples(session=s, dataset_id=ds, examples=examples)
        runs = {}
        for name in ("A", "B"):
            runs[name] = db.create_run(session=s, name=name, model=name, backend="transformers", dataset_id=ds)
            rows = []
            for i in range(N_EXAMPLES):
                if name == "B" and i % 5 == 0:
                    continue
                metrics = {"bleu": float(rng.choice([0, 10, 20, 20, 35, 50, 80])),
                           "chrf": round(rng.uniform(0, 100), 1)}
                if i % 7 == 3:
                    metrics["bleu"] = (None, "metric failed")  # a NULL value: not in any range, sorted last
                if i % 6 == 4:
                    del metrics["chrf"]  # not applicable: no row at all
                if name == "B":
                    metrics["only_b"] = float(i % 4)
                rows.append(dict(
                    example_id=keys[f"e{i:02d}"], output=f"out {rng.choice(WORDS)} {i}", output_tokens=3,
                    finish_reason=rng.choice(["stop", "length"]), failures=rng.choice([0, 0, 1, 2, 3, 16]),
                    latency_ms=None if i % 8 == 1 else float(rng.choice([5, 10, 10, 40])), metrics=metrics))
            if name == "B":  # results land out of dataset order (as with several ranks or a resume)
                rng.shuffle(rows)
            db.insert_results(session=s, run_id=runs[name], results=rows,
                              higher_is_better={"bleu": True, "chrf": True, "only_b": True})
        for _ in range(30):  # verdicts, with reviewers changing their minds
            run = runs[rng.choice("AB")]
            i = rng.randrange(N_EXAMPLES)
            if run == runs["B"] and i % 5 == 0:
                continue
            db.add_annotation(session=s, run_id=run, example_id=keys[f"e{i:02d}"],
                              reviewer=rng.choice(REVIEWERS), verdict=rng.choice(db.VERDICTS[:3]))
        # A later verdict replaces only the same reviewer's on the same run: ann's verdict on e01 in run A
        # stands after her verdict on e01 in run B and bob's on e01 in run A.
        e01 = keys["e01"]
        db.add_annotation(session=s, run_id=runs["A"], example_id=e01, reviewer="ann", verdict=db.VERDICTS[0])
        db.add_annotation(session=s, run_id=runs["B"], example_id=e01, reviewer="ann", verdict=db.VERDICTS[1])
        db.add_annotation(session=s, run_id=runs["A"], example_id=e01, reviewer="bob", verdict=db.VERDICTS[1])
    return dict(runs=runs)


def _tables(engine) -> dict:
    """The raw rows the oracle reads: plain selects, none of the code under test."""
    with engine.connect() as c:
        examples = {r.id: r for r in c.execute(select(db.ExampleRow.__table__))}
        results = list(c.execute(select(db.Result.__table__)))
        names = dict(c.execute(select(db.Metric.id, db.Metric.name)).all())
        values = {(r.result_id, names[r.metric_id]): r.value for r in c.execute(select(db.MetricValue.__table__))}
        annotations = sorted(c.execute(select(db.Annotation.__table__)), key=lambda a: a.id)
    return dict(examples=examples, results=results, values=values, annotations=annotations, metrics=set(names.values()))


def _verdicts(t: dict, run_id: int, example_id: int) -> list[str]:
    """Each reviewer's latest verdict on the result (empty when nobody reviewed it)."""
    latest = {}
    for a in t["annotations"]:
        if a.run_id == run_id and a.example_id == example_id:
            latest[a.reviewer] = a.verdict
    return list(latest.values())


def _selected(t: dict, q: db.ResultQuery) -> list[int]:
    """Result ids the browser must show for ``q``, in order."""
    ranges = [r for r in q.ranges if r.lo is not None or r.hi is not None]
    if any(r.metric not in t["metrics"] for r in ranges):
        return []
    out = []
    for r in t["results"]:
        e = t["examples"][r.example_id]
        if r.run_id != q.run_id:
            continue
        ok = True
        for rg in ranges:
            v = t["values"].get((r.id, rg.metric))
            ok &= v is not None and (rg.lo is None or v >= rg.lo) and (rg.hi is None or v <= rg.hi)
        if q.text:
            ok &= any(q.text.lower() in (x or "").lower() for x in (e.prompt_text, r.output, e.reference))
        if q.category:
            ok &= e.category == q.category
        if q.tag:
            ok &= q.tag in (e.tags or [])
        if q.failure == "any":
            ok &= r.failures != 0
        elif q.failure == "none":
            ok &= r.failures == 0
        elif q.failure:
            ok &= bool(r.failures & int(db.FailureKind.parse(q.failure)))
        verdicts = _verdicts(t, r.run_id, r.example_id)
        if q.verdict == "unreviewed":
            ok &= not verdicts
        elif q.verdict == "any":
            ok &= bool(verdicts)
        elif q.verdict:
            ok &= q.verdict in verdicts
        if q.example_ids is not None:
            ok &= r.example_id in q.example_ids
        if ok:
            out.append(r)
    return [r.id for r in _ordered(t, q, out)]


def _ordered(t: dict, q: db.ResultQuery, rows: list) -> list:
    if q.sort in t["metrics"] and q.sort not in _query.SORT_COLUMNS:
        valued = [r for r in rows if t["values"].get((r.id, q.sort)) is not None]
        rest = [r for r in rows if t["values"].get((r.id, q.sort)) is None]
        valued.sort(key=lambda r: (t["values"][(r.id, q.sort)], r.id), reverse=q.descending)
        return valued + sorted(rest, key=lambda r: r.example_id)
    column = {"row": lambda r: t["examples"][r.example_id].row_index, "latency_ms": lambda r: r.latency_ms,
              "finish_reason": lambda r: r.finish_reason}.get(q.sort or "")
    if column is None:  # dataset order (a sort metric this store has never seen falls back to it too)
        return sorted(rows, key=lambda r: r.example_id, reverse=q.descending)
    present = sorted([r for r in rows if column(r) is not None], key=lambda r: r.id)
    present.sort(key=column, reverse=q.descending)  # stable: ties stay in id order either way
    return present + sorted([r for r in rows if column(r) is None], key=lambda r: r.id)


# Generated queries: 160 in every test run. `make mutation` runs this module once for each of several
# hundred mutants of db/_query.py, most of whose survivors are equivalent: there it generates 60, which
# still kill every mutant the 160 kill in that module (docs/mutation.md has the comparison).
def _n_generated() -> int:
    # Read per call: the module is imported before mutmut names the mutant ("x_f__mutmut_3").
    return 60 if "__mutmut_" in os.environ.get("MUTANT_UNDER_TEST", "") else 160


def _queries(runs: dict) -> list[db.ResultQuery]:
    rng = random.Random(7)
    bounds = [None, 0.0, 10.0, 20.0, 35.0, 50.0, 62.5, 100.0]
    out = []
    for _ in range(_n_generated()):
        ranges = []
        for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
            lo, hi = rng.choice(bounds), rng.choice(bounds)
            ranges.append(db.MetricRange(rng.choice(["bleu", "chrf", "chrf", "only_b"]), lo, hi))
        row_filters = rng.random() < 0.5
        out.append(db.ResultQuery(
            run_id=runs[rng.choice("AB")], ranges=tuple(ranges),
            text=rng.choice([None, "alpha", "A_B", "100%", "Q1", "ref gamma"]) if row_filters else None,
            category=rng.choice([None, None, "math", "chat"]) if row_filters else None,
            tag=rng.choice([None, None, "t1", "hard"]) if row_filters else None,
            failure=rng.choice([None, "any", "none", "empty", "truncated", "error"]) if row_filters else None,
            verdict=rng.choice([None, "any", "unreviewed", "pass", "fail: model error"]) if row_filters else None,
            sort=rng.choice([None, "bleu", "chrf", "only_b", "row", "latency_ms", "finish_reason", "nope"]),
            descending=rng.random() < 0.5))
    # Fixed cases the generator may miss: an id list, an unknown range metric, a range with no bounds.
    a = runs["A"]
    out += [db.ResultQuery(run_id=a, example_ids=(3, 5, 8, 40, 999), sort="bleu"),
            db.ResultQuery(run_id=a, example_ids=(), sort="row"),
            db.ResultQuery(run_id=a, ranges=(db.MetricRange("nope", 0, 1),), sort="bleu"),
            db.ResultQuery(run_id=a, ranges=(db.MetricRange("nope"), db.MetricRange("bleu", 20, None)), sort="chrf"),
            db.ResultQuery(run_id=a, ranges=(db.MetricRange("bleu", None, 20),), sort="chrf", descending=True),
            db.ResultQuery(run_id=a, ranges=(db.MetricRange("chrf", 50, None),), sort="bleu"),
            db.ResultQuery(run_id=a, ranges=(db.MetricRange("bleu", 20, None), db.MetricRange("nope", 0, 1))),
            db.ResultQuery(run_id=a, ranges=(db.MetricRange("bleu", 20, None), db.MetricRange("nope", 0, 1)),
                           text="alpha", sort="chrf"),
            db.ResultQuery(run_id=a, verdict=db.VERDICTS[0]), db.ResultQuery(run_id=a, verdict=db.VERDICTS[1]),
            db.ResultQuery(run_id=a, tag="a_b"), db.ResultQuery(run_id=a, tag="a%b"),
            db.ResultQuery(run_id=a, tag="t\x00"),  # a NUL in the search selects nothing (no error)
            db.ResultQuery(run_id=runs["B"], sort="chrf", ranges=(  # each range after the first narrows it
                db.MetricRange("bleu", 0, None), db.MetricRange("only_b", None, 1), db.MetricRange("chrf", 50, None)))]
    return out


@pytest.fixture(scope="module")
def oracle_store(new_store_url):
    url = new_store_url()
    engine = db.open_store(url)
    seeded = _seed(engine)
    yield engine, seeded["runs"], _tables(engine)
    engine.dispose()


@pytest.mark.parametrize("filter_driven_max", [0, 10**9], ids=["index-walk", "filter-driven"])
def test_every_generated_query_selects_what_the_oracle_selects(oracle_store, filter_driven_max, monkeypatch):
    engine, runs, t = oracle_store
    monkeypatch.setattr(_query, "FILTER_DRIVEN_MAX", filter_driven_max)
    example_of = {r.id: r.example_id for r in t["results"]}
    queries = _queries(runs)
    nonempty = 0
    with db.session_factory(engine)() as s:
        for q in queries:
            want = _selected(t, q)
            nonempty += bool(want)
            assert db.count_results(session=s, query=q) == len(want), q
            got, page = [], 0
            while True:
                p = db.page_results(session=s, query=q, page=page, page_size=PAGE)
                assert p.total == len(want), q
                got += [r["result_id"] for r in p.rows]
                if len(p.rows) < PAGE:
                    break
                page += 1
            assert got == want, q
            assert db.selected_example_ids(session=s, query=q, limit=5, offset=3) == \
                [example_of[i] for i in want[3:8]], q
            # at most one row too many: an iterator that stops advancing fails here instead of looping
            iterated = itertools.islice(db.iter_results(session=s, query=q, chunk=4), len(want) + 1)
            assert [r["result_id"] for r in iterated] == want, q
            untotalled = db.page_results(session=s, query=q, page=1, page_size=PAGE, with_total=False)
            assert untotalled.total == len(untotalled.rows) == len(want[PAGE:2 * PAGE]), q
    assert nonempty >= len(queries) // 3  # the generated filters are not all empty selections


def test_page_rows_carry_the_results_fields_and_all_their_metrics(oracle_store):
    engine, runs, t = oracle_store
    by_id = {r.id: r for r in t["results"]}
    with db.session_factory(engine)() as s:
        rows = db.page_results(session=s, query=db.ResultQuery(run_id=runs["B"], sort="chrf"), page_size=100).rows
    assert len(rows) == sum(1 for r in t["results"] if r.run_id == runs["B"])
    for row in rows:
        r, e = by_id[row["result_id"]], t["examples"][by_id[row["result_id"]].example_id]
        assert (row["example_id"], row["key"], row["row_index"], row["category"]) == (e.id, e.key, e.row_index,
                                                                                        e.category)
        assert (row["prompt_text"], row["reference"], row["output"]) == (e.prompt_text, e.reference, r.output)
        assert (row["finish_reason"], row["latency_ms"], row["output_tokens"]) == (r.finish_reason, r.latency_ms, 3)
        assert row["failures"] == db.FailureKind.names(r.failures)
        expected = {m: v for (rid, m), v in t["values"].items() if rid == r.id}
        assert row["metrics"] == expected
