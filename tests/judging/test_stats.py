"""Judge statistics against values computed by hand (each derivation is in the comment beside it)."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from evaluator.judging import (
    alpaca_eval_preference,
    bradley_terry,
    combine_orders,
    judge_human_agreement,
    length_controlled_win_rate,
    position_consistency,
    win_rate,
)
from evaluator.scoring._stats import mean_ci

# GLM fits (IRLS to a deviance change < 1e-12) were measured within 3.1e-11 percentage points of the hand values;
# 1e-6 leaves room for other BLAS kernels.
GLM_ABS = 1e-6


def _logistic(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def test_win_rate_counts_a_tie_half_and_reports_the_standard_error():
    r = win_rate([1, 0, 0.5, 1, None])
    # mean (1 + 0 + 0.5 + 1) / 4 = 0.625; squared deviations 0.140625 + 0.390625 + 0.015625 + 0.140625
    # = 0.6875, / 3 = 0.229167, sd 0.478714, / sqrt(4) = 0.239357
    assert (r["n"], r["wins"], r["ties"], r["losses"], r["failures"]) == (4, 2, 1, 1, 1)
    assert r["win_rate"] == pytest.approx(62.5, abs=1e-12)  # a mean of quarters: exact in binary
    assert r["standard_error"] == pytest.approx(23.9357, abs=1e-4)
    _, low, high = mean_ci([1, 0, 0.5, 1])
    # the same seeded resamples of the same four values through the same code: identical on any CPU
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((100 * low, 100 * high), abs=1e-12)
    assert r["ci_low"] <= r["win_rate"] <= r["ci_high"]


def test_win_rate_of_nothing_and_of_bad_preferences():
    assert win_rate([None, None])["win_rate"] is None and win_rate([None])["failures"] == 1
    assert win_rate([1])["standard_error"] is None
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        win_rate([1.5])


def test_two_orders_combine_to_their_mean_and_say_whether_they_agree():
    assert combine_orders(1.0, 0.0) == (0.5, False)  # each order preferred its first answer: position bias
    assert combine_orders(1.0, 0.8) == (0.9, True)
    assert combine_orders(0.5, 0.5) == (0.5, True)
    assert combine_orders(0.5, 1.0) == (0.75, False)
    assert combine_orders(None, 1.0) == (1.0, None)
    assert position_consistency([True, False, None, True]) == pytest.approx(2 / 3)
    assert position_consistency([None]) is None


def test_length_control_with_equal_lengths_is_the_plain_win_rate():
    # No length variation: the intercept-only fit gives logit(mean) = logit(0.75), se = 1 / sqrt(n p (1 - p))
    r = length_controlled_win_rate([1, 0, 1, 1], [10, 10, 10, 10], [5, 5, 5, 5])
    theta, se = math.log(3), 1 / math.sqrt(4 * 0.75 * 0.25)
    assert r["lc_win_rate"] == pytest.approx(75.0, abs=GLM_ABS)
    assert r["ci_low"] == pytest.approx(100 * _logistic(theta - 1.96 * se), abs=GLM_ABS)
    assert r["ci_high"] == pytest.approx(100 * _logistic(theta + 1.96 * se), abs=GLM_ABS)
    assert r["length_coef"] is None


def test_length_control_removes_what_length_explains():
    # Four examples where the candidate is 10 characters longer (3 of 4 won), two where it is 10 shorter
    # (1 of 2 won). Two groups, two parameters: the fit is exact, theta + phi*t = logit(3/4) and
    # theta - phi*t = logit(1/2) = 0, so theta = ln(3) / 2 and the LC win rate is sigma(ln 3 / 2) =
    # sqrt(3) / (1 + sqrt(3)) = 63.40%, below the plain 4/6 = 66.67%.
    r = length_controlled_win_rate([1, 1, 1, 0, 1, 0], [20, 20, 20, 20, 10, 10], [10, 10, 10, 10, 20, 20])
    assert win_rate([1, 1, 1, 0, 1, 0])["win_rate"] == pytest.approx(200 / 3)
    assert r["lc_win_rate"] == pytest.approx(100 * math.sqrt(3) / (1 + math.sqrt(3)), abs=GLM_ABS)
    assert r["length_coef"] > 0  # longer answers won more often


def test_length_control_needs_something_to_fit():
    assert length_controlled_win_rate([1, 1, 1], [1, 2, 3], [0, 0, 0])["lc_win_rate"] is None  # all won
    assert length_controlled_win_rate([1, 0], [1, 2], [0, 0])["lc_win_rate"] is None
    # the longer answer always won: length separates the verdicts, there is no length-free win rate to give
    assert length_controlled_win_rate([1, 1, 0, 0], [9, 8, 1, 2], [5, 5, 5, 5])["lc_win_rate"] is None


def test_length_control_leaves_out_a_length_term_it_cannot_tell_from_the_intercept():
    # differences -7, -6, -5 with a spread of 0.89: tanh(delta / s) is -1 to within 3e-5 for every example
    r = length_controlled_win_rate([1, 0, 1, 1, 0, 0.5], [1, 2, 3, 1, 2, 3], [8, 8, 8, 8, 8, 8])
    assert r["length_coef"] is None
    assert r["lc_win_rate"] == pytest.approx(100 * 3.5 / 6, abs=GLM_ABS)  # intercept only: the plain win rate


def test_bradley_terry_of_two_models_is_the_log_odds_of_their_record():
    # A beat B 3 times of 4: sigma(beta_A - beta_B) = 3/4, beta_A = 0 (reference) so beta_B = -ln 3,
    # B's rating 1000 - 400 log10(3) = 809.15.
    r = bradley_terry([("A", "B", 1.0), ("A", "B", 1.0), ("B", "A", 0.0), ("A", "B", 0.0)])
    assert list(r["model"]) == ["A", "B"]
    assert r.loc[0, "rating"] == pytest.approx(1000.0) and math.isnan(r.loc[0, "ci_low"])
    assert r.loc[1, "rating"] == pytest.approx(1000 - 400 * math.log10(3), abs=1e-4)
    assert r.loc[1, "ci_low"] < r.loc[1, "rating"] < r.loc[1, "ci_high"]
    assert list(r["n"]) == [4, 4]


def test_bradley_terry_orders_three_versions_and_counts_a_tie_half():
    pairs = ([("v3", "base", 1.0)] * 8 + [("v3", "base", 0.0)] * 2 + [("v2", "base", 1.0)] * 6
             + [("v2", "base", 0.0)] * 4 + [("v3", "v2", 1.0)] * 6 + [("v3", "v2", 0.5)] * 2 + [("v3", "v2", 0.0)] * 2)
    r = bradley_terry(pairs)
    assert list(r["model"]) == ["v3", "v2", "base"]
    with pytest.raises(ValueError, match="two models"):
        bradley_terry([("a", "a", 1.0)])


def test_judge_agreement_with_reviewers():
    # reviewers pass 2 (judge passes both); reviewers fail 3 (judge passes 1). p_o = 4/5; p_e = 0.4*0.6 +
    # 0.6*0.4 = 0.48; kappa = (0.8 - 0.48) / 0.52 = 0.615385
    r = judge_human_agreement([True, True, False, False, True], [True, False, False, False, True])
    assert r["kappa"] == pytest.approx(0.32 / 0.52, abs=1e-12)
    assert r["confusion"].to_dict() == {"pass": {"pass": 2, "fail": 1}, "fail": {"pass": 0, "fail": 2}}
    assert r["judge_passes_human_fails"] == pytest.approx(1 / 3)
    assert judge_human_agreement([True], [True])["judge_passes_human_fails"] is None
    with pytest.raises(ValueError):
        judge_human_agreement([True], [])


def test_alpaca_eval_preferences_reproduce_its_win_rate_and_standard_error():
    raw = [2, 1, 1.5, 0, None, 2, 1.25, float("nan")]
    prefs = [alpaca_eval_preference(v) for v in raw]
    assert prefs == [1.0, 0.0, 0.5, 0.5, None, 1.0, 0.25, None]
    # AlpacaEval: 0 -> 1.5, nulls dropped, win_rate = mean(pref - 1) * 100, standard_error = sem(pref - 1) * 100
    kept = pd.Series([2, 1, 1.5, 1.5, 2, 1.25]) - 1
    r = win_rate(prefs)
    assert r["win_rate"] == pytest.approx(kept.mean() * 100, abs=1e-12)
    assert r["standard_error"] == pytest.approx(kept.sem() * 100, abs=1e-12)
    with pytest.raises(ValueError):
        alpaca_eval_preference(3)


def test_reviewers_pass_or_fail_an_answer_by_majority_of_the_verdicts_about_the_answer():
    from evaluator.judging import human_pass_fail

    verdicts = [dict(example_id=1, verdict="pass"), dict(example_id=1, verdict="fail: model error"),
                dict(example_id=1, verdict="pass"),  # 2 to 1: pass
                dict(example_id=2, verdict="pass"), dict(example_id=2, verdict="fail: model error"),  # a tie: out
                dict(example_id=3, verdict="fail: reference wrong"), dict(example_id=3, verdict="needs discussion"),
                dict(example_id=4, verdict="fail: metric misleading"), dict(example_id=4, verdict="fail: model error")]
    assert human_pass_fail(verdicts) == {1: True, 4: False}


def test_ratings_per_judge_average_each_examples_two_orders_first():
    from evaluator.judging import ratings

    rows = [dict(candidate_id=2, baseline_id=1, judge="j", judge_key="k", example_id=e, order=o, preference=p)
            for e, prefs in enumerate([(1, 1), (1, 1), (1, 1), (0, 0)]) for o, p in zip(("ab", "ba"), prefs)]
    rows += [dict(r, judge="other", judge_key="k2", preference=0.5) for r in rows]  # another judge: all ties
    tables = ratings(rows, {1: "#1 base", 2: "#2 v3"})
    j = tables["j"]  # run 2 won 3 of 4: beta_2 - beta_1 = ln 3, run 1 the reference at 1000
    assert list(j["run"]) == ["#2 v3", "#1 base"] and list(j["n"]) == [4, 4]
    assert j.loc[0, "rating"] == pytest.approx(1000 + 400 * math.log10(3), abs=1e-4)
    assert tables["other"]["rating"].tolist() == pytest.approx([1000.0, 1000.0], abs=1e-6)
    assert not j["smoothed"].any() and ratings([], {}) == {}
    # one example, won both ways: separation; one tie added between the two runs, so 1.5 of 2: ln 3 again
    one = ratings(rows[:2], {})["j"]
    assert one["smoothed"].all() and one.loc[0, "rating"] == pytest.approx(1000 + 400 * math.log10(3), abs=1e-4)


def test_judge_and_metric_disagree_on_the_candidates_answer():
    from evaluator.judging import judge_metric_disagreements

    def row(e, order, p, v):
        return dict(judge="j", judge_key="k", baseline_id=9, example_id=e, order=order, preference=p, value=v)

    rows = [row(1, "ab", 1.0, 5.0), row(1, "ba", 1.0, 5.0),  # better, and perplexity 5 passes (<= 10): agree
            row(2, "ab", 1.0, 30.0), row(2, "ba", 0.5, 30.0),  # 0.75: better, but 30 fails: disagree
            row(3, "ab", 0.0, 2.0),  # worse, but 2 passes: disagree
            row(4, "ab", 0.5, 50.0),  # a tie: left out
            row(5, "ab", 1.0, None)]  # no value: left out
    out = judge_metric_disagreements(rows, threshold=10.0, higher_is_better=False)
    assert [(d["example_id"], d["judge_says"], d["preference"]) for d in out] == [(3, "worse", 0.0), (2, "better", 0.75)]
