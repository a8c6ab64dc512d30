"""One rating per version from Arena votes, judges and reviewers, checked against values computed by hand."""
from __future__ import annotations

import math

import pytest

from evaluator.judging import arena_games, judge_games, reviewer_games, version_ratings

ELO = 400 / math.log(10)


def _vote(a, b, p):
    return {"model_a": a, "model_b": b, "preference": p}


def _verdict(run, run_id, example, verdict, reviewer="ana"):
    return {"run": run, "run_id": run_id, "example_id": example, "reviewer": reviewer, "verdict": verdict}


def _judgment(example, order, p, cand=("v2", 2), base=("v1", 1), key="k"):
    return {"candidate": cand[0], "candidate_id": cand[1], "baseline": base[0], "baseline_id": base[1],
            "judge_key": key, "example_id": example, "order": order, "preference": p}


def test_each_source_becomes_games():
    assert arena_games([_vote("v2", "v3", 1.0), _vote("v2", "v2", 0.5)]) == [("v2", "v3", 1.0)]
    # two orders of one example are one game, averaged; a lone order counts as it is
    assert judge_games([_judgment(7, "ab", 1.0), _judgment(7, "ba", 0.0), _judgment(8, "ab", 1.0)]) == \
        [("v2", "v1", 0.5), ("v2", "v1", 1.0)]
    verdicts = [_verdict("v1", 1, 5, "pass"), _verdict("v2", 2, 5, "fail: model error"),
                _verdict("v3", 3, 5, "pass"), _verdict("v1", 1, 6, "fail: reference wrong"),
                _verdict("v2", 2, 6, "pass"), _verdict("v1", 1, 9, "pass", reviewer="bo"),
                _verdict("v2", 2, 9, "pass", reviewer="cy")]
    # example 5: v1 beats v2, v1 ties v3, v3 beats v2; example 6's "reference wrong" says nothing of v1's answer;
    # example 9: two reviewers, one run each, no pair
    assert sorted(reviewer_games(verdicts)) == [("v1", "v2", 1.0), ("v1", "v3", 0.5), ("v2", "v3", 0.0)]


def test_two_versions_three_to_one_is_log3_apart_with_the_binomial_interval():
    # A wins 2 of 3 arena votes and the one reviewed pair: 3 of 4 games, so the MLE of the log-odds is ln 3,
    # B = 1000 - 400 log10(3) = 809.15, and its standard error is 1 / sqrt(n p (1 - p)) = 1 / sqrt(0.75)
    votes = [_vote("A", "B", 1.0), _vote("A", "B", 1.0), _vote("B", "A", 1.0)]
    verdicts = [_verdict("A", 1, 5, "pass"), _verdict("B", 2, 5, "fail: model error")]
    t = version_ratings(votes, [], verdicts).set_index("version")
    assert t.loc["A", "rating"] == pytest.approx(1000.0)
    assert t.loc["B", "rating"] == pytest.approx(1000 - 400 * math.log10(3), abs=1e-4)  # IRLS tol 1e-10
    half = 1.96 * ELO / math.sqrt(0.75)
    assert t.loc["B", "ci_low"] == pytest.approx(t.loc["B", "rating"] - half, abs=1e-3)
    assert t.loc["B", "ci_high"] == pytest.approx(t.loc["B", "rating"] + half, abs=1e-3)
    assert (t.loc["A", "arena"], t.loc["A", "reviewers"], t.loc["A", "judges"]) == (3, 1, 0)
    assert not t["smoothed"].any()


def test_sources_pool_into_one_rating_per_version():
    # v2 beats v1 in the arena once and loses once; a judge prefers v2 on one example: 2 of 3 for v2
    votes = [_vote("v2", "v1", 1.0), _vote("v1", "v2", 1.0)]
    t = version_ratings(votes, [_judgment(7, "ab", 1.0), _judgment(7, "ba", 1.0)]).set_index("version")
    assert t.loc["v2", "rating"] - t.loc["v1", "rating"] == pytest.approx(400 * math.log10(2), abs=1e-4)
    assert (t.loc["v2", "arena"], t.loc["v2", "judges"]) == (2, 1)


def test_fewer_than_two_versions_give_an_empty_table():
    assert version_ratings([_vote("v2", "v2", 1.0)]).empty
    assert version_ratings([]).empty
