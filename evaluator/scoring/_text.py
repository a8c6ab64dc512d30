"""Reference-based text metrics: BLEU, chrF, ROUGE-1/2/L, exact match, token F1, length ratio.

Shared rules for every metric here:

* A sample without a reference (``None``, or only white space) gets ``None``: not applicable.
* An empty (or white-space) output scores 0 — a real, bad answer, not an error.
* The scorer objects are built once per process and reused; building a fresh scorer per example
  (what ``sacrebleu.sentence_bleu`` and a per-call ``RougeScorer`` do) costs time and changes nothing.
"""
from __future__ import annotations

import hashlib
import re
import string
from collections import Counter
from functools import lru_cache
from typing import Optional, Sequence

from evaluator.scoring._registry import CorpusAggregate, register_metric
from evaluator.types import Sample, reference_of


def _is_empty(text: Optional[str]) -> bool:
    return not text or not text.strip()


# ---------------------------------------------------------------------------------------------- sacrebleu


@lru_cache(maxsize=None)
def _sacre(kind: str):
    """Process-wide sacrebleu metric objects (stateless between calls)."""
    from sacrebleu.metrics import BLEU, CHRF

    if kind == "sentence_bleu":
        # Same settings as sacrebleu.sentence_bleu(): 13a tokenizer, exp smoothing, effective order.
        return BLEU(effective_order=True)
    if kind == "corpus_bleu":
        # Same settings as sacrebleu.corpus_bleu(): 13a tokenizer, exp smoothing, no effective order.
        return BLEU()
    if kind == "chrf":
        return CHRF()  # chrF2: char n-grams 1-6, beta 2, no word n-grams, white space removed
    raise KeyError(kind)


# Segment statistics memo. Sentence BLEU/chrF and corpus BLEU/chrF are computed from the same
# per-example statistics (sacrebleu's own ``_extract_corpus_statistics``); computing them once while
# scoring and keeping them here makes ``finalize_run`` nearly free in the process that scored.
# Keyed by a digest of (output, reference); worker processes send theirs back with each chunk.
_SEGMENT_STATS: dict[tuple[str, bytes], list] = {}
_SEGMENT_STATS_LIMIT = 200_000
_FRESH: list[tuple[tuple[str, bytes], list]] = []
_collecting = False


def _digest(output: str, reference: str) -> bytes:
    h = hashlib.blake2b(output.encode("utf-8", "surrogatepass"), digest_size=16)
    h.update(b"\x00")
    h.update(reference.encode("utf-8", "surrogatepass"))
    return h.digest()


def _remember(key: tuple[str, bytes], row: list) -> None:
    if len(_SEGMENT_STATS) >= _SEGMENT_STATS_LIMIT:  # pragma: no mutate (a memo: a miss recomputes the same value)
        _SEGMENT_STATS.clear()
    _SEGMENT_STATS[key] = row
    if _collecting:
        _FRESH.append((key, row))


def segment_stats(kind: str, output: str, reference: str) -> list:
    """Sufficient statistics of one (output, reference) pair for sacrebleu metric ``kind``."""
    key = (kind, _digest(output, reference))
    row = _SEGMENT_STATS.get(key)  # pragma: no mutate (a memo: a miss recomputes the same value)
    if row is None:
        row = _sacre(kind)._extract_corpus_statistics([output], [[reference]])[0]
        _remember(key, row)  # pragma: no mutate (a memo: a miss recomputes the same value)
    return row


def clear_segment_stats() -> None:
    """Forget memoised statistics (benchmarks use this so that each timing starts cold)."""
    _SEGMENT_STATS.clear()
    _FRESH.clear()
    _rouge_all.cache_clear()


def collect_segment_stats(on: bool) -> list:
    """Start (``on``) or stop recording newly computed statistics; returns and forgets those recorded."""
    global _collecting
    _collecting = on
    fresh = list(_FRESH)
    _FRESH.clear()
    return fresh


def absorb_segment_stats(entries: Sequence[tuple[tuple[str, bytes], list]]) -> None:
    """Add statistics computed in a worker process to this process's memo."""
    for key, row in entries:
        if key not in _SEGMENT_STATS:
            _remember(key, row)


def _sacre_stats(kind: str, samples: Sequence[Sample]):
    """Per-example sufficient statistics of a sacrebleu metric, an (n, k) float64 array.

    From ``Metric._extract_corpus_statistics``, the same function ``corpus_score`` and sacrebleu's
    paired tests use, so summed rows give exactly ``corpus_bleu`` / ``corpus_chrf``.
    """
    import numpy as np

    metric = _sacre(kind)
    width = 2 + 2 * metric.max_ngram_order if kind == "corpus_bleu" else 3 * (metric.char_order + metric.word_order)
    rows = [segment_stats(kind, s.output or "", reference_of(s) or "") for s in samples]
    return np.asarray(rows, dtype=np.float64).reshape(len(samples), width)


def _sacre_score(kind: str, summed) -> float:
    # Python ints for the statistics sacrebleu reads as lengths, floats for the rest: the same
    # arithmetic as sacrebleu's own ``_aggregate_and_compute`` on summed integer lists.
    return float(_sacre(kind)._compute_score_from_stats(summed).score)


def _corpus_bleu_stats(samples: Sequence[Sample]):
    return _sacre_stats("corpus_bleu", samples)


def _corpus_bleu_score(summed) -> float:
    return _sacre_score("corpus_bleu", summed)


def _corpus_chrf_stats(samples: Sequence[Sample]):
    return _sacre_stats("chrf", samples)


def _corpus_chrf_score(summed) -> float:
    return _sacre_score("chrf", summed)


CORPUS_BLEU = CorpusAggregate(
    stats=_corpus_bleu_stats, score=_corpus_bleu_score, bootstrap_dtype="float32",
    description="sacrebleu corpus_bleu: 13a tokenization, exp smoothing, no effective order, 1 reference",
)
CORPUS_CHRF = CorpusAggregate(
    stats=_corpus_chrf_stats, score=_corpus_chrf_score, bootstrap_dtype="float32",
    description="sacrebleu corpus_chrf: chrF2 (char order 6, beta 2, word order 0)",
)


@register_metric("bleu", needs_reference=True, corpus=CORPUS_BLEU, _builtin=True)
def bleu(sample: Sample) -> Optional[float]:
    """Sentence BLEU, 0-100: sacrebleu ``sentence_bleu`` (13a tokenization, exponential smoothing
    (Chen & Cherry method 3), effective n-gram order). BLEU = BP · exp(Σₙ log pₙ / N) with pₙ the clipped
    n-gram precisions (n ≤ 4, only orders the hypothesis has), BP = min(1, exp(1 − r/c)).
    The run-level number is corpus BLEU (``corpus_bleu``, statistics summed over examples), not the
    mean of sentence scores."""
    ref = reference_of(sample)
    if ref is None:
        return None
    if _is_empty(sample.output):
        return 0.0
    # = sacrebleu.sentence_bleu(output, [ref]): the same statistics (13a), scored with effective order
    stats = segment_stats("corpus_bleu", sample.output, ref)
    return float(_sacre("sentence_bleu")._compute_score_from_stats(list(stats)).score)


@register_metric("chrf", needs_reference=True, corpus=CORPUS_CHRF, _builtin=True)
def chrf(sample: Sample) -> Optional[float]:
    """chrF, 0-100: sacrebleu ``sentence_chrf`` defaults (chrF2: character n-grams 1-6 with white space
    removed, β = 2, no word n-grams). chrF = (1+β²)·P·R / (β²·P + R) over the average n-gram precision P
    and recall R. The run-level number is corpus chrF (statistics summed over examples)."""
    ref = reference_of(sample)
    if ref is None:
        return None
    if _is_empty(sample.output):
        return 0.0
    # = sacrebleu.sentence_chrf(output, [ref]), from the statistics corpus chrF reuses
    return float(_sacre("chrf")._compute_score_from_stats(list(segment_stats("chrf", sample.output, ref))).score)


# ---------------------------------------------------------------------------------------------- ROUGE


class _MemoStemmer:
    """Porter stemmer with a cache: stemming is ~75% of rouge_score's time and a word's stem never
    changes, so each distinct word is stemmed once per process."""

    _LIMIT = 500_000

    def __init__(self) -> None:
        from nltk.stem import porter

        self._stemmer = porter.PorterStemmer()  # the stemmer rouge_score's DefaultTokenizer uses
        self._cache: dict[str, str] = {}

    def stem(self, word: str) -> str:
        out = self._cache.get(word)  # pragma: no mutate (a memo: a miss recomputes the same value)
        if out is None:
            if len(self._cache) >= self._LIMIT:  # pragma: no mutate (a memo: a miss recomputes the same value)
                self._cache.clear()
            out = self._cache[word] = self._stemmer.stem(word)
        return out


@lru_cache(maxsize=None)
def _rouge_parts():
    """rouge_score's own tokenizer (with the memoised stemmer), n-gram counting and scoring functions."""
    from rouge_score import rouge_scorer, scoring, tokenize, tokenizers

    class _Tokenizer(tokenizers.Tokenizer):
        """rouge_score's DefaultTokenizer(use_stemmer=True), with the memoised stemmer."""

        def __init__(self) -> None:
            self._stemmer = _MemoStemmer()

        def tokenize(self, text):
            return tokenize.tokenize(text, self._stemmer)

    return _Tokenizer(), rouge_scorer._create_ngrams, rouge_scorer._score_ngrams, scoring.fmeasure


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence, bit-parallel (Allison & Dix 1986; Hyyrö 2004).

    Bit i of V is 1 while a[i] is not yet matched; for each element of b, with M the positions where
    it occurs in a: V ← ((V + (V & M)) | (V & ~M)) over len(a) bits. The LCS length is the number of
    zero bits at the end. Same integer as rouge_score's O(|a|·|b|) Python table, about |a|/30 times
    fewer steps; the ROUGE-L numbers are therefore identical.
    """
    if not a or not b:
        return 0
    masks: dict = {}
    for i, x in enumerate(a):
        masks[x] = masks.get(x, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for y in b:
        m = masks.get(y)
        if m:
            u = v & m
            v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


@lru_cache(maxsize=16)
def _rouge_all(output: str, reference: str) -> tuple[float, float, float]:
    """ROUGE-1/2/L F-measures exactly as ``RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    .score(reference, output)``: the same tokenizer and n-gram functions, each text tokenized once for
    all three, and the LCS length from ``lcs_length``. rouge1/2/L of the same sample hit this cache."""
    tokenizer, create_ngrams, score_ngrams, fmeasure = _rouge_parts()
    target = tokenizer.tokenize(reference)
    prediction = tokenizer.tokenize(output)
    r1 = score_ngrams(create_ngrams(target, 1), create_ngrams(prediction, 1)).fmeasure
    r2 = score_ngrams(create_ngrams(target, 2), create_ngrams(prediction, 2)).fmeasure
    if not target or not prediction:
        rl = 0.0
    else:
        lcs = lcs_length(target, prediction)
        rl = fmeasure(lcs / len(prediction), lcs / len(target))
    return r1, r2, rl


def _rouge(sample: Sample, index: int) -> Optional[float]:
    ref = reference_of(sample)
    if ref is None:
        return None
    if _is_empty(sample.output):
        return 0.0
    return float(_rouge_all(sample.output, ref)[index])


@register_metric("rouge1", needs_reference=True, _builtin=True)
def rouge1(sample: Sample) -> Optional[float]:
    """ROUGE-1 F-measure, 0-1: ``rouge_score.RougeScorer(use_stemmer=True)``. Unigram overlap;
    F = 2PR/(P+R). Tokenizer: lower-case, every character outside [a-z0-9] is a separator, Porter
    stemming of words longer than 3 characters. Text in non-Latin scripts has no such tokens and
    scores 0 — use chrF for those languages."""
    return _rouge(sample, 0)


@register_metric("rouge2", needs_reference=True, _builtin=True)
def rouge2(sample: Sample) -> Optional[float]:
    """ROUGE-2 F-measure, 0-1: bigram overlap, same tokenizer and stemming as ``rouge1``."""
    return _rouge(sample, 1)


@register_metric("rougeL", needs_reference=True, _builtin=True)
def rougeL(sample: Sample) -> Optional[float]:  # the metric's usual name
    """ROUGE-L F-measure, 0-1: longest common subsequence of the whole texts (not the
    sentence-split ``rougeLsum``), P = LCS/|output|, R = LCS/|reference|; same tokenizer as ``rouge1``."""
    return _rouge(sample, 2)


# ---------------------------------------------------------------------------------------------- SQuAD

_PUNCT_TABLE = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower-case, drop ASCII punctuation, drop articles (a/an/the), collapse
    white space — in that order, as the official SQuAD v1.1/v2.0 evaluation scripts do."""
    text = text.lower().translate(_PUNCT_TABLE)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


@register_metric("exact_match", needs_reference=True, _builtin=True)
def exact_match(sample: Sample) -> Optional[float]:
    """Exact match, 0 or 1: 1.0 if output and reference are equal after SQuAD normalisation
    (lower-case, strip punctuation and articles, collapse white space)."""
    ref = reference_of(sample)
    if ref is None:
        return None
    if _is_empty(sample.output):
        return 0.0
    return float(normalize_answer(sample.output) == normalize_answer(ref))


@register_metric("token_f1", needs_reference=True, _builtin=True)
def token_f1(sample: Sample) -> Optional[float]:
    """Token F1, 0-1: SQuAD token-overlap F1 on the normalised texts. P = |common| / |output tokens|,
    R = |common| / |reference tokens| (multiset intersection), F1 = 2PR/(P+R). As in SQuAD v2.0, when
    either side normalises to no tokens the score is 1 if both do, else 0."""
    ref = reference_of(sample)
    if ref is None:
        return None
    if _is_empty(sample.output):
        return 0.0
    pred = normalize_answer(sample.output).split()
    gold = normalize_answer(ref).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


@register_metric("length_ratio", higher_is_better=None, needs_reference=True, _builtin=True)
def length_ratio(sample: Sample) -> Optional[float]:
    """Length ratio: output words ÷ reference words (white-space split). 1 means the same length;
    there is no better direction, so comparisons do not count wins for it."""
    ref = reference_of(sample)
    if ref is None:
        return None
    if _is_empty(sample.output):
        return 0.0
    return len(sample.output.split()) / len(ref.split())
