"""Helpers shared by the evaluator's model/generation/runner/CLI tests (this module holds no tests)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable

FIXTURES = Path(__file__).resolve().parents[1] / "support" / "fixtures" / "runner"
CHAT_JSONL = FIXTURES / "chat.jsonl"  # 12 chat examples (some with a system prompt) + 1 malformed row

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def make_varied_model(src: Path, dst: Path, scale: float = 0.3, seed: int = 0) -> Path:
    """The tiny Llama with seeded noise added to its weights.

    A freshly initialised tiny model answers every prompt with the same token; the noisy one
    produces different outputs per prompt, so equality tests (batch sizes, resume) compare
    something that depends on the prompt.
    """
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(src)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.add_(torch.randn(p.shape, generator=gen) * scale)
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst)
    copy_tokenizer(src, dst)
    return dst


def copy_tokenizer(src: Path, dst: Path) -> None:
    for name in TOKENIZER_FILES:
        if (Path(src) / name).is_file():
            shutil.copy(Path(src) / name, Path(dst) / name)


def make_lora_adapter(base: Path, dst: Path, *, with_tokenizer: bool = False, seed: int = 0) -> Path:
    """A real PEFT LoRA adapter on the tiny model (non-zero B, so it changes the outputs)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                        task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(dst)
    if with_tokenizer:
        copy_tokenizer(base, dst)
    return dst


def write_jsonl(path: Path, rows: Iterable[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def chat_rows(n: int, *, start: int = 0) -> list[dict]:
    """``n`` small single-turn chat examples with references and categories."""
    qs = [("How do I reset my password?", "Click the reset link in the email.", "account"),
          ("What is 3 plus 4?", "The answer is 7.", "math"),
          ("Tell me about Paris.", "Paris is the capital of France.", "geography"),
          ("My parcel is late.", "I am sorry about the delay.", "orders")]
    rows = []
    for i in range(start, start + n):
        q, a, c = qs[i % len(qs)]
        rows.append({"messages": [{"role": "user", "content": f"{q} " * (1 + i % 3) + f"#{i}"},
                                  {"role": "assistant", "content": a}], "category": c})
    return rows
