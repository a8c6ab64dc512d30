"""Dashboard helpers without a running app: link state, filters, run families, default pairs, diffs."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st_

import db
from dashboard import _format, _links, _store
from dashboard.views import browser, compare

# ---------------------------------------------------------------- filters <-> query parameters


def test_filters_round_trip_through_params():
    q = db.ResultQuery(run_id=7, ranges=(db.MetricRange("bleu", 10.0, None), db.MetricRange("rouge_l", None, 0.5)),
                       text="refund", category="support", tag="multi-turn", failure="truncated",
                       verdict="unreviewed", example_ids=(3, 17), sort="bleu", descending=True)
    p = _links.filters_to_params(q)
    assert p == {"run": "7", "range": ["bleu:10:", "rouge_l::0.5"], "text": "refund", "category": "support",
                 "tag": "multi-turn", "failure": "truncated", "verdict": "unreviewed", "ids": "3,17",
                 "sort": "bleu", "desc": "1"}
    assert _links.filters_from_params(p) == q


def test_a_single_range_is_a_plain_string_param():
    p = _links.filters_to_params(db.ResultQuery(run_id=1, ranges=(db.MetricRange("exact_match", 1.0, 1.0),)))
    assert p == {"run": "1", "range": "exact_match:1:1"}
    assert _links.filters_from_params(p).ranges == (db.MetricRange("exact_match", 1.0, 1.0),)


def test_metric_names_with_colons_survive_the_range_format():
    q = db.ResultQuery(run_id=1, ranges=(db.MetricRange("judge:gpt:score", 0.25, 2.0),))
    assert _links.filters_from_params(_links.filters_to_params(q)) == q


def test_filters_need_a_run():
    with pytest.raises(ValueError, match="no run"):
        _links.filters_from_params({"text": "x"})
    with pytest.raises(ValueError):
        _links.filters_from_params({"run": "abc"})


def test_malformed_link_values_are_ignored_not_fatal():
    q = _links.filters_from_params({"run": "3", "range": ["bleu:x:1", "nocolon", "ok:1:", "inf:inf:nan"],
                                    "failure": "exploded", "verdict": "maybe", "ids": "1,a,2", "desc": "nope"})
    assert q.ranges == (db.MetricRange("ok", 1.0, None), db.MetricRange("inf", None, None))
    assert q.failure is None and q.verdict is None and q.example_ids == (1, 2) and q.descending is False


def test_saved_view_params_shape_is_understood():
    # db.SavedView.params as the review page stores them (filters_to_params output, JSON round trip).
    q = _links.filters_from_params({"run": 5, "category": "math", "range": ["bleu:1:2"]})
    assert q.run_id == 5 and q.category == "math" and q.ranges == (db.MetricRange("bleu", 1.0, 2.0),)


_text = st_.text(st_.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=200, deadline=None)
@given(run=st_.integers(1, 10**9), text=_text, category=_text, tag=_text,
       failure=st_.sampled_from([None, *_links.FAILURE_FILTERS]), verdict=st_.sampled_from([None, *_links.VERDICT_FILTERS]),
       ranges=st_.lists(st_.tuples(st_.text(min_size=1, max_size=12).filter(lambda s: s.strip() == s),
                                   st_.one_of(st_.none(), st_.floats(-1e6, 1e6)),
                                   st_.one_of(st_.none(), st_.floats(-1e6, 1e6))), max_size=3),
       sort=st_.one_of(st_.none(), _text), desc=st_.booleans())
def test_any_filter_state_survives_the_link(run, text, category, tag, failure, verdict, ranges, sort, desc):
    q = db.ResultQuery(run_id=run, ranges=tuple(db.MetricRange(m, lo, hi) for m, lo, hi in ranges),
                       text=text or None, category=category or None, tag=tag or None, failure=failure,
                       verdict=verdict, sort=sort or None, descending=desc)
    assert _links.filters_from_params(_links.filters_to_params(q)) == q


def test_clean_params_drops_empty_values_and_stringifies():
    assert _links.clean_params({"a": None, "b": "", "c": 3, "d": 2.0, "e": 0.25, "f": True, "g": False,
                                "h": ["x", "", None], "i": []}) == {"c": "3", "d": "2", "e": "0.25", "f": "1", "h": "x"}


def test_param_readers_tolerate_garbage():
    p = {"i": "12", "bad": "x", "f": "nan", "b": "yes", "l": ["1", "2"]}
    assert _links.param_int(p, "i") == 12 and _links.param_int(p, "bad", 4) == 4
    assert _links.param_float(p, "f", 0.5) == 0.5 and _links.param_bool(p, "b")
    assert _links.param_str(p, "l") == "2" and _links.param_list(p["l"]) == ["1", "2"]


# ---------------------------------------------------------------- store url, runs


def test_store_url_takes_db_flag_over_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EVAL_DB_URL", "sqlite:///from-env.sqlite")
    assert _store.store_url(["--db", "sqlite:///flag.sqlite"]) == "sqlite:///flag.sqlite"
    assert _store.store_url(["--db=sqlite:///eq.sqlite"]) == "sqlite:///eq.sqlite"
    assert _store.store_url([]) == "sqlite:///from-env.sqlite"
    assert _store.store_url(["--db", str(tmp_path / "bare.sqlite")]) == f"sqlite:///{tmp_path / 'bare.sqlite'}"


@pytest.mark.parametrize("name,family,expected", [
    ("acme-chat-v3", None, "acme-chat"), ("qwen-tune:r2", None, "qwen-tune"), ("solo", None, "solo"),
    ("acme-chat-v3", "acme", "acme"), ("-odd", None, "-odd"), ("a:b-c", None, "a:b"),
])
def test_family_falls_back_to_the_name_prefix(name, family, expected):
    assert _format.family_of(name, family) == expected


def _runs(rows):
    return pd.DataFrame(rows, columns=["id", "created_at", "baseline_for_id", "dataset_id"])


def test_default_pair_is_latest_candidate_and_its_baseline():
    t = dt.datetime(2026, 1, 1)
    runs = _runs([(1, t, None, 1), (2, t, 1, 1), (3, t + dt.timedelta(days=1), None, 1),
                  (4, t + dt.timedelta(days=1, minutes=5), 3, 1), (5, t + dt.timedelta(days=2), None, 1)])
    assert _format.default_pair(runs) == (3, 4)


def test_default_pair_without_baselines_takes_the_two_latest_on_one_dataset():
    t = dt.datetime(2026, 1, 1)
    runs = _runs([(1, t, None, 1), (2, t + dt.timedelta(days=1), None, 2), (3, t + dt.timedelta(days=2), None, 1)])
    assert _format.default_pair(runs) == (3, 1)
    assert _format.default_pair(_runs([(1, t, None, 1)])) == (1, None)
    assert _format.default_pair(_runs([])) == (None, None)


def test_a_reused_baseline_pairs_with_every_candidate_it_serves():
    """One base run serving v1, v2 and v3 (reused): each candidate's own baseline is that run, the
    default pair is the newest candidate with it, and the page opens on a candidate, not on the base."""
    t = dt.datetime(2026, 1, 1)
    runs = pd.DataFrame([
        dict(id=1, created_at=t, baseline_for_id=None, dataset_id=1, status="finished", baselines=[2], is_baseline=False),
        dict(id=2, created_at=t + dt.timedelta(minutes=1), baseline_for_id=1, dataset_id=1, status="finished",
             baselines=[], is_baseline=True),
        dict(id=3, created_at=t + dt.timedelta(minutes=2), baseline_for_id=None, dataset_id=1, status="finished",
             baselines=[2], is_baseline=False),
        dict(id=4, created_at=t + dt.timedelta(minutes=3), baseline_for_id=None, dataset_id=1, status="finished",
             baselines=[2], is_baseline=False),
        # a run evaluated on its own first and only later reused as a baseline: no baseline_for_id
        dict(id=5, created_at=t + dt.timedelta(minutes=4), baseline_for_id=None, dataset_id=1, status="finished",
             baselines=[], is_baseline=True),
    ])
    assert [_format.own_baseline(runs, i) for i in (1, 3, 4)] == [2, 2, 2]
    assert _format.own_baseline(runs, 2) is None
    assert _format.default_pair(runs) == (4, 2)
    assert _format.default_run(runs) == 4


def test_datasets_sharing_a_name_are_told_apart_by_their_last_run_and_content():
    t = dt.datetime(2026, 3, 1)
    ds = [dict(id=1, name="/a/chat.jsonl", split="test", n_runs=2, last_run_at=t, fingerprint="sha256:0123456789ab"),
          dict(id=2, name="chat.jsonl", split="test", n_runs=1, last_run_at=t + dt.timedelta(days=3),
               fingerprint="sha256:fedcba987654"),
          dict(id=3, name="other.jsonl", split="test", n_runs=1, last_run_at=t, fingerprint="sha256:00")]
    labels = _format.dataset_labels(ds)
    assert labels == {1: "chat.jsonl / test (2 runs · last 2026-03-01 · 01234567)",
                      2: "chat.jsonl / test (1 run · last 2026-03-04 · fedcba98)",
                      3: "other.jsonl / test (1 run)"}


def test_headline_prefers_corpus_figures():
    aggs = pd.DataFrame([dict(run_id=1, metric="bleu", kind="mean", value=1.0, ci_low=0, ci_high=2, n=3),
                         dict(run_id=1, metric="bleu", kind="corpus", value=5.0, ci_low=4, ci_high=6, n=3),
                         dict(run_id=1, metric="em", kind="mean", value=0.5, ci_low=0.4, ci_high=0.6, n=3)])
    got = _format.headline(aggs).set_index("metric")["value"].to_dict()
    assert got == {"bleu": 5.0, "em": 0.5}


def test_fmt_ci():
    assert _format.fmt_ci(0.61234, 0.58, 0.64) == "0.612 [0.58, 0.64]"
    assert _format.fmt_ci(None, None, None) == "–" and _format.fmt_ci(2.0, None, None) == "2"


def test_chart_selection_events_are_read_defensively():
    event = {"selection": {"pick": [{"run_id": 5, "family": "x"}], "box": {"value_a": [0.9, 0.1], "value_b": [0, 1]}}}
    assert _links.selected_values(event, "pick", "run_id") == [5]
    assert _links.selected_interval(event, "box") == {"value_a": (0.1, 0.9), "value_b": (0.0, 1.0)}
    assert _links.selected_values({"selection": {}}, "pick", "run_id") == []
    assert _links.selected_values(None, "pick", "run_id") == []
    assert _links.selected_interval({"selection": {"box": {}}}, "box") == {}


# ---------------------------------------------------------------- page helpers


def test_word_diff_marks_changed_missing_and_extra_words():
    diff = browser.word_diff("the cat sat on the mat", "the dog sat on mat today")
    assert diff["op"].tolist() == ["same", "changed", "same", "missing", "same", "extra"]
    assert browser.inline_diff(diff) == "the [-cat-] {+dog+} sat on [-the-] mat {+today+}"


def test_word_diff_keeps_markup_as_words():
    diff = browser.word_diff("<b>x</b>", "<script>alert(1)</script>")
    assert browser.inline_diff(diff) == "[-<b>x</b>-] {+<script>alert(1)</script>+}"


def test_token_frame_shows_whitespace_and_probabilities():
    tf = browser.token_frame(["Hi", " there", "\n", ""], [0.0, -0.6931471805599453, -2.0, -0.1])
    assert tf["token"].tolist() == ["Hi", "·there", "⏎", "∅"]
    assert tf["prob"].round(3).tolist() == [1.0, 0.5, 0.135, 0.905]
    assert tf["line"].tolist() == [0, 0, 0, 0]


def test_token_frame_caps_the_number_of_tokens():
    n = browser.MAX_TOKENS_SHOWN + 50
    assert len(browser.token_frame(["a"] * n, [-0.1] * n)) == browser.MAX_TOKENS_SHOWN


def test_box_param_round_trip():
    box = db.Box(0.1, 0.9, None, 1.0)
    assert compare.parse_box(compare.box_param(box)) == box
    assert compare.parse_box("1:2:3") is None and compare.parse_box("a:b:c:d") is None
    assert compare.parse_box(":::") is None and compare.parse_box(None) is None


def _pick_script():
    """A page that draws nothing but a table's selection state, then calls the row-pick callback."""
    from types import SimpleNamespace

    import streamlit as st

    from dashboard import _links
    st.session_state["_ids"] = [10, 20, 30]
    st.session_state.setdefault("target", None)
    for picked in st.session_state.get("picks", []):
        st.session_state["tbl"] = SimpleNamespace(selection=SimpleNamespace(rows=picked))
        _links.row_picker("tbl", "_ids", "target")()
        st.session_state.setdefault("seen", []).append(st.session_state["target"])


@pytest.mark.parametrize("picks, seen", [
    ([[1]], [20]),  # the second row of the page is example 20
    ([[0], []], [10, 10]),  # a cleared selection leaves the open example open
    ([[2], [3]], [30, 30]),  # a row past the page's ids (a stale selection) changes nothing
])
def test_a_picked_table_row_opens_the_example_it_shows(picks, seen):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_pick_script)
    at.session_state["picks"] = picks
    at.run()
    assert not at.exception
    assert at.session_state["seen"] == seen


@pytest.mark.parametrize("text, label", [
    ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"),  # a Hub id stays as it is
    ("/root/.cache/huggingface/hub/models--unsloth--Llama-3.2-1B/snapshots/0a1b2c", "unsloth/Llama-3.2-1B"),
    ("/tmp/demo-cache/acme-v3-adapter/", "acme-v3-adapter"),
    ("~/ckpt/run7", "run7"),
    ("data/eval/support.jsonl", "support.jsonl"),
    ("C:\\Users\\ana\\support.jsonl", "support.jsonl"),
    ("openai:gpt-4o-mini", "openai:gpt-4o-mini"),
    (None, ""), ("", ""),
])
def test_source_label_is_the_hub_id_or_the_last_part_of_a_path(text, label):
    assert _format.source_label(text) == label


@pytest.mark.parametrize("v, scale, text", [
    (-0.03117, 1.0, "-0.031"),  # the sign is never cut
    (0.4921, 0.64, "+0.492"),   # a 0-1 metric: three decimals
    (-45.14, 59.7, "-45.1"),    # BLEU's 0-100: one
    (3.2, 1500, "+3"),
    (0.00004, 0.6, "+4e-05"),   # too small for the precision: written in full, not "+0.000"
    (0.0, 0.6, "0.000"),
    (None, 1.0, "–"),
])
def test_fmt_delta_signs_every_difference_at_its_metrics_precision(v, scale, text):
    assert _format.fmt_delta(v, scale) == text


def test_fmt_delta_ci_is_signed_like_the_delta():
    assert _format.fmt_delta_ci(-0.5, 0.25, 1.0) == "[-0.500, +0.250]"
    assert _format.fmt_delta_ci(None, 0.25) == "–"


@pytest.mark.parametrize("p, text", [(1 / 1001, "< 0.001"), (0.0009999, "< 0.001"), (0.001, "0.001"),
                                     (0.01499, "0.015"), (0.4, "0.4"), (None, "–")])
def test_fmt_p_writes_below_a_thousandth_as_a_bound(p, text):
    assert _format.fmt_p(p) == text


def test_significance_in_words_at_five_percent_after_holm():
    assert _format.significance(0.0499) == "significant at 5% after Holm"
    assert _format.significance(0.05) == "not significant"
    assert _format.significance(None) == ""


def test_count_agrees_the_noun_with_the_number():
    assert [_format.count(n, "example") for n in (0, 1, 2, 1204)] == [
        "0 examples", "1 example", "2 examples", "1,204 examples"]
    assert _format.count(1, "query", "queries") == "1 query" and _format.count(3, "query", "queries") == "3 queries"


def test_the_browsers_sort_options_are_the_columns_the_store_sorts_by():
    assert set(browser.SORT_EXTRA) == set(db.SORT_COLUMNS)  # an option the store ignores would sort by nothing
