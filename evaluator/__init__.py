"""Batch evaluator: dataset -> model -> generations -> scores -> store.

Heavy libraries (torch, transformers, unsloth) are imported inside the backend modules only,
so ``python -m evaluator --help`` and the dashboard never pay for them.

The Python API (docs/api.md), imported on first use: ``evaluate``, ``open_store``, ``generate_response``,
``RunHandle``, ``EvalCallback`` (a transformers TrainerCallback).
"""
from __future__ import annotations

from typing import Any

API = ("evaluate", "open_store", "generate_response", "RunHandle", "Store")
__all__ = [*API, "EvalCallback"]


def __getattr__(name: str) -> Any:
    if name in API:
        from evaluator import api

        return getattr(api, name)
    if name == "EvalCallback":
        from evaluator._callback import EvalCallback

        return EvalCallback
    raise AttributeError(f"module 'evaluator' has no attribute {name!r}")
