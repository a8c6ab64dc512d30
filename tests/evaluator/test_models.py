"""Model resolution (base / adapter), backend loading, chat templates and prompt truncation."""
from __future__ import annotations

import json

import pytest

from evaluator.models import ChatTemplateError, ModelResolutionError, choose_backend, load_backend, resolve_model
from evaluator.types import GenerationSettings
from tests.support.runner import make_lora_adapter

torch = pytest.importorskip("torch")

CONV = [{"role": "user", "content": "What is 3 plus 4?"}]


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    return make_lora_adapter(tiny_model_dir, tmp_path_factory.mktemp("lora"))


# ---------------------------------------------------------------- resolution (no weights loaded)


def test_plain_model_dir_resolves_to_itself(tiny_model_dir):
    r = resolve_model(str(tiny_model_dir))
    assert (r.base, r.adapter, r.tokenizer_source) == (str(tiny_model_dir), None, str(tiny_model_dir))


def test_adapter_dir_as_model_takes_its_base_from_adapter_config(tiny_model_dir, adapter_dir):
    r = resolve_model(str(adapter_dir))
    assert r.adapter == str(adapter_dir)
    assert r.base == str(tiny_model_dir)
    assert r.adapter_config["peft_type"] == "LORA"
    assert r.tokenizer_source == str(tiny_model_dir)  # the adapter dir has no tokenizer files
    assert r.label == adapter_dir.name


def test_tokenizer_saved_next_to_the_adapter_is_preferred(tiny_model_dir, tmp_path):
    d = make_lora_adapter(tiny_model_dir, tmp_path / "lora-tok", with_tokenizer=True)
    assert resolve_model(str(d)).tokenizer_source == str(d)


def test_explicit_base_and_adapter(tiny_model_dir, adapter_dir):
    r = resolve_model(str(tiny_model_dir), str(adapter_dir))
    assert (r.base, r.adapter) == (str(tiny_model_dir), str(adapter_dir))


def test_adapter_given_twice_is_an_error(adapter_dir):
    with pytest.raises(ModelResolutionError, match="itself an adapter"):
        resolve_model(str(adapter_dir), str(adapter_dir))


def test_adapter_without_adapter_config_is_an_error(tiny_model_dir):
    with pytest.raises(ModelResolutionError, match="not a PEFT adapter"):
        resolve_model(str(tiny_model_dir), str(tiny_model_dir))


def test_adapter_without_base_name_says_to_pass_the_base(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(ModelResolutionError, match="--model BASE --adapter"):
        resolve_model(str(tmp_path))


def test_missing_local_path_is_an_error(tmp_path):
    with pytest.raises(ModelResolutionError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"))


def test_explicit_transformers_backend_needs_nothing_else():
    assert choose_backend("transformers") == "transformers"


# ---------------------------------------------------------------- loading


def _greedy(backend, n=6):
    return backend.generate([CONV], GenerationSettings(max_new_tokens=n), progress=False)[0].token_ids


def test_adapter_is_applied_when_loading(tiny_model_dir, adapter_dir):
    base = load_backend(str(tiny_model_dir), backend="transformers")
    tuned = load_backend(str(adapter_dir), backend="transformers")
    assert tuned.info()["adapter"] == str(adapter_dir)
    assert tuned.info()["base_model"] == str(tiny_model_dir)
    ids = base.tokenizer(["Hello there. How do I reset my password?"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        diff = (base.model(ids).logits - tuned.model(ids).logits).abs().max().item()
    assert diff > 1e-3  # the LoRA weights changed the model
    explicit = load_backend(str(tiny_model_dir), str(adapter_dir), backend="transformers")
    assert _greedy(explicit) == _greedy(tuned)


def test_info_records_the_chat_template_hash(tiny_model_dir):
    info = load_backend(str(tiny_model_dir), backend="transformers").info()
    assert len(info["chat_template_sha256"]) == 64
    assert info["backend"] == "transformers" and info["device"] == "cpu" and info["dtype"] == "float32"


def test_tokenizer_without_chat_template_is_a_clear_error(tiny_model_dir, tmp_path):
    from evaluator.models._transformers import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    tok.chat_template = None
    tok.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ChatTemplateError, match="--chat-template"):
        load_tokenizer(str(tmp_path))
    assert load_tokenizer(str(tmp_path), chat_template="chatml").chat_template.startswith("{% for message")


def test_chat_template_from_a_file(tiny_model_dir, tmp_path):
    from evaluator.models._transformers import load_tokenizer

    f = tmp_path / "t.jinja"
    f.write_text("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant] ")
    tok = load_tokenizer(str(tiny_model_dir), chat_template=str(f))
    assert tok.apply_chat_template(CONV, tokenize=False, add_generation_prompt=True) == \
        "[user] What is 3 plus 4?\n[assistant] "
    with pytest.raises(ChatTemplateError, match="neither a file nor a known name"):
        load_tokenizer(str(tiny_model_dir), chat_template=str(tmp_path / "missing.jinja"))


def test_long_prompt_is_cut_from_the_left_and_flagged(tiny_model_dir):
    backend = load_backend(str(tiny_model_dir), backend="transformers", max_length=64)
    long_conv = [{"role": "user", "content": "How do I reset my password? " * 40 + "What is 3 plus 4?"}]
    short_conv = CONV
    gens = backend.generate([long_conv, short_conv], GenerationSettings(max_new_tokens=8), progress=False)
    assert gens[0].prompt_truncated and not gens[1].prompt_truncated
    assert gens[0].prompt_tokens == 64 - 8
    assert len(gens[0].token_ids) <= 8


def test_left_truncation_keeps_bos_and_the_end_of_the_conversation(tiny_model_dir):
    from evaluator.models._chat import encode_conversations
    from evaluator.models._transformers import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    conv = [{"role": "user", "content": "Hello there. " * 30 + "Tell me about Paris."}]
    full = encode_conversations(tok, [conv], 10_000)[0]
    cut = encode_conversations(tok, [conv], 20)[0]
    assert not full.truncated and cut.truncated and cut.original_length == len(full.ids)
    assert cut.ids[0] == tok.bos_token_id
    assert cut.ids[1:] == full.ids[-19:]
    with pytest.raises(ValueError, match="max_new_tokens"):
        encode_conversations(tok, [conv], 0)
