"""Per-example metrics against their reference libraries, properties, failure kinds, the registry."""
from __future__ import annotations

import math
import re
import string
import sys
import textwrap
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluator.scoring import (
    MetricSpec,
    failure_mask,
    get_metrics,
    reference_nll,
    register_metric,
    repetition_period,
    score_samples,
)
from evaluator.types import Sample

LONG_REF = " ".join(f"The committee reviewed item {i} and approved the budget for the following quarter." for i in range(60))
LONG_OUT = " ".join(f"The committee approved item {i} and reviewed budgets for next quarter." for i in range(60))

PAIRS = [
    ("The cat sat on the mat.", "The cat is sitting on the mat."),
    ("Paris is the capital of France.", "The capital of France is Paris."),
    ("Hello", "Hello"),
    ("Café naïve façade — déjà vu!", "Cafe naive facade, deja vu."),
    ("東京は日本の首都です。", "日本の首都は東京です。"),
    ("Emoji 🙂 are fine 👍", "Emoji 🙂 are great 👍"),
    ("12 + 30 = 42", "The answer is 42."),
    ("", "Something was expected here."),
    ("   \n ", "Something was expected here."),
    ("Completely unrelated words", "Nothing in common at all"),
    (LONG_OUT, LONG_REF),
]


def _score(name: str, output: str, reference):
    return score_samples([Sample(output=output, reference=reference)], get_metrics([name]))[0][name]


# ------------------------------------------------------------------ against the reference libraries


@pytest.mark.parametrize("output,reference", PAIRS)
def test_bleu_matches_sacrebleu_sentence_bleu(output, reference):
    import sacrebleu

    expected = 0.0 if not output.strip() else sacrebleu.sentence_bleu(output, [reference]).score
    assert _score("bleu", output, reference) == expected


@pytest.mark.parametrize("output,reference", PAIRS)
def test_chrf_matches_sacrebleu_sentence_chrf(output, reference):
    import sacrebleu

    expected = 0.0 if not output.strip() else sacrebleu.sentence_chrf(output, [reference]).score
    assert _score("chrf", output, reference) == expected


@pytest.mark.parametrize("output,reference", PAIRS)
def test_rouge_matches_rouge_score_with_stemmer(output, reference):
    from rouge_score import rouge_scorer

    fresh = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True).score(reference, output)
    for name in ("rouge1", "rouge2", "rougeL"):
        expected = 0.0 if not output.strip() else fresh[name].fmeasure
        assert _score(name, output, reference) == expected


_small_vocab_text = st.lists(st.sampled_from(["cat", "cats", "the", "mat", "sat", "sitting", "on", "a", "42", "Dogs",
                                              "running", "runs", "é", "!"]), max_size=60).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(output=_small_vocab_text, reference=_small_vocab_text)
def test_rouge_equals_rouge_score_on_random_texts(output, reference):
    # Our ROUGE-L uses a bit-parallel LCS; any difference from the library's table would show here.
    from rouge_score import rouge_scorer

    lib = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True).score(reference, output)
    row = score_samples([Sample(output=output, reference=reference)], get_metrics(["rouge1", "rouge2", "rougeL"]))[0]
    for name in ("rouge1", "rouge2", "rougeL"):
        expected = 0.0 if not output.strip() or not reference.strip() else lib[name].fmeasure
        assert row[name] == (None if not reference.strip() else expected)


# The official SQuAD v2.0 evaluation functions, verbatim (evaluate-v2.0.py).
def _squad_normalize_answer(s):
    def remove_articles(text):
        regex = re.compile(r"\b(a|an|the)\b", re.UNICODE)
        return re.sub(regex, " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def _squad_get_tokens(s):
    if not s:
        return []
    return _squad_normalize_answer(s).split()


def _squad_compute_exact(a_gold, a_pred):
    return int(_squad_normalize_answer(a_gold) == _squad_normalize_answer(a_pred))


def _squad_compute_f1(a_gold, a_pred):
    gold_toks = _squad_get_tokens(a_gold)
    pred_toks = _squad_get_tokens(a_pred)
    common = Counter(gold_toks) & Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


SQUAD_PAIRS = PAIRS + [("The Eiffel Tower!", "eiffel tower"), ("an apple, a pear", "Apple pear"), ("the", "a")]


@pytest.mark.parametrize("output,reference", SQUAD_PAIRS)
def test_exact_match_and_token_f1_match_official_squad_script(output, reference):
    em, f1 = _score("exact_match", output, reference), _score("token_f1", output, reference)
    if not output.strip():
        assert (em, f1) == (0.0, 0.0)  # empty output scores 0, by our rule
    else:
        assert em == _squad_compute_exact(reference, output)
        assert f1 == pytest.approx(_squad_compute_f1(reference, output), abs=1e-15)


def test_length_ratio_is_output_words_over_reference_words():
    assert _score("length_ratio", "one two three", "a b c d e f") == 0.5
    assert _score("length_ratio", "", "a b") == 0.0


# ------------------------------------------------------------------ applicability and empty output


def test_reference_metrics_are_none_without_reference_and_zero_for_empty_output():
    metrics = get_metrics()
    no_ref, empty = score_samples([Sample(output="An answer.", reference=None),
                                   Sample(output="", reference="An answer.")], metrics)
    for m in metrics:
        if m.needs_reference:
            assert no_ref[m.name] is None, m.name
    for name in ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "exact_match", "token_f1", "length_ratio"):
        assert empty[name] == 0.0, name


def test_generation_error_is_recorded_for_every_metric_not_scored_zero():
    (row,) = score_samples([Sample(output="", reference="x", error="CUDA out of memory")], get_metrics())
    assert all(v[0] is None and "CUDA out of memory" in v[1] for v in row.values())


def test_a_failing_metric_is_recorded_as_its_error_and_others_still_run():
    def broken(sample):
        raise RuntimeError("boom")

    metrics = get_metrics(["bleu"]) + [MetricSpec(name="broken_metric", fn=broken)]
    (row,) = score_samples([Sample(output="a b c", reference="a b c")], metrics)
    assert row["broken_metric"] == (None, "RuntimeError: boom")
    assert row["bleu"] == pytest.approx(100.0)


def test_nan_from_a_metric_is_an_error_not_a_value():
    metrics = [MetricSpec(name="nan_metric", fn=lambda s: float("nan"))]
    assert score_samples([Sample(output="x", reference=None)], metrics)[0]["nan_metric"] == (None, "metric returned NaN")


# ------------------------------------------------------------------ model metrics


def test_perplexity_confidence_and_min_token_prob_from_logprobs():
    s = Sample(output="ab", reference="ref", output_logprobs=[math.log(0.5), math.log(0.25)],
               reference_logprobs=[math.log(0.5), math.log(0.125)], output_tokens=2)
    row = score_samples([s], get_metrics())[0]
    assert row["perplexity"] == pytest.approx(4.0)  # exp((ln2 + ln8) / 2) = sqrt(16)
    assert row["confidence"] == pytest.approx(math.sqrt(0.125))
    assert row["min_token_prob"] == pytest.approx(0.25)
    assert row["output_tokens"] == 2.0
    assert reference_nll(s) == (pytest.approx(math.log(16)), 2)


def test_model_metrics_are_none_without_logprobs():
    row = score_samples([Sample(output="x", reference="y")], get_metrics())[0]
    assert row["perplexity"] is None and row["confidence"] is None and row["min_token_prob"] is None


# ------------------------------------------------------------------ properties

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)
_words = st.lists(st.text(alphabet=string.ascii_letters + "éü東京0123456789", min_size=1, max_size=8),
                  min_size=1, max_size=30).map(" ".join)
_RANGES = {"bleu": (0, 100), "chrf": (0, 100), "rouge1": (0, 1), "rouge2": (0, 1), "rougeL": (0, 1),
           "exact_match": (0, 1), "token_f1": (0, 1)}


@settings(max_examples=60, deadline=None)
@given(output=_text, reference=_text)
def test_text_metrics_stay_in_range(output, reference):
    row = score_samples([Sample(output=output, reference=reference)], get_metrics(list(_RANGES)))[0]
    for name, (low, high) in _RANGES.items():
        v = row[name]
        assert v is None or (isinstance(v, float) and low - 1e-9 <= v <= high + 1e-9), (name, v)


@settings(max_examples=60, deadline=None)
@given(text=_words)
def test_identical_output_and_reference_get_the_maximum(text):
    row = score_samples([Sample(output=text, reference=text)], get_metrics(list(_RANGES)))[0]
    assert row["bleu"] == pytest.approx(100.0)
    assert row["chrf"] == pytest.approx(100.0)
    assert row["exact_match"] == 1.0 and row["token_f1"] == 1.0
    if re.search(r"[a-z0-9]", text.lower()):  # rouge_score only sees [a-z0-9] tokens
        for name in ("rouge1", "rougeL"):
            assert row[name] == pytest.approx(1.0)
        if len(re.findall(r"[a-z0-9]+", text.lower())) > 1:
            assert row["rouge2"] == pytest.approx(1.0)


@settings(max_examples=100, deadline=None)
@given(lps=st.lists(st.floats(min_value=-60.0, max_value=0.0), min_size=1, max_size=50))
def test_perplexity_is_at_least_one(lps):
    row = score_samples([Sample(output="x", reference="y", reference_logprobs=lps, output_logprobs=lps)],
                        get_metrics(["perplexity", "confidence"]))[0]
    assert row["perplexity"] >= 1.0
    assert 0.0 <= row["confidence"] <= 1.0


# ------------------------------------------------------------------ failure kinds


def test_failure_mask_bits():
    from db import FailureKind

    assert failure_mask(Sample(output="Fine answer.", reference=None)) == 0
    assert failure_mask(Sample(output="  ", reference=None)) == FailureKind.EMPTY
    assert failure_mask(Sample(output="cut", reference=None, finish_reason="length")) == FailureKind.TRUNCATED
    assert failure_mask(Sample(output="x", reference=None, prompt_truncated=True)) == FailureKind.PROMPT_TRUNCATED
    assert failure_mask(Sample(output="", reference=None, finish_reason="error", error="OOM")) == (
        FailureKind.EMPTY | FailureKind.ERROR)
    loop = "Sure. " + "I am not sure about that. " * 6
    assert failure_mask(Sample(output=loop, reference=None, finish_reason="length")) == (
        FailureKind.TRUNCATED | FailureKind.REPETITION)


@pytest.mark.parametrize("text", [
    "I don't know. I don't know. I don't know.",
    "Answer: " + "the the " * 20,
    "Here is the list: " + "item, " * 12 + "ite",   # cut mid-copy by max_new_tokens
    "好的好的好的好的好的好的好的好的好的好的好的好的好的好的好的",
    "End" + "!" * 40,
    "line\n" * 10,
])
def test_repetition_detector_flags_loops(text):
    assert repetition_period(text) is not None


@pytest.mark.parametrize("text", [
    "Thanks!!!",
    "ha ha ha",
    "Paris is the capital of France. It has about two million inhabitants.",
    LONG_REF,
    "1. Open settings. 2. Click reset. 3. Check your email.",
    "",
])
def test_repetition_detector_leaves_normal_text_alone(text):
    assert repetition_period(text) is None


# ------------------------------------------------------------------ registry


def test_get_metrics_defaults_to_all_builtins_and_rejects_unknown_names():
    names = [m.name for m in get_metrics()]
    assert names[:5] == ["bleu", "chrf", "rouge1", "rouge2", "rougeL"] and "perplexity" in names
    with pytest.raises(ValueError, match="unknown metric 'blue'.*bleu"):
        get_metrics(["blue"])


def test_directions_respect_lower_is_better():
    by = {m.name: m for m in get_metrics()}
    assert by["perplexity"].higher_is_better is False
    assert by["bleu"].higher_is_better is True
    assert by["output_tokens"].higher_is_better is None
    assert "exp(" in by["perplexity"].description and "13a" in by["bleu"].description


def test_user_metric_via_module_reference(tmp_path, monkeypatch):
    (tmp_path / "my_metrics_mod.py").write_text(textwrap.dedent('''
        from evaluator.scoring import register_metric

        @register_metric("shout_ratio", higher_is_better=False)
        def shout_ratio(sample):
            "Share of upper-case letters."
            letters = [c for c in sample.output if c.isalpha()]
            return sum(c.isupper() for c in letters) / len(letters) if letters else 0.0

        def plain(sample):
            return float(len(sample.output))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    from evaluator.scoring import _registry

    # The plug-in registers itself: do it in a copy of the registry, so that running the test twice in
    # one process (mutation testing does) meets a clean registry.
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))
    try:
        specs = get_metrics(["my_metrics_mod:shout_ratio", "my_metrics_mod:plain", "bleu"])
        assert [s.name for s in specs] == ["shout_ratio", "plain", "bleu"]
        assert specs[0].higher_is_better is False and specs[0].description == "Share of upper-case letters."
        row = score_samples([Sample(output="ABcd", reference="x")], specs)[0]
        assert row["shout_ratio"] == 0.5 and row["plain"] == 4.0
        assert [s.name for s in get_metrics(["shout_ratio"])] == ["shout_ratio"]  # now registered by name
    finally:
        sys.modules.pop("my_metrics_mod", None)


def test_register_metric_refuses_to_shadow_a_different_metric():
    with pytest.raises(ValueError, match="already registered"):
        register_metric("bleu")(lambda s: 0.0)


# ------------------------------------------------------------------ evaluate: metrics


def test_evaluate_hub_name_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="not a local path and the hub is offline.*evaluate:"):
        get_metrics(["evaluate:sacrebleu"])


def test_evaluate_metric_from_a_local_directory(tmp_path):
    pytest.importorskip("evaluate")
    d = tmp_path / "char_match"
    d.mkdir()
    (d / "char_match.py").write_text(textwrap.dedent('''
        import datasets
        import evaluate

        class CharMatch(evaluate.Metric):
            def _info(self):
                return evaluate.MetricInfo(
                    description="share of equal characters", citation="", inputs_description="",
                    features=datasets.Features({"predictions": datasets.Value("string"),
                                                "references": datasets.Value("string")}))

            def _compute(self, predictions, references):
                p, r = predictions[0], references[0]
                same = sum(a == b for a, b in zip(p, r))
                return {"char_match": same / max(len(p), len(r), 1)}
    '''))
    (spec,) = get_metrics([f"evaluate:{d}"])
    assert spec.name == "evaluate:char_match" and spec.parallel is False
    rows = score_samples([Sample(output="abcd", reference="abcf"), Sample(output="x", reference=None)], [spec])
    assert rows[0]["evaluate:char_match"] == 0.75 and rows[1]["evaluate:char_match"] is None


# ------------------------------------------------------------------ worker processes


def test_worker_pool_gives_identical_numbers_and_falls_back_when_a_metric_cannot_travel(caplog):
    import types

    from evaluator.scoring import MetricSpec

    samples = [Sample(output=o, reference=r, output_logprobs=[-0.5, -1.0], reference_logprobs=[-1.0] * 3)
               for o, r in PAIRS * 6] + [Sample(output="x", reference=None), Sample(output="", reference="y", error="boom")]
    metrics = get_metrics()
    one = score_samples(samples, metrics)
    assert score_samples(samples, metrics, workers=2, chunk_size=5) == one
    assert score_samples(samples, metrics, workers=2, chunk_size=64) == one

    # A metric whose module exists only in this process: it pickles by reference here, but the
    # worker cannot import it; the chunk is then scored in this process, with a warning.
    mod = types.ModuleType("scoring_only_here")

    def only_here(sample):
        return float(len(sample.output))

    only_here.__module__, only_here.__qualname__ = mod.__name__, "only_here"
    mod.only_here = only_here
    sys.modules[mod.__name__] = mod
    try:
        extra = [MetricSpec(name="only_here", fn=only_here, higher_is_better=None)]
        with caplog.at_level("WARNING"):
            rows = score_samples(samples[:10], extra, workers=2)
        assert [r["only_here"] for r in rows] == [float(len(s.output)) for s in samples[:10]]
        assert "scoring in this process instead" in caplog.text
    finally:
        del sys.modules[mod.__name__]


def test_segment_statistics_computed_in_workers_are_kept_by_this_process(caplog):
    """finalize_run and comparisons read BLEU/chrF statistics from this process's memo: the pool's
    workers send back what they computed, so none of it is computed twice. (Written against
    surviving mutants of ``make mutation``: statistics not collected, not absorbed, or stored empty.)"""
    from evaluator.scoring import _text

    samples = [Sample(output=f"{o} #{i}", reference=r) for i, (o, r) in enumerate(PAIRS * 3)]
    _text.clear_segment_stats()
    try:
        with caplog.at_level("WARNING"):
            score_samples(samples, get_metrics(["bleu", "chrf"]), workers=2, chunk_size=4)
        assert "in this process instead" not in caplog.text  # the workers did the scoring
        for kind in ("corpus_bleu", "chrf"):
            for s in samples:
                key = (kind, _text._digest(s.output, s.reference))
                expected = _text._sacre(kind)._extract_corpus_statistics([s.output], [[s.reference]])[0]
                assert _text._SEGMENT_STATS.get(key) == expected, (kind, s.output)
        assert _text.collect_segment_stats(False) == []  # this process records nothing for workers
    finally:
        _text.clear_segment_stats()


def test_lcs_of_an_empty_sequence_is_zero():
    from evaluator.scoring._text import lcs_length

    assert (lcs_length([], ["a"]), lcs_length(["a"], []), lcs_length([], [])) == (0, 0, 0)
    assert lcs_length("abcbdab", "bdcaba") == 4  # the textbook example (Cormen et al.)


def test_corpus_statistics_of_no_samples_have_the_metrics_width():
    """A slice nobody enters still has one column per sacrebleu statistic: BLEU's hypothesis and reference
    lengths and, per n-gram order, matches and totals; chrF's three numbers per character n-gram order (6;
    chrF has no word n-grams, chrF++ would)."""
    from evaluator.scoring._text import CORPUS_BLEU, CORPUS_CHRF

    assert CORPUS_BLEU.stats([]).shape == (0, 2 + 2 * 4)
    assert CORPUS_CHRF.stats([]).shape == (0, 3 * 6)
    one = [Sample(output="a cat", reference="the cat")]
    assert CORPUS_BLEU.stats(one).shape == (1, 10) and CORPUS_CHRF.stats(one).shape == (1, 18)


def test_a_lone_surrogate_in_a_reference_or_an_output_is_scored_not_raised():
    """A JSON dataset may hold an unpaired "\\ud800" escape; the text metrics (and their memo keys) take it."""
    row = score_samples([Sample(output="caf\ud800 ok", reference="caf\ud800 ok")],
                        get_metrics(["bleu", "chrf", "exact_match"]))[0]
    assert row == {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0), "exact_match": 1.0}
