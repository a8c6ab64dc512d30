"""Store reads that pages and commands rely on, each pinned field by field (mutation testing found them
only exercised through pages): rejected rows, a run's dataset and categories, its metric names and
values, an example's history across runs, review-queue ids, failure counts per run."""
from __future__ import annotations

import datetime as dt
import itertools

import pytest

import db
from db._query_runs import RUN_COLUMNS

T0 = dt.datetime(2026, 3, 1, 9, 0)


@pytest.fixture()
def store(any_engine):
    """Two datasets. On "support": run 1 (newer, created second), run 2 (older, created first, a
    baseline); on "other": run 3 with another metric. Example k1 fails in run 1."""
    sf = db.session_factory(any_engine)
    with sf.begin() as s:
        ds = db.get_or_create_dataset(session=s, name="support.jsonl", split="test")
        other = db.get_or_create_dataset(session=s, name="other.jsonl", split="test")
        keys = db.upsert_examples(session=s, dataset_id=ds, examples=[
            dict(key=f"k{i}", row_index=i, messages=[{"role": "user", "content": f"q{i}"}], reference=f"r{i}",
                 category=["billing", "tech", None][i % 3]) for i in range(4)])
        okeys = db.upsert_examples(session=s, dataset_id=other, examples=[
            dict(key="k0", row_index=0, messages=[{"role": "user", "content": "same key, other dataset"}],
                 category="zzz")])
        newer = db.create_run(session=s, name="newer", model="m-new", backend="transformers", dataset_id=ds,
                              family="fam")
        older = db.create_run(session=s, name="older", model="m-old", backend="transformers", dataset_id=ds)
        third = db.create_run(session=s, name="third", model="m3", backend="transformers", dataset_id=other)
        for run, days in ((newer, 2), (older, 0), (third, 1)):
            db.update_run(session=s, run_id=run, created_at=T0 + dt.timedelta(days=days))
        for run, shift in ((newer, 10.0), (older, 0.0)):
            db.insert_results(session=s, run_id=run, results=[
                dict(example_id=keys[f"k{i}"], output=f"out {run} {i}", output_tokens=2,
                     finish_reason="error" if (run == newer and i == 1) else "stop",
                     failures=int(db.FailureKind.ERROR) if (run == newer and i == 1) else 0,
                     metrics={"bleu": shift + i, "rougeL": None if i == 3 else 0.1 * i})
                for i in range(4)], higher_is_better={"bleu": True, "rougeL": True})
        db.insert_results(session=s, run_id=third, results=[
            dict(example_id=okeys["k0"], output="x", output_tokens=1, finish_reason="length",
                 failures=int(db.FailureKind.TRUNCATED), metrics={"chrf": 55.0})], higher_is_better={"chrf": True})
        db.add_rejected(session=s, run_id=newer, rows=[
            dict(row_index=9, reason="row 9 (line 10): late", raw="{9"),
            dict(row_index=4, reason="row 4 (line 5): early", raw=None)])
        db.add_rejected(session=s, run_id=older, rows=[dict(row_index=7, reason="other run's row", raw="x")])
    return sf, dict(ds=ds, other=other, newer=newer, older=older, third=third, keys=keys)


def test_rejected_rows_are_the_runs_own_in_row_order(store):
    sf, ids = store
    with sf() as s:
        rows = db.rejected_rows(session=s, run_id=ids["newer"])
    assert rows == [dict(row_index=4, reason="row 4 (line 5): early", raw=None),
                    dict(row_index=9, reason="row 9 (line 10): late", raw="{9")]


def test_dataset_of_a_run_and_its_categories(store):
    sf, ids = store
    with sf() as s:
        assert db.dataset_of_run(session=s, run_id=ids["third"]) == dict(
            id=ids["other"], name="other.jsonl", split="test", turns="last")
        assert db.dataset_of_run(session=s, run_id=9999) is None
        assert db.run_categories(session=s, run_id=ids["newer"]) == ["billing", "tech"]  # sorted, no None
        assert db.run_categories(session=s, run_id=ids["third"]) == ["zzz"]


def test_metric_names_and_values_are_the_runs_own(store):
    sf, ids = store
    with sf() as s:
        assert db.run_metric_names(session=s, run_id=ids["newer"]) == ["bleu", "rougeL"]
        assert db.run_metric_names(session=s, run_id=ids["third"]) == ["chrf"]
        assert sorted(db.metric_values(session=s, run_id=ids["newer"], metric="bleu")) == [10.0, 11.0, 12.0, 13.0]
        assert sorted(db.metric_values(session=s, run_id=ids["older"], metric="rougeL")) == pytest.approx(
            [0.0, 0.1, 0.2])  # the missing value is left out
        assert db.metric_values(session=s, run_id=ids["newer"], metric="chrf") == []
        assert db.metric_values(session=s, run_id=ids["newer"], metric="no-such-metric") == []


def test_example_history_is_every_run_of_its_dataset_oldest_first_with_every_field(store):
    sf, ids = store
    with sf() as s:
        history = db.example_history(session=s, dataset_id=ids["ds"], key="k1")
    assert [h["run_id"] for h in history] == [ids["older"], ids["newer"]]  # by date, not by id
    old, new = history
    assert {k: old[k] for k in ("run_name", "family", "created_at", "output", "finish_reason", "failures")} == dict(
        run_name="older", family=None, created_at=T0, output=f"out {ids['older']} 1", finish_reason="stop",
        failures=[])
    assert {k: new[k] for k in ("run_name", "family", "output", "finish_reason", "failures")} == dict(
        run_name="newer", family="fam", output=f"out {ids['newer']} 1", finish_reason="error", failures=["error"])
    assert new["metrics"] == {"bleu": 11.0, "rougeL": pytest.approx(0.1)}
    assert isinstance(new["result_id"], int) and new["result_id"] != old["result_id"]


def test_selected_example_ids_follow_the_browser_order_with_limit_and_offset(store):
    sf, ids = store
    q = db.ResultQuery(run_id=ids["newer"], sort="bleu", descending=True)
    k = ids["keys"]
    with sf() as s:
        assert db.selected_example_ids(session=s, query=q) == [k["k3"], k["k2"], k["k1"], k["k0"]]
        assert db.selected_example_ids(session=s, query=q, limit=2) == [k["k3"], k["k2"]]
        assert db.selected_example_ids(session=s, query=q, limit=2, offset=1) == [k["k2"], k["k1"]]


def test_list_runs_counts_failures_per_run(store):
    sf, ids = store
    with sf() as s:
        runs = {r["id"]: r for r in db.list_runs(session=s)}
    assert (runs[ids["newer"]]["n_results"], runs[ids["newer"]]["n_failed"]) == (4, 1)
    assert (runs[ids["older"]]["n_results"], runs[ids["older"]]["n_failed"]) == (4, 0)
    assert (runs[ids["third"]]["n_results"], runs[ids["third"]]["n_failed"]) == (1, 0)
    assert [r["id"] for r in db.list_runs(session=s)] == [ids["newer"], ids["third"], ids["older"]]  # newest first


def test_list_runs_filters_each_on_its_own_column_with_inclusive_dates(store):
    sf, ids = store
    with sf.begin() as s:
        db.update_run(session=s, run_id=ids["older"], adapter="/ckpt/lora-xyz")
        empty = db.create_run(session=s, name="empty", model="m-new", backend="transformers", dataset_id=ids["other"])
        db.update_run(session=s, run_id=empty, created_at=T0 + dt.timedelta(days=2), status="failed")

    def names(**kw):
        with sf() as s:
            return [r["name"] for r in db.list_runs(session=s, **kw)]

    assert names(model="M-OLD") == ["older"]  # the model column, case-insensitive
    assert names(model="thir") == ["third"]  # the name column
    assert names(model="lora-xyz") == ["older"]  # the adapter column
    assert names(dataset="other") == ["empty", "third"]  # newest first, the later id first on a tie
    assert names(dataset="support") == ["newer", "older"]
    assert names(since=T0 + dt.timedelta(days=1)) == ["empty", "newer", "third"]  # bounds are inclusive
    assert names(until=T0 + dt.timedelta(days=1)) == ["third", "older"]
    assert names(status="failed") == ["empty"]
    assert names(status="finished") == []
    assert names(status="running") == ["newer", "third", "older"]  # no writer ever: running as it says
    assert names(status="interrupted") == []
    with sf() as s:
        rows = {r["name"]: r for r in db.list_runs(session=s)}
    assert (rows["empty"]["n_results"], rows["empty"]["n_failed"], rows["empty"]["aggregates"]) == (0, 0, {})
    assert (rows["third"]["dataset"], rows["third"]["split"]) == ("other.jsonl", "test")


def test_export_rows_hold_every_field_in_dataset_order_across_chunks(store):
    sf, ids = store
    with sf.begin() as s:  # one result with everything set, on example k2
        ex = db.upsert_examples(session=s, dataset_id=ids["ds"], examples=[
            dict(key="k9", row_index=2, messages=[{"role": "system", "content": "be brief"},
                                                  {"role": "user", "content": "q9"}],
                 reference="r9", category="billing", source="crm", conversation_id="c-9", turn_index=3,
                 tags=["hard", "vip"], metadata={"ticket": 42})])
        db.insert_results(session=s, run_id=ids["newer"], results=[dict(
            example_id=ex["k9"], output="answer nine", output_tokens=3, prompt_tokens=11, finish_reason="length",
            failures=int(db.FailureKind.TRUNCATED | db.FailureKind.REPETITION), error=None, latency_ms=12.5,
            logprobs=[-0.5, -0.25, -1.0], tokens=["an", "swer", " nine"], ref_nll=2.5, ref_tokens=4,
            metrics={"bleu": 7.0, "rougeL": (None, "boom")})], higher_is_better={"bleu": True, "rougeL": True})
    with sf() as s:
        # islice: a chunked read that stops advancing must fail here, not loop for ever
        records = list(itertools.islice(db.export_rows(session=s, run_id=ids["newer"], chunk=2), 50))
        again = list(db.export_rows(session=s, run_id=ids["newer"], chunk=1000))
        assert list(db.export_rows(session=s, run_id=9999)) == []
    assert records == again  # the chunk size changes nothing
    assert [(r["row_index"], r["example_key"]) for r in records] == [(0, "k0"), (1, "k1"), (2, "k2"), (2, "k9"),
                                                                      (3, "k3")]
    nine = records[3]
    assert {k: v for k, v in nine.items() if k not in ("token_logprobs", "run_created_at", "example_id")} == dict(
        run_id=ids["newer"], example_key="k9", row_index=2, category="billing",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "q9"}], reference="r9",
        output="answer nine", finish_reason="length", output_tokens=3, prompt_tokens=11,
        failures=["truncated", "repetition"], error=None, latency_ms=12.5, ref_nll=2.5, ref_tokens=4,
        metrics={"bleu": 7.0, "rougeL": None}, run_name="newer", model="m-new", dataset="support.jsonl",
        split="test", turns="last", dataset_fingerprint="name:support.jsonl", turn_index=3, conversation_id="c-9", source="crm", tags=["hard", "vip"],
        metadata={"ticket": 42})
    assert nine["token_logprobs"] == pytest.approx([-0.5, -0.25, -1.0])
    assert nine["run_created_at"] == (T0 + dt.timedelta(days=2)).isoformat()
    assert nine["example_id"] == ex["k9"]
    assert list(records[1]["metrics"]) == ["bleu", "rougeL"]  # sorted by name
    assert records[1]["failures"] == ["error"] and records[0]["failures"] == []


def test_names_and_categories_come_sorted_whatever_the_insertion_order(any_engine):
    sf = db.session_factory(any_engine)
    with sf.begin() as s:
        ds = db.get_or_create_dataset(session=s, name="d.jsonl", split="test")
        keys = db.upsert_examples(session=s, dataset_id=ds, examples=[
            dict(key=f"k{i}", row_index=i, messages=[{"role": "user", "content": "q"}], category=c)
            for i, c in enumerate(["zulu", "alpha", "mike"])])
        run = db.create_run(session=s, name="r", model="m", backend="transformers", dataset_id=ds)
        db.insert_results(session=s, run_id=run, results=[
            dict(example_id=keys[f"k{i}"], output="x", output_tokens=1, finish_reason="stop",
                 metrics={"zeta": 1.0, "alpha": 2.0, "mu": 3.0}) for i in range(3)],
            higher_is_better={"zeta": True, "alpha": True, "mu": True})
    with sf() as s:
        assert db.run_categories(session=s, run_id=run) == ["alpha", "mike", "zulu"]
        assert db.run_metric_names(session=s, run_id=run) == ["alpha", "mu", "zeta"]


def test_overall_aggregates_in_the_run_list_are_the_whole_run_rows_with_their_ci(store):
    sf, ids = store
    with sf.begin() as s:
        db.replace_aggregates(session=s, run_id=ids["newer"], rows=[
            dict(metric="bleu", slice="", kind="mean", n=4, value=11.5, ci_low=10.2, ci_high=12.8),
            dict(metric="bleu", slice="category=tech", kind="mean", n=1, value=99.0, ci_low=98.0, ci_high=99.5),
            dict(metric="bleu", slice="", kind="corpus", n=4, value=30.0, ci_low=None, ci_high=None)])
    with sf() as s:
        runs = {r["id"]: r for r in db.list_runs(session=s)}
    assert runs[ids["newer"]]["aggregates"] == {"bleu": {"mean": (11.5, 10.2, 12.8, 4), "corpus": (30.0, None, None, 4)}}
    assert runs[ids["older"]]["aggregates"] == {}


def test_a_null_adapter_and_a_backslash_are_searched_literally(store):
    sf, ids = store
    with sf.begin() as s:
        db.update_run(session=s, run_id=ids["third"], adapter="C:\\lora\\v2")
    with sf() as s:
        assert [r["name"] for r in db.list_runs(session=s, model="xx")] == []  # a NULL adapter is no text
        assert [r["name"] for r in db.list_runs(session=s, model="\\lora\\")] == ["third"]
        assert [r["name"] for r in db.list_runs(session=s, model="C:\\\\lora")] == []


def test_a_review_queue_holds_at_most_500_examples_and_a_page_50_by_default(any_engine):
    sf = db.session_factory(any_engine)
    with sf.begin() as s:
        ds = db.get_or_create_dataset(session=s, name="big.jsonl", split="test")
        keys = db.upsert_examples(session=s, dataset_id=ds, examples=[
            dict(key=f"k{i}", row_index=i, messages=[{"role": "user", "content": "q"}]) for i in range(501)])
        run = db.create_run(session=s, name="r", model="m", backend="transformers", dataset_id=ds)
        db.insert_results(session=s, run_id=run, results=[
            dict(example_id=keys[f"k{i}"], output="x", output_tokens=1, finish_reason="stop") for i in range(501)])
    with sf() as s:
        assert len(db.selected_example_ids(session=s, query=db.ResultQuery(run_id=run))) == 500
        assert len(db.page_results(session=s, query=db.ResultQuery(run_id=run)).rows) == 50  # a page, by default


# Rows are written out of order below, so that a query that drops one of its sort keys returns another order.
SHUFFLED = [("category=b", "a", "mean"), ("", "b", "mean"), ("", "a", "mean"), ("", "a", "corpus")]
SORTED = [("", "a", "corpus"), ("", "a", "mean"), ("", "b", "mean"), ("category=b", "a", "mean")]


def test_a_runs_aggregates_are_its_own_sorted_by_slice_metric_and_kind(store):
    sf, ids = store
    with sf.begin() as s:
        for run, base in ((ids["newer"], 0.0), (ids["older"], 100.0)):
            db.replace_aggregates(session=s, run_id=run, rows=[
                dict(metric=m, slice=sl, kind=k, n=i + 1, value=base + i, ci_low=base + i - 0.5, ci_high=base + i + 0.5,
                     extra={"i": i} if i == 0 else None) for i, (sl, m, k) in enumerate(SHUFFLED)])
    with sf() as s:
        rows = db.run_aggregates(session=s, run_id=ids["newer"])
        assert db.run_aggregates(session=s, run_id=ids["third"]) == []
    assert [(r["slice"], r["metric"], r["kind"]) for r in rows] == SORTED
    assert rows[3] == dict(metric="a", slice="category=b", kind="mean", n=1, value=0.0, ci_low=-0.5, ci_high=0.5,
                           extra={"i": 0})
    assert rows[0]["extra"] == {} and (rows[0]["n"], rows[0]["value"]) == (4, 3.0)


def test_stored_comparisons_are_the_pairs_own_in_order_with_every_column(store):
    sf, ids = store
    rows = [dict(metric=m, slice=sl, kind=k, n=4, value_a=2.0, value_b=1.0 + i, delta=1.0 - i, ci_low=-0.5,
                 ci_high=1.5, p_value=0.01 * (i + 1), p_holm=0.04, wins=3, ties=i, losses=1 - (i % 2),
                 method=f"method {i}") for i, (sl, m, k) in enumerate(SHUFFLED)]
    with sf.begin() as s:
        db.replace_comparisons(session=s, run_a_id=ids["newer"], run_b_id=ids["older"], rows=rows)
        db.replace_comparisons(session=s, run_a_id=ids["newer"], run_b_id=ids["third"], rows=rows[:1])
        db.replace_comparisons(session=s, run_a_id=ids["third"], run_b_id=ids["older"], rows=rows[:1])
    with sf() as s:
        got = db.stored_comparisons(session=s, run_a_id=ids["newer"], run_b_id=ids["older"])
        assert db.stored_comparisons(session=s, run_a_id=ids["older"], run_b_id=ids["newer"]) == []
    assert [(r["slice"], r["metric"], r["kind"]) for r in got] == SORTED
    first = dict(got[3])
    assert first.pop("created_at") is not None
    assert first == dict(metric="a", slice="category=b", kind="mean", n=4, value_a=2.0, value_b=1.0, delta=1.0,
                         ci_low=-0.5, ci_high=1.5, p_value=0.01, p_holm=0.04, wins=3, ties=0, losses=1,
                         method="method 0")


def test_baselines_of_a_run_are_the_runs_evaluated_for_it_in_id_order(store):
    sf, ids = store
    with sf.begin() as s:
        later = db.create_run(session=s, name="b2", model="m", backend="transformers", dataset_id=ids["ds"],
                              baseline_for_id=ids["newer"])
        db.link_baseline(session=s, candidate_id=ids["newer"], baseline_id=ids["older"])
        db.link_baseline(session=s, candidate_id=ids["older"], baseline_id=ids["third"])
        # a reused baseline serves two candidates; linking a pair again changes nothing
        db.link_baseline(session=s, candidate_id=ids["third"], baseline_id=later, reused=True)
        db.link_baseline(session=s, candidate_id=ids["third"], baseline_id=later)
        with pytest.raises(ValueError, match="its own baseline"):
            db.link_baseline(session=s, candidate_id=later, baseline_id=later)
    with sf() as s:
        assert db.baselines_of(session=s, run_id=ids["newer"]) == sorted([ids["older"], later])
        assert db.baselines_of(session=s, run_id=ids["older"]) == [ids["third"]]
        assert db.baselines_of(session=s, run_id=ids["third"]) == [later]
        assert db.baselines_of(session=s, run_id=later) == []
        links = db.baseline_links(session=s, run_ids=[later])
        assert links == [dict(candidate_id=ids["newer"], baseline_id=later, reused=False),
                         dict(candidate_id=ids["third"], baseline_id=later, reused=True)]
        # a run's links as either side, and every link, by candidate then baseline
        assert db.baseline_links(session=s, run_ids=[ids["older"]]) == [
            dict(candidate_id=ids["newer"], baseline_id=ids["older"], reused=False),
            dict(candidate_id=ids["older"], baseline_id=ids["third"], reused=False)]
        assert [(link["candidate_id"], link["baseline_id"]) for link in db.baseline_links(session=s)] == sorted(
            [(ids["newer"], later), (ids["newer"], ids["older"]), (ids["older"], ids["third"]), (ids["third"], later)])
        runs = {r["id"]: r for r in db.list_runs(session=s)}
    assert runs[ids["newer"]]["baselines"] == sorted([ids["older"], later], reverse=True)  # newest first
    assert [runs[ids[k]]["is_baseline"] for k in ("newer", "older", "third")] == [False, True, True]


def test_list_runs_splits_running_from_interrupted_by_the_writers_lease(store):
    """A "running" run whose writer has gone silent is listed as interrupted, not as running; a run stopped
    by a signal ("interrupted") is listed there too."""
    sf, ids = store
    with sf.begin() as s:
        db.update_run(session=s, run_id=ids["older"], status="running", writer="host:1:gone",
                      heartbeat_at=T0)  # a lease that ran out long ago
        db.update_run(session=s, run_id=ids["third"], status="interrupted")
        db.update_run(session=s, run_id=ids["newer"], status="finished")

    def names(status):
        with sf() as s:
            return [r["name"] for r in db.list_runs(session=s, status=status)]

    assert names("interrupted") == ["third", "older"]
    assert names("running") == []
    assert names("finished") == ["newer"]
    with sf.begin() as s:
        db.update_run(session=s, run_id=ids["older"], writer=None)  # no lease: running as it says
    assert names("running") == ["older"]
    assert names("interrupted") == ["third"]


def test_export_pages_split_inside_a_row_index_and_keep_results_without_metrics(store):
    """Two examples share a row index (turns of one conversation); a page boundary between them must not lose
    the second. A result without any metric exports an empty mapping."""
    sf, ids = store
    with sf.begin() as s:
        ex = db.upsert_examples(session=s, dataset_id=ids["ds"], examples=[
            dict(key="k1b", row_index=1, messages=[{"role": "user", "content": "second turn"}])])
        db.insert_results(session=s, run_id=ids["newer"], results=[
            dict(example_id=ex["k1b"], output="o", output_tokens=1, finish_reason="stop")])
    with sf() as s:
        by_chunk = {c: [(r["row_index"], r["example_key"])
                        for r in itertools.islice(db.export_rows(session=s, run_id=ids["newer"], chunk=c), 50)]
                    for c in (1, 2, 3, 1000)}
        plain = {r["example_key"]: r for r in db.export_rows(session=s, run_id=ids["newer"])}
    order = [(0, "k0"), (1, "k1"), (1, "k1b"), (2, "k2"), (3, "k3")]
    assert by_chunk == {c: order for c in (1, 2, 3, 1000)}
    assert plain["k1b"]["metrics"] == {}


def test_result_detail_holds_every_field_of_its_own_run(store):
    sf, ids = store
    with sf.begin() as s:
        ex = db.upsert_examples(session=s, dataset_id=ids["ds"], examples=[
            dict(key="k9", row_index=8, messages=[{"role": "system", "content": "be brief"},
                                                  {"role": "user", "content": "q9"}],
                 reference="r9", category="billing", source="crm", conversation_id="c-9", turn_index=3,
                 tags=["hard", "vip"], metadata={"ticket": 42})])
        for run, out in ((ids["older"], "older answer"), (ids["newer"], "answer nine")):
            db.insert_results(session=s, run_id=run, results=[dict(
                example_id=ex["k9"], output=out, output_tokens=3, prompt_tokens=11, finish_reason="length",
                failures=int(db.FailureKind.TRUNCATED | db.FailureKind.REPETITION), error="partly failed",
                latency_ms=12.5, logprobs=[-0.5, -0.25, -1.0], tokens=["an", "swer", " nine"], ref_nll=2.5,
                ref_tokens=4, metrics={"rougeL": (None, "boom"), "bleu": 7.0, "zeta": 1.0, "alpha": 2.0})],
                higher_is_better={"bleu": True, "rougeL": True, "zeta": True, "alpha": True})
    with sf() as s:
        d = db.result_detail(session=s, run_id=ids["newer"], example_id=ex["k9"])
        other = db.result_detail(session=s, run_id=ids["older"], example_id=ex["k9"])
        assert db.result_detail(session=s, run_id=ids["third"], example_id=ex["k9"]) is None
        bare = db.result_detail(session=s, run_id=ids["newer"], example_id=ids["keys"]["k0"])
    logprobs = d.pop("logprobs")
    assert isinstance(d.pop("result_id"), int)
    assert d == dict(
        run_id=ids["newer"], example_id=ex["k9"], key="k9", row_index=8,
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "q9"}], reference="r9",
        category="billing", tags=["hard", "vip"], conversation_id="c-9", turn_index=3, metadata={"ticket": 42},
        output="answer nine", output_tokens=3, prompt_tokens=11, finish_reason="length",
        failures=["truncated", "repetition"], latency_ms=12.5, error="partly failed", tokens=["an", "swer", " nine"],
        ref_nll=2.5, ref_tokens=4, metrics={"alpha": 2.0, "bleu": 7.0, "rougeL": None, "zeta": 1.0},
        metric_errors={"rougeL": "boom"})
    assert list(d["metrics"]) == ["alpha", "bleu", "rougeL", "zeta"]  # by name, not by when a metric was first seen
    assert logprobs == pytest.approx([-0.5, -0.25, -1.0])
    assert other["output"] == "older answer" and other["run_id"] == ids["older"]
    assert (bare["tags"], bare["metadata"], bare["failures"], bare["conversation_id"]) == ([], {}, [], None)


def test_a_run_name_finds_the_newest_run_of_that_name_by_date_then_id(store):
    sf, ids = store
    with sf.begin() as s:
        again = [db.create_run(session=s, name="v3", model="m", backend="transformers", dataset_id=ids["ds"])
                 for _ in range(3)]
        db.update_run(session=s, run_id=again[0], created_at=T0 + dt.timedelta(days=5))  # the first id, newest
        db.update_run(session=s, run_id=again[1], created_at=T0)
        db.update_run(session=s, run_id=again[2], created_at=T0)
        tied = [db.create_run(session=s, name="tie", model="m", backend="transformers", dataset_id=ids["ds"])
                for _ in range(2)]
        for run in tied:
            db.update_run(session=s, run_id=run, created_at=T0)
    with sf() as s:
        assert db.find_run(session=s, ref="v3") == again[0]
        assert db.find_run(session=s, ref=" tie ") == tied[1]  # same date: the later id
        assert db.find_run(session=s, ref=str(ids["older"])) == ids["older"]
        with pytest.raises(db.StoreError) as e:
            db.find_run(session=s, ref="v4")
    assert str(e.value) == "no run 'v4' in this store: 'python -m evaluator runs' lists them"


def test_get_run_has_every_column_its_dataset_and_the_status_as_read(store):
    sf, ids = store
    with sf.begin() as s:
        db.update_run(session=s, run_id=ids["third"], status="finished")
    with sf() as s:
        run = db.get_run(session=s, run_id=ids["third"])
        assert db.get_run(session=s, run_id=9999) is None
    assert set(run) == {*RUN_COLUMNS, "status_text", "dataset", "split", "dataset_source", "dataset_fingerprint",
                        "turns"}
    assert (run["dataset_source"], run["dataset_fingerprint"]) == (None, "name:other.jsonl")
    assert (run["name"], run["status"], run["status_text"], run["dataset"], run["split"], run["turns"]) == (
        "third", "finished", "finished", "other.jsonl", "test", "last")


def test_failure_counts_are_per_run_when_several_runs_failed(store):
    sf, ids = store
    with sf.begin() as s:
        extra = db.upsert_examples(session=s, dataset_id=ids["ds"], examples=[
            dict(key=f"f{i}", row_index=10 + i, messages=[{"role": "user", "content": "q"}]) for i in range(3)])
        db.insert_results(session=s, run_id=ids["older"], results=[
            dict(example_id=extra[f"f{i}"], output="", output_tokens=0, finish_reason="error") for i in range(3)])
    with sf() as s:
        runs = {r["id"]: r for r in db.list_runs(session=s)}
    assert [(runs[ids[k]]["n_results"], runs[ids[k]]["n_failed"]) for k in ("newer", "older", "third")] == [
        (4, 1), (7, 3), (1, 0)]


def test_an_examples_history_stays_in_its_dataset_when_another_has_the_same_key(store):
    sf, ids = store
    with sf() as s:
        here = db.example_history(session=s, dataset_id=ids["ds"], key="k0")
        there = db.example_history(session=s, dataset_id=ids["other"], key="k0")
    assert [h["run_name"] for h in here] == ["older", "newer"]
    assert [(h["run_name"], h["finish_reason"], h["metrics"]) for h in there] == [("third", "length", {"chrf": 55.0})]


def test_conversation_answers_are_the_runs_own_outputs_by_conversation_and_turn(any_engine):
    """What a rollout's later turns were answered after: (conversation, turn) -> the run's output, None where the
    generation failed; only the run's own results, only the conversations asked for (all when None)."""
    sf = db.session_factory(any_engine)
    with sf.begin() as s:
        ds = db.get_or_create_dataset(session=s, name="question.jsonl", split="test", turns="rollout")
        keys = db.upsert_examples(session=s, dataset_id=ds, examples=[
            dict(key=f"{c}{t}", row_index=i, messages=[{"role": "user", "content": f"{c} turn {t}"}],
                 conversation_id=c, turn_index=t) for i, c in enumerate("ab") for t in (0, 1)])
        run, other = (db.create_run(session=s, name=n, model=n, backend="transformers", dataset_id=ds)
                      for n in ("run", "other"))
        db.insert_results(session=s, run_id=run, results=[
            dict(example_id=keys[k], output=f"{k} said", output_tokens=2, finish_reason="error" if k == "b1" else "stop",
                 metrics={}) for k in ("b1", "a0", "b0")], higher_is_better={})
        db.insert_results(session=s, run_id=other, results=[
            dict(example_id=keys["a1"], output="another run", output_tokens=2, finish_reason="stop", metrics={})],
            higher_is_better={})
        assert db.get_run(session=s, run_id=run)["turns"] == "rollout"
    with sf() as s:
        assert db.conversation_answers(session=s, run_id=run) == {("a", 0): "a0 said", ("b", 0): "b0 said",
                                                                  ("b", 1): None}
        assert db.conversation_answers(session=s, run_id=run, conversation_ids=["b", "zzz"]) == {
            ("b", 0): "b0 said", ("b", 1): None}
        assert db.conversation_answers(session=s, run_id=run, conversation_ids=[]) == {}
        assert db.conversation_answers(session=s, run_id=other, conversation_ids={"a"}) == {("a", 1): "another run"}


def test_conversation_answers_for_more_conversations_than_one_statement_asks_about(any_engine):
    """1,201 conversations asked for, read 500 per statement: every one comes back, once."""
    sf = db.session_factory(any_engine)
    names = [f"c{i:04d}" for i in range(1201)]
    with sf.begin() as s:
        ds = db.get_or_create_dataset(session=s, name="many.jsonl", split="test", turns="rollout")
        keys = db.upsert_examples(session=s, dataset_id=ds, examples=[
            dict(key=c, row_index=i, messages=[{"role": "user", "content": c}], conversation_id=c, turn_index=0)
            for i, c in enumerate(names)])
        run = db.create_run(session=s, name="run", model="m", backend="transformers", dataset_id=ds)
        db.insert_results(session=s, run_id=run, results=[
            dict(example_id=keys[c], output=f"{c} said", output_tokens=2, finish_reason="stop", metrics={})
            for c in names], higher_is_better={})
    with sf() as s:
        asked = list(reversed(names)) + names[:3]  # in any order, with repeats
        assert db.conversation_answers(session=s, run_id=run, conversation_ids=asked) == {
            (c, 0): f"{c} said" for c in names}


REPRO = dict(dataset_sha256="d" * 8, base_model_fingerprint="m" * 8, adapter_sha256=None, eval_code_sha256="c" * 8,
             packages={"torch": "2.13"})
CONFIG = dict(split="test", turns="last", metrics=["bleu"], backend="transformers", max_length=2048)
GENERATION = dict(max_new_tokens=64, temperature=0.0)


def reusable_store(any_engine):
    """On dataset "a": three finished runs with the same settings (created on days 1, 3 and 2), a running
    one and a failed one (both newer); one finished run on dataset "b"."""
    sf = db.session_factory(any_engine)
    with sf.begin() as s:
        a = db.get_or_create_dataset(session=s, name="a.jsonl", split="test")
        b = db.get_or_create_dataset(session=s, name="b.jsonl", split="test")
        ids = {}
        for name, ds, day, status in (("day1", a, 1, "finished"), ("day3", a, 3, "finished"), ("day2", a, 2, "finished"),
                                      ("running", a, 9, "running"), ("failed", a, 8, "failed"), ("other", b, 7, "finished")):
            ids[name] = db.create_run(session=s, name=name, model="m", backend="transformers", dataset_id=ds,
                                      generation=dict(GENERATION), config=dict(CONFIG), repro=dict(REPRO))
            db.update_run(session=s, run_id=ids[name], status=status, created_at=T0 + dt.timedelta(days=day))
    return sf, a, ids


def test_the_reusable_run_is_the_newest_finished_one_of_its_dataset_with_the_same_settings(any_engine):
    sf, a, ids = reusable_store(any_engine)

    def reuse(*, generation=GENERATION, config=CONFIG, repro=REPRO, exclude=()):
        with sf() as s:
            return db.find_reusable_run(session=s, dataset_id=a, generation=dict(generation), config=dict(config),
                                        repro=dict(repro), exclude=exclude)

    def store(runs, **fields):
        with sf.begin() as s:
            for run in runs:
                db.update_run(session=s, run_id=run, **fields)

    same = dict(generation=dict(GENERATION), config=dict(CONFIG), repro=dict(REPRO))

    assert reuse() == ids["day3"]  # newest by date, not by id; neither running nor failed
    assert reuse(exclude=(ids["day3"],)) == ids["day2"]
    assert reuse(exclude=[ids["day3"], ids["day2"]]) == ids["day1"]
    assert reuse(exclude=(ids["day1"], ids["day2"], ids["day3"])) is None
    store([ids["day1"]], created_at=T0 + dt.timedelta(days=3))  # a tie on the date: the higher id wins
    assert reuse() == max(ids["day1"], ids["day3"])
    # Every setting counts: generation, each reuse config key, each reuse hash, the package versions.
    assert reuse(generation={**GENERATION, "temperature": 0.7}) is None
    assert reuse(generation={}) is None
    for key in db.REUSE_CONFIG_KEYS:
        assert reuse(config={**CONFIG, key: "changed"}) is None, key
    assert reuse(config={**CONFIG, "notes": "not a reuse key"}) == max(ids["day1"], ids["day3"])
    for key in db.REUSE_REPRO_KEYS:
        assert reuse(repro={**REPRO, key: "changed"}) is None, key
    assert reuse(repro={**REPRO, "packages": {"torch": "2.14"}}) is None
    assert reuse(repro={**REPRO, "created_by": "not a reuse key"}) == max(ids["day1"], ids["day3"])
    # A newer run that differs does not hide an older one that matches.
    newest = max(ids["day1"], ids["day3"])
    for change in (dict(generation={"max_new_tokens": 8}), dict(config={**CONFIG, "split": "train"}),
                   dict(repro={**REPRO, "adapter_sha256": "a" * 8}), dict(repro={**REPRO, "packages": {}})):
        store([ids["day1"], ids["day3"]], **change)
        assert reuse() == ids["day2"], change
        store([ids["day1"], ids["day3"]], **same)
    assert reuse() == newest
    # A hash that is unknown (missing or empty) is never matched, even by a run that lacks it too.
    for key in ("dataset_sha256", "base_model_fingerprint", "eval_code_sha256"):
        store(ids.values(), repro={**REPRO, key: None})
        assert reuse(repro={**REPRO, key: None}) is None, key
        assert reuse(repro={**REPRO, key: ""}) is None, key
        store(ids.values(), repro=dict(REPRO))
    assert reuse() == max(ids["day1"], ids["day3"])


def test_a_run_without_stored_settings_is_reused_only_by_a_request_without_them(any_engine):
    sf, a, ids = reusable_store(any_engine)
    with sf.begin() as s:
        db.update_run(session=s, run_id=ids["day3"], generation=None, config=None)
    with sf() as s:
        found = db.find_reusable_run(session=s, dataset_id=a, generation={}, config={}, repro=dict(REPRO))
        assert found == ids["day3"]
        assert db.find_reusable_run(session=s, dataset_id=a, generation=dict(GENERATION), config=dict(CONFIG),
                                    repro=dict(REPRO)) == ids["day2"]


def test_run_categories_are_those_of_the_runs_own_results(any_engine):
    """A category whose examples only another run of the same dataset answered is not the run's."""
    sf = db.session_factory(any_engine)
    with sf.begin() as s:
        ds = db.get_or_create_dataset(session=s, name="cats.jsonl", split="test")
        keys = db.upsert_examples(session=s, dataset_id=ds, examples=[
            dict(key=f"k{i}", row_index=i, messages=[{"role": "user", "content": f"q{i}"}], category=cat)
            for i, cat in enumerate(["x", "y", "z", "x", None])])
        a, b = (db.create_run(session=s, name=n, model=n, backend="transformers", dataset_id=ds) for n in "ab")
        for run, answered in ((a, ("k0", "k1", "k4")), (b, ("k2",))):
            db.insert_results(session=s, run_id=run, results=[
                dict(example_id=keys[k], output="o", output_tokens=1, finish_reason="stop", metrics={})
                for k in answered], higher_is_better={})
        empty = db.create_run(session=s, name="empty", model="e", backend="transformers", dataset_id=ds)
    with sf() as s:
        assert db.run_categories(session=s, run_id=a) == ["x", "y"]
        assert db.run_categories(session=s, run_id=b) == ["z"]
        assert db.run_categories(session=s, run_id=empty) == []
        assert db.run_categories(session=s, run_id=9999) == []


def test_the_run_list_shows_and_searches_where_each_dataset_was_read_from(any_engine):
    sf = db.session_factory(any_engine)
    with sf.begin() as s:
        hub = db.get_or_create_dataset(session=s, name="support", split="test", fingerprint="f1",
                                       source="acme/support-chats")
        local = db.get_or_create_dataset(session=s, name="local.jsonl", split="test", fingerprint="f2",
                                         source="/data/local.jsonl")
        on_hub = db.create_run(session=s, name="hub", model="m", backend="transformers", dataset_id=hub)
        on_disk = db.create_run(session=s, name="disk", model="m", backend="transformers", dataset_id=local)
    with sf() as s:
        runs = {r["id"]: r for r in db.list_runs(session=s)}
        assert runs[on_hub]["dataset_source"] == "acme/support-chats"
        assert runs[on_disk]["dataset_source"] == "/data/local.jsonl"
        assert db.get_run(session=s, run_id=on_hub)["dataset_source"] == "acme/support-chats"
        assert runs[on_hub]["baselines"] == [] and runs[on_hub]["is_baseline"] is False
        assert [r["id"] for r in db.list_runs(session=s, dataset="acme/")] == [on_hub]  # by source
        assert [r["id"] for r in db.list_runs(session=s, dataset="local.js")] == [on_disk]  # by name
