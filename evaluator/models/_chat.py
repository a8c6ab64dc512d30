"""Prompts: render a conversation with the tokenizer's own chat template, tokenize, fit the context.

The template is the tokenizer's (``apply_chat_template(..., add_generation_prompt=True)``), or the one
``--chat-template`` names: a jinja file, or one of ``NAMED_TEMPLATES``. A tokenizer without a template
and no ``--chat-template`` is an error that says so: silently concatenating messages would evaluate
a different prompt format than the one the model was fine-tuned on.

A prompt longer than the context left for generation is cut from the LEFT (the end of the
conversation, which the model must answer, is kept) and flagged ``prompt_truncated``. The first
token is kept when it is BOS, so the model still sees a well-formed start.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from evaluator.errors import UserError
from evaluator.tiny import LLAMA3_CHAT_TEMPLATE

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] | trim + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _llama3() -> str:

    return LLAMA3_CHAT_TEMPLATE


NAMED_TEMPLATES = {"llama3": _llama3, "chatml": lambda: CHATML_TEMPLATE}

# Extra stop strings some templates end an assistant turn with, looked up in the vocabulary.
END_OF_TURN_TOKENS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>")


class ChatTemplateError(UserError, ValueError):
    """No usable chat template; the message says how to give one."""


def resolve_chat_template(choice: Optional[str]) -> Optional[str]:
    """``None`` → the tokenizer's own; a known name → that template; else a path to a jinja file."""
    if choice is None:
        return None
    if choice in NAMED_TEMPLATES:
        return NAMED_TEMPLATES[choice]()
    path = Path(choice).expanduser()
    if path.is_file():
        return path.read_text(encoding="utf-8")
    raise ChatTemplateError(
        f"--chat-template {choice!r} is neither a file nor a known name ({', '.join(sorted(NAMED_TEMPLATES))})"
    )


def apply_template_choice(tokenizer, choice: Optional[str], source: str) -> None:
    """Set the chosen template on the tokenizer, or check that it has one of its own."""
    template = resolve_chat_template(choice)
    if template is not None:
        tokenizer.chat_template = template
    elif not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError(
            f"the tokenizer of {source} has no chat template: pass --chat-template FILE or one of "
            f"{', '.join(sorted(NAMED_TEMPLATES))} (the format the model was fine-tuned with)"
        )


def template_hash(tokenizer) -> Optional[str]:
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return None
    if isinstance(template, dict):  # several named templates
        template = "\n".join(f"{k}\n{v}" for k, v in sorted(template.items()))
    return hashlib.sha256(template.encode("utf-8")).hexdigest()


def stop_token_ids(tokenizer, generation_config: Any = None) -> list[int]:
    """EOS ids of the generation config, the tokenizer's EOS, and end-of-turn tokens the vocab has."""
    ids: list[int] = []

    def add(value: Any) -> None:
        if value is None:
            return
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            if isinstance(v, int) and v >= 0 and v not in ids:
                ids.append(v)

    add(getattr(generation_config, "eos_token_id", None))
    add(getattr(tokenizer, "eos_token_id", None))
    vocab = tokenizer.get_vocab()
    for tok in END_OF_TURN_TOKENS:
        add(vocab.get(tok))
    return ids


@dataclass
class Prompt:
    ids: list[int]
    truncated: bool = False
    original_length: int = 0


def encode_conversations(tokenizer, conversations: Sequence[Sequence[dict]], max_prompt_tokens: int) -> list[Prompt]:
    """Render each conversation with the chat template and tokenize it, left-truncating to fit."""
    if max_prompt_tokens < 1:
        raise ValueError("no room for the prompt: max_new_tokens must be smaller than the context length")
    texts = [
        tokenizer.apply_chat_template(list(conv), tokenize=False, add_generation_prompt=True)
        for conv in conversations
    ]
    # The template writes BOS itself; tokenizing with special tokens would add a second one.
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    bos = getattr(tokenizer, "bos_token_id", None)
    prompts = []
    for ids in encoded:
        n = len(ids)
        if n <= max_prompt_tokens:
            prompts.append(Prompt(list(ids), False, n))
            continue
        if bos is not None and ids and ids[0] == bos and max_prompt_tokens > 1:
            kept = [bos] + list(ids[n - (max_prompt_tokens - 1):])
        else:
            kept = list(ids[n - max_prompt_tokens:])
        prompts.append(Prompt(kept, True, n))
    return prompts
