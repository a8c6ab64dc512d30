"""Stored results as scoring samples, the slices of a run, and the corpus statistics of a metric.

``finalize_run``, ``compare_runs`` and the ``score`` command all work from what the store holds (the
outputs, token log-probabilities and reference NLLs), never from a model; this module turns those
rows into ``StoredSample``s, the same ``Sample`` record the runner scores, plus the ids and tags
aggregation needs.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from db import FailureKind
from evaluator.scoring._registry import MetricSpec
from evaluator.scoring._score import _pool
from evaluator.types import Sample, reference_of


@dataclass
class StoredSample(Sample):
    """A ``Sample`` rebuilt from the store. ``ref_nll``/``ref_tokens`` stand in for the reference
    log-probabilities, which the store keeps only as their sum (see ``reference_nll``)."""

    result_id: int = 0
    example_id: int = 0
    key: str = ""
    tags: list[str] = field(default_factory=list)
    failures: int = 0
    ref_nll: Optional[float] = None
    ref_tokens: Optional[int] = None


def stored_samples(rows: Sequence[Mapping[str, Any]]) -> list[StoredSample]:
    """Rows of ``db.scoring_inputs`` as samples."""
    out = []
    for r in rows:
        failures = int(r.get("failures") or 0)
        error = r.get("error")
        if not error and (r.get("finish_reason") == "error" or failures & FailureKind.ERROR):
            error = "generation error"
        out.append(StoredSample(
            output=r.get("output") or "",
            reference=r.get("reference"),
            output_logprobs=list(r.get("logprobs") or []),
            output_tokens=int(r.get("output_tokens") or 0),
            finish_reason=r.get("finish_reason") or "stop",
            prompt_truncated=bool(failures & FailureKind.PROMPT_TRUNCATED),
            error=error,
            category=r.get("category"),
            result_id=int(r["result_id"]),
            example_id=int(r["example_id"]),
            key=r.get("key") or "",
            tags=[str(t) for t in (r.get("tags") or [])],
            failures=failures,
            ref_nll=r.get("ref_nll"),
            ref_tokens=r.get("ref_tokens"),
        ))
    return out


def slice_members(samples: Sequence[StoredSample]) -> "OrderedDict[str, list[int]]":
    """Slice name -> indices into ``samples``: "" (all), "category=X" (sorted), then "tag=X" (sorted)."""
    slices: "OrderedDict[str, list[int]]" = OrderedDict([("", list(range(len(samples))))])
    cats: dict[str, list[int]] = {}
    tags: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        if s.category is not None and str(s.category) != "":
            cats.setdefault(f"category={s.category}", []).append(i)
        for t in dict.fromkeys(s.tags):  # a tag listed twice counts once
            tags.setdefault(f"tag={t}", []).append(i)
    for name in sorted(cats):
        slices[name] = cats[name]
    for name in sorted(tags):
        slices[name] = tags[name]
    return slices


def corpus_eligible(spec: MetricSpec, sample: Sample) -> bool:
    """Whether a sample enters the metric's corpus value: generated without error, has a reference
    when the metric needs one, and passes the aggregation's own filter."""
    if sample.error:
        return False
    if spec.needs_reference and reference_of(sample) is None:
        return False
    applies = spec.corpus.applies if spec.corpus is not None else None
    return applies(sample) if applies is not None else True


def corpus_stats(spec: MetricSpec, samples: Sequence[Sample], workers: Optional[int] = None,
                 chunk_size: int = 64) -> np.ndarray:
    """Per-sample sufficient statistics (one row per sample given) of the metric's corpus value."""
    assert spec.corpus is not None
    workers = int(workers or 1)
    if workers > 1 and len(samples) >= 2 * chunk_size:

        chunks = [list(samples[i:i + chunk_size]) for i in range(0, len(samples), chunk_size)]
        parts = list(_pool(workers).map(spec.corpus.stats, chunks))
        stats = np.vstack(parts)
    else:
        stats = spec.corpus.stats(list(samples))
    return stats
