"""Plain records passed between the evaluator's stages (data -> model -> scoring -> store).

Nothing here imports torch or the database; every stage may import this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}


@dataclass
class Example:
    """One evaluation item: the conversation given to the model and the answer expected after it."""

    key: str  # stable across runs: the same dataset row (and turn) always gets the same key
    messages: list[Message]  # conversation up to (not including) the assistant turn to produce
    reference: Optional[str]  # gold assistant answer; None for reference-free rows
    row_index: int  # 0-based row number in the source file / split
    conversation_id: Optional[str] = None
    turn_index: Optional[int] = None  # index of the evaluated assistant turn among assistant turns
    category: Optional[str] = None
    source: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Rejected:
    """A dataset row that could not become an example, with the reason (never silently dropped)."""

    row_index: int
    reason: str
    raw: Optional[str] = None  # the row as text, truncated, for the report


@dataclass
class GenerationSettings:
    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Generation:
    """What a backend returns for one conversation."""

    text: str
    token_ids: list[int]
    tokens: list[str]  # decoded text of each generated token (for per-token shading)
    logprobs: list[float]  # natural-log probability of each generated token under the model
    finish_reason: str  # "stop" | "length" | "error"
    prompt_tokens: int = 0
    prompt_truncated: bool = False
    latency_s: float = 0.0
    error: Optional[str] = None
    # Backends that know how many tokens they generated but not their ids (an API, stored outputs)
    # give the count here; ``count_known=False`` when not even the count is known (an AlpacaEval file):
    # the output_tokens metric is then not scored for this result.
    token_count: Optional[int] = None
    count_known: bool = True
    # The most likely tokens at each generated position with their log-probabilities, when the backend was asked
    # for them (an openai: judge with top_logprobs): what weights a judge's verdict.
    top_logprobs: Optional[list[dict[str, float]]] = None

    @property
    def n_tokens(self) -> int:
        """Generated tokens: ``token_count`` when given, else ``len(token_ids)``."""
        return self.token_count if self.token_count is not None else len(self.token_ids)


@dataclass
class Sample:
    """Everything scoring needs about one generated answer (no model, no database)."""

    output: str
    reference: Optional[str]
    output_logprobs: list[float] = field(default_factory=list)  # one per generated token
    output_tokens: int = 0
    # Teacher-forced log-probabilities of the reference's tokens under the evaluated model
    # (None when there is no reference or perplexity was not computed).
    reference_logprobs: Optional[list[float]] = None
    finish_reason: str = "stop"
    prompt_truncated: bool = False
    error: Optional[str] = None
    category: Optional[str] = None


def reference_of(sample: Sample) -> Optional[str]:
    """The sample's reference, or None when it has none (missing or blank)."""
    ref = sample.reference
    if ref is None or not ref.strip():
        return None
    return ref
