"""Teacher-forced reference log-probabilities on a tiny real Llama: what is scored, and the numbers."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from evaluator.models._teacher_forcing import _encode, reference_logprobs
from evaluator.scoring import get_metrics, score_samples
from evaluator.types import Sample

CONVERSATIONS = [
    [{"role": "user", "content": "Hello there."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How do I reset my password?"}],
    [{"role": "user", "content": "What is 3 plus 4?"}, {"role": "assistant", "content": "7."},
     {"role": "user", "content": "And 3 plus 5?"}],
    [{"role": "user", "content": "Tell me about Paris. " * 6}],
    [{"role": "user", "content": "Café? 🙂"}],
]
REFERENCES = ["Sure, here is how.", "Click the reset link in the email.", "The answer is 8.",
              "Paris is the capital of France. " * 5, "Oui, café. 東京"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    return model, tokenizer


def _hf_loss_perplexity(model, tokenizer, conversation, reference):
    """Independent computation: HF's own loss with every prompt token masked to -100."""
    prompt = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(conversation + [{"role": "assistant", "content": reference}],
                                         tokenize=False)
    assert full.startswith(prompt)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + answer_ids])
    labels = ids.clone()
    labels[0, :len(prompt_ids)] = -100
    with torch.no_grad():
        loss = model(input_ids=ids, labels=labels).loss.item()
    return math.exp(loss), len(answer_ids)


def test_only_the_answer_and_its_end_of_turn_token_are_scored(tiny):
    _, tokenizer = tiny
    ids, n = _encode(tokenizer, CONVERSATIONS[0], REFERENCES[0], None)
    scored = tokenizer.convert_ids_to_tokens(ids[-n:])
    assert scored[-1] == "<|eot_id|>"
    assert tokenizer.decode(ids[-n:-1]) == REFERENCES[0]
    assert "<|end_header_id|>" not in scored and "assistant" not in tokenizer.decode(ids[-n:])


def test_perplexity_matches_hf_loss_with_prompt_masked(tiny):
    model, tokenizer = tiny
    lps = reference_logprobs(model, tokenizer, CONVERSATIONS, REFERENCES, batch_size=4)
    samples = [Sample(output="x", reference=r, reference_logprobs=lp) for r, lp in zip(REFERENCES, lps)]
    ours = [row["perplexity"] for row in score_samples(samples, get_metrics(["perplexity"]))]
    for conv, ref, lp, ppl in zip(CONVERSATIONS, REFERENCES, lps, ours):
        expected, n_tokens = _hf_loss_perplexity(model, tokenizer, conv, ref)
        assert len(lp) == n_tokens
        # HF's loss is a float32 mean over the full-sequence logits; ours sums float32 log-probs of the
        # last positions in float64. Measured at most 4.8e-7 relative (AMD EPYC, 2026-12-03); bound 20x that.
        assert ppl == pytest.approx(expected, rel=1e-5)
        assert ppl >= 1.0


def test_batch_size_does_not_change_the_log_probs(tiny):
    model, tokenizer = tiny
    convs, refs = CONVERSATIONS * 4, REFERENCES * 4  # 20 examples of varied length
    one = reference_logprobs(model, tokenizer, convs, refs, batch_size=1)
    sixteen = reference_logprobs(model, tokenizer, convs, refs, batch_size=16)
    # Exactly equal: each example is its own unpadded forward pass, so neither the batch size nor
    # the other examples of the call can change a rounding.
    assert one == sixteen
    reordered = reference_logprobs(model, tokenizer, convs[::-1], refs[::-1], batch_size=3)
    assert reordered[::-1] == one
    alone = [reference_logprobs(model, tokenizer, [c], [r])[0] for c, r in zip(convs[:5], refs[:5])]
    assert alone == one[:5]


def test_empty_reference_and_max_length(tiny):
    model, tokenizer = tiny
    out = reference_logprobs(model, tokenizer, CONVERSATIONS[:3], ["", None, REFERENCES[2]])
    assert out[0] == [] and out[1] == [] and len(out[2]) > 0
    full_ids, n = _encode(tokenizer, CONVERSATIONS[3], REFERENCES[3], None)
    cut_ids, cut_n = _encode(tokenizer, CONVERSATIONS[3], REFERENCES[3], 40)
    assert len(cut_ids) == 40 and cut_ids[0] == tokenizer.bos_token_id
    assert cut_ids[-cut_n:] == full_ids[-n:][:cut_n]  # the answer's start is kept, the prompt cut on the left
    (lp,) = reference_logprobs(model, tokenizer, CONVERSATIONS[3:4], REFERENCES[3:4], max_length=40)
    assert len(lp) == cut_n
