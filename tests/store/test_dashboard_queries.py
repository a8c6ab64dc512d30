"""db/_query_dashboard.py: the dashboard's own read queries, checked against plain Python on a seeded store
(one store per backend: every test runs on SQLite and on PostgreSQL)."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

import db
from db._columns import align
from tests.support.dashboard_seed import seed_store


@pytest.fixture(scope="module")
def store(new_store_url):
    url = new_store_url()
    ids = seed_store(url)
    engine = db.open_store_readonly(url)
    yield db.session_factory(engine), ids
    engine.dispose()


def _pairs(s, a, b, metric):
    """(example_id, value A, value B) the slow way: one result_detail per example."""
    out = []
    for rid_a in db.iter_results(session=s, query=db.ResultQuery(run_id=a)):
        ex = rid_a["example_id"]
        other = db.result_detail(session=s, run_id=b, example_id=ex)
        va, vb = rid_a["metrics"].get(metric), (other or {}).get("metrics", {}).get(metric)
        if va is not None and vb is not None:
            out.append((ex, va, vb))
    return out


def test_list_datasets_counts_runs(store):
    Session, ids = store
    with Session() as s:
        ds = {d["id"]: d for d in db.list_datasets(session=s)}
    assert ds[ids["dataset_id"]]["n_runs"] == len(ids["runs"]) - 1 and ds[ids["dataset2_id"]]["n_runs"] == 1


def test_metric_info_knows_direction(store):
    with store[0]() as s:
        info = db.metric_info(session=s)
    assert info["perplexity"] is False and info["exact_match"] is True


def test_metric_bounds_match_the_values(store):
    Session, ids = store
    with Session() as s:
        bounds = db.metric_bounds(session=s, run_id=ids["latest"], metrics=["bleu", "rouge_l", "unknown"])
        vals = db.metric_values(session=s, run_id=ids["latest"], metric="bleu")
    assert bounds["bleu"] == (min(vals), max(vals)) and "unknown" not in bounds


@pytest.mark.parametrize("pair", ["latest", "qwen"])  # with metric columns / falling back to metric_values
@pytest.mark.parametrize("metric,bins,exact", [("exact_match", 60, True), ("rouge_l", 60, True), ("rouge_l", 8, False),
                                               ("perplexity", 10, False)])
def test_paired_grid_counts_every_shared_example_once(store, pair, metric, bins, exact):
    Session, ids = store
    a, b = ((ids["latest"], ids["latest_baseline"]) if pair == "latest"
            else (ids["runs"]["qwen-tune:r2"], ids["runs"]["qwen-tune:r1"]))
    with Session() as s:
        grid = db.paired_grid(session=s, run_a_id=a, run_b_id=b, metric=metric, bins=bins)
        pairs = _pairs(s, a, b, metric)
    assert grid["n"] == len(pairs) == sum(n for _, _, n in grid["cells"])
    assert len(grid["cells"]) <= bins ** 2
    assert (grid["width"] is None) == exact
    if exact:
        expected = Counter((x, y) for _, x, y in pairs)
        got = Counter({(x, y): n for x, y, n in grid["cells"]})
    else:
        w, lo = grid["width"], grid["lo"]

        def cell(v):
            return min(int(math.floor((v - lo) / w)), bins - 1)

        expected = Counter((cell(x), cell(y)) for _, x, y in pairs)
        got = Counter({(round((x - lo) / w), round((y - lo) / w)): n for x, y, n in grid["cells"]})
    assert got == expected


@pytest.mark.parametrize("ea,eb,common", [
    ([1, 2, 5], [1, 2, 5], [1, 2, 5]),  # the same examples: the identity
    ([1, 2, 5], [1, 3, 5], [1, 5]),  # as many examples, not the same ones
    ([1, 2, 5, 7], [2, 7], [2, 7]),
    ([], [], []),
])
def test_align_joins_two_id_columns(ea, eb, common):
    ea, eb = np.array(ea, np.int64), np.array(eb, np.int64)
    ids, ia, ib = align(ea, eb)
    assert list(ids) == common and list(ea[ia]) == common and list(eb[ib]) == common


def test_paired_grid_of_unknown_metric_is_empty(store):
    Session, ids = store
    with Session() as s:
        assert db.paired_grid(session=s, run_a_id=ids["latest"], run_b_id=ids["latest_baseline"], metric="nope")["n"] == 0


def test_compare_examples_orders_and_pages(store):
    Session, ids = store
    a, b = ids["latest"], ids["latest_baseline"]
    with Session() as s:
        pairs = _pairs(s, a, b, "rouge_l")
        first = db.compare_examples(session=s, run_a_id=a, run_b_id=b, metric="rouge_l", order="diff_desc",
                                    page=0, page_size=10)
        second = db.compare_examples(session=s, run_a_id=a, run_b_id=b, metric="rouge_l", order="diff_desc",
                                     page=1, page_size=10)
        absolute = db.compare_examples(session=s, run_a_id=a, run_b_id=b, metric="rouge_l", order="abs_desc",
                                       page_size=100)
    assert first["total"] == len(pairs)
    diffs = [r["diff"] for r in first["rows"] + second["rows"]]
    assert diffs == sorted((x - y for _, x, y in pairs), reverse=True)[:20]
    assert [abs(r["diff"]) for r in absolute["rows"]] == sorted((abs(x - y) for _, x, y in pairs), reverse=True)
    row = first["rows"][0]
    assert {"prompt_text", "reference", "output_a", "output_b", "key", "category"} <= set(row)
    assert math.isclose(row["diff"], row["value_a"] - row["value_b"])


def test_compare_examples_flips_box_and_category(store):
    Session, ids = store
    a, b = ids["latest"], ids["latest_baseline"]
    with Session() as s:
        pairs = _pairs(s, a, b, "rouge_l")
        flips = db.compare_examples(session=s, run_a_id=a, run_b_id=b, metric="rouge_l", threshold=0.5,
                                    flips_only=True, page_size=100)
        box = db.compare_examples(session=s, run_a_id=a, run_b_id=b, metric="rouge_l",
                                  box=db.Box(0.8, None, None, 0.5), page_size=100)
        cat = db.compare_examples(session=s, run_a_id=a, run_b_id=b, metric="rouge_l", category="support",
                                  page_size=100)
    assert flips["total"] == sum(1 for _, x, y in pairs if (x >= 0.5) != (y >= 0.5)) > 0
    assert box["total"] == sum(1 for _, x, y in pairs if x >= 0.8 and y <= 0.5) > 0
    assert all(r["value_a"] >= 0.8 and r["value_b"] <= 0.5 for r in box["rows"])
    assert cat["total"] > 0 and {r["category"] for r in cat["rows"]} == {"support"}


def test_delta_by_slice_adds_up_to_delta_summary(store):
    Session, ids = store
    a, b = ids["latest"], ids["latest_baseline"]
    with Session() as s:
        overall = {r["metric"]: r for r in db.delta_summary(session=s, run_a_id=a, run_b_id=b)}
        slices = db.delta_by_slice(session=s, run_a_id=a, run_b_id=b)
    for metric, row in overall.items():
        mine = [r for r in slices if r["metric"] == metric]
        assert sum(r["n"] for r in mine) == row["n"]  # every seeded example has a category
        assert sum(r["a_greater"] for r in mine) == row["a_greater"]
        assert math.isclose(sum(r["mean_delta"] * r["n"] for r in mine) / row["n"], row["mean_delta"], abs_tol=1e-9)
    assert any(r["slice"] == "category=<i>weird</i> & co" for r in slices)


def test_annotations_of_newest_first(store):
    Session, ids = store
    with Session() as s:
        rows = db.annotations_of(session=s, run_id=ids["latest"], example_id=ids["hostile_example_ids"][0])
        none = db.annotations_of(session=s, run_id=ids["latest"], example_id=ids["example_ids"][0])
    assert [r["reviewer"] for r in rows] == ["dana"] and rows[0]["verdict"] == db.VERDICTS[0] and none == []


def test_datasets_without_runs_are_listed_last(any_engine):
    Session = db.session_factory(any_engine)
    with Session.begin() as s:
        empty = db.get_or_create_dataset(session=s, name="never-run.jsonl")
        used = db.get_or_create_dataset(session=s, name="used.jsonl")
        db.create_run(session=s, name="r", model="m", backend="transformers", dataset_id=used)
    with Session() as s:
        assert [(d["id"], d["n_runs"]) for d in db.list_datasets(session=s)] == [(used, 1), (empty, 0)]


def test_a_pass_threshold_is_one_per_dataset_and_metric_and_keeps_who_set_it(any_engine):
    Session = db.session_factory(any_engine)
    with Session.begin() as s:
        d1 = db.get_or_create_dataset(session=s, name="a.jsonl")
        d2 = db.get_or_create_dataset(session=s, name="b.jsonl")
        db.set_pass_threshold(session=s, dataset_id=d1, metric="bleu", threshold=30, set_by="ann")
        db.set_pass_threshold(session=s, dataset_id=d1, metric="rougeL", threshold=0.4, set_by="ann")
        db.set_pass_threshold(session=s, dataset_id=d2, metric="bleu", threshold=55.5, set_by="bob")
    with Session.begin() as s:
        db.set_pass_threshold(session=s, dataset_id=d1, metric="bleu", threshold=35, set_by="bob")  # replaces
    with Session() as s:
        one, two = db.pass_thresholds(session=s, dataset_id=d1), db.pass_thresholds(session=s, dataset_id=d2)
    assert {m: (t["threshold"], t["set_by"]) for m, t in one.items()} == {"bleu": (35.0, "bob"), "rougeL": (0.4, "ann")}
    assert {m: t["threshold"] for m, t in two.items()} == {"bleu": 55.5}
    with Session.begin() as s:
        db.set_pass_threshold(session=s, dataset_id=d1, metric="bleu", threshold=None)  # removes
        for bad in (math.nan, math.inf):
            with pytest.raises(ValueError, match="finite"):
                db.set_pass_threshold(session=s, dataset_id=d1, metric="bleu", threshold=bad)
        with pytest.raises(ValueError, match="metric"):
            db.set_pass_threshold(session=s, dataset_id=d1, metric=" ", threshold=1.0)
    with Session() as s:
        assert set(db.pass_thresholds(session=s, dataset_id=d1)) == {"rougeL"}


def test_a_comparison_method_of_any_length_is_stored_whole(any_engine):
    """A corpus comparison's method (sacrebleu's bootstrap, its CI, the tokenisation, the resamples behind
    its p-value) is about 190 characters: PostgreSQL refused it while the column was VARCHAR(100)."""
    from evaluator.scoring._catalogue import get_spec
    from evaluator.scoring._stats import P_RESAMPLED, PAIRED_CORPUS_METHOD

    method = f"{PAIRED_CORPUS_METHOD}; {P_RESAMPLED.format(20000, 1000)}; {get_spec('bleu').corpus.description}"
    assert len(method) > 150
    Session = db.session_factory(any_engine)
    with Session.begin() as s:
        ds = db.get_or_create_dataset(session=s, name="m.jsonl")
        a, b = (db.create_run(session=s, name=n, model=n, backend="transformers", dataset_id=ds) for n in "ab")
        db.replace_comparisons(session=s, run_a_id=a, run_b_id=b, rows=[
            dict(metric="bleu", kind="corpus", n=3, value_a=2.0, value_b=1.0, delta=1.0, method=method)])
    with Session() as s:
        (row,) = db.stored_comparisons(session=s, run_a_id=a, run_b_id=b)
    assert row["method"] == method
