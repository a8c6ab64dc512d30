"""The example browser's judge filter as a query on the store: what a judge said of a run's answer, and where a
judge and a reviewer disagree (SQLite and PostgreSQL)."""
from __future__ import annotations

import pytest

import db
from tests.support.store_seed import seed_judged


@pytest.fixture()
def judged(any_store_url):
    engine = db.open_store(any_store_url)
    yield any_store_url, engine, seed_judged(engine)
    engine.dispose()


def _selected(session, seed, kind: str) -> list[str]:
    """Keys of the candidate's examples that the judge filter ``kind`` selects, sorted."""
    names = {v: k for k, v in seed["example_ids"].items()}
    page = db.page_results(session=session, query=db.ResultQuery(run_id=seed["candidate"], judge=kind), page=0,
                           page_size=50)
    assert page.total == len(page.rows)
    return sorted(names[r["example_id"]] for r in page.rows)


def test_the_judge_filter_selects_by_the_verdict_averaged_over_both_orders(judged):
    url, engine, seed = judged
    with db.session_factory(engine)() as s:
        def keys(kind):
            return _selected(s, seed, kind)

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
        # Another judge prefers k3, which dora passed: they agree (a judge preferring an answer disagrees only
        # with a reviewer who failed it).
        db.add_judgments(session=s, judgments=[
            dict(candidate_id=cand, baseline_id=base, example_id=ids["k3"], order=o, judge="other-judge",
                 mode="pairwise", judge_key="e" * 64, preference=1.0) for o in ("ab", "ba")])
    names = {v: k for k, v in ids.items()}
    with db.session_factory(engine)() as s:
        page = db.page_results(session=s, query=db.ResultQuery(run_id=cand, judge="disagrees"), page=0, page_size=50)
    assert sorted(names[r["example_id"]] for r in page.rows) == ["k0", "k1"] and page.total == 2


def test_a_verdict_is_averaged_per_judge_and_baseline_never_across_them(judged):
    url, engine, seed = judged
    cand, base, ids = seed["candidate"], seed["baseline"], seed["example_ids"]
    with db.session_factory(engine).begin() as s:
        other_base = db.create_run(session=s, name="base2", model="b2", backend="transformers",
                                   dataset_id=seed["dataset_id"], baseline_for_id=cand)
        db.add_judgments(session=s, judgments=[
            # k0: against the baseline, judge "f" prefers it (0.6), judge "e" does not (0.2): mean over both 0.4
            dict(candidate_id=cand, baseline_id=base, example_id=ids["k0"], order="ab", judge="j", mode="pairwise",
                 judge_key="f" * 64, preference=0.6),
            dict(candidate_id=cand, baseline_id=base, example_id=ids["k0"], order="ab", judge="j", mode="pairwise",
                 judge_key="e" * 64, preference=0.2),
            # k4: judge "f" prefers it to base2 (0.6), not to the first baseline (0.2): mean over both 0.4
            dict(candidate_id=cand, baseline_id=other_base, example_id=ids["k4"], order="ab", judge="j",
                 mode="pairwise", judge_key="f" * 64, preference=0.6),
            dict(candidate_id=cand, baseline_id=base, example_id=ids["k4"], order="ba", judge="j", mode="pairwise",
                 judge_key="f" * 64, preference=0.2),
            # a grade of k2's answer alone (no baseline) is not a preference, whatever it holds
            dict(candidate_id=cand, baseline_id=None, example_id=ids["k2"], order="ab", judge="j", mode="single",
                 judge_key="d" * 64, preference=1.0, score=10.0)])
    with db.session_factory(engine)() as s:
        def keys(kind):
            return _selected(s, seed, kind)

        assert keys("better") == ["k0", "k1", "k4"]
        assert keys("worse") == ["k0", "k2", "k4"]
        assert keys("judged") == ["k0", "k1", "k2", "k3", "k4"]
