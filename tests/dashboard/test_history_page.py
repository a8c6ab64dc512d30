"""The example-history page under AppTest: one example's versions, broken/fixed, flaky, hostile text."""
from __future__ import annotations

from tests.store.test_history_queries import SCORES
from tests.support.dashboard_seed import HOSTILE, seed_store
from tests.support.review_data import RunSpec, make_store, markdown_texts, open_page, shown_texts


def _hand(store_url):
    runs = [RunSpec(name, metrics={"score": vals}) for name, vals in SCORES.items()]
    return make_store(store_url, runs, n_examples=7, higher_is_better={"score": True})


def test_history_of_one_flaky_example_with_broken_fixed_and_flaky_lists(monkeypatch, store_url):
    ids = _hand(store_url)
    link = dict(dataset=ids["dataset_id"], key="key001", metric="score", thr="0.5")
    at = open_page(monkeypatch, store_url, "history", **link)
    assert not at.exception
    assert at.button_group(key="history_view").value == "example"  # a link to an example opens on it
    assert any("Flaky" in w.value and "3 times over 4 versions" in w.value for w in at.warning)
    frames = [df.value for df in at.dataframe]
    table = next(f for f in frames if "result" in f.columns)
    assert list(table["run"]) == ["v1", "v2", "v3", "v4"] and list(table["result"]) == ["pass", "fail", "pass", "fail"]
    # only the section shown is computed: no broken/fixed counts, no flaky list
    assert not at.metric and not any("pattern" in f.columns or "before" in f.columns for f in frames)

    at = open_page(monkeypatch, store_url, "history", **link, view="changes")
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    # default comparison: the last two versions, v3 -> v4 (example 1 breaks, example 3 is fixed; 2 is unscored in v4)
    assert (metrics["Newly broken"], metrics["Newly fixed"]) == ("1", "1")
    frames = [df.value for df in at.dataframe]
    broken, fixed = [f for f in frames if "before" in f.columns]  # the Broken tab, then the Fixed tab
    assert list(broken["key"]) == ["key001"] and list(fixed["key"]) == ["key003"]
    assert list(broken.columns[:5]) == ["example_id", "key", "prompt", "before", "after"]  # what was asked, first
    assert "question 1" in broken["prompt"].iloc[0]
    assert not any("result" in f.columns or "pattern" in f.columns for f in frames)
    assert at.query_params["key"] == "key001"  # the example chosen stays in the link while another section shows

    at = open_page(monkeypatch, store_url, "history", **link, view="flaky")
    assert not at.exception
    (flaky,) = [df.value for df in at.dataframe]
    assert list(flaky["pattern"]) == ["PFPF", "FPF.", "P.FP", "PFPP"]
    assert all(link.startswith("history?") and "key=key" in link for link in flaky["history"])


def test_the_section_shown_follows_the_link_and_the_control_writes_it_back(monkeypatch, store_url):
    ids = _hand(store_url)
    at = open_page(monkeypatch, store_url, "history", dataset=ids["dataset_id"], metric="score")
    assert at.button_group(key="history_view").value == "changes"  # no example named: what changed
    assert "view" not in at.query_params  # the default is not written
    at.button_group(key="history_view").set_value("flaky").run()
    assert not at.exception and at.query_params["view"] == "flaky"
    assert any("pattern" in df.value.columns for df in at.dataframe)
    at.button_group(key="history_view").set_value("example").run()
    assert at.query_params["view"] == "example" and any("Pick an example" in c.value for c in at.caption)
    at = open_page(monkeypatch, store_url, "history", dataset=ids["dataset_id"], view="nonsense")
    assert not at.exception and at.button_group(key="history_view").value == "changes"


def test_choosing_versions_and_threshold_from_the_link(monkeypatch, store_url):
    ids = _hand(store_url)
    runs = ids["runs"]
    at = open_page(monkeypatch, store_url, "history", dataset=ids["dataset_id"], metric="score", thr="0.35",
                   a=runs["v1"], b=runs["v2"])
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Examples both scored"], metrics["Newly broken"], metrics["Newly fixed"]) == ("6", "2", "1")
    assert at.query_params["a"] == str(runs["v1"]) and at.query_params["thr"] == "0.35"


def test_an_example_id_from_the_browser_opens_its_history(monkeypatch, store_url):
    ids = _hand(store_url)
    at = open_page(monkeypatch, store_url, "history", example=ids["example_ids"][4])
    assert not at.exception
    assert at.selectbox(key="history_key").value == "key004"
    assert at.query_params["key"] == "key004"


def test_history_shows_outputs_literally(monkeypatch, store_url):
    out = seed_store(store_url, n_examples=40, versions=3)
    import db

    with db.session_factory(db.make_engine(store_url))() as s:
        key = db.example_ref(session=s, example_id=out["hostile_example_ids"][0])["key"]
    at = open_page(monkeypatch, store_url, "history", dataset=out["dataset_id"], key=key)
    assert not at.exception
    shown = "\n".join(shown_texts(at))
    assert HOSTILE[0] in shown
    for text in markdown_texts(at):
        assert not any(h in text for h in HOSTILE)
    assert at.selectbox(key="history_family").value == "acme-chat"  # the family with the most runs


def test_history_page_without_runs_says_so(monkeypatch, store_url):
    at = open_page(monkeypatch, store_url, "history")
    assert not at.exception and any("no runs" in i.value for i in at.info)


def test_the_chart_runs_in_version_order_unless_the_link_asks_for_dates_and_sections_name_their_runs(
        monkeypatch, store_url):
    import json

    ids = _hand(store_url)
    at = open_page(monkeypatch, store_url, "history", dataset=ids["dataset_id"], key="key001", metric="score")
    assert not at.exception
    (chart,) = at.get("vega_lite_chart")
    assert json.loads(chart.proto.spec)["layer"][0]["encoding"]["x"]["field"] == "version"  # same-minute runs apart
    assert at.button_group(key="history_axis").value == "version order"
    assert [e.label for e in at.expander if e.label.startswith("Run #")][0].split(" · ")[0].endswith(" v1")
    at = open_page(monkeypatch, store_url, "history", dataset=ids["dataset_id"], key="key001", metric="score",
                   view="changes")
    assert any(t.label.startswith("Broken in v4 (") for t in at.tabs)
    at = open_page(monkeypatch, store_url, "history", dataset=ids["dataset_id"], key="key001", metric="score",
                   axis="date")
    (chart,) = at.get("vega_lite_chart")
    assert json.loads(chart.proto.spec)["layer"][0]["encoding"]["x"]["field"] == "date"
    assert at.query_params["axis"] == "date"
