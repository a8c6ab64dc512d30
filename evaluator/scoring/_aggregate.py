"""Run-level aggregates, overall and per slice, from the stored metric values and outputs.

For every metric the run has values of: kind ``"mean"`` — the mean of the per-example values (errors
and not-applicable examples excluded; ``n`` counts the values) with a 95% BCa bootstrap CI.
For metrics with a corpus aggregation: kind ``"corpus"`` — corpus BLEU and corpus chrF
(sacrebleu ``corpus_bleu`` / ``corpus_chrf``: statistics summed over the examples, not a mean of
sentence scores) and token-weighted corpus perplexity exp(Σ NLL / Σ tokens), each with a bootstrap CI.
Examples whose generation failed are left out of the corpus values, as they are out of the means.

Slices: ``""`` is the whole run, ``"category=X"`` each category, ``"tag=X"`` each tag.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Optional, Sequence

import db
from evaluator.scoring._catalogue import builtin_metrics, get_spec
from evaluator.scoring._registry import MetricSpec
from evaluator.scoring._stats import (
    MEAN_CI_METHOD,
    N_RESAMPLES,
    SACREBLEU_SEED,
    corpus_ci,
    mean_ci,
)
from evaluator.scoring._store import (
    StoredSample,
    corpus_eligible,
    corpus_stats,
    slice_members,
    stored_samples,
)

log = logging.getLogger(__name__)

Values = Mapping[int, Mapping[str, tuple[Optional[float], Optional[str]]]]


def ordered_metrics(names) -> list[str]:
    """Built-ins in their display order, then the rest alphabetically."""
    names = set(names)
    builtin = [n for n in builtin_metrics() if n in names]
    return builtin + sorted(names - set(builtin))


def _finite(x: Optional[float]) -> Optional[float]:
    return x if x is not None and math.isfinite(x) else None


def corpus_method(spec: MetricSpec) -> str:
    return f"{spec.corpus.description}; CI: percentile bootstrap ({N_RESAMPLES} resamples, seed {SACREBLEU_SEED})"


def aggregate_rows(samples: Sequence[StoredSample], values: Values, *, workers: Optional[int] = None) -> list[dict]:
    """Aggregate rows (the dicts ``db.replace_aggregates`` takes) for every slice of a run."""
    names = ordered_metrics({n for per in values.values() for n in per})
    slices = slice_members(samples)

    corpus: dict[str, tuple[MetricSpec, list[int], Any]] = {}  # name -> (spec, sample idx -> row, stats)
    for name in names:
        spec = get_spec(name)
        if spec is None or spec.corpus is None:
            continue
        eligible = [i for i, s in enumerate(samples) if corpus_eligible(spec, s)]
        if not eligible:
            continue
        stats = corpus_stats(spec, [samples[i] for i in eligible], workers)
        row_of = [-1] * len(samples)
        for row, i in enumerate(eligible):
            row_of[i] = row
        corpus[name] = (spec, row_of, stats)

    rows: list[dict] = []
    for slice_name, members in slices.items():
        for name in names:
            vals, errors = [], 0
            for i in members:
                v = values.get(samples[i].result_id, {}).get(name)
                if v is None:
                    continue
                if v[0] is None:
                    errors += v[1] is not None
                else:
                    vals.append(v[0])
            if vals or errors:
                mean, low, high = mean_ci(vals) if vals else (None, None, None)
                rows.append(dict(metric=name, slice=slice_name, kind="mean", n=len(vals), value=_finite(mean),
                                 ci_low=low, ci_high=high, extra=dict(errors=errors, method=MEAN_CI_METHOD)))
            if name in corpus:
                spec, row_of, stats = corpus[name]
                idx = [row_of[i] for i in members if row_of[i] >= 0]
                if idx:
                    value, low, high = corpus_ci(stats[idx], spec.corpus.score, dtype=spec.corpus.bootstrap_dtype)
                    extra = dict(method=corpus_method(spec))
                    if name == "perplexity":
                        extra["tokens"] = int(round(float(stats[idx, 1].sum())))
                    rows.append(dict(metric=name, slice=slice_name, kind="corpus", n=len(idx), value=_finite(value),
                                     ci_low=low, ci_high=high, extra=extra))
    return rows


def finalize_run(*, session_factory, run_id: int, workers: Optional[int] = None) -> None:
    """Compute and store (replacing) all aggregates of a run, overall and per slice.

    Also rewrites the run's metric columns (``db.refresh_metric_columns``), the store's packed copy of
    its metric values, so that re-scoring keeps them in step.
    """
    with session_factory() as session:
        samples = stored_samples(db.scoring_inputs(session=session, run_id=run_id))
        values = db.run_metric_values(session=session, run_id=run_id)
    rows = aggregate_rows(samples, values, workers=workers)
    with session_factory.begin() as session:
        db.replace_aggregates(session=session, run_id=run_id, rows=rows)
        db.refresh_metric_columns(session=session, run_id=run_id)  # the store's per-metric column cache
        db.refresh_statistics(session=session)  # PostgreSQL's planner sees the run's rows
    log.info("run %d: %d aggregate rows over %d results", run_id, len(rows), len(samples))
