"""Perplexity, confidence and output length read off log-probabilities: each edge a user meets
(a stored run re-scored, an overflowing NLL, no tokens) and the token-weighted corpus perplexity."""
from __future__ import annotations

import math

import pytest

from evaluator.scoring import get_metrics, reference_nll, score_samples
from evaluator.scoring._model_metrics import CORPUS_PERPLEXITY, perplexity_from_nll
from evaluator.types import Sample


def _row(sample: Sample) -> dict:
    return score_samples([sample], get_metrics(["perplexity", "confidence", "min_token_prob", "output_tokens"]))[0]


def test_a_stored_nll_and_token_count_give_the_same_perplexity_as_the_log_probs():
    lps = [math.log(0.5), math.log(0.125), math.log(0.25)]
    fresh = Sample(output="x", reference="ref", reference_logprobs=lps)
    stored = Sample(output="x", reference="ref")
    stored.ref_nll, stored.ref_tokens = -math.fsum(lps), len(lps)  # what a run re-scored from the store has
    assert reference_nll(stored) == (pytest.approx(-math.fsum(lps)), 3)
    assert _row(stored)["perplexity"] == _row(fresh)["perplexity"] == pytest.approx(4.0)  # exp(ln 64 / 3)


def test_a_stored_nll_without_tokens_is_no_perplexity():
    stored = Sample(output="x", reference="ref", reference_logprobs=[math.log(0.5)])
    stored.ref_nll, stored.ref_tokens = 3.0, 0  # the stored pair wins over the log-probs, and says "none"
    assert reference_nll(stored) is None and _row(stored)["perplexity"] is None


def test_perplexity_from_nll_edges():
    assert perplexity_from_nll(0.0, 5) == 1.0
    assert perplexity_from_nll(math.log(8.0) * 2, 2) == pytest.approx(8.0)
    assert perplexity_from_nll(1.0, 0) is None and perplexity_from_nll(1.0, -1) is None
    assert perplexity_from_nll(1e6, 1) == math.inf  # overflow is infinite, not an exception


def test_no_reference_means_no_perplexity_even_with_log_probs():
    assert _row(Sample(output="x", reference=None, reference_logprobs=[-1.0]))["perplexity"] is None


def test_confidence_and_min_token_prob_are_geometric_mean_and_minimum():
    row = _row(Sample(output="abc", reference="r", output_logprobs=[math.log(0.8), math.log(0.5), math.log(0.2)]))
    assert row["confidence"] == pytest.approx((0.8 * 0.5 * 0.2) ** (1 / 3))
    assert row["min_token_prob"] == pytest.approx(0.2)
    assert _row(Sample(output="x", reference="r", output_logprobs=[1e6]))["confidence"] == math.inf


def test_output_tokens_falls_back_to_the_number_of_log_probs():
    assert _row(Sample(output="abc", reference="r", output_tokens=7, output_logprobs=[-1.0]))["output_tokens"] == 7.0
    assert _row(Sample(output="abc", reference="r", output_logprobs=[-1.0, -2.0]))["output_tokens"] == 2.0
    assert _row(Sample(output="", reference="r"))["output_tokens"] == 0.0


def test_corpus_perplexity_is_token_weighted():
    """exp(Σ NLL / Σ T): a long reference weighs more than a short one, unlike the mean of per-example
    perplexities; samples without a reference NLL count for nothing."""
    a = Sample(output="x", reference="r", reference_logprobs=[math.log(0.5)] * 1)
    b = Sample(output="x", reference="r", reference_logprobs=[math.log(0.125)] * 3)
    none = Sample(output="x", reference=None)
    assert [CORPUS_PERPLEXITY.applies(s) for s in (a, b, none)] == [True, True, False]
    stats = CORPUS_PERPLEXITY.stats([a, b, none])
    assert stats.shape == (3, 2) and stats[2].tolist() == [0.0, 0.0]
    value = CORPUS_PERPLEXITY.score(stats.sum(0))
    assert value == pytest.approx(math.exp((math.log(2) + 3 * math.log(8)) / 4))  # 2^(10/4) ≈ 5.66
    assert value != pytest.approx((2 + 8) / 2)
    assert CORPUS_PERPLEXITY.score(CORPUS_PERPLEXITY.stats([none]).sum(0)) is None


def test_a_one_token_reference_has_a_perplexity():
    stored = Sample(output="x", reference="Yes")
    stored.ref_nll, stored.ref_tokens = math.log(2.0), 1
    assert reference_nll(stored) == (pytest.approx(math.log(2.0)), 1)
    assert _row(stored)["perplexity"] == pytest.approx(2.0)
