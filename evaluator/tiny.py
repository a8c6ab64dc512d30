"""Tiny Llama-architecture models built on the spot: a BPE tokenizer trained on given texts with a
Llama-3-style chat template, and a ``LlamaForCausalLM`` from a small config.

Used by the demo (which then trains them) and by the tests (real architecture, real chat template,
no download). Loading the saved directory with ``AutoModelForCausalLM.from_pretrained`` /
``AutoTokenizer.from_pretrained`` works like any checkpoint.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
PAD = "<|finetune_right_pad_id|>"
EOT = "<|eot_id|>"
SPECIAL_TOKENS = [BOS, EOS, PAD, "<|start_header_id|>", "<|end_header_id|>", EOT]

# The Llama 3 / 3.1 template, minus the tool-calling branches.
LLAMA3_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

_DEFAULT_CORPUS = [
    "Hello! How can I help you today?",
    "What is the capital of France? The capital of France is Paris.",
    "Please reset my password. I have sent a reset link to your email address.",
    "What is 2 plus 3? 2 plus 3 is 5.",
    "Thank you very much, have a nice day!",
    "The quick brown fox jumps over the lazy dog.",
    "My order has not arrived yet. I am sorry to hear that; let me check the tracking number.",
    "Can you tell me a joke? Why did the chicken cross the road? To get to the other side.",
    "Unicode: café, naïve, 東京, Ελληνικά, emoji 🙂.",
]


def train_tokenizer(texts: Iterable[str] | None = None, vocab_size: int = 512, chat_template: str | None = LLAMA3_CHAT_TEMPLATE):
    """Train a byte-level BPE tokenizer and wrap it as a ``PreTrainedTokenizerFast`` with Llama-3 specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = list(texts) if texts is not None else []
    corpus += _DEFAULT_CORPUS * 3
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOT,  # end of turn ends an assistant message, as in Llama 3 instruct
        pad_token=PAD,
        padding_side="left",
    )
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


def build_model(tokenizer, *, hidden_size: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                max_positions: int = 512, seed: int = 0):
    """A randomly initialised ``LlamaForCausalLM`` sized for the tokenizer (fp32, CPU)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    eot = tokenizer.convert_tokens_to_ids(EOT)
    eos = tokenizer.convert_tokens_to_ids(EOS)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[eot, eos],
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = [eot, eos]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def save_tiny_llama(directory: str | Path, texts: Iterable[str] | None = None, *, vocab_size: int = 512,
                    chat_template: str | None = LLAMA3_CHAT_TEMPLATE, seed: int = 0, **model_kwargs) -> Path:
    """Build tokenizer + model and save both to ``directory``; returns the directory."""
    directory = Path(directory)
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size, chat_template=chat_template)
    model = build_model(tokenizer, seed=seed, **model_kwargs)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
