"""Resolve what ``--model`` / ``--adapter`` point at, before any weights are loaded.

``--model`` may be a full checkpoint (local dir or hub id) or a PEFT adapter dir (LoRA, including the
ones Unsloth's ``save_pretrained`` writes): an adapter is recognised by its ``adapter_config.json``
and its base model comes from that file's ``base_model_name_or_path``. ``--model BASE --adapter DIR``
gives the base explicitly (useful when the adapter was trained on a quantised base such as
``unsloth/...-bnb-4bit`` and is evaluated on the full-precision one).

Only the standard library here: torch/transformers are imported by the backends.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from evaluator.errors import UserError

ADAPTER_CONFIG = "adapter_config.json"
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model")


class ModelResolutionError(UserError, ValueError):
    """``--model``/``--adapter`` do not name something loadable; the message says what to pass."""


@dataclass(frozen=True)
class ResolvedModel:
    base: str  # local dir or hub id of the full model
    adapter: Optional[str] = None  # local dir or hub id of a PEFT adapter, applied on top of base
    adapter_config: Optional[dict[str, Any]] = None
    tokenizer_source: str = ""  # where the tokenizer (and chat template) is loaded from

    @property
    def label(self) -> str:
        """Default run name: the adapter's directory name, else the model's."""
        src = self.adapter or self.base
        return Path(src.rstrip("/")).name or src


def _read_adapter_config(source: str, revision: Optional[str] = None) -> Optional[dict[str, Any]]:
    path = Path(source).expanduser()
    if path.is_dir():
        cfg = path / ADAPTER_CONFIG
        if not cfg.is_file():
            return None
        try:
            return json.loads(cfg.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ModelResolutionError(f"{cfg} is not valid JSON: {exc}") from None
    if path.exists():
        raise ModelResolutionError(f"{source} is a file; pass the model or adapter directory")
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise ModelResolutionError(f"{source} does not exist (not a local directory, and not a hub id 'org/name')")
    # A hub id: an adapter repo holds adapter_config.json. Offline, only the local cache is consulted.
    try:
        from huggingface_hub import hf_hub_download

        local = hf_hub_download(source, ADAPTER_CONFIG, revision=revision)
    except Exception:  # not an adapter repo, not cached, or no network: treat as a full model
        return None
    return json.loads(Path(local).read_text(encoding="utf-8"))


def _has_tokenizer(source: str) -> bool:
    path = Path(source).expanduser()
    return path.is_dir() and any((path / f).is_file() for f in TOKENIZER_FILES)


def _base_of(adapter: str, config: dict[str, Any]) -> str:
    base = config.get("base_model_name_or_path")
    if not base:
        raise ModelResolutionError(
            f"adapter {adapter} does not name its base model (no base_model_name_or_path in {ADAPTER_CONFIG}): "
            f"pass it with --model BASE --adapter {adapter}"
        )
    # A relative local path in adapter_config.json is relative to where training ran; prefer the
    # adapter's own directory as anchor when that resolves to an existing dir.
    if not Path(base).is_absolute() and Path(adapter).is_dir():
        candidate = (Path(adapter) / base).resolve()
        if candidate.is_dir():
            return str(candidate)
    return base


def resolve_model(model: str, adapter: Optional[str] = None, *, revision: Optional[str] = None) -> ResolvedModel:
    """Work out base model, adapter and tokenizer source from ``--model`` and ``--adapter``."""
    if not model:
        raise ModelResolutionError("--model is required")
    model_adapter_cfg = _read_adapter_config(model, revision)
    if model_adapter_cfg is not None:
        if adapter is not None:
            raise ModelResolutionError(
                f"--model {model} is itself an adapter ({ADAPTER_CONFIG}); pass the base model as --model "
                f"and the adapter as --adapter, or only --model {model}"
            )
        adapter, adapter_cfg, base = model, model_adapter_cfg, _base_of(model, model_adapter_cfg)
    elif adapter is not None:
        adapter_cfg = _read_adapter_config(adapter)
        if adapter_cfg is None:
            raise ModelResolutionError(f"--adapter {adapter} has no {ADAPTER_CONFIG}: it is not a PEFT adapter")
        base = model
    else:
        return ResolvedModel(base=model, tokenizer_source=model)
    if _read_adapter_config(base) is not None:
        raise ModelResolutionError(f"the base model {base} of adapter {adapter} is itself an adapter; merge it first")
    # Unsloth and PEFT save the tokenizer next to the adapter (with any chat template set during
    # fine-tuning): prefer it over the base model's.
    tokenizer_source = adapter if _has_tokenizer(adapter) else base
    return ResolvedModel(base=base, adapter=adapter, adapter_config=adapter_cfg, tokenizer_source=tokenizer_source)
