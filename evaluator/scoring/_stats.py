"""Statistics for aggregates and comparisons: bootstrap CIs, paired tests, Holm, wins/ties/losses.

Conventions (each result row records its method string):

* Confidence intervals of means are 95% BCa bootstrap intervals over examples (Efron 1987:
  percentile interval with bias correction z₀ = Φ⁻¹(share of resampled means below the mean) and
  acceleration from the jackknife), ``N_RESAMPLES`` resamples with a fixed seed, so the same data
  always gives the same interval. Metric values are often skewed or binary, where the plain
  percentile interval under-covers on small slices (93.5% instead of 95% for exponential data, n=80).
* Mean metrics, paired: the per-example differences dᵢ = aᵢ − bᵢ are resampled; the CI is the
  BCa interval of the resampled mean difference, and the two-sided p-value is the centred
  bootstrap test p = (1 + #{|d̄* − d̄| ≥ |d̄|}) / (B + 1) (Efron & Tibshirani §16.4: the bootstrap
  distribution shifted to the null of no difference).
* Corpus metrics (BLEU, chrF, token-weighted perplexity), paired: sacrebleu's paired bootstrap
  (``sacrebleu.significance._paired_bs_test``, the Moses ``bootstrap-hypothesis-difference-significance``
  procedure: 1,000 resamples, seed 12345, p = (1 + #{|Δ*| − mean|Δ*| > |Δ|}) / (B + 1)) computed on
  the same per-example sufficient statistics; a test checks the p-value equals
  ``sacrebleu.significance.PairedTest``'s. The CI of the difference is the percentile interval of the
  same resampled differences.
* Resolution of p-values. B resamples cannot give a p-value below 1/(B + 1): with B = 1,000 every
  clear difference reads 0.000999, and Holm over 15 metrics floors at 0.015. For mean metrics, when
  no resample is as extreme as the data, the p-value is recomputed with ten times as many resamples
  (the same seed, so the first B are the same draws), up to ``P_RESAMPLES_MAX`` and while examples ×
  resamples stays within ``_P_CELLS``; the row's method string says how many resamples it used.
  Corpus metrics keep sacrebleu's 1,000 (each resample is scored in Python: ten times as many would
  cost seconds per slice), so at most those few p-values sit at 1/1001.
* Holm (1979) step-down adjustment across the metrics of one comparison (one slice): sort the m
  p-values ascending, multiply the i-th (1-based) by (m − i + 1), take the running maximum, cap at 1.
  It controls the family-wise error rate without assumptions about dependence between metrics.
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional, Sequence

import numpy as np

N_RESAMPLES = 1000
SEED = 0
SACREBLEU_SEED = 12345  # sacrebleu's default (SACREBLEU_SEED environment variable)
CONFIDENCE = 0.95
_CHUNK_CELLS = 4_000_000  # resample indices drawn per chunk (bounds memory at ~32 MB)
P_RESAMPLES_MAX = 20_000  # floor 1/20001: Holm over 15 metrics can go below 0.001
_P_CELLS = 20_000_000  # examples × resamples a recomputed p-value may use (about a second of work)

MEAN_CI_METHOD = f"BCa bootstrap over examples ({N_RESAMPLES} resamples, seed {SEED})"
PAIRED_MEAN_METHOD = (f"paired BCa bootstrap of mean difference ({N_RESAMPLES} resamples, seed {SEED}); "
                      "p: two-sided centred bootstrap")
P_RESAMPLED = "p from {} resamples (none of {} was as extreme)"  # appended when a p-value was recomputed
PAIRED_CORPUS_METHOD = (f"sacrebleu paired bootstrap ({N_RESAMPLES} resamples, seed {SACREBLEU_SEED}); "
                        "CI: percentile of resampled differences")


def _percentiles(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def bootstrap_means(values, *, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """Means of ``n_resamples`` resamples (with replacement) of ``values``.

    ``values`` of shape (n,) gives (B,); shape (T, n) gives (T, B), every row resampled with the same
    draws (used to simulate many data sets at once).
    """
    x = np.asarray(values, dtype=np.float64)
    n = x.shape[-1]
    return np.concatenate([x @ counts.T / n for counts in resample_counts(n, n_resamples, seed)], axis=-1)


def bca_interval(x: np.ndarray, means: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """BCa interval of the mean of ``x`` from its bootstrap means (the percentile interval when the
    correction is undefined, e.g. when every resampled mean lies on one side)."""
    from scipy.special import ndtr, ndtri

    theta = float(x.mean())
    prop = float(np.mean(means < theta))
    if not 0.0 < prop < 1.0:
        return _percentiles(means, confidence)
    z0 = float(ndtri(prop))
    n = len(x)
    jack = (x.sum() - x) / (n - 1)  # leave-one-out means
    d = jack.mean() - jack
    denom = float((d ** 2).sum())
    accel = float((d ** 3).sum()) / (6.0 * denom ** 1.5) if denom > 0 else 0.0
    alpha = (1.0 - confidence) / 2.0
    z = ndtri(np.array([alpha, 1.0 - alpha]))
    adjusted = ndtr(z0 + (z0 + z) / (1.0 - accel * (z0 + z)))
    if not np.all(np.isfinite(adjusted)):
        return _percentiles(means, confidence)
    low, high = np.percentile(means, 100.0 * adjusted)
    return float(low), float(high)


def mean_ci(values: Sequence[float], *, n_resamples: int = N_RESAMPLES, seed: int = SEED,
            confidence: float = CONFIDENCE) -> tuple[float, Optional[float], Optional[float]]:
    """(mean, CI low, CI high); the CI is None for fewer than 2 values."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return float("nan"), None, None
    mean = float(x.mean())
    if len(x) < 2 or not np.isfinite(x).all():
        return mean, None, None
    low, high = bca_interval(x, bootstrap_means(x, n_resamples=n_resamples, seed=seed), confidence)
    return mean, low, high


def _finer(n: int, b: int, cap: int) -> int:
    """The next number of resamples for a p-value at the floor of ``b`` (``b`` itself: no finer one)."""
    return max(b, min(10 * b, cap, _P_CELLS // max(1, n)))


def paired_mean_test(a: Sequence[float], b: Sequence[float], *, n_resamples: int = N_RESAMPLES, seed: int = SEED,
                     confidence: float = CONFIDENCE, p_resamples_max: int = P_RESAMPLES_MAX) -> dict:
    """Mean difference a − b over paired examples with bootstrap CI and two-sided p-value.

    ``p_resamples`` is the number of resamples behind the p-value (more than ``n_resamples`` when none
    of those was as extreme as the data; see the module docstring)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    out = dict(delta=None, ci_low=None, ci_high=None, p_value=None, p_resamples=None)
    if len(d) == 0:
        return out
    delta = float(d.mean())
    out["delta"] = delta
    if len(d) < 2 or not np.isfinite(d).all():
        return out
    means = bootstrap_means(d, n_resamples=n_resamples, seed=seed)
    out["ci_low"], out["ci_high"] = bca_interval(d, means, confidence)
    out["p_resamples"] = n_resamples
    if delta == 0.0:
        out["p_value"] = 1.0
        return out
    extreme = int(np.count_nonzero(np.abs(means - delta) >= abs(delta)))
    used = n_resamples
    while extreme == 0 and _finer(len(d), used, p_resamples_max) > used:
        used = _finer(len(d), used, p_resamples_max)
        more = bootstrap_means(d, n_resamples=used, seed=seed)
        extreme = int(np.count_nonzero(np.abs(more - delta) >= abs(delta)))
    out["p_value"], out["p_resamples"] = (1 + extreme) / (used + 1), used
    return out


_SINGLE_DRAW_LIMIT = 20_000_000  # examples × resamples drawn in one call, as sacrebleu does
_CACHE_CELLS = 10_000_000  # count matrices up to this size are kept for reuse (80 MB each at most)
_COUNTS_CACHE: dict[tuple[int, int, int], np.ndarray] = {}


def _draw_counts(n: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    # Drawn exactly as sacrebleu draws them (``default_rng(seed).choice(n, (B, n))``), in one call
    # where that fits in memory; beyond, in row blocks (then equal to sacrebleu's only in distribution).
    rows = n_resamples if n * n_resamples <= _SINGLE_DRAW_LIMIT else max(1, _CHUNK_CELLS // n)
    for start in range(0, n_resamples, rows):
        k = min(rows, n_resamples - start)
        idx = rng.choice(n, size=(k, n), replace=True)
        counts = np.bincount((np.arange(k)[:, None] * n + idx).ravel(), minlength=k * n).reshape(k, n)
        yield counts.astype(np.float64)


def resample_counts(n: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap resamples of n items as count matrices (row b: how often each item is drawn in
    resample b), in row blocks. The same (n, B, seed) always gives the same resamples, so every metric
    of a slice is resampled alike, and the matrix is computed once and reused while it is small."""
    key = (n, n_resamples, seed)
    cached = _COUNTS_CACHE.get(key)
    if cached is not None:
        yield cached
        return
    if n * n_resamples > _CACHE_CELLS:
        yield from _draw_counts(n, n_resamples, seed)
        return
    (counts,) = list(_draw_counts(n, n_resamples, seed))
    counts.setflags(write=False)
    if len(_COUNTS_CACHE) >= 4:
        _COUNTS_CACHE.pop(next(iter(_COUNTS_CACHE)))
    _COUNTS_CACHE[key] = counts
    yield counts


def _resampled_sums(stats: Sequence[np.ndarray], n_resamples: int, seed: int) -> list[np.ndarray]:
    """Column sums of each statistics matrix over the same resamples of its rows, (B, k) each.

    Computed as (resample counts) @ stats: for integer statistics every product and partial sum is an
    exact integer in float64, so this equals summing the gathered rows, in any order.
    """
    n = len(stats[0])
    out: list[list[np.ndarray]] = [[] for _ in stats]
    for counts in resample_counts(n, n_resamples, seed):
        for acc, st in zip(out, stats):
            acc.append(counts @ st)
    return [np.vstack(acc) for acc in out]


def _scores(sums: np.ndarray, score: Callable[[np.ndarray], Optional[float]], dtype: str) -> np.ndarray:
    return np.array([_nan(score(row)) for row in sums.astype(dtype)], dtype=np.float64)


def _nan(value: Optional[float]) -> float:
    return float("nan") if value is None else float(value)


def corpus_ci(stats: np.ndarray, score: Callable[[np.ndarray], Optional[float]], *, dtype: str = "float64",
              n_resamples: int = N_RESAMPLES, seed: int = SACREBLEU_SEED,
              confidence: float = CONFIDENCE) -> tuple[Optional[float], Optional[float], Optional[float]]:
    """(corpus value, CI low, CI high) of a corpus metric from per-example statistics rows."""
    if len(stats) == 0:
        return None, None, None
    value = score(stats.sum(0))
    if len(stats) < 2:
        return value, None, None
    (sums,) = _resampled_sums([stats], n_resamples, seed)
    scores = _scores(sums, score, dtype)
    if not np.isfinite(scores).all():
        return value, None, None
    low, high = _percentiles(scores, confidence)
    return value, low, high


def paired_corpus_test(stats_a: np.ndarray, stats_b: np.ndarray, score: Callable[[np.ndarray], Optional[float]], *,
                       dtype: str = "float64", n_resamples: int = N_RESAMPLES, seed: int = SACREBLEU_SEED,
                       confidence: float = CONFIDENCE) -> dict:
    """Candidate A against baseline B on a corpus metric: sacrebleu's paired bootstrap.

    Mirrors ``sacrebleu.significance._paired_bs_test`` step for step (same generator, seed, index
    matrix, float32 sums for the sacrebleu metrics, and p-value formula), on statistics computed once.
    """
    n = len(stats_a)
    value_a = score(stats_a.sum(0)) if n else None
    value_b = score(stats_b.sum(0)) if n else None
    out = dict(value_a=value_a, value_b=value_b, delta=None, ci_low=None, ci_high=None, p_value=None,
               p_resamples=None)  # p_resamples: as paired_mean_test's (here always n_resamples)
    if value_a is None or value_b is None:
        return out
    out["delta"] = value_a - value_b
    if n < 2:
        return out
    sums_a, sums_b = _resampled_sums([stats_a, stats_b], n_resamples, seed)
    scores_b = _scores(sums_b, score, dtype)
    scores_a = _scores(sums_a, score, dtype)
    if not (np.isfinite(scores_a).all() and np.isfinite(scores_b).all()):
        return out
    out["ci_low"], out["ci_high"] = _percentiles(scores_a - scores_b, confidence)
    sample_diffs = np.abs(scores_a - scores_b)
    centred = sample_diffs - sample_diffs.mean()
    real = abs(value_b - value_a)
    out["p_value"] = (int(np.sum(centred > real)) + 1) / (n_resamples + 1)
    out["p_resamples"] = n_resamples
    return out


def holm(p_values: Sequence[Optional[float]]) -> list[Optional[float]]:
    """Holm step-down adjusted p-values (None entries are skipped and stay None)."""
    present = [i for i, p in enumerate(p_values) if p is not None]
    out: list[Optional[float]] = [None] * len(p_values)
    if not present:
        return out
    p = np.asarray([p_values[i] for i in present], dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    for rank, j in enumerate(order):
        out[present[j]] = float(adjusted[rank])
    return out


def wins_ties_losses(a: Sequence[float], b: Sequence[float], higher_is_better: Optional[bool],
                     *, rel_tol: float = 1e-12) -> tuple[int, int, int]:
    """Examples where A is better, equal, worse. (0, 0, 0) when the metric has no better direction.

    Values within ``rel_tol`` (relative) of each other are a tie, so float noise is not a win.
    """
    if higher_is_better is None:
        return 0, 0, 0
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    d = x - y
    tie = np.abs(d) <= rel_tol * np.maximum(1.0, np.maximum(np.abs(x), np.abs(y)))
    better = (d > 0) if higher_is_better else (d < 0)
    wins = int(np.count_nonzero(better & ~tie))
    ties = int(np.count_nonzero(tie))
    return wins, ties, len(d) - wins - ties
