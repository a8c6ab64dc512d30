"""What the write API takes: one TypedDict per kind of row a caller hands to the store.

The evaluator builds these (``evaluator/_runner.py``, ``_import.py``, the scoring modules) and the write
functions in ``db/_write.py`` read them; the keys are declared here, once, instead of in prose. A key
that is not ``Required`` may be left out and takes the default the write function documents.
"""
from __future__ import annotations

from typing import Any, Optional, Required, TypedDict, Union

# A metric's value on one example: a number, None (not applicable: nothing is stored), or
# (None, "why it failed") for a metric that raised on this example.
MetricInput = Union[float, int, bool, None, tuple[None, str]]


class ExampleRecord(TypedDict, total=False):
    """One example of a dataset (the fields of ``evaluator.types.Example``)."""
    key: Required[str]  # content hash: equal keys are equal examples
    messages: Required[list[dict[str, Any]]]
    row_index: int
    reference: Optional[str]
    category: Optional[str]
    source: Optional[str]
    conversation_id: Optional[str]
    turn_index: Optional[int]
    tags: list[str]
    metadata: dict[str, Any]


class ResultRecord(TypedDict, total=False):
    """One model output on one example, with its metric values."""
    example_id: Required[int]
    output: Required[str]
    output_tokens: Required[int]
    finish_reason: Required[str]  # "stop", "length", "error", ...
    prompt_tokens: int
    failures: int  # db.FailureKind bits
    latency_ms: Optional[float]
    tokens: list[str]
    ref_nll: Optional[float]  # summed negative log-likelihood of the reference (for perplexity)
    ref_tokens: Optional[int]
    error: Optional[str]
    logprobs: list[float]  # one per output token; stored packed
    metrics: dict[str, MetricInput]


class RejectedRecord(TypedDict):
    """A dataset row that did not become an example."""
    row_index: int
    reason: str  # says which row (and line) and why
    raw: Optional[str]  # the row as written


class AggregateRecord(TypedDict, total=False):
    """One metric over a run or a slice of it: a mean with its CI, or a corpus-level figure."""
    metric: Required[str]
    kind: Required[str]  # "mean" or "corpus"
    n: Required[int]
    value: Required[Optional[float]]
    slice: str  # "" for the whole run, "category=..." for a slice
    ci_low: Optional[float]
    ci_high: Optional[float]
    extra: dict[str, Any]


class ComparisonRecord(TypedDict, total=False):
    """Candidate A against baseline B on one metric (and slice): delta, its CI, p-values, wins."""
    metric: Required[str]
    n: Required[int]
    slice: str
    kind: str
    value_a: Optional[float]
    value_b: Optional[float]
    delta: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    p_value: Optional[float]
    p_holm: Optional[float]  # Holm-adjusted over the metrics of the slice
    wins: int
    ties: int
    losses: int
    method: str
