"""Every dashboard page driven headless by streamlit.testing.v1.AppTest on a seeded store."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import db
from dashboard import _links, _store
from tests.support.dashboard_seed import HOSTILE, seed_store

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
TIMEOUT = 60


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('dash') / 'store.sqlite'}"
    return url, seed_store(url)


@pytest.fixture()
def open_app(seeded, monkeypatch):
    url, _ = seeded
    monkeypatch.setenv("EVAL_DB_URL", url)

    def _open(_page: str | None = None, **params) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.run()
        assert not at.exception, at.exception
        if _page:
            at.switch_page(_page)
        if _page or params:
            at.query_params = {k: v for k, v in params.items()}
            at.run()
        return at
    return _open


def _texts(at) -> list[str]:
    return [t.value for t in at.text] + [c.value for c in at.code]


def _count(url, query) -> int:
    engine = db.open_store_readonly(url)
    try:
        with db.session_factory(engine)() as s:
            return db.count_results(session=s, query=query)
    finally:
        engine.dispose()


# ---------------------------------------------------------------- runs and trends


def test_runs_page_lists_every_run_with_counts_and_cis(open_app, seeded):
    at = open_app()
    assert not at.exception
    assert at.title[0].value == "Runs and trends"
    assert [s.value for s in at.subheader][0] == f"{len(seeded[1]['runs'])} runs"
    table = at.dataframe[0].value
    shown = at.multiselect(key="runs_show").value
    assert len(shown) == 4
    # run, name, then the headline metrics (value and CI in one cell, never twice), then the rest
    assert list(table.columns[:6]) == ["id", "name", *shown]
    assert {"model", "adapter", "dataset", "status", "evaluated", "rejected", "failed"} <= set(table.columns[6:])
    assert not any(c.endswith("CI") for c in table.columns)
    v3 = table.set_index("name").loc["acme-chat-v3"]
    assert v3["evaluated"] == 60 and v3["rejected"] == 2
    assert all(v3[m].count("[") == 1 for m in shown)


def test_runs_table_shows_short_model_adapter_and_dataset_labels_and_the_detail_the_full_paths(tmp_path, monkeypatch):
    cache = "/home/ana/.cache/huggingface/hub/models--meta-llama--Llama-3.2-1B/snapshots/4e20de362430cd3b72f3"
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    engine = db.open_store(url)
    with db.session_factory(engine).begin() as s:
        ds = db.get_or_create_dataset(session=s, name="/tmp/pytest-of-ana/pytest-7/data0/support-chat.jsonl")
        db.create_run(session=s, name="acme-v4", model=cache, adapter="/srv/checkpoints/acme-v4/", backend="transformers",
                      dataset_id=ds)
    engine.dispose()
    monkeypatch.setenv("EVAL_DB_URL", url)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    row = at.dataframe[0].value.iloc[0]
    assert (row["model"], row["adapter"], row["dataset"]) == ("meta-llama/Llama-3.2-1B", "acme-v4", "support-chat.jsonl/-")
    cells = [str(v) for v in at.dataframe[0].value.to_numpy().ravel()]
    assert not [c for c in cells if c.startswith(("/", "~"))]  # no absolute path in any cell
    assert any(cache in t.value and "/srv/checkpoints/acme-v4/" in t.value for t in at.text)  # the detail has them


def test_runs_page_warns_about_runs_being_written(open_app):
    at = open_app()
    assert any("still being written" in i.value for i in at.info)
    table = at.dataframe[0].value.set_index("name")
    assert table.loc["acme-chat-nightly", "status"] == "running" and table.loc["acme-chat-nightly", "evaluated"] == 30


def test_the_rejected_count_links_to_the_list_of_rejected_rows(open_app, seeded):
    v3 = seeded[1]["runs"]["acme-chat-v3"]
    at = open_app()
    at.selectbox(key="runs_open").set_value(v3).run()
    links = {pl.proto.label: pl.proto for pl in at.get("page_link")}
    assert "2 rejected dataset rows" in links
    assert links["2 rejected dataset rows"].query_string == f"rejected={v3}"
    at = open_app("views/runs.py", rejected=str(v3))
    assert not at.exception
    assert any(s.value.startswith("Rejected dataset rows of") for s in at.subheader)
    rows = at.dataframe[1].value
    assert list(rows["row_index"]) == [60, 61]
    assert list(rows["reason"]) == ["no assistant turn to evaluate", "invalid JSON: Expecting value"]
    assert rows["raw"].iloc[1] == "<script>{not json"  # the row as written, shown as text
    assert at.query_params["rejected"] == str(v3)


def test_model_filter_narrows_the_table_and_goes_into_the_link(open_app):
    at = open_app()
    at.text_input(key="runs_model").set_value("qwen").run()
    assert not at.exception
    assert set(at.dataframe[0].value["name"]) == {"qwen-tune:r1", "qwen-tune:r2"}
    assert at.query_params["model"] == "qwen"


def test_runs_link_reproduces_dataset_and_date_filters(open_app, seeded):
    ids = seeded[1]
    at = open_app(model="acme", dataset=str(ids["dataset_id"]), since="2026-03-08", until="2026-03-16")
    assert not at.exception
    names = set(at.dataframe[0].value["name"])
    assert names == {"acme-chat-v2", "acme-chat-v3"}
    assert at.text_input(key="runs_model").value == "acme"
    assert str(at.date_input(key="runs_since").value) == "2026-03-08"


def test_trend_chart_and_default_comparison_pair(open_app, seeded):
    at = open_app()
    assert at.selectbox(key="trend_metric").value == "bleu"
    assert at.selectbox(key="runs_a").value == seeded[1]["latest"]
    assert at.selectbox(key="runs_b").value == seeded[1]["latest_baseline"]
    links = {pl.proto.label: pl.proto for pl in at.get("page_link")}
    assert "Compare A with B" in links and "Open in the example browser" in links


def test_trend_metric_choice_goes_into_the_link(open_app):
    at = open_app()
    at.selectbox(key="trend_metric").set_value("rouge_l").run()
    assert not at.exception and at.query_params["metric"] == "rouge_l"


# ---------------------------------------------------------------- example browser


def test_browser_opens_the_run_of_the_link(open_app, seeded):
    latest = seeded[1]["latest"]
    at = open_app("views/browser.py", run=str(latest))
    assert not at.exception
    assert at.selectbox(key="br_run").value == latest
    assert "**60** examples match" in at.markdown[0].value
    assert len(at.dataframe[0].value) == 50


def test_browser_filters_from_the_link(open_app, seeded):
    url, ids = seeded
    params = {"run": str(ids["latest"]), "category": "support", "failure": "none", "range": ["rouge_l:0.5:"],
              "sort": "bleu", "desc": "1"}
    at = open_app("views/browser.py", **params)
    assert not at.exception
    expected = _count(url, _links.filters_from_params(params))
    assert 0 < expected < 60
    rows = at.dataframe[0].value
    assert len(rows) == expected
    assert set(rows["category"]) == {"support"} and (rows["metric:rouge_l"] >= 0.5).all()
    assert rows["metric:bleu"].is_monotonic_decreasing
    # the sort metric, then the filtered one, sit beside the key columns
    assert list(rows.columns[:4]) == ["example_id", "row_index", "metric:bleu", "metric:rouge_l"]
    assert at.selectbox(key="br_category").value == "support"
    assert at.multiselect(key="br_ranges").value == ["rouge_l"]
    assert at.number_input(key="br_lo_rouge_l").value == 0.5


def test_a_link_naming_metrics_the_run_lacks_says_so_and_suggests_the_likely_name(open_app, seeded):
    ids = seeded[1]
    at = open_app("views/browser.py", run=str(ids["latest"]), range=["rougeL::0.2", "bleu:10:"], sort="blue")
    assert not at.exception
    (warning,) = [w.value for w in at.warning if "does not have" in w.value]
    assert "'rougeL' (did you mean 'rouge\\_l'?)" in warning and "'blue' (did you mean 'bleu'?)" in warning
    assert at.multiselect(key="br_ranges").value == ["bleu"]  # the known range still applies
    assert not [w for w in open_app("views/browser.py", run=str(ids["latest"]), range="bleu:10:").warning
                if "does not have" in w.value]


def test_browser_widgets_write_the_link(open_app, seeded):
    at = open_app("views/browser.py", run=str(seeded[1]["latest"]))
    at.selectbox(key="br_failure").set_value("truncated").run()
    at.selectbox(key="br_sort").set_value("latency_ms").run()
    at.toggle(key="br_desc").set_value(True).run()
    assert not at.exception
    assert at.query_params["failure"] == "truncated" and at.query_params["sort"] == "latency_ms"
    assert at.query_params["desc"] == "1"
    rows = at.dataframe[0].value
    assert all("truncated" in f for f in rows["failures"]) and rows["latency_ms"].is_monotonic_decreasing


def test_browser_metric_ranges_several_at_once(open_app, seeded):
    at = open_app("views/browser.py", run=str(seeded[1]["latest"]))
    at.multiselect(key="br_ranges").set_value(["exact_match", "bleu"]).run()
    at.number_input(key="br_hi_exact_match").set_value(0.0).run()
    at.number_input(key="br_lo_bleu").set_value(20.0).run()
    assert not at.exception
    assert sorted(at.query_params["range"]) == ["bleu:20:", "exact_match::0"]
    rows = at.dataframe[0].value
    assert len(rows) > 0 and (rows["metric:exact_match"] == 0).all() and (rows["metric:bleu"] >= 20).all()


def test_browser_pages_through_results_in_sql(open_app, seeded):
    at = open_app("views/browser.py", run=str(seeded[1]["latest"]), size="25", page="2")
    assert not at.exception
    rows = at.dataframe[0].value
    assert len(rows) == 25 and rows["row_index"].tolist() == list(range(25, 50))
    at.number_input(key="br_page").set_value(3).run()
    assert len(at.dataframe[0].value) == 10 and at.query_params["page"] == "3"


def test_changing_a_filter_goes_back_to_page_one(open_app, seeded):
    at = open_app("views/browser.py", run=str(seeded[1]["latest"]), size="25", page="2")
    at.text_input(key="br_text").set_value("order").run()
    assert not at.exception and at.number_input(key="br_page").value == 1 and "page" not in at.query_params


def _python_matches(url, run_id, needle) -> int:
    """Count by hand (Python substring test), independent of the SQL LIKE escaping under test."""
    engine = db.open_store_readonly(url)
    try:
        with db.session_factory(engine)() as s:
            rows = list(db.iter_results(session=s, query=db.ResultQuery(run_id=run_id)))
    finally:
        engine.dispose()
    n = needle.lower()
    return sum(1 for r in rows if any(n in (r[c] or "").lower() for c in ("prompt_text", "output", "reference")))


@pytest.mark.parametrize("needle", ["'; DROP TABLE", "100% _match_", "\\", "%", "_", "{{7*7}}", "<script>"])
def test_search_with_sql_metacharacters_is_literal(open_app, seeded, needle):
    url, ids = seeded
    at = open_app("views/browser.py", run=str(ids["latest"]), text=needle)
    assert not at.exception
    expected = _python_matches(url, ids["latest"], needle)
    assert expected > 0
    assert at.markdown[0].value.startswith(f"**{expected}** example" + ("s match ·" if expected > 1 else " matches ·"))
    assert at.text_input(key="br_text").value == needle


def test_verdict_filter(open_app, seeded):
    ids = seeded[1]
    at = open_app("views/browser.py", run=str(ids["latest"]), verdict="any")
    assert not at.exception
    assert sorted(at.dataframe[0].value["example_id"]) == sorted(ids["hostile_example_ids"][:3])
    at = open_app("views/browser.py", run=str(ids["latest"]), verdict="unreviewed")
    assert len(at.dataframe[0].value) == 50 and "**57** examples match" in at.markdown[0].value
    at = open_app("views/browser.py", run=str(ids["latest"]), verdict=db.VERDICTS[0])
    assert at.dataframe[0].value["example_id"].tolist() == [ids["hostile_example_ids"][0]]
    assert at.markdown[0].value.startswith("**1** example matches ·")  # not "1 examples match"


def test_example_detail_from_the_link(open_app, seeded):
    ids = seeded[1]
    ex = ids["hostile_example_ids"][0]
    at = open_app("views/browser.py", run=str(ids["latest"]), ex=str(ex))
    assert not at.exception
    assert at.subheader[-1].value == f"Example {ex}"
    assert len(at.chat_message) >= 2  # the conversation and the output
    texts = _texts(at)
    assert "reference" in texts and "output" in texts
    assert any(t.startswith("word differences") for t in texts)
    metric_table = [d.value for d in at.dataframe if list(d.value.columns) == ["metric", "value", "error"]]
    assert metric_table and set(metric_table[0]["metric"]) >= {"exact_match", "rouge_l"}
    assert {"Output tokens", "Latency, batch average (ms)"} <= {m.label for m in at.metric}  # a transformers run
    (strip,) = [c for c in at.get("vega_lite_chart") if '"p(token)"' in c.proto.spec]
    legend = json.loads(strip.proto.spec)["layer"][0]["encoding"]["color"]["legend"]
    assert (legend["orient"], legend["direction"]) == ("top", "horizontal")  # never cut to a one-line strip's height
    assert at.selectbox(key="br_ex").value == ex and at.query_params["ex"] == str(ex)


def test_example_not_on_the_current_page_still_opens(open_app, seeded):
    ids = seeded[1]
    last = ids["example_ids"][-1]
    at = open_app("views/browser.py", run=str(ids["latest"]), ex=str(last))
    assert not at.exception and at.subheader[-1].value == f"Example {last}"


def test_unknown_run_in_link_falls_back_with_a_warning(open_app):
    at = open_app("views/browser.py", run="99999", ex="abc", range="bleu:x:")
    assert not at.exception
    assert any("not in this store" in w.value for w in at.warning)


def test_csv_export_is_what_the_filters_select(seeded):
    url, ids = seeded
    for q in (db.ResultQuery(run_id=ids["latest"], failure="none"), db.ResultQuery(run_id=ids["latest"], tag="hostile")):
        frame = pd.read_csv(io.StringIO(_store.export_csv(url, q)().decode("utf-8")), keep_default_na=False)
        assert len(frame) == _count(url, q) and "metric:bleu" in frame.columns
    joined = " ".join(frame["prompt_text"])
    assert all(h.strip() in joined for h in HOSTILE)


def test_browser_has_an_export_button(open_app, seeded):
    at = open_app("views/browser.py", run=str(seeded[1]["latest"]))
    assert any(b.proto.label.startswith("Export") for b in at.get("download_button"))


def test_running_run_is_marked(open_app, seeded):
    at = open_app("views/browser.py", run=str(seeded[1]["running"]))
    assert not at.exception and any("still being written" in i.value for i in at.info)


# ---------------------------------------------------------------- compare


def test_compare_shows_stored_comparison_with_holm_p(open_app, seeded):
    ids = seeded[1]
    at = open_app("views/compare.py", a=str(ids["latest"]), b=str(ids["latest_baseline"]))
    assert not at.exception
    overall = at.dataframe[0].value
    assert {"delta (A - B)", "95% CI of delta", "p (Holm)", "wins", "ties", "losses"} <= set(overall.columns)
    assert set(overall["metric"]) >= {"exact_match", "bleu"}
    assert not any("Not yet scored" in i.value for i in at.info)


def test_compare_writes_every_delta_and_its_interval_with_its_sign_at_the_metrics_precision(open_app, seeded):
    url, ids = seeded
    at = open_app("views/compare.py", a=str(ids["latest"]), b=str(ids["latest_baseline"]))
    overall = at.dataframe[0].value.set_index("metric")
    engine = db.open_store_readonly(url)
    with db.session_factory(engine)() as s:
        stored = {r["metric"]: r for r in db.stored_comparisons(session=s, run_a_id=ids["latest"],
                                                                 run_b_id=ids["latest_baseline"]) if not r["slice"]}
    engine.dispose()
    assert any(r["delta"] < 0 for r in stored.values()) and any(r["delta"] > 0 for r in stored.values())
    for metric, r in stored.items():
        shown = overall.loc[metric, "delta (A - B)"]
        assert shown[0] in "+-" and float(shown) == pytest.approx(r["delta"], abs=0.51 * 10 ** -len(shown.split(".")[1]))
        assert (shown[0] == "-") == (r["delta"] < 0)
        scale = max(abs(r["value_a"]), abs(r["value_b"]))
        assert len(shown.split(".")[1]) == (3 if scale <= 1 else 1 if 10 < scale <= 100 else len(shown.split(".")[1]))
        lo, hi = overall.loc[metric, "95% CI of delta"].strip("[]").split(", ")
        assert lo[0] in "+-" and hi[0] in "+-" and float(lo) <= float(shown) <= float(hi)
    at = open_app("views/compare.py", a=str(ids["latest"]), b=str(ids["latest_baseline"]), view="examples")
    rows_cfg = [d for d in at.dataframe if "A - B" in d.value.columns]
    assert rows_cfg and '"format": "%+.' in rows_cfg[0].proto.columns  # the per-example differences are signed too


def test_compare_says_significance_in_words_and_p_at_the_resampling_floor_as_below_a_thousandth(
        tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    engine = db.open_store(url)
    with db.session_factory(engine).begin() as s:
        ds = db.get_or_create_dataset(session=s, name="sig.jsonl")
        a, b = (db.create_run(session=s, name=n, model=n, backend="transformers", dataset_id=ds) for n in "AB")
        floor = 1 / 1001  # what 1,000 resamples give when no resample is as extreme as the data
        db.replace_comparisons(session=s, run_a_id=a, run_b_id=b, rows=[
            dict(metric="bleu", kind="corpus", n=40, value_a=30.0, value_b=20.0, delta=10.0, ci_low=4.0, ci_high=15.0,
                 p_value=floor, p_holm=3 * floor, wins=0, ties=0, losses=0, method="sacrebleu paired bootstrap"),
            dict(metric="chrf", kind="mean", n=40, value_a=50.0, value_b=49.0, delta=1.0, ci_low=-1.0, ci_high=3.0,
                 p_value=0.2, p_holm=0.4, wins=20, ties=5, losses=15, method="paired BCa bootstrap"),
            dict(metric="rougeL", kind="mean", n=40, value_a=0.5, value_b=0.45, delta=0.05, ci_low=0.01, ci_high=0.09,
                 p_value=0.012, p_holm=0.024, wins=22, ties=6, losses=12, method="paired BCa bootstrap")])
    engine.dispose()
    monkeypatch.setenv("EVAL_DB_URL", url)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("views/compare.py")
    at.query_params = {"a": str(a), "b": str(b)}
    at.run()
    assert not at.exception
    table = at.dataframe[0].value.set_index("metric")
    assert table.loc["bleu", "significance"] == table.loc["rougeL", "significance"] == "significant at 5% after Holm"
    assert table.loc["chrf", "significance"] == "not significant"
    assert (table.loc["bleu", "p"], table.loc["bleu", "p (Holm)"]) == ("< 0.001", "0.003")
    assert (table.loc["rougeL", "p"], table.loc["chrf", "p (Holm)"]) == ("0.012", "0.4")
    assert pd.isna(table.loc["bleu", "wins"]) and table.loc["chrf", "wins"] == 20  # corpus: no per-example W/T/L
    badges = sorted(m.value for m in at.markdown if "-badge[" in m.value)  # st.badge is coloured markdown
    assert len(badges) == 3 and badges[0].startswith(":gray-badge[") and "not significant" in badges[0]
    assert all(b.startswith(":green-badge[") and "significant at 5% after Holm" in b for b in badges[1:])
    helps = {m.label: m.help for m in at.metric}
    assert "no per-example wins, ties or losses" in helps["bleu (corpus): A vs B"]
    assert "Holm-adjusted p = 0.003" in helps["bleu (corpus): A vs B"]


def test_compare_without_stored_rows_says_not_yet_scored(open_app, seeded):
    ids = seeded[1]
    older = ids["candidates"][0]
    at = open_app("views/compare.py", a=str(older), b=str(ids["baselines"][older]))
    assert not at.exception
    assert any("python -m evaluator compare A B" in i.value for i in at.info)
    overall = at.dataframe[0].value
    assert {"wins", "ties", "losses", "delta (A - B)"} <= set(overall.columns)
    ppl = overall.set_index("metric").loc["perplexity"]
    assert ppl["better"] == "lower"


def test_compare_defaults_to_latest_candidate_and_baseline(open_app, seeded):
    at = open_app("views/compare.py")
    assert at.selectbox(key="cmp_a").value == seeded[1]["latest"]
    assert at.selectbox(key="cmp_b").value == seeded[1]["latest_baseline"]


def test_compare_flips_only(open_app, seeded):
    url, ids = seeded
    at = open_app("views/compare.py", a=str(ids["latest"]), b=str(ids["latest_baseline"]), metric="exact_match",
                  flips="1")
    assert not at.exception
    table = [d.value for d in at.dataframe if "flip" in d.value.columns][0]
    assert len(table) > 0 and table["flip"].all()
    assert ((table["A"] >= 0.5) != (table["B"] >= 0.5)).all()


def test_compare_region_from_link_lists_only_those_examples(open_app, seeded):
    ids = seeded[1]
    at = open_app("views/compare.py", a=str(ids["latest"]), b=str(ids["latest_baseline"]), metric="rouge_l",
                  box="0.8:1:0:0.5", order="diff_desc")
    assert not at.exception
    table = [d.value for d in at.dataframe if "flip" in d.value.columns][0]
    assert len(table) > 0 and table["A"].between(0.8, 1).all() and table["B"].between(0, 0.5).all()
    assert table["A - B"].is_monotonic_decreasing
    assert any(t.startswith("Region: A in [0.8, 1]") for t in _texts(at))
    at.button(key="cmp_clear").click().run()
    assert not at.exception and "box" not in at.query_params


def test_compare_example_side_by_side(open_app, seeded):
    ids = seeded[1]
    ex = ids["hostile_example_ids"][1]
    at = open_app("views/compare.py", a=str(ids["latest"]), b=str(ids["latest_baseline"]), ex=str(ex))
    assert not at.exception
    texts = _texts(at)
    assert "reference" in texts and f"output A (run #{ids['latest']})" in texts
    assert f"output B (run #{ids['latest_baseline']})" in texts


def test_compare_shows_one_view_at_a_time_and_keeps_the_others_state_in_the_link(open_app, seeded):
    ids = seeded[1]
    a, b = str(ids["latest"]), str(ids["latest_baseline"])
    at = open_app("views/compare.py", a=a, b=b, metric="rouge_l")
    assert at.button_group(key="cmp_view").value == "metrics"  # a plain link: what a meeting asks first
    assert at.metric and not at.get("vega_lite_chart") and not any("A - B" in d.value.columns for d in at.dataframe)
    assert at.query_params["metric"] == "rouge_l" and "view" not in at.query_params
    at.button_group(key="cmp_view").set_value("examples").run()
    assert not at.exception and at.query_params["view"] == "examples" and at.get("vega_lite_chart")
    assert at.selectbox(key="cmp_metric").value == "rouge_l" and not at.metric  # the link's metric, no cards
    at.toggle(key="cmp_flips").set_value(True).run()
    at.button_group(key="cmp_view").set_value("metrics").run()
    assert at.query_params["flips"] == "1" and at.query_params["view"] == "metrics"  # kept while not shown
    at.button_group(key="cmp_view").set_value("examples").run()
    assert at.toggle(key="cmp_flips").value is True
    # a link that sets the examples' own parameters (as links did before views) opens per example
    assert open_app("views/compare.py", a=a, b=b, flips="1").button_group(key="cmp_view").value == "examples"


def test_compare_same_run_twice_is_a_message(open_app, seeded):
    at = open_app("views/compare.py", a=str(seeded[1]["latest"]), b=str(seeded[1]["latest"]))
    assert not at.exception and any("two different runs" in w.value for w in at.warning)


# ---------------------------------------------------------------- navigation


@pytest.mark.parametrize("page", ["views/runs.py", "views/browser.py", "views/compare.py"])
def test_every_page_renders_without_parameters(open_app, page):
    at = open_app(page)
    assert not at.exception and not at.error


@pytest.mark.parametrize("page", ["views/errors.py", "views/history.py", "views/review.py"])
def test_pages_of_the_other_dashboard_work_are_routed_when_present(open_app, page):
    if not (Path(APP).parent / page).is_file():
        pytest.skip(f"{page} is not in this checkout")
    at = open_app(page)
    assert not at.exception


# ---------------------------------------------------------------- hostile text


def _assert_data_never_markdown(at):
    rendered = [m.value for m in at.markdown] + [e.value for e in at.error] + [w.value for w in at.warning] + \
               [i.value for i in at.info] + [s.value for s in at.subheader] + [t.value for t in at.title]
    for body in rendered:
        for h in HOSTILE:
            assert h not in body, f"data rendered as markdown: {body!r}"
        assert "<script" not in body and "<img" not in body and "javascript:" not in body


def test_hostile_strings_come_out_literal_in_the_browser(open_app, seeded):
    ids = seeded[1]
    for ex in ids["hostile_example_ids"][:len(HOSTILE)]:
        at = open_app("views/browser.py", run=str(ids["latest"]), ex=str(ex))
        assert not at.exception
        _assert_data_never_markdown(at)
        detail = _store.load_detail(seeded[0], ids["latest"], ex)
        hostile = [h for h in HOSTILE if h in detail["messages"][-1]["content"]]
        assert hostile, "seed puts a hostile string in every hostile example"
        assert any(hostile[0] in t for t in _texts(at)), "shown literally (st.text / st.code)"


def test_hostile_strings_come_out_literal_on_every_page(open_app, seeded):
    ids = seeded[1]
    for page, params in (("views/runs.py", {}), ("views/browser.py", {"run": str(ids["latest"]), "verdict": "any"}),
                         ("views/compare.py", {"a": str(ids["latest"]), "b": str(ids["latest_baseline"]),
                                               "ex": str(ids["hostile_example_ids"][0])})):
        at = open_app(page, **params)
        assert not at.exception
        _assert_data_never_markdown(at)


# ---------------------------------------------------------------- chart selections (Altair on_select)


def _fake_selection(monkeypatch, key_prefix: str, selection: dict):
    """Make st.altair_chart report ``selection`` for the chart whose key starts with ``key_prefix``
    (AppTest cannot click a chart); other charts render as usual."""
    import streamlit

    real = streamlit.altair_chart

    def altair_chart(chart, **kwargs):
        out = real(chart, **kwargs)
        if str(kwargs.get("key", "")).startswith(key_prefix):
            return {"selection": selection}
        return out

    monkeypatch.setattr(streamlit, "altair_chart", altair_chart)


def test_clicking_a_trend_point_opens_that_run_in_the_browser(open_app, seeded, monkeypatch):
    run = seeded[1]["candidates"][1]
    _fake_selection(monkeypatch, "trend_chart", {"pick": [{"run_id": run}]})
    at = open_app()
    assert not at.exception
    assert at.title[0].value == "Example browser"
    assert at.query_params["run"] == str(run) and at.selectbox(key="br_run").value == run


def test_a_region_of_the_scatter_lists_its_examples(open_app, seeded, monkeypatch):
    ids = seeded[1]
    _fake_selection(monkeypatch, "cmp_scatter", {"box": {"value_a": [0.8, 1.2], "value_b": [-0.1, 0.5]}})
    at = open_app("views/compare.py", a=str(ids["latest"]), b=str(ids["latest_baseline"]), metric="rouge_l",
                  view="examples")
    assert not at.exception
    assert at.query_params["box"] == "0.8:1.2:-0.1:0.5"
    table = [d.value for d in at.dataframe if "flip" in d.value.columns][0]
    assert len(table) > 0 and table["A"].between(0.8, 1.2).all() and table["B"].between(-0.1, 0.5).all()


def test_a_filter_that_matches_nothing_is_a_message(open_app, seeded):
    at = open_app(model="no-such-model-anywhere")
    assert not at.exception and at.subheader[0].value == "0 runs"
    at = open_app("views/browser.py", run=str(seeded[1]["latest"]), text="no such text anywhere")
    assert not at.exception and any("No example matches" in i.value for i in at.info)


def test_ids_from_a_link_can_be_cleared(open_app, seeded):
    ids = seeded[1]
    some = ids["example_ids"][:3]
    at = open_app("views/browser.py", run=str(ids["latest"]), ids=",".join(map(str, some)))
    assert sorted(at.dataframe[0].value["example_id"]) == sorted(some)
    at.button(key="br_clear_ids").click().run()
    assert not at.exception and "ids" not in at.query_params and len(at.dataframe[0].value) == 50


def test_per_slice_table_of_a_stored_comparison(open_app, seeded):
    ids = seeded[1]
    at = open_app("views/compare.py", a=str(ids["latest"]), b=str(ids["latest_baseline"]), slices="1")
    assert not at.exception and at.toggle(key="cmp_slices").value
    slices = [d.value for d in at.dataframe if "slice" in d.value.columns][0]
    assert "p (Holm)" in slices.columns and "category=support" in set(slices["slice"])


def test_per_slice_table_computed_when_not_stored(open_app, seeded):
    ids = seeded[1]
    older = ids["candidates"][0]
    at = open_app("views/compare.py", a=str(older), b=str(ids["baselines"][older]))
    assert not [d for d in at.dataframe if "slice" in d.value.columns]  # not computed until asked
    at.toggle(key="cmp_slices").set_value(True).run()
    assert not at.exception and at.query_params["slices"] == "1"
    slices = [d.value for d in at.dataframe if "slice" in d.value.columns][0]
    assert {"wins", "ties", "losses"} <= set(slices.columns) and "category=support" in set(slices["slice"])


def test_browser_offers_a_review_queue_of_its_selection(open_app, seeded):
    url, ids = seeded
    params = {"run": str(ids["latest"]), "category": "support", "sort": "bleu"}
    at = open_app("views/browser.py", **params)
    links = [el for el in at.get("page_link") if "Review these examples" in el.proto.label]
    assert len(links) == 1
    assert links[0].proto.page.endswith("review")
    # the review page, opened with the browser's own filter parameters, builds its queue from them
    review = open_app("views/review.py", **params)
    assert not review.exception
    assert any("support" in str(v) for v in review.query_params.values())


def test_human_verdicts_show_in_runs_and_compare(open_app, seeded):
    url, ids = seeded
    a, b = ids["latest"], ids["latest_baseline"]
    before = open_app("views/compare.py", a=str(a), b=str(b), metric="bleu", view="examples")
    example = int(next(d.value for d in before.dataframe if "verdicts A" in d.value.columns)["example"].iloc[0])
    engine = db.make_engine(url)
    with db.session_factory(engine).begin() as s:
        for reviewer, verdict in (("ann", "pass"), ("bo", "pass"), ("cy", "fail: reference wrong")):
            db.add_annotation(session=s, run_id=a, example_id=example, reviewer=reviewer, verdict=verdict)
    engine.dispose()
    _store.clear_caches()
    runs = open_app("views/runs.py").dataframe[0].value.set_index("id")
    assert runs.loc[a, "reviewed"] >= 1 and 0 < runs.loc[a, "human_pass"] <= 1
    cmp = open_app("views/compare.py", a=str(a), b=str(b), metric="bleu", view="examples")
    table = next(d.value for d in cmp.dataframe if "verdicts A" in d.value.columns)
    row = table[table["example"] == example]
    assert row["verdicts A"].iloc[0] == "pass ×2, fail: reference wrong"
    assert row["verdicts B"].iloc[0] == ""


def test_compare_headline_cards_show_the_deltas(open_app, seeded):
    _, ids = seeded
    at = open_app("views/compare.py", a=str(ids["latest"]), b=str(ids["latest_baseline"]))
    assert not at.exception
    table = at.dataframe[0].value
    cards = {m.label: m for m in at.metric}
    assert 1 <= len(cards) <= 4
    for label, card in cards.items():
        metric = label.split(":")[0].split(" (")[0]
        rows = table[table["metric"] == metric]
        if "kind" in table:
            rows = rows[rows["kind"] == ("corpus" if "(corpus)" in label else "mean")]
        row = rows.iloc[0]
        assert card.value == f"{row['A']:.3g} vs {row['B']:.3g}"
        assert card.delta.startswith(row["delta (A - B)"] + ", 95% CI [")


# ---------------------------------------------------------------- defaults: candidates and their own baselines


@pytest.fixture(scope="module")
def paired_store(tmp_path_factory):
    """Two candidates, each evaluated before its own baseline (as `run --baseline` does): the newest run
    of the store is a baseline."""
    import datetime as dt

    url = f"sqlite:///{tmp_path_factory.mktemp('pairs') / 'store.sqlite'}"
    engine = db.open_store(url)
    ids = {}
    with db.session_factory(engine).begin() as s:
        ds = db.get_or_create_dataset(session=s, name="pairs.jsonl")
        keys = db.upsert_examples(session=s, dataset_id=ds, examples=[
            dict(key=f"k{i}", row_index=i, messages=[{"role": "user", "content": f"q{i}"}], reference=f"r{i}")
            for i in range(4)])
        for step, (name, of) in enumerate([("cand-v1", None), ("base-for-v1", "cand-v1"),
                                           ("cand-v2", None), ("base-for-v2", "cand-v2")]):
            ids[name] = db.create_run(session=s, name=name, model=name, backend="transformers", dataset_id=ds,
                                      baseline_for_id=ids.get(of))
            db.insert_results(session=s, run_id=ids[name], results=[
                dict(example_id=keys[f"k{i}"], output="o", output_tokens=1, finish_reason="stop",
                     metrics={"bleu": float(10 * i + step)}) for i in range(4)])
            when = dt.datetime(2026, 11, 1, 9, step)
            db.update_run(session=s, run_id=ids[name], status="finished", created_at=when, updated_at=when)
    engine.dispose()
    return url, ids


def _app(url, monkeypatch, page=None, **params):
    monkeypatch.setenv("EVAL_DB_URL", url)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if page:
        at.switch_page(page)
    at.query_params = params
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("page, key", [("views/browser.py", "br_run"), ("views/errors.py", "errors_run")])
def test_pages_open_on_the_newest_candidate_not_the_newest_baseline(paired_store, monkeypatch, page, key):
    url, ids = paired_store
    assert _app(url, monkeypatch, page).selectbox(key=key).value == ids["cand-v2"]


@pytest.mark.parametrize("page, a_key, b_key", [(None, "runs_a", "runs_b"), ("views/compare.py", "cmp_a", "cmp_b")])
def test_picking_a_candidate_pairs_it_with_its_own_baseline(paired_store, monkeypatch, page, a_key, b_key):
    url, ids = paired_store
    at = _app(url, monkeypatch, page)
    assert (at.selectbox(key=a_key).value, at.selectbox(key=b_key).value) == (ids["cand-v2"], ids["base-for-v2"])
    at.selectbox(key=a_key).set_value(ids["cand-v1"]).run()
    assert at.selectbox(key=b_key).value == ids["base-for-v1"]
    assert (at.query_params["a"], at.query_params["b"]) == (str(ids["cand-v1"]), str(ids["base-for-v1"]))
    # a link that names only run A opens B on A's own baseline
    at = _app(url, monkeypatch, page, a=str(ids["cand-v1"]))
    assert at.selectbox(key=b_key).value == ids["base-for-v1"]
