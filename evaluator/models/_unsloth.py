"""The Unsloth backend: ``FastLanguageModel.from_pretrained`` + ``FastLanguageModel.for_inference``.

Unsloth patches transformers when it is imported, so ``import unsloth`` must run before anything
imports transformers in the process: ``evaluator.models.prepare_backend`` does it first thing when
this backend is chosen. ``auto`` picks this backend where CUDA is available and unsloth is importable.

An adapter dir whose base is the one in its ``adapter_config.json`` (including Unsloth-saved LoRA
adapters on ``unsloth/...-bnb-4bit`` bases) is given to Unsloth as is: it loads the base and the
adapter itself. An explicit ``--model BASE --adapter DIR`` loads BASE, then the adapter with PEFT.
Generation, stop tokens and log-probs are the shared ones (``HFBackend``).
"""
from __future__ import annotations

import os
from typing import Any, Optional

from evaluator.models._base import BackendError
from evaluator.models._chat import apply_template_choice
from evaluator.models._loading import ResolvedModel
from evaluator.models._transformers import (
    HFBackend,
    load_tokenizer,
    resolve_device,
    resolve_dtype,
)

# pip installs a torchvision that may not match the local torch build (a CPU machine); unsloth
# checks it on import. The evaluator never uses torchvision.
os.environ.setdefault("UNSLOTH_SKIP_TORCHVISION_CHECK", "1")


def import_unsloth():
    """Import unsloth (before transformers, whose modules it patches)."""
    import unsloth  # for its side effects, first

    return unsloth


class UnslothBackend(HFBackend):
    name = "unsloth"


def load_unsloth(resolved: ResolvedModel, *, device: str = "auto", dtype: str = "auto",
                 chat_template: Optional[str] = None, load_in_4bit: bool = False,
                 trust_remote_code: bool = False, revision: Optional[str] = None,
                 batch_size: Any = "auto", max_batch_size: int = 128,
                 max_length: Optional[int] = None, batching: str = "auto") -> UnslothBackend:
    if batching == "continuous":
        raise BackendError("--batching continuous runs on the transformers backend (Unsloth patches generation "
                           "for static batches); use --backend transformers or --batching static")
    unsloth = import_unsloth()
    from unsloth import FastLanguageModel

    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    own_base = (resolved.adapter is not None and resolved.adapter_config is not None
                and resolved.adapter_config.get("base_model_name_or_path") == resolved.base)
    source = resolved.adapter if own_base else resolved.base
    kwargs: dict[str, Any] = dict(
        model_name=source,
        dtype=torch_dtype,
        load_in_4bit=load_in_4bit,
        trust_remote_code=trust_remote_code,
    )
    if max_length:
        kwargs["max_seq_length"] = int(max_length)
    if revision:
        kwargs["revision"] = revision
    model, tokenizer = FastLanguageModel.from_pretrained(**kwargs)
    if resolved.adapter and not own_base:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, resolved.adapter)
    FastLanguageModel.for_inference(model)
    # Unsloth may hand back a processor wrapping the tokenizer for multimodal models.
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    if resolved.tokenizer_source != source:

        tokenizer = load_tokenizer(resolved.tokenizer_source, chat_template=chat_template,
                                   trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    apply_template_choice(tokenizer, chat_template, resolved.tokenizer_source)
    return UnslothBackend(model, tokenizer, resolved=resolved, device=device, batch_size=batch_size,
                          max_batch_size=max_batch_size, max_length=max_length, batching="static",
                          extra_info={"unsloth_version": getattr(unsloth, "__version__", None),
                                      "load_in_4bit": load_in_4bit})
