"""Write API and read queries of the store, on a migrated temporary store."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

import db
from tests.support.store_seed import seed_minimal


@pytest.fixture()
def seeded(any_engine):
    engine = any_engine
    ids = seed_minimal(engine, n_examples=6)
    return engine, db.session_factory(engine), ids


def _keys(page):
    return [r["key"] for r in page.rows]


def test_insert_results_writes_results_and_metric_values_in_one_batch(seeded):
    engine, Session, ids = seeded
    with Session() as s:
        assert s.scalar(select(func.count()).select_from(db.Result).where(db.Result.run_id == ids["candidate"])) == 6
        # bleu for all six, rougeL for five values + one recorded error
        assert s.scalar(select(func.count()).select_from(db.MetricValue)
                        .where(db.MetricValue.run_id == ids["candidate"])) == 12


def test_failed_metric_is_stored_as_its_error_not_a_value(seeded):
    _, Session, ids = seeded
    with Session() as s:
        d = db.result_detail(session=s, run_id=ids["candidate"], example_id=ids["example_ids"]["k0"])
    assert d["metrics"]["rougeL"] is None
    assert d["metric_errors"] == {"rougeL": "boom"}


def test_duplicate_result_for_same_run_and_example_is_refused(seeded):
    """The unique (run, example) constraint is what makes a resume that re-evaluates a done example fail
    loudly instead of storing two answers for it."""
    _, Session, ids = seeded
    with pytest.raises(IntegrityError):
        with Session.begin() as s:
            db.insert_results(session=s, run_id=ids["candidate"], results=[
                dict(example_id=ids["example_ids"]["k1"], output="x", output_tokens=1, finish_reason="stop")])
    with Session() as s:
        assert s.scalar(select(func.count()).select_from(db.Result).where(db.Result.run_id == ids["candidate"])) == 6


def test_done_example_ids_are_the_runs_own_results_only(seeded):
    """Example ids are shared by every run of a dataset: a resume must skip only what its own run did."""
    _, Session, ids = seeded
    with Session.begin() as s:
        third = db.create_run(session=s, name="third", model="m3", backend="transformers",
                              dataset_id=ids["dataset_id"])
        db.insert_results(session=s, run_id=third, results=[
            dict(example_id=ids["example_ids"]["k2"], output="x", output_tokens=1, finish_reason="stop")])
    with Session() as s:
        assert db.done_example_ids(session=s, run_id=third) == {ids["example_ids"]["k2"]}
        assert db.done_example_ids(session=s, run_id=ids["candidate"]) == set(ids["example_ids"].values())


def test_upsert_examples_returns_existing_ids_for_known_keys(seeded):
    _, Session, ids = seeded
    with Session.begin() as s:
        again = db.upsert_examples(session=s, dataset_id=ids["dataset_id"], examples=[
            dict(key="k1", row_index=1, messages=[{"role": "user", "content": "changed"}]),
            dict(key="new", row_index=9, messages=[{"role": "user", "content": "new"}]),
        ])
        assert again["k1"] == ids["example_ids"]["k1"]
        assert s.scalar(select(func.count()).select_from(db.ExampleRow)) == 7


def test_page_filters_on_metric_range_and_sorts_by_another(seeded):
    _, Session, ids = seeded
    q = db.ResultQuery(run_id=ids["candidate"], ranges=(db.MetricRange("rougeL", 0.65, None),), sort="bleu",
                       descending=True)
    with Session() as s:
        page = db.page_results(session=s, query=q)
    # rougeL = 0.1*i + 0.5 >= 0.65  ->  i in 2..5 ; bleu = 25 + i descending
    assert _keys(page) == ["k5", "k4", "k3", "k2"]
    assert page.total == 4
    assert page.rows[0]["metrics"]["bleu"] == pytest.approx(30.0)


def test_metric_range_bounds_are_inclusive_on_both_ends(seeded):
    _, Session, ids = seeded
    # bleu = 25 + i for the candidate (i = 0..5): [26, 28] holds k1, k2, k3; an upper bound alone and a
    # lower bound alone cut on their own side only.
    cases = [(26.0, 28.0, ["k1", "k2", "k3"]), (None, 26.0, ["k0", "k1"]), (29.0, None, ["k4", "k5"]),
             (27.5, 27.5, [])]
    with Session() as s:
        for lo, hi, expected in cases:
            q = db.ResultQuery(run_id=ids["candidate"], ranges=(db.MetricRange("bleu", lo, hi),), sort="bleu")
            page = db.page_results(session=s, query=q)
            assert _keys(page) == expected and page.total == len(expected), (lo, hi)
            assert db.count_results(session=s, query=q) == len(expected)


def test_sort_puts_missing_values_last_in_both_directions(seeded):
    _, Session, ids = seeded
    with Session() as s:
        up = db.page_results(session=s, query=db.ResultQuery(run_id=ids["candidate"], sort="rougeL"))
        down = db.page_results(session=s, query=db.ResultQuery(run_id=ids["candidate"], sort="rougeL", descending=True))
    assert _keys(up)[-1] == "k0" and _keys(down)[-1] == "k0"
    assert _keys(up)[:5] == ["k1", "k2", "k3", "k4", "k5"]


def test_pages_partition_the_selection(seeded):
    _, Session, ids = seeded
    q = db.ResultQuery(run_id=ids["candidate"], sort="bleu")
    with Session() as s:
        pages = [db.page_results(session=s, query=q, page=p, page_size=4) for p in range(3)]
    assert [len(p.rows) for p in pages] == [4, 2, 0]
    assert sum((_keys(p) for p in pages), []) == [f"k{i}" for i in range(6)]


def test_text_search_treats_sql_metacharacters_as_text(seeded):
    _, Session, ids = seeded
    with Session() as s:
        for needle in ("%", "_", "' OR 1=1 --", "\\"):
            assert db.page_results(session=s, query=db.ResultQuery(run_id=ids["candidate"], text=needle)).total == 0
        hit = db.page_results(session=s, query=db.ResultQuery(run_id=ids["candidate"], text="QUESTION 3 É"))
    assert _keys(hit) == ["k3"]


def test_filters_by_category_tag_failure_and_verdict(seeded):
    _, Session, ids = seeded
    with Session() as s:
        cat = db.page_results(session=s, query=db.ResultQuery(run_id=ids["candidate"], category="math"))
        tag = db.page_results(session=s, query=db.ResultQuery(run_id=ids["candidate"], tag="t"))
        empty = db.page_results(session=s, query=db.ResultQuery(run_id=ids["baseline"], failure="empty"))
        none = db.page_results(session=s, query=db.ResultQuery(run_id=ids["candidate"], failure="any"))
        passed = db.page_results(session=s, query=db.ResultQuery(run_id=ids["candidate"], verdict="pass"))
        unrev = db.page_results(session=s, query=db.ResultQuery(run_id=ids["candidate"], verdict="unreviewed"))
    assert _keys(cat) == ["k1", "k3", "k5"]
    assert tag.total == 6
    assert empty.total == 6 and empty.rows[0]["failures"] == ["empty"]
    with Session() as s:  # "none": results without any failure (every baseline answer here is empty)
        for run, n in ((ids["candidate"], 6), (ids["baseline"], 0)):
            assert db.page_results(session=s, query=db.ResultQuery(run_id=run, failure="none")).total == n
        second = db.page_results(session=s, query=db.ResultQuery(run_id=ids["candidate"]), page=1, page_size=4)
    assert (_keys(second), second.total, second.page, second.page_size) == (["k4", "k5"], 6, 1, 4)
    assert none.total == 0
    assert _keys(passed) == ["k1"]
    assert unrev.total == 5


def test_unknown_metric_in_a_filter_selects_nothing(seeded):
    _, Session, ids = seeded
    with Session() as s:
        for sort in (None, "bleu"):
            page = db.page_results(session=s, query=db.ResultQuery(run_id=ids["candidate"], sort=sort,
                                                                   ranges=(db.MetricRange("nope", 0, 1),)))
            assert page.total == 0 and page.rows == []


def test_result_detail_round_trips_token_logprobs(seeded):
    _, Session, ids = seeded
    with Session() as s:
        d = db.result_detail(session=s, run_id=ids["candidate"], example_id=ids["example_ids"]["k2"])
    assert d["tokens"] == ["a", "n", "s"]
    assert d["logprobs"] == pytest.approx([-0.1, -0.2, -0.3], abs=1e-6)
    assert d["messages"] == [{"role": "user", "content": "question 2 é"}]


def test_join_runs_pairs_values_on_example(seeded):
    _, Session, ids = seeded
    with Session() as s:
        pairs = db.join_runs(session=s, run_a_id=ids["candidate"], run_b_id=ids["baseline"], metric="bleu")
    assert sorted((k, a, b) for _, k, _, a, b in pairs) == [(f"k{i}", 25.0 + i, float(i)) for i in range(6)]


def test_delta_summary_counts_wins_per_metric(seeded):
    _, Session, ids = seeded
    with Session() as s:
        rows = {r["metric"]: r for r in db.delta_summary(session=s, run_a_id=ids["candidate"], run_b_id=ids["baseline"])}
    assert rows["bleu"]["n"] == 6 and rows["bleu"]["mean_delta"] == pytest.approx(25.0)
    assert (rows["bleu"]["a_greater"], rows["bleu"]["equal"], rows["bleu"]["a_less"]) == (6, 0, 0)
    assert rows["rougeL"]["n"] == 5  # the failed value is left out


def test_example_history_lists_runs_in_order(seeded):
    _, Session, ids = seeded
    with Session() as s:
        hist = db.example_history(session=s, dataset_id=ids["dataset_id"], key="k2")
    assert [h["run_name"] for h in hist] == ["cand", "base"]
    assert hist[0]["metrics"]["bleu"] == 27.0


def test_list_runs_has_counts_and_headline_aggregates(seeded):
    _, Session, ids = seeded
    with Session() as s:
        runs = {r["name"]: r for r in db.list_runs(session=s)}
        assert db.find_run(session=s, ref="cand") == ids["candidate"]
        assert db.find_run(session=s, ref=str(ids["baseline"])) == ids["baseline"]
        with pytest.raises(db.StoreError):
            db.find_run(session=s, ref="missing")
    assert runs["cand"]["n_results"] == 6 and runs["cand"]["n_rejected"] == 1
    assert runs["cand"]["aggregates"]["bleu"]["mean"][0] == 1.5
    assert runs["base"]["baseline_for_id"] == ids["candidate"]


def test_annotation_needs_a_reviewer_and_a_known_verdict_and_example(seeded):
    _, Session, ids = seeded
    with Session.begin() as s:
        with pytest.raises(db.AnnotationError, match="name"):
            db.add_annotation(session=s, run_id=ids["candidate"], example_id=ids["example_ids"]["k1"],
                              reviewer="  ", verdict="pass")
        with pytest.raises(db.AnnotationError, match="unknown verdict"):
            db.add_annotation(session=s, run_id=ids["candidate"], example_id=ids["example_ids"]["k1"],
                              reviewer="bo", verdict="meh")
        with pytest.raises(db.AnnotationError, match="no longer"):
            db.add_annotation(session=s, run_id=ids["candidate"], example_id=10_000, reviewer="bo", verdict="pass")


def test_replace_metric_values_only_touches_named_metrics(seeded):
    _, Session, ids = seeded
    with Session() as s:
        rid = db.page_results(session=s, query=db.ResultQuery(run_id=ids["candidate"])).rows[1]["result_id"]
    with Session.begin() as s:
        db.replace_metric_values(session=s, run_id=ids["candidate"], values={rid: {"bleu": 99.0, "rougeL": 0.0}},
                                 only=["bleu"])
    with Session() as s:
        m = db.metrics_for_results(session=s, result_ids=[rid])[rid]
    assert m["bleu"] == 99.0 and m["rougeL"] == pytest.approx(0.6)


def test_logprobs_pack_to_four_bytes_a_token():
    blob = db.pack_logprobs([-1.5, 0.0, -20.25])
    assert len(blob) == 12
    assert db.unpack_logprobs(blob) == [-1.5, 0.0, -20.25]


def test_verdict_filter_matches_each_reviewers_latest_verdict(seeded):
    _, Session, ids = seeded
    k1 = ids["example_ids"]["k1"]
    with Session.begin() as s:
        db.add_annotation(session=s, run_id=ids["candidate"], example_id=k1, reviewer="ann",
                          verdict="fail: model error")
    with Session() as s:
        passed = db.page_results(session=s, query=db.ResultQuery(run_id=ids["candidate"], verdict="pass"))
        failed = db.page_results(session=s, query=db.ResultQuery(run_id=ids["candidate"], verdict="fail: model error"))
    assert passed.total == 0  # ann changed her mind
    assert _keys(failed) == ["k1"]


def test_sorting_by_a_column_orders_by_it_then_result_id_with_empty_values_last(any_engine):
    """Sort by row, latency or finish reason, both ways, alone and with the filters that join examples: values
    in order, ties by result id, results without a value last either way."""
    sf = db.session_factory(any_engine)
    latency = [30.0, None, 10.0, 20.0, None, 10.0]
    finish = ["stop", "length", "stop", "error", "length", "stop"]
    with sf.begin() as s:
        ds = db.get_or_create_dataset(session=s, name="sorted.jsonl", split="test")
        keys = db.upsert_examples(session=s, dataset_id=ds, examples=[
            dict(key=f"k{i}", row_index=(7 * i) % 6, messages=[{"role": "user", "content": f"q{i}"}],
                 category="odd" if i % 2 else "even", tags=["t"] if i < 4 else []) for i in range(6)])
        run = db.create_run(session=s, name="r", model="m", backend="transformers", dataset_id=ds)
        order = [3, 0, 5, 1, 4, 2]  # result ids in another order than keys and rows
        db.insert_results(session=s, run_id=run, results=[
            dict(example_id=keys[f"k{i}"], output="o", output_tokens=1, finish_reason=finish[i], latency_ms=latency[i])
            for i in order], higher_is_better={})
    rid = {f"k{i}": n for n, i in enumerate(order)}
    values = {"row": {f"k{i}": (7 * i) % 6 for i in range(6)}, "latency_ms": {f"k{i}": latency[i] for i in range(6)},
              "finish_reason": {f"k{i}": finish[i] for i in range(6)}}

    def expected(sort, descending, keep):
        valued = sorted((k for k in keep if values[sort][k] is not None),
                        key=lambda k: (values[sort][k], -rid[k] if descending else rid[k]), reverse=descending)
        return valued + sorted((k for k in keep if values[sort][k] is None), key=rid.get)

    with sf() as s:
        for sort in ("row", "latency_ms", "finish_reason"):
            for descending in (False, True):
                for filters, keep in (({}, list(values["row"])), (dict(category="odd"), ["k1", "k3", "k5"]),
                                      (dict(tag="t"), ["k0", "k1", "k2", "k3"]), (dict(text="q4"), ["k4"])):
                    q = db.ResultQuery(run_id=run, sort=sort, descending=descending, **filters)
                    page = db.page_results(session=s, query=q)
                    assert _keys(page) == expected(sort, descending, keep), (sort, descending, filters)
