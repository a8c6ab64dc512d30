"""``comparison_rows`` called directly: directions, corpus rows and who is paired with whom.

Written against surviving mutants of ``make mutation`` (docs/mutation.md): a metric's better direction
taken from the wrong place, a corpus metric skipped after a metric without one, a corpus pairing
that counts examples only one run can enter, and a result without metric values.
"""
from __future__ import annotations

import numpy as np
import pytest

from evaluator.scoring import _registry
from evaluator.scoring._compare import comparison_rows
from evaluator.scoring._registry import CorpusAggregate, MetricSpec
from evaluator.scoring._stats import PAIRED_CORPUS_METHOD, PAIRED_MEAN_METHOD
from evaluator.scoring._store import StoredSample

N = 8


def _samples(run: int, *, ref_nll_missing: tuple[int, ...] = ()) -> list[StoredSample]:
    return [StoredSample(output=f"the answer is {i + run}", reference=f"the answer is {i}", result_id=100 * run + i,
                         example_id=i, key=f"k{i}", category="math" if i % 2 else "chat",
                         ref_nll=None if i in ref_nll_missing else 2.0 + i * run, ref_tokens=4)
            for i in range(N)]


def _values(samples: list[StoredSample], run: int, *, skip: tuple[int, ...] = ()) -> dict:
    out = {}
    for i, s in enumerate(samples):
        if i in skip:
            continue  # a result with no metric values at all
        out[s.result_id] = {"perplexity": (1.0 + i + run, None),  # lower is better: run 0 wins
                            "rouge1": (0.1 * i + 0.05 * run, None),
                            "bleu": (10.0 * i + run, None),
                            "custom_low": (float(i + run), None), "custom_none": (float(i * run), None),
                            "custom_default": (float(i + run), None), "zz_corpus": (1.0, None)}
    return out


@pytest.fixture()
def zz_corpus(monkeypatch):
    """A plug-in corpus metric sorted after the built-ins, which every sample enters."""
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))
    corpus = CorpusAggregate(stats=lambda samples: np.array([[len(s.output), 1.0] for s in samples]),
                             score=lambda summed: float(summed[0] / summed[1]))
    _registry.add_metric(MetricSpec(name="zz_corpus", fn=lambda s: 1.0, corpus=corpus))


def _rows(**kw):
    a, b = _samples(0), _samples(1, ref_nll_missing=(2, 5))
    return comparison_rows(a, _values(a, 0, skip=(7,)), b, _values(b, 1, skip=(6,)), **kw)


def test_directions_come_from_the_registry_then_the_store_then_default_to_higher(zz_corpus):
    rows = _rows(directions={"custom_low": False, "custom_none": None, "perplexity": True})
    overall = {(r["metric"], r["kind"]): r for r in rows if r["slice"] == ""}
    hib = {m: r["higher_is_better"] for (m, kind), r in overall.items() if kind == "mean"}
    # perplexity: the registry's "lower is better" wins over what a store says
    assert hib == {"perplexity": False, "rouge1": True, "bleu": True, "custom_low": False, "custom_none": None,
                   "custom_default": True, "zz_corpus": True}
    n = N - 2  # example 7 has no values in run A, example 6 none in run B
    assert overall[("perplexity", "mean")]["wins"] == n  # A's perplexity is lower on every example
    assert overall[("custom_low", "mean")]["wins"] == n
    assert overall[("custom_default", "mean")]["losses"] == n
    none = overall[("custom_none", "mean")]
    assert (none["wins"], none["ties"], none["losses"]) == (0, 0, 0)
    assert none["method"].startswith(PAIRED_MEAN_METHOD) and "no better direction" in none["method"]
    assert overall[("rouge1", "mean")]["method"].startswith(PAIRED_MEAN_METHOD)
    assert "no better direction" not in overall[("rouge1", "mean")]["method"]
    assert all(r["n"] == n for (m, kind), r in overall.items() if kind == "mean")


def test_without_directions_unknown_metrics_count_higher_as_better(zz_corpus):
    overall = {r["metric"]: r for r in _rows() if r["slice"] == "" and r["kind"] == "mean"}
    assert overall["custom_low"]["higher_is_better"] is True and overall["custom_low"]["losses"] == N - 2
    assert overall["perplexity"]["higher_is_better"] is False


def test_every_corpus_metric_gets_its_row_and_pairs_only_examples_both_runs_enter(zz_corpus):
    rows = _rows(directions={})
    corpus = {(r["metric"], r["slice"]): r for r in rows if r["kind"] == "corpus"}
    assert {m for m, _ in corpus} == {"bleu", "perplexity", "zz_corpus"}  # chrf: no values in either run
    # Run B has no reference NLL for examples 2 and 5: perplexity pairs the other six.
    assert corpus[("perplexity", "")]["n"] == N - 2
    assert corpus[("perplexity", "category=chat")]["n"] == 3  # 0, 4, 6
    assert corpus[("bleu", "")]["n"] == N and corpus[("zz_corpus", "")]["n"] == N
    assert corpus[("bleu", "")]["higher_is_better"] is True and corpus[("perplexity", "")]["higher_is_better"] is False
    assert all((r["wins"], r["ties"], r["losses"]) == (0, 0, 0) for r in corpus.values())


def test_a_corpus_metric_nobody_can_enter_does_not_hide_the_next_one(zz_corpus):
    a, b = _samples(0), _samples(1)
    for s in a + b:
        s.reference = None  # bleu and perplexity need a reference; the plug-in does not
    rows = comparison_rows(a, _values(a, 0), b, _values(b, 1))
    assert {r["metric"] for r in rows if r["kind"] == "corpus"} == {"zz_corpus"}


def test_a_corpus_row_is_sacrebleus_paired_bootstrap_with_its_interval():
    """The overall BLEU row of A against B: sacrebleu's corpus scores and paired-bootstrap p-value (its own
    float32 resampling), and an interval around the difference."""
    import sacrebleu.metrics
    from sacrebleu.significance import PairedTest

    a, b = _samples(0), _samples(1)
    hyps_a, hyps_b, refs = [s.output for s in a], [s.output for s in b], [s.reference for s in a]
    row = next(r for r in comparison_rows(a, _values(a, 0), b, _values(b, 1))
               if (r["metric"], r["slice"], r["kind"]) == ("bleu", "", "corpus"))
    assert row["method"].startswith(PAIRED_CORPUS_METHOD + "; ")  # sacrebleu's 1,000 resamples, no more
    _, scores = PairedTest([("baseline", hyps_b), ("candidate", hyps_a)], {"BLEU": sacrebleu.metrics.BLEU()},
                           [refs], test_type="bs", n_samples=1000)()
    (name,) = [k for k in scores if k != "System"]
    expected = scores[name][1]  # [0] is the baseline
    assert row["value_a"] == pytest.approx(expected.score)
    assert row["value_b"] == pytest.approx(sacrebleu.corpus_bleu(hyps_b, [refs]).score)
    assert row["p_value"] == expected.p_value
    # Here every resample gives nearly the same difference, so the interval is the difference itself, up
    # to the float32 sums sacrebleu resamples with (a relative 1e-6 covers them; measured: 5e-9).
    assert row["ci_low"] is not None and row["ci_high"] is not None and row["ci_low"] <= row["ci_high"]
    assert row["ci_low"] <= row["delta"] * (1 + 1e-6) and row["delta"] <= row["ci_high"] * (1 + 1e-6)


def test_a_recomputed_p_value_is_named_in_the_method_and_only_then():
    """Written against surviving mutants of ``_p_note`` (the note dropped, or written for every row) and
    of the method's suffix for metrics with a better direction."""
    from evaluator.scoring._compare import _p_note

    assert _p_note({"p_resamples": 10000}) == "; p from 10000 resamples (none of 1000 was as extreme)"
    assert _p_note({"p_resamples": 1000}) == _p_note({"p_resamples": None}) == _p_note({}) == ""
    # a clear difference on 200 paired examples: the p-value is below what 1,000 resamples can show
    rng = np.random.default_rng(3)
    base = rng.normal(0.5, 0.1, 200)
    better = base + 0.2 + rng.normal(0, 0.02, 200)
    samples_a, samples_b = (
        [StoredSample(output="x", reference="y", result_id=1000 * run + i, example_id=i, key=f"k{i}", category=None,
                      ref_nll=None, ref_tokens=None) for i in range(200)] for run in (1, 2))
    values_a = {s.result_id: {"token_f1": (float(v), None)} for s, v in zip(samples_a, better)}
    values_b = {s.result_id: {"token_f1": (float(v), None)} for s, v in zip(samples_b, base)}
    [row] = comparison_rows(samples_a, values_a, samples_b, values_b)
    assert row["p_value"] < 1 / 1001
    assert row["method"] == PAIRED_MEAN_METHOD + "; p from 20000 resamples (none of 1000 was as extreme)"
