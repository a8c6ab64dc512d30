"""Metrics read off the evaluated model's own probabilities: perplexity, confidence, output length.

None of these run a model: the runner stores the generated tokens' log-probabilities and the
teacher-forced reference log-probabilities (``evaluator/models/_teacher_forcing.py``), and these
metrics read them. A stored result carries only the reference's total NLL and token count
(``results.ref_nll`` / ``results.ref_tokens``); ``reference_nll`` accepts either form, so a run
re-scored from the store gets exactly the numbers it got when it was generated.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

from evaluator.scoring._registry import CorpusAggregate, register_metric
from evaluator.types import Sample, reference_of


def reference_nll(sample: Sample) -> Optional[tuple[float, int]]:
    """(total negative log-likelihood in nats, token count) of the reference, or None.

    From ``sample.ref_nll``/``sample.ref_tokens`` when the sample came from the store, else from
    ``sample.reference_logprobs``: NLL = −fsum(logprobs). The runner should store exactly this pair
    as ``ref_nll``/``ref_tokens`` so that re-scoring reproduces every number.
    """
    stored = getattr(sample, "ref_nll", None)
    if stored is not None:
        n = int(getattr(sample, "ref_tokens", 0) or 0)
        return (float(stored), n) if n > 0 else None
    lps = sample.reference_logprobs
    if not lps:
        return None
    return -math.fsum(lps), len(lps)


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def perplexity_from_nll(nll: float, tokens: int) -> Optional[float]:
    """exp(NLL / tokens); None for no tokens."""
    if tokens <= 0:
        return None
    return _exp(nll / tokens)


def _corpus_ppl_stats(samples: Sequence[Sample]):
    import numpy as np

    rows = [reference_nll(s) or (0.0, 0) for s in samples]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), 2)


def _corpus_ppl_score(summed) -> Optional[float]:
    return perplexity_from_nll(float(summed[0]), int(round(float(summed[1]))))


def _has_reference_nll(sample: Sample) -> bool:
    return reference_nll(sample) is not None


CORPUS_PERPLEXITY = CorpusAggregate(
    stats=_corpus_ppl_stats, score=_corpus_ppl_score, applies=_has_reference_nll,
    description="token-weighted: exp(Σ NLL / Σ reference tokens) over all examples",
)


@register_metric("perplexity", higher_is_better=False, needs_reference=True, corpus=CORPUS_PERPLEXITY,
                 _builtin=True)
def perplexity(sample: Sample) -> Optional[float]:
    """Reference perplexity, ≥ 1: exp(−(1/T) Σₜ log p(yₜ | conversation, y<ₜ)) over the T tokens of the
    reference assistant answer, teacher-forced under the evaluated model and conditioned on the
    chat-templated conversation before it. Scored tokens are the answer's content and its end-of-turn
    token, not the prompt or the assistant header. Per example this is sequence-level (each example
    weighs the same in the mean); the run-level ``corpus`` value is token-weighted,
    exp(Σ NLL / Σ T), which is what "the model's perplexity on the references" usually means."""
    if reference_of(sample) is None:
        return None
    pair = reference_nll(sample)
    if pair is None:
        return None
    return perplexity_from_nll(*pair)


@register_metric("confidence", higher_is_better=True, _builtin=True)
def confidence(sample: Sample) -> Optional[float]:
    """Confidence, 0-1: exp(mean log-probability of the generated tokens) — the geometric mean of
    the probabilities the model gave its own tokens (under the sampling distribution it generated
    with). None when no token log-probabilities were recorded."""
    lps = sample.output_logprobs
    if not lps:
        return None
    return _exp(math.fsum(lps) / len(lps))


@register_metric("min_token_prob", higher_is_better=True, _builtin=True)
def min_token_prob(sample: Sample) -> Optional[float]:
    """Minimum token probability, 0-1: exp(min log-probability) over the generated tokens — the least
    certain step of the answer. None when no token log-probabilities were recorded."""
    lps = sample.output_logprobs
    if not lps:
        return None
    return _exp(min(lps))


@register_metric("output_tokens", higher_is_better=None, _builtin=True)
def output_tokens(sample: Sample) -> Optional[float]:
    """Number of generated tokens (the count the backend reports; the number of recorded
    log-probabilities when it reports none). No better direction."""
    n = sample.output_tokens or len(sample.output_logprobs or ())
    return float(n)
