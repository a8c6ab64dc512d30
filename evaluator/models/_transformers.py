"""The transformers backend: ``AutoModelForCausalLM`` (+ ``peft.PeftModel`` for adapters), any device.

Adapters are merged into the base weights after loading (``merge_and_unload``): generation then runs
at the base model's speed. Left truncation, batching, stop tokens and token log-probs are shared with
the Unsloth backend (``_chat.py``, ``evaluator/_generate.py``); only loading differs.
"""
from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

from evaluator import _generate
from evaluator.models._chat import (
    apply_template_choice,
    encode_conversations,
    stop_token_ids,
    template_hash,
)
from evaluator.models._loading import ResolvedModel
from evaluator.models._teacher_forcing import reference_logprobs
from evaluator.types import Generation, GenerationSettings, Message

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = 4096  # when neither the config nor the tokenizer states one
# "auto" batching per device type: the faster one measured there (docs/benchmarks.md). On CPU transformers'
# continuous batching ran at 0.19x of static batching (bench_generate); CUDA keeps static until the GPU check
# measures both.
DEFAULT_BATCHING = {"cpu": "static", "cuda": "static"}


def resolve_batching(batching: str, device: str) -> str:
    """"static" or "continuous" for ``batching`` ("auto" picks the device's default)."""
    if batching != "auto":
        return batching
    return DEFAULT_BATCHING.get(device.split(":")[0], "static")
_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype != "auto":
        return getattr(torch, _DTYPES[dtype])
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_tokenizer(source: str, *, chat_template: Optional[str] = None, trust_remote_code: bool = False,
                   revision: Optional[str] = None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, revision=revision)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    apply_template_choice(tokenizer, chat_template, source)
    return tokenizer


def context_length(model, tokenizer, override: Optional[int] = None) -> int:
    if override:
        return int(override)
    cfg = getattr(model, "config", None)
    limits = [getattr(cfg, "max_position_embeddings", None)]
    tok_max = getattr(tokenizer, "model_max_length", None)
    if tok_max and tok_max < 10_000_000:  # transformers' "no limit" sentinel is ~1e30
        limits.append(tok_max)
    limits = [int(x) for x in limits if x]
    return min(limits) if limits else DEFAULT_CONTEXT


class HFBackend:
    """Generation and scoring on an already-loaded HF model + tokenizer (shared by both backends)."""

    name = "transformers"

    def __init__(self, model, tokenizer, *, resolved: ResolvedModel, device: str, batch_size: Any = "auto",
                 max_batch_size: int = 128, max_length: Optional[int] = None, extra_info: Optional[dict] = None,
                 batching: str = "auto"):
        self.model = model
        self.tokenizer = tokenizer
        self.resolved = resolved
        self.device = device
        self.batch_size = batch_size
        self.max_batch_size = max_batch_size
        self.context_length = context_length(model, tokenizer, max_length)
        self.stop_ids = stop_token_ids(tokenizer, getattr(model, "generation_config", None))
        self._extra_info = dict(extra_info or {})
        self.last_stats: dict[str, Any] = {}  # batch size that fit, tokens, seconds of the last generate()
        self.top_logprobs = 0  # a judge's: also return this many most likely tokens of each step
        self.batching = resolve_batching(batching, device)

    # ------------------------------------------------------------------ interface
    def generate(self, conversations: Sequence[Sequence[Message]], settings: GenerationSettings, *,
                 on_batch=None, progress: bool = True) -> list[Generation]:

        prompts = encode_conversations(self.tokenizer, conversations,
                                       self.context_length - settings.max_new_tokens)
        n_cut = sum(p.truncated for p in prompts)
        if n_cut:
            log.warning("%d prompt(s) longer than the context (%d tokens, %d kept for the answer) were cut "
                        "from the left and flagged prompt_truncated", n_cut, self.context_length,
                        settings.max_new_tokens)
        return _generate.generate(
            self.model, self.tokenizer, [p.ids for p in prompts], settings,
            stop_ids=self.stop_ids, pad_id=self.tokenizer.pad_token_id,
            batch_size=self.batch_size, max_batch_size=self.max_batch_size,
            on_batch=on_batch, progress=progress, truncated=[p.truncated for p in prompts], stats=self.last_stats,
            top_logprobs=self.top_logprobs, batching=self._batching_for(settings),
        )

    def _batching_for(self, settings: GenerationSettings) -> str:
        """Continuous batching is greedy only and returns no alternatives: anything else runs static."""
        plain = not settings.do_sample and settings.repetition_penalty == 1.0 and not self.top_logprobs
        return self.batching if plain else "static"

    def reference_logprobs(self, conversations: Sequence[Sequence[Message]],
                           references: Sequence[str]) -> list[list[float]]:

        batch = self.batch_size if isinstance(self.batch_size, int) else min(8, self.last_stats.get("batch_size", 8))
        return reference_logprobs(self.model, self.tokenizer, list(conversations), list(references),
                                  batch_size=batch, max_length=self.context_length)

    def info(self) -> dict[str, Any]:
        dtype = getattr(self.model, "dtype", None)
        return {
            "backend": self.name,
            "base_model": self.resolved.base,
            "adapter": self.resolved.adapter,
            "tokenizer": self.resolved.tokenizer_source,
            "device": self.device,
            "batching": self.batching,
            "dtype": str(dtype).replace("torch.", "") if dtype is not None else None,
            "context_length": self.context_length,
            "stop_token_ids": list(self.stop_ids),
            "chat_template_sha256": template_hash(self.tokenizer),
            "model_revision": getattr(getattr(self.model, "config", None), "_commit_hash", None),
            **self._extra_info,
        }

    def close(self) -> None:
        import gc

        self.model = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # pragma: no cover - freeing memory is best effort
            pass


def _dtype_kwarg(dtype) -> dict[str, Any]:
    import transformers
    from packaging.version import Version

    # transformers renamed torch_dtype to dtype in 4.56.
    key = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    return {key: dtype}


def load_transformers(resolved: ResolvedModel, *, device: str = "auto", dtype: str = "auto",
                      chat_template: Optional[str] = None, load_in_4bit: bool = False,
                      trust_remote_code: bool = False, revision: Optional[str] = None,
                      batch_size: Any = "auto", max_batch_size: int = 128,
                      max_length: Optional[int] = None, batching: str = "auto") -> HFBackend:
    from transformers import AutoModelForCausalLM

    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    tokenizer = load_tokenizer(resolved.tokenizer_source, chat_template=chat_template,
                               trust_remote_code=trust_remote_code, revision=revision)
    kwargs: dict[str, Any] = dict(trust_remote_code=trust_remote_code, revision=revision, **_dtype_kwarg(torch_dtype))
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch_dtype)
    if device.startswith("cuda"):
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(resolved.base, **kwargs)
    if resolved.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, resolved.adapter)
        if not load_in_4bit:  # merging into quantized weights would round; keep the adapter separate there
            model = model.merge_and_unload()
    if not device.startswith("cuda"):
        model = model.to(device)
    model.eval()
    return HFBackend(model, tokenizer, resolved=resolved, device=device, batch_size=batch_size,
                     max_batch_size=max_batch_size, max_length=max_length, batching=batching)
