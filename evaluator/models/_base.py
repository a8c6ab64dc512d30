"""The backend interface: what the runner needs from a model, and nothing else.

A backend turns conversations into generations and scores reference answers. The runner never
touches torch; anything that loads weights lives behind this Protocol (``_transformers.py``,
``_unsloth.py``), and heavy imports happen inside those modules. External backends (``_outputs.py``:
answers read from a file; ``_openai.py``: an OpenAI-compatible endpoint) implement the same Protocol;
their ``reference_logprobs`` raises ``NotImplementedError`` (the runner then skips perplexity).

Optional capability: a backend with ``uses_example_keys = True`` gets ``keys=`` (the examples'
stable keys, parallel to ``conversations``) in ``generate`` — the outputs backend matches on them.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Protocol, Sequence, runtime_checkable

from evaluator.errors import UserError
from evaluator.types import Generation, GenerationSettings, Message

OnBatch = Callable[[list[int], list[Generation]], None]


class BackendError(UserError, RuntimeError):
    """The requested backend cannot run here; the message says why and what to use instead.

    Defined here, below every backend module, so that a backend (``_openai.py``) and the module that
    chooses backends (``_select.py``) can both raise it without importing each other."""


@runtime_checkable
class Backend(Protocol):
    name: str  # "transformers" | "unsloth" | "outputs" | "openai"

    def generate(self, conversations: Sequence[Sequence[Message]], settings: GenerationSettings, *,
                 on_batch: Optional[OnBatch] = None, progress: bool = True) -> list[Generation]:
        """One Generation per conversation, in order. ``on_batch(indices, generations)`` is called after
        each internal batch (the runner commits there)."""

    def reference_logprobs(self, conversations: Sequence[Sequence[Message]],
                           references: Sequence[str]) -> list[list[float]]:
        """Teacher-forced natural-log probability of each token of each reference, given its conversation.
        Raises ``NotImplementedError`` where the backend cannot (external backends)."""

    def info(self) -> dict[str, Any]:
        """What to record with the run: backend, base model, adapter, device, dtype, chat template hash,
        context length, model revision, adapter weights hash."""

    def close(self) -> None:
        """Free the model (GPU memory) so the next backend (a baseline) can load."""
