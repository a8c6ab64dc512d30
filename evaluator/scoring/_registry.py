"""The metric registry: every metric is declared once, with its direction and corpus aggregation.

A metric is a ``MetricSpec``: a name, a sample-level function ``fn(Sample) -> float | None``, whether
higher is better (``None``: no preferred direction, e.g. output length), whether it needs a reference,
a docstring that states the formula and variant, and optionally a corpus-level aggregation
(``CorpusAggregate``: per-example sufficient statistics that are summed, then turned into one number,
as corpus BLEU is). Every metric also gets the mean of its per-example values with a bootstrap CI.

Users add a metric without touching the runner, in either of two ways::

    from evaluator.scoring import register_metric

    @register_metric("shouting", higher_is_better=False)
    def shouting(sample):
        "Share of upper-case letters in the output."
        letters = [c for c in sample.output if c.isalpha()]
        return sum(c.isupper() for c in letters) / len(letters) if letters else 0.0

and then ``--metric mypkg.mymetrics:shouting`` (the module is imported, which registers it), or
``--metric evaluate:PATH`` for a Hugging Face ``evaluate`` metric directory (see ``_evaluate_hf.py``).

This module is the bottom of the scoring package, as ``lm_eval/api/registry.py`` is in
lm-evaluation-harness: it imports no metric module; metric modules import it to register. Looking
metrics up by name (built-ins, ``module:name`` plug-ins, ``evaluate:``) is ``_catalogue.py``, above both.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

if TYPE_CHECKING:  # numpy is imported lazily by the aggregations that need it
    import numpy as np

    from evaluator.types import Sample

SampleFn = Callable[["Sample"], Optional[float]]


@dataclass(frozen=True)
class CorpusAggregate:
    """A corpus-level number computed from summed per-example sufficient statistics.

    ``stats(samples)`` returns an ``(n, k)`` float64 array, one row per sample (only samples the
    metric applies to are passed); ``score(summed)`` turns a length-``k`` column sum into the value.
    Bootstrap resampling of examples is then a resampling of rows, which is how sacrebleu's own
    paired bootstrap works. ``bootstrap_dtype`` is the dtype the resampled sums are taken in
    (float32 for the sacrebleu metrics, to reproduce sacrebleu's numbers exactly).
    """

    stats: Callable[[Sequence["Sample"]], "np.ndarray"]
    score: Callable[["np.ndarray"], Optional[float]]
    description: str = ""
    bootstrap_dtype: str = "float64"
    applies: Optional[Callable[["Sample"], bool]] = None  # which samples enter the corpus (default: all scored)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    fn: SampleFn
    higher_is_better: Optional[bool] = True
    needs_reference: bool = False
    description: str = ""
    corpus: Optional[CorpusAggregate] = None
    builtin: bool = False
    # False for metrics that cannot be sent to a worker process (e.g. a loaded `evaluate` module):
    # they are computed in the calling process.
    parallel: bool = True
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 100:
            raise ValueError(f"metric name must be 1-100 characters, got {self.name!r}")


_REGISTRY: dict[str, MetricSpec] = {}


def register_metric(name: Optional[str] = None, *, higher_is_better: Optional[bool] = True,
                    needs_reference: bool = False, corpus: Optional[CorpusAggregate] = None,
                    description: Optional[str] = None, replace: bool = False, _builtin: bool = False):
    """Decorator: register ``fn(Sample) -> float | None`` as a metric; returns ``fn`` unchanged.

    ``name`` defaults to the function's name; the docstring becomes the description. Registering a
    different function under a taken name raises ``ValueError`` unless ``replace=True``.
    """

    def decorate(fn: SampleFn) -> SampleFn:
        spec = MetricSpec(
            name=name or fn.__name__,
            fn=fn,
            higher_is_better=higher_is_better,
            needs_reference=needs_reference,
            description=(description if description is not None else (fn.__doc__ or "")).strip(),
            corpus=corpus,
            builtin=_builtin,
        )
        add_metric(spec, replace=replace)
        fn.metric_spec = spec  # type: ignore[attr-defined]  # lets `module:fn` find the spec
        return fn

    return decorate


def add_metric(spec: MetricSpec, *, replace: bool = False) -> MetricSpec:
    """Register a ready ``MetricSpec`` (the non-decorator form of ``register_metric``)."""
    old = _REGISTRY.get(spec.name)
    if old is not None and not replace and old.fn is not spec.fn:
        raise ValueError(f"a different metric is already registered as {spec.name!r}; pass replace=True")
    _REGISTRY[spec.name] = spec
    return spec
