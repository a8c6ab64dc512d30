"""A real Llama-architecture judge built at test time whose reply, and whose probabilities at the verdict, are known.

Its attention and MLP outputs are zero (``o_proj``, ``down_proj``), so each position's hidden state is its token's
embedding and the next token depends on the current token alone: a bigram model. Each token of the reply
"[[A]]" then the end of turn has its own embedding axis, and the output embedding of each next token points along
the current token's axis. After "[[" the logits are A: 10, B: 9, C: 8 and 0 for every other token, so the judge
always answers A with P(A) : P(B) : P(C) = e² : e : 1.
"""
from __future__ import annotations

from pathlib import Path

VERDICT_LOGITS = {"A": 10.0, "B": 9.0, "C": 8.0}
_CHAIN_LOGIT = 30.0


def make_verdict_judge(directory: Path) -> Path:
    import torch

    from evaluator.tiny import EOT, build_model, train_tokenizer

    tokenizer = train_tokenizer(["[[A]] [[B]] [[C]]"] * 200 + ["Assistant A, Assistant B."] * 20)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("[[", "]]", "A", "B", "C")}
    assert all(i != tokenizer.unk_token_id and i is not None for i in ids.values()), ids  # one token each
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True, tokenize=False)
    last = tokenizer(prompt, add_special_tokens=False)["input_ids"][-1]
    model = build_model(tokenizer, hidden_size=64, layers=1, max_positions=8192)
    model.config.tie_word_embeddings = False
    size = model.config.hidden_size
    scale = (1 / size + model.config.rms_norm_eps) ** -0.5  # how long RMSNorm makes a unit axis vector
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed = torch.zeros_like(model.model.embed_tokens.weight)
        head = torch.zeros(model.config.vocab_size, size)
        eot = tokenizer.convert_tokens_to_ids(EOT)
        for axis, token in enumerate([last, ids["[["], ids["A"], ids["]]"]]):
            embed[token, axis] = 1.0
        head[ids["[["], 0] = _CHAIN_LOGIT / scale  # after the prompt: [[
        for letter, logit in VERDICT_LOGITS.items():  # after [[: A, B or C
            head[ids[letter], 1] = logit / scale
        head[ids["]]"], 2] = _CHAIN_LOGIT / scale  # after A: ]]
        head[eot, 3] = _CHAIN_LOGIT / scale  # after ]]: end of turn
        model.model.embed_tokens.weight.copy_(embed)
        model.lm_head = torch.nn.Linear(size, model.config.vocab_size, bias=False)
        model.lm_head.weight.copy_(head)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
