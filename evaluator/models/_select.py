"""Choosing and loading a backend: ``auto`` → Unsloth where CUDA and unsloth are available, else transformers.

A model spec with a prefix picks an external backend instead, whatever ``--backend`` says:
``outputs:FILE`` (answers read from a file, ``_outputs.py``) and ``openai:MODEL`` (an
OpenAI-compatible endpoint, ``_openai.py``). Neither loads weights, so neither imports torch.
"""
from __future__ import annotations

import importlib.util
import logging
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from evaluator.models._base import Backend, BackendError
from evaluator.models._loading import ResolvedModel, resolve_model
from evaluator.models._openai import load_openai
from evaluator.models._outputs import OutputsFileError, load_outputs, read_outputs
from evaluator.models._transformers import load_transformers
from evaluator.models._unsloth import import_unsloth, load_unsloth

log = logging.getLogger(__name__)

BACKENDS = ("transformers", "unsloth")
EXTERNAL = ("outputs", "openai")  # prefixes of a model spec that name a backend without weights
# load_backend options used only by the openai backend (the others take the model-loading ones).
API_OPTIONS = ("base_url", "api_key_env", "concurrency", "request_timeout", "max_retries", "top_logprobs")


def unsloth_available() -> bool:
    return importlib.util.find_spec("unsloth") is not None


def choose_backend(name: str = "auto") -> str:
    """Resolve ``auto``; check that an explicit choice can run."""
    if name == "transformers":
        return name
    if name not in ("auto", "unsloth"):
        raise BackendError(f"unknown backend {name!r}; one of auto, {', '.join(BACKENDS)}")
    has_unsloth = unsloth_available()
    if name == "unsloth":
        if not has_unsloth:
            raise BackendError("--backend unsloth: the unsloth package is not installed "
                               "(pip install -r requirements-gpu.txt), or use --backend transformers")
        return name
    import torch

    return "unsloth" if (has_unsloth and torch.cuda.is_available()) else "transformers"


def prepare_backend(name: str = "auto") -> str:
    """Choose the backend and, for Unsloth, import it now: it must come before transformers."""
    chosen = choose_backend(name)
    if chosen == "unsloth":
        if "transformers" in sys.modules and "unsloth" not in sys.modules:
            log.warning("transformers was imported before unsloth; Unsloth's patches may be incomplete")

        import_unsloth()
    return chosen


def external_kind(model: str) -> Optional[str]:
    """``"outputs"`` / ``"openai"`` for a prefixed model spec, else None (a checkpoint or adapter)."""
    prefix, sep, _ = (model or "").partition(":")
    return prefix if sep and prefix in EXTERNAL else None


@dataclass(frozen=True)
class ModelIdentity:
    """How a model spec is named in the store, before anything is loaded."""

    kind: str  # "local" | "outputs" | "openai"
    label: str  # default run name
    model: str  # the run's ``model`` column
    base: Optional[str] = None  # for the reproducibility record (local models)
    adapter: Optional[str] = None
    resolved: Optional[ResolvedModel] = None  # local models: what the loader gets
    repro: Mapping[str, Any] = field(default_factory=dict)  # reproducibility fields it knows better (in memory)

    @property
    def external(self) -> bool:
        return self.kind != "local"


def describe_model(model: str, adapter: Optional[str] = None) -> ModelIdentity:
    """Label and store name of a model spec: for ``outputs:FILE`` the file's generator, for
    ``openai:MODEL`` the model name, else the resolved checkpoint/adapter."""
    kind = external_kind(model)
    if kind is not None and adapter:
        raise BackendError(f"--adapter does not apply to {model}: an adapter needs local weights")
    if kind == "outputs":
        try:
            name = read_outputs(model.split(":", 1)[1]).generator
        except OutputsFileError as exc:
            raise BackendError(str(exc)) from None
        return ModelIdentity(kind=kind, label=name, model=name)
    if kind == "openai":
        name = model.split(":", 1)[1]
        if not name:
            raise BackendError("openai:MODEL needs a model name after the colon, e.g. openai:gpt-4o-mini")
        return ModelIdentity(kind=kind, label=name, model=name)
    resolved = resolve_model(model, adapter)
    return ModelIdentity(kind="local", label=resolved.label, model=model, base=resolved.base,
                         adapter=resolved.adapter, resolved=resolved)


def _load_external(kind: str, spec: str, options: dict[str, Any]) -> Backend:
    if kind == "outputs":
        try:
            return load_outputs(spec)
        except OutputsFileError as exc:
            raise BackendError(str(exc)) from None

    if not spec:
        raise BackendError("openai:MODEL needs a model name after the colon, e.g. openai:gpt-4o-mini")
    return load_openai(spec, **{k: options[k] for k in API_OPTIONS if options.get(k) is not None})


def load_backend(model: str, adapter: Optional[str] = None, *, backend: str = "auto",
                 resolved: Optional[ResolvedModel] = None, **options: Any) -> Backend:
    """Load ``model`` (+ ``adapter``) with the chosen backend. ``options``: device, dtype, chat_template,
    load_in_4bit, trust_remote_code, revision, batch_size, max_batch_size, max_length; top_logprobs (also
    return that many most likely tokens of each step, for any backend); for ``openai:MODEL`` base_url,
    api_key_env, concurrency, request_timeout, max_retries (others ignored)."""
    kind = external_kind(model)
    if kind is not None:
        if adapter:
            raise BackendError(f"--adapter does not apply to {model}: an adapter needs local weights")
        return _load_external(kind, model.split(":", 1)[1], options)
    top = int(options.get("top_logprobs") or 0)
    options = {k: v for k, v in options.items() if k not in API_OPTIONS}
    chosen = prepare_backend(backend)
    resolved = resolved or resolve_model(model, adapter)
    loaded = load_unsloth(resolved, **options) if chosen == "unsloth" else load_transformers(resolved, **options)
    loaded.top_logprobs = top  # a judge's verdict is weighted by its probabilities at the verdict token
    return loaded
