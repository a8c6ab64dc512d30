"""The example browser's judge filter: what a judge said of a run's answer, as a query on the store and a link."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import db
from dashboard import _links as links
from tests.support.store_seed import seed_minimal

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


@pytest.fixture()
def judged(any_store_url):
    engine = db.open_store(any_store_url)
    seed = seed_minimal(engine)  # tiny-judge prefers the candidate on k1 (one order)
    cand, base, ids = seed["candidate"], seed["baseline"], seed["example_ids"]
    with db.session_factory(engine).begin() as s:
        db.add_judgments(session=s, judgments=[
            dict(candidate_id=cand, baseline_id=base, example_id=ids[k], order=o, judge="tiny-judge",
                 mode="pairwise", judge_key="f" * 64, preference=p)
            for k, prefs in {"k2": (0.0, 0.0), "k3": (1.0, 0.0)}.items() for o, p in zip(("ab", "ba"), prefs)]
            + [dict(candidate_id=cand, baseline_id=base, example_id=ids["k4"], order="ab", judge="tiny-judge",
                    mode="pairwise", judge_key="f" * 64, preference=None, error="no verdict")])  # a failure
    yield any_store_url, engine, seed
    engine.dispose()


def test_the_judge_filter_selects_by_the_verdict_averaged_over_both_orders(judged):
    url, engine, seed = judged
    ids = {v: k for k, v in seed["example_ids"].items()}
    with db.session_factory(engine)() as s:
        def keys(kind):
            page = db.page_results(session=s, query=db.ResultQuery(run_id=seed["candidate"], judge=kind), page=0,
                                   page_size=50)
            assert page.total == len(page.rows)
            return sorted(ids[r["example_id"]] for r in page.rows)

        assert keys("better") == ["k1"]
        assert keys("worse") == ["k2"]
        assert keys("tie") == ["k3"]  # 1 in one order, 0 in the other: a tie, not a win
        assert keys("judged") == ["k1", "k2", "k3"]  # k4's only judgment failed: not judged
        assert keys("unjudged") == ["k0", "k4"]
        # the baseline run was never the candidate: no judge said anything of its answers
        assert db.page_results(session=s, query=db.ResultQuery(run_id=seed["baseline"], judge="judged"),
                               page=0, page_size=50).total == 0
        with pytest.raises(ValueError, match="judge filter"):
            db.page_results(session=s, query=db.ResultQuery(run_id=seed["candidate"], judge="maybe"), page=0,
                            page_size=50)


def test_the_judge_filter_goes_into_links_and_the_browser(judged, monkeypatch):
    url, _, seed = judged
    q = links.filters_from_params({"run": str(seed["candidate"]), "judge": "worse"})
    assert q.judge == "worse" and links.filters_to_params(q) == {"run": str(seed["candidate"]), "judge": "worse"}
    assert links.filters_from_params({"run": "1", "judge": "nonsense"}).judge is None
    monkeypatch.setenv("EVAL_DB_URL", url)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/browser.py")
    at.query_params = {"run": str(seed["candidate"]), "judge": "worse"}
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="br_judge").value == "worse"
    assert any("**1** example matches" in m.value for m in at.markdown)
    assert at.query_params["judge"] == "worse"  # the link keeps the filter


def test_the_judge_and_reviewers_disagree_filter_reads_each_reviewers_latest_verdict(judged):
    url, engine, seed = judged
    cand, base, ids = seed["candidate"], seed["baseline"], seed["example_ids"]
    with db.session_factory(engine).begin() as s:
        db.add_judgments(session=s, judgments=[
            dict(candidate_id=cand, baseline_id=base, example_id=ids["k0"], order=o, judge="tiny-judge",
                 mode="pairwise", judge_key="f" * 64, preference=0.0) for o in ("ab", "ba")])
        for key, reviewer, verdict in [
                ("k0", "ann", "pass"),  # the judge prefers the baseline's answer: disagree
                ("k1", "bob", "fail: model error"),  # the judge prefers this one (and ann passed it): disagree
                ("k2", "carl", "pass"), ("k2", "carl", "fail: model error"),  # carl's latest agrees with the judge
                ("k3", "dora", "pass")]:  # the judge calls k3 a tie
            db.add_annotation(session=s, run_id=cand, example_id=ids[key], reviewer=reviewer, verdict=verdict)
    names = {v: k for k, v in ids.items()}
    with db.session_factory(engine)() as s:
        page = db.page_results(session=s, query=db.ResultQuery(run_id=cand, judge="disagrees"), page=0, page_size=50)
    assert sorted(names[r["example_id"]] for r in page.rows) == ["k0", "k1"] and page.total == 2
