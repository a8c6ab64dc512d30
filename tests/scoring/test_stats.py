"""Statistics: bootstrap coverage, Holm, wins/ties/losses, corpus metrics and sacrebleu's paired bootstrap."""
from __future__ import annotations

import numpy as np
import pytest

from evaluator.scoring import holm, mean_ci, paired_corpus_test, paired_mean_test, wins_ties_losses
from evaluator.scoring._stats import (
    P_RESAMPLES_MAX,
    SACREBLEU_SEED,
    SEED,
    bca_interval,
    bootstrap_means,
    corpus_ci,
)
from evaluator.scoring._text import CORPUS_BLEU, CORPUS_CHRF
from evaluator.types import Sample

HYPS = ["The cat sat on the mat.", "Paris is the capital.", "", "It is 42.", "Click the reset link in your email.",
        "Bonjour tout le monde", "the the the", "Sorry about the delay, the parcel ships today.", "東京は首都です。",
        "A long answer " * 20]
HYPS_B = ["A cat sat on a mat.", "The capital is Paris.", "Nothing", "42", "Use the link we sent.", "Hello world",
          "the", "Your parcel is late.", "東京", "A long reply " * 15]
# A baseline close to HYPS (two answers differ), so the paired test's p-value is not at its floor of 1/1001.
HYPS_C = [*HYPS[:1], "Paris is the capital city.", *HYPS[2:3], "It is 41.", *HYPS[4:]]
REFS = ["The cat is on the mat.", "Paris is the capital of France.", "Something.", "The answer is 42.",
        "Click the reset link in the email.", "Hello everyone", "the cat", "Sorry, the parcel ships today.",
        "東京は日本の首都です。", "A long answer " * 18]


def _samples(hyps):
    return [Sample(output=h, reference=r) for h, r in zip(hyps, REFS)]


def test_bootstrap_ci_covers_a_known_mean_about_95_percent_of_the_time():
    # 4,000 simulated data sets of 120 values from a skewed distribution on [0, 1] (like most metric
    # values), mean 2/7; the resampled means of all data sets come from one matrix product.
    rng = np.random.default_rng(7)
    trials, n, true_mean = 4000, 120, 2 / 7
    data = rng.beta(2, 5, size=(trials, n))
    means = bootstrap_means(data, seed=11)
    covered = 0
    for x, m in zip(data, means):
        low, high = bca_interval(x, m)
        covered += low <= true_mean <= high
    assert 0.93 <= covered / trials <= 0.97, covered / trials


def test_mean_ci_brackets_the_mean_and_is_reproducible():
    x = np.random.default_rng(0).normal(5, 1, size=200)
    m, low, high = mean_ci(x)
    assert low < m < high and m == pytest.approx(x.mean())
    assert mean_ci(x) == (m, low, high)
    assert mean_ci([3.0]) == (3.0, None, None)


def test_holm_matches_a_hand_worked_example():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, None, 0.6]) == [pytest.approx(1.0), None, pytest.approx(1.0)]
    assert holm([]) == []


def test_wins_ties_losses_respect_the_metric_direction():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 1.0, 1.0]
    assert wins_ties_losses(a, b, True) == (2, 1, 1)
    # lower is better (perplexity): A's smaller value is the win
    assert wins_ties_losses(a, b, False) == (1, 1, 2)
    assert wins_ties_losses(a, b, None) == (0, 0, 0)
    assert wins_ties_losses([0.1 + 0.2], [0.3], True) == (0, 1, 0)  # float noise is a tie


def test_paired_mean_test_detects_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, 300)
    better = paired_mean_test(base + 0.3 + rng.normal(0, 0.1, 300), base)
    assert better["p_value"] < 0.01 and better["ci_low"] > 0
    same = paired_mean_test(base + rng.normal(0, 0.1, 300), base)
    assert same["p_value"] > 0.05 and same["ci_low"] < 0 < same["ci_high"]
    assert paired_mean_test([1.0, 2.0], [1.0, 2.0])["p_value"] == 1.0


def test_corpus_bleu_and_chrf_from_statistics_equal_sacrebleu():
    import sacrebleu

    samples = _samples(HYPS)
    bleu = CORPUS_BLEU.score(CORPUS_BLEU.stats(samples).sum(0))
    chrf = CORPUS_CHRF.score(CORPUS_CHRF.stats(samples).sum(0))
    assert bleu == sacrebleu.corpus_bleu(HYPS, [REFS]).score
    assert chrf == sacrebleu.corpus_chrf(HYPS, [REFS]).score


@pytest.mark.parametrize("baseline", ["far", "close"])
@pytest.mark.parametrize("corpus,metric_cls", [(CORPUS_BLEU, "BLEU"), (CORPUS_CHRF, "CHRF")])
def test_paired_corpus_test_reproduces_sacrebleu_paired_bootstrap(corpus, metric_cls, baseline):
    import sacrebleu.metrics
    from sacrebleu.significance import PairedTest

    hyps_b = HYPS_B if baseline == "far" else HYPS_C
    metric = getattr(sacrebleu.metrics, metric_cls)()
    _, scores = PairedTest([("baseline", hyps_b), ("candidate", HYPS)], {metric_cls: metric}, [REFS],
                           test_type="bs", n_samples=1000)()
    (name,) = [k for k in scores if k != "System"]
    expected = scores[name][1]
    ours = paired_corpus_test(corpus.stats(_samples(HYPS)), corpus.stats(_samples(hyps_b)), corpus.score,
                              dtype=corpus.bootstrap_dtype)
    assert ours["value_a"] == pytest.approx(expected.score)
    assert ours["value_b"] == pytest.approx(metric.corpus_score(hyps_b, [REFS]).score)
    assert ours["delta"] == pytest.approx(ours["value_a"] - ours["value_b"])
    assert ours["p_value"] == expected.p_value
    assert ours["ci_low"] <= ours["delta"] <= ours["ci_high"]
    if baseline == "close":
        assert 0.05 < ours["p_value"] < 1  # away from the floor, where a wrong statistic would still agree


def test_a_paired_corpus_test_on_too_few_examples_has_values_but_no_interval():
    score = CORPUS_BLEU.score
    empty = CORPUS_BLEU.stats([])
    assert paired_corpus_test(empty, empty, score) == dict(value_a=None, value_b=None, delta=None, ci_low=None,
                                                          ci_high=None, p_value=None, p_resamples=None)
    one_a, one_b = CORPUS_BLEU.stats(_samples(HYPS[:1])), CORPUS_BLEU.stats(_samples(HYPS_B[:1]))
    out = paired_corpus_test(one_a, one_b, score)
    assert (out["ci_low"], out["ci_high"], out["p_value"]) == (None, None, None)
    assert out["delta"] == pytest.approx(out["value_a"] - out["value_b"]) and out["value_a"] > out["value_b"]
    two = paired_corpus_test(CORPUS_BLEU.stats(_samples(HYPS[:2])), CORPUS_BLEU.stats(_samples(HYPS_B[:2])), score)
    assert two["ci_low"] is not None and two["p_value"] is not None  # two examples can be resampled
    assert two["p_resamples"] == 1000 and paired_corpus_test(
        CORPUS_BLEU.stats(_samples(HYPS[:2])), CORPUS_BLEU.stats(_samples(HYPS_B[:2])), score,
        n_resamples=200)["p_resamples"] == 200


def test_the_paired_corpus_test_is_the_same_on_every_call():
    a, b = CORPUS_CHRF.stats(_samples(HYPS)), CORPUS_CHRF.stats(_samples(HYPS_C))
    assert paired_corpus_test(a, b, CORPUS_CHRF.score) == paired_corpus_test(a, b, CORPUS_CHRF.score)


def test_holm_caps_at_one_keeps_the_order_and_skips_gaps():
    # Sorted, the 5 p-values present are 0.01, 0.02, 0.45, 0.6, 0.7; Holm multiplies them by 5, 4, 3, 2, 1
    # (0.05, 0.08, 1.35, 1.2, 0.7), caps at 1 and carries the running maximum: 0.05, 0.08, 1, 1, 1.
    ps = [0.6, None, 0.01, 0.7, 0.02, None, 0.45]
    assert holm(ps) == [1.0, None, pytest.approx(0.05), 1.0, pytest.approx(0.08), None, 1.0]


def test_a_lower_is_better_difference_under_one_is_a_win():
    assert wins_ties_losses([0.2, 1.5, 3.0], [0.7, 1.5, 2.5], higher_is_better=False) == (1, 1, 1)
    assert wins_ties_losses([0.2, 1.5, 3.0], [0.7, 1.5, 2.5], higher_is_better=True) == (1, 1, 1)
    assert wins_ties_losses([0.5], [0.2], higher_is_better=False) == (0, 0, 1)
    # A difference of exactly the tolerance is a tie; relative above 1 in magnitude (exact binary fractions)
    assert wins_ties_losses([0.0, 4.0, 0.0], [0.25, 5.0, 0.5], higher_is_better=True, rel_tol=0.25) == (0, 2, 1)


@pytest.mark.parametrize("corpus,metric_cls", [(CORPUS_BLEU, "BLEU"), (CORPUS_CHRF, "CHRF")])
def test_corpus_ci_is_the_central_95_percent_of_the_same_bootstrap_as_sacrebleu(corpus, metric_cls):
    """sacrebleu's interval over the same 1,000 resamples takes the order statistics 25 and 974 (1/40 from
    each end); ours interpolates the 2.5th and 97.5th percentiles, which lie just outside them (ranks
    24.975 and 974.025). So our half-width is at least sacrebleu's, and above it by at most the spacing of
    neighbouring order statistics. Measured here: +0.008% (BLEU), +0.04% (chrF); the bound is 1%. A 90%
    interval measured 8-14% narrower, a 99% one 18-20% wider."""
    import sacrebleu.metrics
    from sacrebleu.significance import PairedTest

    metric = getattr(sacrebleu.metrics, metric_cls)()
    _, scores = PairedTest([("baseline", HYPS_B), ("candidate", HYPS)], {metric_cls: metric}, [REFS],
                           test_type="bs", n_samples=1000)()
    (name,) = [k for k in scores if k != "System"]
    theirs = scores[name][1]
    value, low, high = corpus_ci(corpus.stats(_samples(HYPS)), corpus.score, dtype=corpus.bootstrap_dtype,
                                 seed=SACREBLEU_SEED)
    assert value == pytest.approx(theirs.score)
    half = (high - low) / 2
    assert theirs.ci <= half <= theirs.ci * 1.01
    assert low < value < high


# ---------------------------------------------------------------- against independent references


def test_bca_interval_agrees_with_scipys_bca_and_not_with_the_plain_percentile_interval():
    """Skewed data (exponential, n=40), 20,000 resamples each: our BCa interval and scipy.stats.bootstrap's
    (its own resamples) agree to 0.2% of the width (measured: 0.17% and 0.07%); the bound is 2%. The
    plain percentile interval of the same resamples is off by 4% and 6.5%, so a BCa that lost its bias
    correction or acceleration fails here."""
    import scipy.stats

    from evaluator.scoring._stats import _percentiles

    x = np.random.default_rng(3).exponential(1.0, 40)
    _, low, high = mean_ci(x, n_resamples=20_000, seed=1)
    ref = scipy.stats.bootstrap((x,), np.mean, n_resamples=20_000, method="BCa",
                                random_state=np.random.default_rng(2)).confidence_interval
    width = ref.high - ref.low
    assert abs(low - ref.low) <= 0.02 * width and abs(high - ref.high) <= 0.02 * width
    p_low, p_high = _percentiles(bootstrap_means(x, n_resamples=20_000, seed=1))
    assert max(abs(p_low - ref.low), abs(p_high - ref.high)) > 0.03 * width


def test_paired_p_value_is_the_centred_bootstrap_share_of_the_same_resamples():
    rng = np.random.default_rng(5)
    a, b = rng.normal(0.1, 1, 60), rng.normal(0, 1, 60)
    out = paired_mean_test(a, b, n_resamples=500, seed=4)
    d = a - b
    means = bootstrap_means(d, n_resamples=500, seed=4)
    delta = d.mean()
    assert out["delta"] == pytest.approx(delta)
    assert out["p_value"] == (1 + int(np.sum(np.abs(means - delta) >= abs(delta)))) / 501
    assert (out["ci_low"], out["ci_high"]) == bca_interval(d, means)


def test_small_and_non_finite_inputs_give_no_interval():
    assert paired_mean_test([], []) == dict(delta=None, ci_low=None, ci_high=None, p_value=None, p_resamples=None)
    assert paired_mean_test([2.0], [1.0]) == dict(delta=1.0, ci_low=None, ci_high=None, p_value=None,
                                                  p_resamples=None)
    assert paired_mean_test([1.0, np.inf], [0.0, 0.0])["ci_low"] is None
    m, low, high = mean_ci([])
    assert np.isnan(m) and low is None and high is None
    assert mean_ci([1.0, np.inf])[1:] == (None, None)


def test_resamples_are_drawn_exactly_as_sacrebleu_draws_them():
    """sacrebleu's paired bootstrap takes ``default_rng(seed).choice(n, size=(B, n))``; our count matrix
    row b counts how often each example is in that draw's row b."""
    from evaluator.scoring._stats import resample_counts

    n, b, seed = 37, 200, 12345
    (counts,) = list(resample_counts(n, b, seed))
    idx = np.random.default_rng(seed).choice(n, size=(b, n), replace=True)
    assert counts.shape == (b, n)
    assert np.array_equal(counts, np.stack([np.bincount(row, minlength=n) for row in idx]).astype(float))
    (again,) = list(resample_counts(n, b, seed))
    assert again is counts and not counts.flags.writeable  # cached, and safe to share
    (other,) = list(resample_counts(n, b, seed + 1))
    assert not np.array_equal(other, counts)


def test_large_resample_matrices_come_in_blocks_that_still_resample_every_example(monkeypatch):
    from evaluator.scoring import _stats

    monkeypatch.setattr(_stats, "_SINGLE_DRAW_LIMIT", 1000)  # force the block path on a small case
    monkeypatch.setattr(_stats, "_CACHE_CELLS", 1000)
    monkeypatch.setattr(_stats, "_CHUNK_CELLS", 300)
    blocks = list(_stats.resample_counts(50, 40, 7))
    assert [blk.shape for blk in blocks] == [(6, 50)] * 6 + [(4, 50)]  # 300 // 50 rows a block
    stacked = np.vstack(blocks)
    assert stacked.shape == (40, 50) and np.all(stacked.sum(axis=1) == 50)
    assert np.array_equal(np.vstack(list(_stats.resample_counts(50, 40, 7))), stacked)  # reproducible
    # Exactly at the limit, still one draw, as sacrebleu draws it.
    monkeypatch.setattr(_stats, "_SINGLE_DRAW_LIMIT", 50 * 40)
    (one,) = list(_stats._draw_counts(50, 40, 7))
    idx = np.random.default_rng(7).choice(50, size=(40, 50), replace=True)
    assert np.array_equal(one, np.stack([np.bincount(row, minlength=50) for row in idx]).astype(float))


# ---------------------------------------------------------------- arguments reach the bootstrap
# Each test below was written against a surviving mutant of `make mutation` (docs/mutation.md): an
# argument dropped or replaced on its way to the resampling, or a size boundary moved by one.

def test_mean_ci_uses_the_seed_resample_count_and_confidence_it_is_given():
    x = np.array([0.0, 1.0, 1.0, 3.0, 7.0, 2.0, 0.5, 4.0])
    for seed, n_resamples, confidence in ((5, 300, 0.8), (SACREBLEU_SEED, 250, 0.9)):
        mean, low, high = mean_ci(x, seed=seed, n_resamples=n_resamples, confidence=confidence)
        means = bootstrap_means(x, n_resamples=n_resamples, seed=seed)
        assert len(means) == n_resamples
        assert (mean, low, high) == (float(x.mean()), *bca_interval(x, means, confidence))
    assert mean_ci(x, seed=5) != mean_ci(x, seed=6)  # the seed decides the draws


def test_mean_ci_has_an_interval_from_two_values_on():
    mean, low, high = mean_ci([1.0, 3.0])
    assert mean == 2.0 and low is not None and 1.0 <= low <= high <= 3.0
    assert mean_ci([4.0]) == (4.0, None, None)
    assert np.isnan(mean_ci([])[0]) and mean_ci([])[1:] == (None, None)


def _percentile_ci(stats, score, *, n_resamples, seed, confidence, dtype):
    """corpus_ci's interval rebuilt from the resampled sums (the same draws as sacrebleu's)."""
    from evaluator.scoring._stats import _resampled_sums

    (sums,) = _resampled_sums([stats], n_resamples, seed)
    scores = np.array([score(row) for row in sums.astype(dtype)], dtype=np.float64)
    alpha = (1 - confidence) / 2
    return tuple(float(v) for v in np.percentile(scores, [100 * alpha, 100 * (1 - alpha)]))


def test_corpus_ci_edges_default_dtype_and_confidence():
    def score(summed):
        return float(summed[0] / summed[1])

    rows = np.array([[3.0, 4.0], [1.0, 4.0], [4.0, 4.0], [0.0, 4.0], [2.0, 4.0]])
    assert corpus_ci(rows[:0], score) == (None, None, None)
    assert corpus_ci(rows[:1], score) == (0.75, None, None)
    value, low, high = corpus_ci(rows[:2], score)  # two rows already have an interval
    assert value == 0.5 and low is not None and 0.25 <= low <= high <= 0.75
    value, low, high = corpus_ci(rows, score, n_resamples=400, seed=3, confidence=0.8)  # float64 by default
    assert value == 0.5
    assert (low, high) == _percentile_ci(rows, score, n_resamples=400, seed=3, confidence=0.8, dtype="float64")
    wide = corpus_ci(rows, score, n_resamples=400, seed=3)
    assert wide[1] <= low and high <= wide[2] and (wide[1], wide[2]) != (low, high)


def test_corpus_ci_sums_in_the_dtype_it_is_given():
    """sacrebleu sums BLEU and chrF statistics in float32; past 2**24 that rounds, and the CI must
    round the same way rather than silently use float64."""
    def score(summed):
        return float(summed[0] % 8)  # sensitive to the last bits of a large sum

    rows = np.array([[2.0 ** 24 + k] for k in (1, 3, 5, 7, 9, 11)])
    got = corpus_ci(rows, score, n_resamples=200, seed=1, dtype="float32")
    assert got[1:] == _percentile_ci(rows, score, n_resamples=200, seed=1, confidence=0.95, dtype="float32")
    assert got[1:] != corpus_ci(rows, score, n_resamples=200, seed=1, dtype="float64")[1:]


def test_a_mean_difference_of_exactly_one_still_gets_its_p_value():
    a = [2.0, 3.5, 4.0, 5.0, 6.5, 7.0, 8.0, 9.0]
    d = [1.0, 0.5, 1.5, 1.0, 0.5, 1.5, 1.0, 1.0]  # mean exactly 1, never 0: A is clearly better
    out = paired_mean_test(a, [x - y for x, y in zip(a, d)], p_resamples_max=1000)
    assert out["delta"] == 1.0 and out["p_value"] == pytest.approx(1 / 1001)
    # no resample of d has a mean at or below 0 (or at or above 2): the floor, however many resamples
    assert paired_mean_test(a, [x - y for x, y in zip(a, d)])["p_value"] == 1 / (P_RESAMPLES_MAX + 1)


def test_the_p_value_counts_resampled_means_at_least_as_far_out_as_the_observed_one():
    """Two-sided: a resampled mean counts when it lies as far from the observed difference as the observed
    difference lies from 0, ties included. With d in {0, 1} ties are common (a resample of all zeros)."""
    from evaluator.scoring._stats import N_RESAMPLES, SEED

    d = np.array([0.0, 0.0, 0.0, 1.0])
    means = bootstrap_means(d, n_resamples=N_RESAMPLES, seed=SEED)
    ties = int(np.count_nonzero(np.abs(means - 0.25) == 0.25))
    assert ties > 100  # the case this test is about happens
    out = paired_mean_test(d, np.zeros(4))
    assert out["p_value"] == (1 + int(np.count_nonzero(np.abs(means - 0.25) >= 0.25))) / (N_RESAMPLES + 1)


def _ratio(summed):
    """A corpus score that does not exist for a resample whose denominator is 0."""
    return None if summed[1] == 0 else float(summed[0] / summed[1])


def test_a_corpus_resample_without_a_score_leaves_the_interval_out():
    # Two examples, one with nothing to count: some resamples draw it twice and have no score.
    a, b = np.array([[1.0, 1.0], [0.0, 0.0]]), np.array([[2.0, 1.0], [0.0, 0.0]])
    out = paired_corpus_test(a, b, _ratio)
    assert (out["value_a"], out["value_b"], out["delta"]) == (1.0, 2.0, -1.0)
    assert (out["ci_low"], out["ci_high"], out["p_value"]) == (None, None, None)
    assert corpus_ci(a, _ratio) == (1.0, None, None)
    # Only one side's resamples lack a score: still no interval.
    for x, y in ((a, np.array([[2.0, 1.0], [1.0, 1.0]])), (np.array([[2.0, 1.0], [1.0, 1.0]]), a)):
        out = paired_corpus_test(x, y, _ratio)
        assert (out["ci_low"], out["ci_high"], out["p_value"], out["p_resamples"]) == (None, None, None, None)


# The code and the textbook version differ only in scipy.special.ndtr/ndtri against scipy.stats.norm: over
# 200 data sets (continuous and 0/1, end points up to about 10) they differed by at most 5.5e-15 relative.
BCA_ABS = 1e-12


def _textbook_bca(x: np.ndarray, means: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Efron and Tibshirani (1993), eqs. 14.14-14.15, written out independently of the code under test."""
    from scipy.stats import norm

    z0 = norm.ppf(np.mean(means < x.mean()))
    jack = np.array([np.delete(x, i).mean() for i in range(len(x))])
    d = jack.mean() - jack
    a = (d ** 3).sum() / (6 * ((d ** 2).sum()) ** 1.5)
    z = norm.ppf([(1 - confidence) / 2, (1 + confidence) / 2])
    return tuple(np.percentile(means, 100 * norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))))


def test_bca_counts_resampled_means_strictly_below_the_estimate():
    """Efron and Tibshirani (1993), eq. 14.14: z0 = Phi^-1(#{theta* < theta} / B), with a strict '<'. With
    values in {0, 1} a third of the resampled means equal the estimate, so '<=' would move the interval."""
    x = np.array([0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0])
    means = bootstrap_means(x, seed=3)
    assert np.mean(means == x.mean()) > 0.2
    assert bca_interval(x, means) == pytest.approx(_textbook_bca(x, means), abs=BCA_ABS)


def test_the_tie_tolerance_is_relative_to_the_larger_value_and_absolute_below_one():
    # Below 1 the tolerance is 1e-12 absolute: 1.5e-12 apart is a win, 0.5e-12 a tie.
    assert wins_ties_losses([0.5 + 1.5e-12, 0.5 + 0.5e-12], [0.5, 0.5], higher_is_better=True) == (1, 1, 0)
    # Above 1 it scales with the values: 1e-7 apart at a million is float noise, a tie.
    assert wins_ties_losses([1e6 + 1e-7], [1e6], higher_is_better=True) == (0, 1, 0)


def test_a_narrower_confidence_gives_a_narrower_interval():
    a = [0.1, 0.4, 0.35, 0.8, 0.5, 0.9, 0.2, 0.65, 0.7, 0.3]
    b = [0.2, 0.3, 0.30, 0.6, 0.5, 0.7, 0.1, 0.60, 0.4, 0.3]
    wide, narrow = paired_mean_test(a, b), paired_mean_test(a, b, confidence=0.5)
    assert narrow["ci_low"] > wide["ci_low"] and narrow["ci_high"] < wide["ci_high"]
    sa, sb = CORPUS_CHRF.stats(_samples(HYPS)), CORPUS_CHRF.stats(_samples(HYPS_C))
    wide, narrow = paired_corpus_test(sa, sb, CORPUS_CHRF.score), paired_corpus_test(sa, sb, CORPUS_CHRF.score,
                                                                                     confidence=0.5)
    assert narrow["ci_low"] > wide["ci_low"] and narrow["ci_high"] < wide["ci_high"]


def test_bca_on_skewed_continuous_data_is_the_textbook_interval():
    """Continuous, skewed values: the acceleration and the bias correction both move the end points (with
    values in {0, 1} the end points snap to the same few resampled means whatever the correction)."""
    x = np.random.default_rng(5).exponential(size=25) ** 2
    means = bootstrap_means(x, seed=9)
    got = bca_interval(x, means)
    assert got == pytest.approx(_textbook_bca(x, means), abs=BCA_ABS)
    plain = np.percentile(means, [2.5, 97.5])
    assert got[1] - plain[1] > 0.01 * (plain[1] - plain[0])  # the correction is visible: the upper end moves up


def test_bca_of_constant_values_is_the_value_itself():
    x = np.full(6, 0.25)  # every resampled mean equals the estimate: no correction can be computed
    assert bca_interval(x, bootstrap_means(x, seed=1)) == (0.25, 0.25)


# ---------------------------------------------------------------- p-values below the floor of 1,000 resamples


def _clear_difference():
    rng = np.random.default_rng(3)
    base = rng.normal(0, 1, 200)
    return base + 1.0 + rng.normal(0, 0.1, 200), base


def test_a_p_value_at_the_resampling_floor_is_recomputed_with_more_resamples():
    a, b = _clear_difference()
    d = a - b
    floored = paired_mean_test(a, b, p_resamples_max=1000)
    assert floored["p_value"] == 1 / 1001 and floored["p_resamples"] == 1000
    out = paired_mean_test(a, b)
    assert out["p_resamples"] == P_RESAMPLES_MAX
    means = bootstrap_means(d, n_resamples=P_RESAMPLES_MAX, seed=SEED)
    extreme = int(np.count_nonzero(np.abs(means - d.mean()) >= abs(d.mean())))
    assert out["p_value"] == (1 + extreme) / (P_RESAMPLES_MAX + 1) < 1 / 1001
    assert holm([out["p_value"]] * 15)[0] < 0.001  # Holm over 15 metrics no longer floors at 0.015
    assert (out["ci_low"], out["ci_high"]) == (floored["ci_low"], floored["ci_high"])  # the CI is unchanged


def test_a_p_value_above_the_floor_keeps_its_thousand_resamples():
    rng = np.random.default_rng(5)
    a, b = rng.normal(0.1, 1, 60), rng.normal(0, 1, 60)
    out = paired_mean_test(a, b)
    assert out["p_resamples"] == 1000 and out["p_value"] > 1 / 1001
    assert out == paired_mean_test(a, b, p_resamples_max=1000)


def test_the_recomputation_stays_within_its_budget_of_examples_times_resamples(monkeypatch):
    from evaluator.scoring import _stats

    a, b = _clear_difference()  # 200 examples
    monkeypatch.setattr(_stats, "_P_CELLS", 200 * 5000)
    assert paired_mean_test(a, b)["p_resamples"] == 5000
    monkeypatch.setattr(_stats, "_P_CELLS", 200 * 999)  # not even the 1,000 it has: no recomputation
    assert paired_mean_test(a, b)["p_resamples"] == 1000


def test_a_floored_p_value_stops_at_the_first_count_of_resamples_that_sees_an_extreme_one():
    """1,000 resamples see no mean as extreme as this difference's, 10,000 see a few: the p-value comes
    from those 10,000, drawn with the same seed. (Written against surviving mutants of the refinement:
    a step straight to the cap, another step, an unseeded or uncounted redraw.)"""
    rng = np.random.default_rng(2)
    b = rng.normal(0, 1, 50)
    a = b + rng.normal(0.5, 1, 50)
    d = a - b
    first = bootstrap_means(d, n_resamples=1000, seed=SEED)
    assert not np.any(np.abs(first - d.mean()) >= abs(d.mean()))
    means = bootstrap_means(d, n_resamples=10000, seed=SEED)
    extreme = int(np.count_nonzero(np.abs(means - d.mean()) >= abs(d.mean())))
    out = paired_mean_test(a, b)
    assert extreme > 0 and out["p_resamples"] == 10000 and out["p_value"] == (1 + extreme) / 10001
    # Another seed: its 1,000 resamples see none either, and its 10,000 (not SEED's) give the p-value.
    assert not np.any(np.abs(bootstrap_means(d, n_resamples=1000, seed=5) - d.mean()) >= abs(d.mean()))
    means = bootstrap_means(d, n_resamples=10000, seed=5)
    other = int(np.count_nonzero(np.abs(means - d.mean()) >= abs(d.mean())))
    assert other != extreme and paired_mean_test(a, b, seed=5)["p_value"] == (1 + other) / 10001


def test_no_difference_has_p_one_from_the_usual_resamples():
    out = paired_mean_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert (out["delta"], out["p_value"], out["p_resamples"]) == (0.0, 1.0, 1000)
