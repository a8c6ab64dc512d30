"""Scoring: per-example metrics, failure kinds, run aggregates and run comparisons.

This package only re-exports; each concept lives in a private module. What the runner calls::

    from evaluator.scoring import (score_samples, failure_mask, finalize_run, compare_runs,
                                   MetricSpec, register_metric, get_metrics, reference_nll)

    metrics = get_metrics(names)          # None -> all built-ins; unknown names raise ValueError
                                          # (names: registered, "module:function", "evaluate:PATH[#KEY]")
    values = score_samples(samples, metrics=metrics, workers=None)
        # one dict per Sample, in order: name -> float | None (not applicable) | (None, "error text")
        # -- exactly what db.insert_results takes as a result's "metrics". Chunked; workers > 1 uses
        # a process pool created once per process and reused; same numbers for any workers/chunking.
        # iter_scores(...) is the generator form.
    mask = failure_mask(sample)           # db.FailureKind bits: empty, truncated, repetition,
                                          # prompt_truncated, error
    nll, tokens = reference_nll(sample)   # store as results.ref_nll / results.ref_tokens
                                          # (None when the sample has no reference log-probs)
    finalize_run(session_factory=sf, run_id=run_id)          # aggregates (+ slices) -> db, and
                                                              # db.refresh_metric_columns
    rows = compare_runs(session_factory=sf, run_a_id=a, run_b_id=b)  # comparisons -> db, returned
        # both take workers=N (optional) for the corpus BLEU/chrF statistics of results this process
        # did not score itself; statistics computed by score_samples are memoised and reused.

Reference log-probabilities come from ``evaluator.models._teacher_forcing.reference_logprobs``
(through the backend's ``reference_logprobs``); put them in ``Sample.reference_logprobs``.

Pass ``higher_is_better={m.name: m.higher_is_better for m in metrics}`` to ``db.insert_results`` so
the store knows each metric's direction.

Metric definitions (formula and variant) are the docstrings of the functions in ``_text.py`` and
``_model_metrics.py``; ``get_metrics()[i].description`` holds them.
"""
from evaluator.scoring._aggregate import aggregate_rows, finalize_run
from evaluator.scoring._builtin import BUILTIN_ORDER
from evaluator.scoring._catalogue import (
    builtin_metrics,
    get_metrics,
    get_spec,
    known_metrics,
)
from evaluator.scoring._compare import compare_runs, comparison_rows
from evaluator.scoring._failures import failure_mask, repetition_period
from evaluator.scoring._model_metrics import perplexity_from_nll, reference_nll
from evaluator.scoring._registry import (
    CorpusAggregate,
    MetricSpec,
    add_metric,
    register_metric,
)
from evaluator.scoring._score import (
    iter_scores,
    score_one,
    score_samples,
    shutdown_pools,
    start_pool,
)
from evaluator.scoring._stats import (
    holm,
    mean_ci,
    paired_corpus_test,
    paired_mean_test,
    wins_ties_losses,
)
from evaluator.scoring._store import StoredSample, stored_samples
from evaluator.scoring._text import normalize_answer

__all__ = [
    "BUILTIN_ORDER", "CorpusAggregate", "MetricSpec", "StoredSample", "add_metric", "aggregate_rows",
    "builtin_metrics", "compare_runs", "comparison_rows", "failure_mask", "finalize_run", "get_metrics", "get_spec",
    "holm", "iter_scores", "known_metrics", "mean_ci", "normalize_answer", "paired_corpus_test", "paired_mean_test",
    "perplexity_from_nll", "reference_nll", "register_metric", "repetition_period", "score_one", "score_samples",
    "shutdown_pools", "start_pool", "stored_samples", "wins_ties_losses",
]
