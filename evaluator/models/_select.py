"""Choosing and loading a backend: ``auto`` → Unsloth where CUDA and unsloth are available, else transformers."""
from __future__ import annotations

import importlib.util
import logging
import sys
from typing import Any, Optional

from evaluator.models._base import Backend
from evaluator.models._loading import ResolvedModel, resolve_model

log = logging.getLogger(__name__)

BACKENDS = ("transformers", "unsloth")


class BackendError(RuntimeError):
    """The requested backend cannot run here; the message says why and what to use instead."""


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
        from evaluator.models._unsloth import import_unsloth

        import_unsloth()
    return chosen


def load_backend(model: str, adapter: Optional[str] = None, *, backend: str = "auto",
                 resolved: Optional[ResolvedModel] = None, **options: Any) -> Backend:
    """Load ``model`` (+ ``adapter``) with the chosen backend. ``options``: device, dtype, chat_template,
    load_in_4bit, trust_remote_code, revision, batch_size, max_batch_size, max_length."""
    chosen = prepare_backend(backend)
    resolved = resolved or resolve_model(model, adapter)
    if chosen == "unsloth":
        from evaluator.models._unsloth import load_unsloth

        return load_unsloth(resolved, **options)
    from evaluator.models._transformers import load_transformers

    return load_transformers(resolved, **options)
