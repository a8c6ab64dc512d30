"""Statistics of preference judgments: win rate, position consistency, length control, ratings, agreement.

A judgment's **preference** is the probability that the candidate's answer is better than the baseline's:
1 a win, 0 a loss, 0.5 a tie, and anything between when it is weighted from the judge's log-probabilities.
Every function here takes preferences already expressed for the candidate, whatever order the judge saw.

* **Win rate** = 100 × mean preference (a tie counts half), with the standard error 100 × s/√n (s the sample
  standard deviation, ddof 1) and a 95% BCa bootstrap interval over examples (``evaluator.scoring``'s
  ``mean_ci``: 1,000 resamples, seed 0). These are AlpacaEval's ``win_rate`` and ``standard_error``.
* **Position consistency**: a pair judged in both orders is consistent when both orders put the same answer
  ahead (or both call it a tie). Its preference is the mean of the two orders' preferences, which cancels a
  judge's pull towards the first (or second) position.
* **Length-controlled win rate** (AlpacaEval 2's idea, on one pair of runs): a binomial GLM with a logit link
  fitted to the (fractional) preferences, logit p = θ + φ·tanh(Δ / s), where Δ is the candidate's answer
  length minus the baseline's (characters) and s the standard deviation of Δ. It is the win rate the model
  predicts when both answers have the same length, 100·σ(θ), with the 95% interval 100·σ(θ ± 1.96·se(θ)).
  AlpacaEval also fits a per-instruction difficulty term across many models; with one pair there is nothing
  to fit it on, so it is left out.
* **Bradley–Terry ratings**: P(i beats j) = σ(βᵢ − βⱼ), fitted by a binomial GLM without intercept on
  every pairwise preference (design +1 for the first model, −1 for the second), the first model in sorted
  order fixed at β = 0. Reported on the Elo scale, 1000 + 400·β/ln 10, with 95% Wald intervals.
* **Judge vs humans**: Cohen's kappa of the judge's pass/fail against the reviewers' (statsmodels), the
  confusion table, and the share of the reviewers' fails that the judge passes.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from evaluator.scoring._stats import mean_ci

ELO_SCALE = 400 / math.log(10)
ELO_BASE = 1000.0
BT_MAX_LOG_ODDS = 10.0
GLM_TOL = 1e-12  # IRLS stops when the deviance changes less than this (statsmodels' default 1e-8)


def _side(p: float) -> int:
    return 0 if p == 0.5 else (1 if p > 0.5 else -1)


def combine_orders(first: Optional[float], second: Optional[float]) -> tuple[Optional[float], Optional[bool]]:
    """(preference, consistent) of one pair from its two orders' candidate preferences; either may be None
    (a judge failure): then the other order alone counts and consistency is unknown."""
    if first is None or second is None:
        return (second if first is None else first), None
    return (first + second) / 2, _side(first) == _side(second)


def win_rate(preferences: Iterable[Optional[float]]) -> dict[str, Any]:
    """n, wins, ties, losses, win_rate, standard_error, ci_low, ci_high (percent) of candidate preferences;
    None entries are judge failures, counted in ``failures`` and left out of everything else."""
    values = list(preferences)
    p = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if ((p < 0) | (p > 1)).any():
        raise ValueError("a preference is a probability in [0, 1]")
    out: dict[str, Any] = {"n": int(len(p)), "wins": int((p > 0.5).sum()), "ties": int((p == 0.5).sum()),
                           "losses": int((p < 0.5).sum()), "failures": len(values) - len(p)}
    if len(p) == 0:
        return {**out, "win_rate": None, "standard_error": None, "ci_low": None, "ci_high": None}
    mean, low, high = mean_ci(p)
    se = float(p.std(ddof=1) / math.sqrt(len(p))) if len(p) > 1 else None
    return {**out, "win_rate": 100 * mean, "standard_error": None if se is None else 100 * se,
            "ci_low": None if low is None else 100 * low, "ci_high": None if high is None else 100 * high}


def position_consistency(consistent: Iterable[Optional[bool]]) -> Optional[float]:
    """The share of pairs judged in both orders whose two verdicts agree (None: no such pair)."""
    known = [c for c in consistent if c is not None]
    return sum(known) / len(known) if known else None


def length_controlled_win_rate(preferences: Sequence[float], candidate_lengths: Sequence[float],
                               baseline_lengths: Sequence[float]) -> dict[str, Optional[float]]:
    """{"lc_win_rate", "ci_low", "ci_high", "length_coef"} (percent; the coefficient φ on tanh(Δ/s)).

    All None when nothing can be fitted: fewer than 3 judged examples, every one won (or lost), or lengths
    that separate wins from losses perfectly. When tanh(Δ/s) hardly varies (every difference far to one side
    of the others), the length term cannot be told from the intercept and is left out (``length_coef`` None)."""
    import statsmodels.api as sm
    from scipy.special import expit
    from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

    p = np.asarray(preferences, dtype=np.float64)
    delta = np.asarray(candidate_lengths, dtype=np.float64) - np.asarray(baseline_lengths, dtype=np.float64)
    none = {"lc_win_rate": None, "ci_low": None, "ci_high": None, "length_coef": None}
    if len(p) < 3 or p.min() == p.max():
        return none
    scale = delta.std(ddof=1)
    x = np.tanh(delta / scale) if scale > 0 else np.zeros_like(delta)
    with_length = x.std() > 1e-3  # below, tanh is saturated: the term is the intercept again, scaled up
    design = np.column_stack([np.ones_like(p), x]) if with_length else np.ones((len(p), 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        try:
            fit = sm.GLM(p, design, family=sm.families.Binomial()).fit(tol=GLM_TOL, maxiter=200)
        except PerfectSeparationWarning:
            return none
    theta, se = float(fit.params[0]), float(fit.bse[0])
    if not (math.isfinite(theta) and math.isfinite(se)):
        return none
    return {"lc_win_rate": 100 * float(expit(theta)), "ci_low": 100 * float(expit(theta - 1.96 * se)),
            "ci_high": 100 * float(expit(theta + 1.96 * se)),
            "length_coef": float(fit.params[1]) if with_length else None}


def bradley_terry(pairs: Iterable[tuple[str, str, float]]) -> pd.DataFrame:
    """Ratings from (model_a, model_b, preference for a) judgments: one row per model, sorted by rating, with
    ``rating``, ``ci_low``, ``ci_high`` (Elo scale), ``n`` (judgments it took part in) and ``smoothed``. The
    first model in sorted order is the reference at 1000, with no interval of its own.

    When one model won every judgment against another (separation: the maximum-likelihood rating is infinite),
    one tie between each pair of models that met is added and the fit repeated; ``smoothed`` says so."""
    from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

    rows = [(str(a), str(b), float(p)) for a, b, p in pairs if a != b]
    models = sorted({m for a, b, _ in rows for m in (a, b)})
    if len(models) < 2:
        raise ValueError("Bradley-Terry needs judgments between at least two models")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # statsmodels' scale with no residual degree of freedom
        try:
            beta, se = _bt_fit(rows, models)
            # IRLS may also stop on a diverging fit without the warning: odds beyond e^10 (22,026 to 1) are
            # what separation looks like at any realistic number of judgments
            smoothed = bool(np.abs(beta).max() > BT_MAX_LOG_ODDS or not np.isfinite(se[1:]).all())
        except PerfectSeparationWarning:
            smoothed = True
    if smoothed:
        met = sorted({(a, b) for a, b, _ in rows})
        with warnings.catch_warnings():  # the added ties make the fit finite; statsmodels may still warn
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", PerfectSeparationWarning)
            beta, se = _bt_fit(rows + [(a, b, 0.5) for a, b in met], models)
    n = {m: sum(m in (a, b) for a, b, _ in rows) for m in models}
    out = pd.DataFrame({"model": models, "rating": ELO_BASE + ELO_SCALE * beta,
                        "ci_low": ELO_BASE + ELO_SCALE * (beta - 1.96 * se),
                        "ci_high": ELO_BASE + ELO_SCALE * (beta + 1.96 * se), "n": [n[m] for m in models],
                        "smoothed": smoothed})
    return out.sort_values(["rating", "model"], ascending=[False, True], ignore_index=True)


def _bt_fit(rows: list[tuple[str, str, float]], models: list[str]) -> tuple[np.ndarray, np.ndarray]:
    import statsmodels.api as sm

    index = {m: i for i, m in enumerate(models)}
    design = np.zeros((len(rows), len(models)))
    for r, (a, b, _) in enumerate(rows):
        design[r, index[a]], design[r, index[b]] = 1.0, -1.0
    y = np.array([p for _, _, p in rows])
    fit = sm.GLM(y, design[:, 1:], family=sm.families.Binomial()).fit(tol=GLM_TOL, maxiter=200)
    return np.concatenate([[0.0], fit.params]), np.concatenate([[np.nan], fit.bse])


def judge_human_agreement(judge_pass: Sequence[bool], human_pass: Sequence[bool]) -> dict[str, Any]:
    """Cohen's kappa, the confusion table (rows: reviewers, columns: judge) and the share of the reviewers'
    fails that the judge passes, on examples that have both."""
    from statsmodels.stats.inter_rater import cohens_kappa

    if len(judge_pass) != len(human_pass):
        raise ValueError("one judge verdict per human verdict")
    labels = ["pass", "fail"]
    judge = pd.Categorical(["pass" if j else "fail" for j in judge_pass], categories=labels)
    human = pd.Categorical(["pass" if h else "fail" for h in human_pass], categories=labels)
    table = pd.crosstab(human, judge, rownames=["reviewers"], colnames=["judge"], dropna=False)
    table = table.reindex(index=labels, columns=labels, fill_value=0)
    human_fails = int(table.loc["fail"].sum())
    kappa = None
    counts = table.to_numpy()
    agree_by_chance = float((counts.sum(axis=0) * counts.sum(axis=1)).sum()) / max(1, counts.sum()) ** 2
    if len(judge_pass) and agree_by_chance < 1:  # kappa is undefined when both sides give one answer only
        kappa = float(cohens_kappa(counts).kappa)
    return {"n": len(judge_pass), "kappa": kappa, "confusion": table,
            "judge_passes_human_fails": (int(table.loc["fail", "pass"]) / human_fails) if human_fails else None}


def alpaca_eval_preference(value: Optional[float]) -> Optional[float]:
    """An AlpacaEval annotation's ``preference`` (1: output_1 better, 2: output_2 better, 1.5 a draw; 0 a draw
    in older files; weighted annotators in between; null not judged) as output_2's preference in [0, 1]."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    value = 1.5 if value == 0 else float(value)
    if not 1 <= value <= 2:
        raise ValueError(f"an AlpacaEval preference is 0 or between 1 and 2, not {value}")
    return value - 1
