"""A plain, seeded torch training loop for the demo's tiny models (CPU, a few minutes at most).

Two ways to turn a conversation into a training sequence:

- ``encode_plain``: the messages' text one per line, ending in ``<|end_of_text|>``, loss on every
  token: language modelling, as a base model is pre-trained (it never sees the chat template).
- ``encode_chat``: the conversation through the tokenizer's chat template, loss on the tokens of
  the assistant turns only (their text and the closing ``<|eot_id|>``), as in supervised fine-tuning.
"""
from __future__ import annotations

import random
from typing import Callable, Iterable, Optional

from evaluator.tiny import EOS

IGNORE = -100  # label that ``LlamaForCausalLM``'s loss skips


def encode_plain(tokenizer, messages: list[dict], max_len: int) -> tuple[list[int], list[int]]:
    text = tokenizer.bos_token + "\n".join(m["content"] for m in messages) + EOS
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_len]
    return ids, list(ids)


def encode_chat(tokenizer, messages: list[dict], max_len: int) -> tuple[list[int], list[int]]:
    """Token ids of the templated conversation and labels that keep the assistant tokens only.

    The template renders a prefix of the conversation as a prefix of the whole, so the tokens of
    assistant turn ``i`` are those between ``render(messages[:i], generation prompt)`` and
    ``render(messages[:i+1])``; the tokenizer runs once per boundary (special tokens split the text,
    so the pieces tokenize as the whole does; ``tests/evaluator/test_demo_models.py`` checks it).
    """

    def n_tokens(msgs: list[dict], prompt: bool) -> int:
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=prompt)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    text = tokenizer.apply_chat_template(messages, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    labels = [IGNORE] * len(ids)
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            start, end = n_tokens(messages[:i], True), n_tokens(messages[: i + 1], False)
            labels[start:end] = ids[start:end]
    return ids[:max_len], labels[:max_len]


def train(
    model,
    sequences: list[tuple[list[int], list[int]]],
    *,
    steps: int,
    lr: float,
    batch_size: int,
    pad_id: int,
    seed: int,
    checkpoints: Iterable[int] = (),
    on_checkpoint: Optional[Callable[[int], None]] = None,
    progress=None,
) -> list[float]:
    """AdamW with linear warm-up then cosine decay over ``steps``; returns the loss of each step.

    Batches are drawn by a seeded shuffle (epoch after epoch, see ``_epoch``), so the same inputs
    give the same weights on the same machine. ``on_checkpoint(step)`` runs after each step listed in
    ``checkpoints`` (the demo saves an adapter there). ``progress`` is a tqdm bar to advance.
    """
    import math

    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    rng = random.Random(seed)
    batches: list[list[int]] = []
    checkpoints = set(checkpoints)
    losses = []
    model.train()
    for step in range(1, steps + 1):
        if not batches:
            batches = _epoch(rng, [len(ids) for ids, _ in sequences], batch_size)
        batch = [sequences[i] for i in batches.pop()]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.tensor([ids + [pad_id] * (width - len(ids)) for ids, _ in batch])
        labels = torch.tensor([lab + [IGNORE] * (width - len(lab)) for _, lab in batch])
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch])
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{losses[-1]:.2f}", refresh=False)
        if step in checkpoints and on_checkpoint is not None:
            model.eval()
            on_checkpoint(step)
            model.train()
    model.eval()
    return losses


def _epoch(rng: random.Random, lengths: list[int], batch_size: int) -> list[list[int]]:
    """One epoch of batches of similar length, in random order (less padding, same data).

    Shuffle, cut into pools of 8 batches, sort each pool by length, cut it into batches, shuffle
    the batches; the step loop pops from the end.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = 8 * batch_size
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches
