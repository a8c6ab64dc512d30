"""Error analysis: numbers checked against hand-computed values, and the page on a realistic store."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

import db
from tests.support.dashboard_seed import HOSTILE, HOSTILE_CATEGORY, seed_store
from tests.support.review_data import RunSpec, make_store, markdown_texts, open_page

E, T, R, X = (int(db.FailureKind.EMPTY), int(db.FailureKind.TRUNCATED), int(db.FailureKind.REPETITION),
              int(db.FailureKind.ERROR))
CONF = [0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 1.0]
Q = [0, 0, 1, 0, 1, 1, 0, 1, 1, 1]
CATS = ["a"] * 5 + ["b"] * 4 + [None]
FAILURES = [0, E, T | R, 0, X, 0, T, 0, 0, E]
OUTPUTS = [" ".join(["w"] * (i + 1)) for i in range(10)]  # example i has i + 1 tokens


@pytest.fixture(params=[True, False], ids=["metric-columns", "metric-values-fallback"])
def hand(request, any_store_url):
    """The hand-made store, on SQLite and on PostgreSQL."""
    runs = [RunSpec("r1", metrics={"confidence": CONF, "q": Q, "perplexity": [1 / c for c in CONF]},
                    failures=FAILURES, outputs=OUTPUTS, columns=request.param),
            RunSpec("r2", metrics={"confidence": CONF, "q": [1] * 10}, columns=request.param)]
    ids = make_store(any_store_url, runs, n_examples=10, categories=CATS,
                     references=["x" * (3 * i) for i in range(9)] + [None])
    engine = db.make_engine(any_store_url)
    yield ids, db.session_factory(engine)
    engine.dispose()


def test_reliability_bins_are_mean_quality_per_confidence_bucket(hand):
    ids, Session = hand
    with Session() as s:
        rel = db.reliability_bins(session=s, run_id=ids["runs"]["r1"], confidence="confidence", metric="q", bins=5,
                                  threshold=0.5)
    assert (rel["n"], rel["lo"], rel["hi"]) == (10, 0.0, 1.0)  # probabilities: buckets over [0, 1]
    got = [(r["bin"], r["n"], round(r["mean_confidence"], 4), r["mean_quality"], r["pass_share"]) for r in rel["rows"]]
    # [0, .2): .05 .15 -> q 0 0 | [.2, .4): .25 .35 -> 1 0 | [.4, .6): .45 .55 -> 1 1 | [.6, .8): .65 .75 -> 0 1
    # [.8, 1]: .85 1.0 -> 1 1 (the maximum falls in the last bucket)
    assert got == [(0, 2, 0.1, 0.0, 0.0), (1, 2, 0.3, 0.5, 0.5), (2, 2, 0.5, 1.0, 1.0), (3, 2, 0.7, 0.5, 0.5),
                   (4, 2, 0.925, 1.0, 1.0)]
    assert [round(r["bin_lo"], 6) for r in rel["rows"]] == [0.0, 0.2, 0.4, 0.6, 0.8]


def test_confidence_derived_from_perplexity_gives_the_same_bins(hand):
    ids, Session = hand
    with Session() as s:
        direct = db.reliability_bins(session=s, run_id=ids["runs"]["r1"], confidence="confidence", metric="q", bins=5)
        derived = db.reliability_bins(session=s, run_id=ids["runs"]["r1"], confidence="perplexity", metric="q", bins=5,
                                      invert_confidence=True)
    assert [(r["n"], r["mean_quality"]) for r in derived["rows"]] == [(r["n"], r["mean_quality"]) for r in direct["rows"]]
    assert derived["rows"][0]["pass_share"] is None  # no threshold given


def test_failure_counts_and_shares_per_run_and_category(hand):
    ids, Session = hand
    r1 = ids["runs"]["r1"]
    with Session() as s:
        rows = db.failure_summary(session=s, run_ids=[r1, ids["runs"]["r2"]])
    whole = {r["run_id"]: r for r in rows if r["scope"] == "all"}
    assert (whole[r1]["n"], whole[r1]["any"]) == (10, 5)
    assert whole[r1]["counts"] == dict(empty=2, truncated=2, repetition=1, prompt_truncated=0, error=1)
    assert whole[ids["runs"]["r2"]]["any"] == 0
    cats = {r["category"]: r for r in rows if r["run_id"] == r1 and r["scope"] == "category"}
    assert (cats["a"]["n"], cats["a"]["any"], cats["a"]["counts"]["error"]) == (5, 3, 1)
    assert (cats["b"]["n"], cats["b"]["any"], cats["b"]["counts"]["truncated"]) == (4, 1, 1)
    assert (cats[None]["n"], cats[None]["counts"]["empty"]) == (1, 1)


def test_histograms_share_buckets_across_runs(hand):
    ids, Session = hand
    r1, r2 = ids["runs"]["r1"], ids["runs"]["r2"]
    with Session() as s:
        exact = db.metric_histograms(session=s, run_ids=[r1, r2], metric="q")
        binned = db.metric_histograms(session=s, run_ids=[r1], metric="confidence", bins=2)
    assert exact["exact"] and [(r["run_id"], r["bin_lo"], r["count"]) for r in exact["rows"]] == \
        [(r1, 0.0, 4), (r1, 1.0, 6), (r2, 1.0, 10)]
    assert not binned["exact"] and binned["width"] == pytest.approx(0.475)
    assert [r["count"] for r in binned["rows"]] == [5, 5]  # [.05, .525) and [.525, 1.0]


def test_metric_by_length_bucket(hand):
    ids, Session = hand
    with Session() as s:
        rows = db.metric_by_length(session=s, run_id=ids["runs"]["r1"], metric="q", edges=(0, 4, 8))
        by_ref = db.metric_by_length(session=s, run_id=ids["runs"]["r1"], metric="q", measure="reference_chars",
                                     edges=(0, 10))
    # 1-3 tokens: q 0 0 1 | 4-7 tokens: 0 1 1 0 | 8+ tokens: 1 1 1
    assert [(r["lo"], r["hi"], r["n"], round(r["mean"], 4)) for r in rows] == \
        [(0, 4, 3, 0.3333), (4, 8, 4, 0.5), (8, None, 3, 1.0)]
    # references of 0, 3, ..., 24 characters; example 9 has none and is left out
    assert [(r["lo"], r["n"]) for r in by_ref] == [(0, 4), (10, 5)]


def test_length_sample_and_pair_sample_are_bounded_and_deterministic(hand):
    ids, Session = hand
    r1 = ids["runs"]["r1"]
    with Session() as s:
        a = db.length_sample(session=s, run_id=r1, metric="q", limit=4)
        b = db.length_sample(session=s, run_id=r1, metric="q", limit=4)
        full = db.length_sample(session=s, run_id=r1, metric="q", limit=100)
        p = db.metric_pair_sample(session=s, run_id=r1, metric_x="confidence", metric_y="q", limit=3)
    assert a == b and len(a["rows"]) == 4 and a["n"] == 10
    by_id = {r["example_id"]: r for r in full["rows"]}
    assert by_id[ids["example_ids"][9]]["reference_chars"] is None  # no reference
    assert (by_id[ids["example_ids"][4]]["output_chars"], by_id[ids["example_ids"][4]]["reference_chars"]) == (9, 12)
    assert by_id[ids["example_ids"][4]]["output_tokens"] == 5 and by_id[ids["example_ids"][4]]["value"] == 1.0
    assert p["n"] == 10 and len(p["rows"]) == 3


def test_metric_disagreement_and_verdicts_where_the_metric_misleads(hand):
    ids, Session = hand
    r1, ex = ids["runs"]["r1"], ids["example_ids"]
    with Session.begin() as s:
        db.add_annotation(session=s, run_id=r1, example_id=ex[8], reviewer="alice", verdict="fail: metric misleading")
        db.add_annotation(session=s, run_id=r1, example_id=ex[0], reviewer="bob", verdict="pass")
        db.add_annotation(session=s, run_id=r1, example_id=ex[5], reviewer="carol", verdict="pass")
        db.add_annotation(session=s, run_id=r1, example_id=ex[1], reviewer="alice", verdict="fail: model error")
        db.add_annotation(session=s, run_id=r1, example_id=ex[1], reviewer="alice", verdict="pass")  # changed mind
        # a reviewer who says the metric misleads is counted even where the metric calls the output bad
        db.add_annotation(session=s, run_id=r1, example_id=ex[0], reviewer="dave", verdict="fail: metric misleading")
    with Session() as s:
        mm = db.metric_disagreements(session=s, run_id=r1, metric_x="confidence", metric_y="q", x_at_least=0.6,
                                     y_at_most=0.0)
        vd = db.verdict_disagreements(session=s, run_id=r1, metric="q", good=0.5, bad=0.5)
        summary = {r["verdict"]: r for r in db.verdict_metric_summary(session=s, run_id=r1, metric="q")}
    assert mm["total"] == 1 and mm["rows"][0]["example_id"] == ex[6] and mm["rows"][0]["output"] == OUTPUTS[6]
    assert vd["total"] == 4
    assert [(r["kind"], r["example_id"], r["reviewer"]) for r in vd["rows"]] == [
        ("metric bad, human pass", ex[0], "bob"), ("metric bad, human pass", ex[1], "alice"),
        ("metric good, human fail", ex[8], "alice"), ("reviewer: metric misleading", ex[0], "dave")]
    assert db._query_errors.MISLEADING in db.VERDICTS
    assert (summary["pass"]["n"], round(summary["pass"]["mean"], 4)) == (3, 0.3333)
    assert set(summary) == {"pass", "fail: metric misleading"}  # alice's replaced verdict does not count


# ---------------------------------------------------------------- the page


@pytest.fixture()
def seeded(store_url):
    return seed_store(store_url, n_examples=60, versions=3)


SECTIONS = ["dist", "conf", "fail", "len", "dis"]


def test_errors_page_renders_every_section_for_a_run_and_an_overlay(monkeypatch, store_url, seeded):
    for tab in SECTIONS:
        at = open_page(monkeypatch, store_url, "errors", run=seeded["latest"], vs=seeded["latest_baseline"], tab=tab)
        assert not at.exception, tab
        assert at.selectbox(key="errors_run").value == seeded["latest"]
        assert at.selectbox(key="errors_vs").value == seeded["latest_baseline"]
        assert at.query_params["run"] == str(seeded["latest"])
        for text in markdown_texts(at):  # data never goes through Markdown
            assert not any(h in text for h in HOSTILE) and HOSTILE_CATEGORY not in text, tab
    assert at.selectbox(key="errors_m2").value == "exact_match"  # the first metric other than "bleu"
    conf = open_page(monkeypatch, store_url, "errors", run=seeded["latest"], tab="conf")
    assert conf.selectbox(key="errors_conf").value == "1/perplexity"  # the seed stores no `confidence` metric


def test_switching_sections_keeps_the_link_state(monkeypatch, store_url, seeded):
    at = open_page(monkeypatch, store_url, "errors", run=seeded["latest"], tab="len", by="reference_chars",
                   m2="exact_match")
    assert at.selectbox(key="errors_by").value == "reference_chars"
    at.button_group(key="errors_section").set_value("fail").run()
    assert not at.exception
    assert at.query_params["tab"] == "fail"
    assert at.query_params["by"] == "reference_chars" and at.query_params["m2"] == "exact_match"


def test_failure_table_links_open_the_filtered_browser(monkeypatch, store_url, seeded):
    at = open_page(monkeypatch, store_url, "errors", run=seeded["latest"], tab="fail")
    table = next(df.value for df in at.dataframe if "examples" in df.value.columns)
    assert not table.empty
    for link, cat, kind, run in zip(table["examples"], table["category"], table["kind"], table["run"]):
        parts = urlsplit(link)
        assert parts.path == "browser"
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        assert q["run"] == str(seeded["latest"]) and q["category"] == cat
        assert q["failure"] == ("any" if kind == "any failure" else kind)
    hostile = table[table["category"] == HOSTILE_CATEGORY]
    if not hostile.empty:  # the hostile category is data: literal in the table, URL-encoded in the link
        assert "%3Ci%3Eweird%3C%2Fi%3E" in hostile["examples"].iloc[0]



def test_errors_page_without_runs_says_so(monkeypatch, store_url):
    at = open_page(monkeypatch, store_url, "errors")
    assert not at.exception
    assert any("no runs" in i.value for i in at.info)


@pytest.mark.parametrize("page", ["errors", "history", "review"])
def test_analysis_pages_explain_a_missing_or_empty_store(monkeypatch, tmp_path, page):
    at = open_page(monkeypatch, f"sqlite:///{tmp_path / 'missing.sqlite'}", page)
    assert not at.exception and len(at.error) == 1 and "no store at" in at.error[0].value
    (tmp_path / "empty.sqlite").touch()
    at = open_page(monkeypatch, f"sqlite:///{tmp_path / 'empty.sqlite'}", page)
    assert not at.exception and len(at.error) == 1 and "the store is empty" in at.error[0].value


def test_distributions_show_the_chosen_metric_first_and_the_others_on_request(monkeypatch, store_url, seeded):
    at = open_page(monkeypatch, store_url, "errors", run=seeded["latest"], tab="dist", metric="rouge_l")
    assert not at.exception
    captions = [t.value for t in at.text if " · " in t.value and "n=" in t.value]
    assert len(captions) == 1 and captions[0].startswith("rouge_l · ")  # one chart: the chosen metric
    at.toggle(key="errors_dist_all").set_value(True).run()
    captions = [t.value.split(" · ")[0] for t in at.text if " · " in t.value and "n=" in t.value]
    assert captions[0] == "rouge_l" and sorted(captions[1:]) == ["bleu", "exact_match", "perplexity"]


@pytest.mark.parametrize("tab", ["conf", "len"])
def test_the_overlay_run_is_drawn_on_the_confidence_and_length_sections_too(monkeypatch, store_url, seeded, tab):
    run, vs = seeded["latest"], seeded["latest_baseline"]
    alone = open_page(monkeypatch, store_url, "errors", run=run, tab=tab)
    both = open_page(monkeypatch, store_url, "errors", run=run, vs=vs, tab=tab)
    assert not both.exception
    assert [t.value for t in both.text if t.value.startswith("run #")] == [  # names: "#5 acme-chat-v3"
        f"run #{run} acme-chat-v3", f"run #{vs} llama-3.2-1b-base-for-v3"]
    assert len(both.get("vega_lite_chart")) == 2 * len(alone.get("vega_lite_chart"))
