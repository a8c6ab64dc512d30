"""Teacher-forced log-probabilities of reference answers under the evaluated model (for perplexity).

For each example the conversation is rendered with the tokenizer's chat template twice: with the
generation prompt (exactly the prompt the model generated from), and with the reference appended as
an assistant message. The text the second adds after the first — the reference content and its
end-of-turn token — is the continuation; prompt and continuation are tokenized separately, so the
continuation's tokens start exactly where generation started, and only they are scored. The
assistant header belongs to the prompt and is never scored.

Each example gets a forward pass of its own, with no padding, longest first (an out-of-memory error
shows up on the first one). That makes every number independent of which other examples were
evaluated with it: a batch of padded rows is not, because float32 kernels sum in a different order
for a different padded width (seen: a reference perplexity of about 4,600 moved by 1.1e-6 relative
when a resume regrouped the examples). The cost is small next to generation: one forward pass per
example, against one per generated token. The model is asked for logits of the last K+1 positions
only (``logits_to_keep``; K = continuation length) instead of the full sequence, so no
full-vocabulary tensor over the prompt is ever built; log-softmax and the gather run in float32
and the results are returned as Python floats (float64).
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

log = logging.getLogger(__name__)


def _encode(tokenizer, conversation: Sequence[dict], reference: str,
            max_length: Optional[int]) -> tuple[list[int], int]:
    """(token ids of prompt + continuation, number of continuation tokens at the end)."""
    conv = [dict(m) for m in conversation]
    prompt_text = tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(conv + [{"role": "assistant", "content": reference}],
                                              tokenize=False, add_generation_prompt=False)
    if full_text.startswith(prompt_text):
        continuation = full_text[len(prompt_text):]
    else:  # a template whose generation prompt differs from a rendered assistant turn
        k = 0
        for a, b in zip(prompt_text, full_text):
            if a != b:
                break
            k += 1
        log.debug("chat template: generation prompt is not a prefix of the rendered answer; "
                  "scoring from the first differing character")
        prompt_text, continuation = full_text[:k], full_text[k:]
    # Score up to the end-of-turn token: drop what a template writes after it (e.g. ChatML's "\n").
    eos = getattr(tokenizer, "eos_token", None)
    if eos and eos in continuation:
        continuation = continuation[:continuation.rindex(eos) + len(eos)]
    # The template writes BOS itself; tokenizing with special tokens would add a second one.
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    cont_ids = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    if not prompt_ids and cont_ids:  # the first token needs something before it to be predicted from
        prompt_ids, cont_ids = cont_ids[:1], cont_ids[1:]
    if max_length is not None and len(prompt_ids) + len(cont_ids) > max_length:
        cont_ids = cont_ids[:max(1, max_length - 1)]  # keep at least one token of context
        keep = max_length - len(cont_ids)
        bos = getattr(tokenizer, "bos_token_id", None)
        if bos is not None and prompt_ids and prompt_ids[0] == bos and keep > 1:
            prompt_ids = [bos] + prompt_ids[len(prompt_ids) - (keep - 1):]
        else:
            prompt_ids = prompt_ids[len(prompt_ids) - keep:]
    return list(prompt_ids) + list(cont_ids), len(cont_ids)


def _forward(model, input_ids, attention_mask, position_ids, keep: int):
    try:
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    use_cache=False, logits_to_keep=keep)
    except TypeError:  # a model without logits_to_keep: full logits, then the tail
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    logits = out.logits
    if getattr(logits, "ndim", 0) != 3 or logits.shape[-1] == 0:
        raise RuntimeError("the model returned no logits (with Unsloth, set UNSLOTH_RETURN_LOGITS=1)")
    return logits[:, -keep:, :] if logits.shape[1] > keep else logits


def reference_logprobs(model, tokenizer, conversations: list[list[dict]], references: list[str],
                       batch_size: int = 8, max_length: Optional[int] = None) -> list[list[float]]:
    """Natural-log probability of each reference token given its conversation, one list per example.

    ``references[i]`` is scored as the assistant's answer to ``conversations[i]``: its content tokens
    and the end-of-turn token, not the prompt and not the assistant header. An empty or None
    reference gives ``[]``. ``max_length`` (the context) cuts the prompt from the left, keeping BOS,
    and, if the reference alone is longer, scores only its first ``max_length - 1`` tokens.

    Batch-invariant by construction: each example is one unpadded forward pass, so its numbers do
    not depend on the other examples of the call. ``batch_size`` is accepted for the backends'
    interface and ignored.
    """
    import torch

    del batch_size  # see the docstring: one example per forward pass
    if len(conversations) != len(references):
        raise ValueError(f"{len(conversations)} conversations but {len(references)} references")
    encoded: list[Optional[tuple[list[int], int]]] = [
        _encode(tokenizer, conv, ref, max_length) if ref is not None and ref.strip() else None
        for conv, ref in zip(conversations, references)
    ]
    results: list[list[float]] = [[] for _ in references]
    order = sorted((i for i, e in enumerate(encoded) if e is not None and e[1] > 0),
                   key=lambda i: len(encoded[i][0]), reverse=True)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for i in order:
            seq, n = encoded[i]
            keep = n + 1  # logits at position t predict token t+1
            ids = torch.tensor([seq], dtype=torch.long, device=device)
            mask = torch.ones_like(ids)
            positions = torch.arange(len(seq), dtype=torch.long, device=device)[None, :]
            with torch.inference_mode():
                logits = _forward(model, ids, mask, positions, keep)  # (1, keep, V)
                # Window index j holds the prediction for position len(seq) - keep + j + 1; the
                # continuation occupies the last n positions.
                row_logits = logits[0, :n, :].float()
                targets = ids[0, len(seq) - n:]
                lp = torch.log_softmax(row_logits, dim=-1).gather(-1, targets[:, None]).squeeze(-1)
                results[i] = lp.double().cpu().tolist()
                del logits
    finally:
        if was_training:
            model.train()
    return results
