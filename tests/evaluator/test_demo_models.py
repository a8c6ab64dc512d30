"""The demo models: training sequences, the cache, the saved layout, and that fine-tuning helps.

The models are built once per session into a temporary cache (about a minute of CPU).
"""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from evaluator.demo import DemoSettings, _build, build_demo_models, cache_key


@pytest.fixture(scope="module")
def tokenizer():
    from evaluator.tiny import train_tokenizer

    return train_tokenizer(["How are you?", "I am fine, thank you.", "Be brief."], vocab_size=300)


def test_chat_labels_keep_only_the_assistant_turns(tokenizer):
    from evaluator.demo._train import IGNORE, encode_chat

    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "I am fine."},
                {"role": "user", "content": "Sure?"}, {"role": "assistant", "content": "Yes, thank you."}]
    ids, labels = encode_chat(tokenizer, messages, max_len=1000)
    whole = tokenizer(tokenizer.apply_chat_template(messages, tokenize=False), add_special_tokens=False)["input_ids"]
    assert ids == whole
    assert all(lab in (IGNORE, i) for lab, i in zip(labels, ids))
    kept = [i for i, lab in zip(ids, labels) if lab != IGNORE]
    assert tokenizer.decode(kept) == "I am fine.<|eot_id|>Yes, thank you.<|eot_id|>"


def test_plain_sequences_have_no_chat_markup(tokenizer):
    from evaluator.demo._train import encode_plain

    ids, labels = encode_plain(tokenizer, [{"role": "user", "content": "How are you?"},
                                           {"role": "assistant", "content": "I am fine."}], max_len=1000)
    assert ids == labels
    assert tokenizer.decode(ids) == "<|begin_of_text|>How are you?\nI am fine.<|end_of_text|>"


def test_cache_key_follows_the_settings():
    assert cache_key(DemoSettings()) == cache_key(DemoSettings())
    assert cache_key(replace(DemoSettings(), lora_lr=1e-3)) != cache_key(DemoSettings())


def test_an_interrupted_build_leaves_nothing_behind(tmp_path, monkeypatch):
    def fail(work, settings, *, progress):
        (work / "demo-base").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(_build, "_build", fail)
    with pytest.raises(KeyboardInterrupt):
        build_demo_models(tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_build_saves_a_base_and_adapters_that_point_at_it(demo_models):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert not demo_models.reused
    assert [name for name, _ in demo_models.versions] == ["v1", "v2", "v3"]
    tok = AutoTokenizer.from_pretrained(demo_models.tokenizer_dir)
    assert "<|start_header_id|>" in tok.chat_template
    AutoModelForCausalLM.from_pretrained(demo_models.base_dir)
    for _, adapter in demo_models.versions:
        config = json.loads((adapter / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == str(demo_models.base_dir.resolve())
        assert set(config["target_modules"]) == set(_build.LORA_TARGETS)
        assert (adapter / "adapter_model.safetensors").is_file()


def test_a_second_call_reuses_the_cache_without_training(demo_models, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("rebuilt instead of reusing the cache")

    monkeypatch.setattr(_build, "_build", no_training)
    again = build_demo_models(demo_models.base_dir.parent.parent, progress=False)
    assert again.reused
    assert (again.base_dir, again.versions) == (demo_models.base_dir, demo_models.versions)


def test_each_version_beats_the_one_before_and_failures_remain(demo_models):
    from evaluator.demo.check import evaluate_models, format_table

    scores = evaluate_models(demo_models)
    by_name = {s.name: s for s in scores}
    table = format_table(scores)
    bleu = [by_name[n].bleu for n in ("base", "v1", "v2", "v3")]
    assert bleu == sorted(bleu) and bleu[0] < bleu[-1] - 20, table
    for metric in ("chrf", "rouge_l"):
        assert getattr(by_name["v3"], metric) > getattr(by_name["base"], metric), table
    # Failures worth browsing: a rambling base, the planted empty answers, loops.
    assert by_name["base"].truncated >= 20, table
    assert sum(s.empty for s in scores) >= 2, table
    assert sum(s.repetitive for s in scores) >= 10, table
    # Spelling reversed unseen words stays bad even for v3.
    assert by_name["v3"].per_category["spelling"]["bleu"] < by_name["v3"].per_category["support"]["bleu"] - 30


def test_the_demo_evaluates_a_version_through_the_runner(demo_models, store_url):
    import db
    from evaluator.commands.demo import FAMILY, evaluate_versions

    [summary] = evaluate_versions(demo_models, url=store_url, only=["v1"], limit=4, progress=False)
    assert summary.status == "finished" and summary.name == "demo-v1"
    assert [b.name for b in summary.baselines] == ["demo-base"]
    engine = db.make_engine(store_url)
    try:
        with db.session_factory(engine)() as session:
            runs = {r["name"]: r for r in db.list_runs(session=session)}
    finally:
        engine.dispose()
    assert runs["demo-v1"]["family"] == FAMILY
    assert runs["demo-v1"]["adapter"] == str(dict(demo_models.versions)["v1"])
    assert runs["demo-base"]["baseline_for_id"] == runs["demo-v1"]["id"]
    # Run again: already in the store, nothing new.
    assert evaluate_versions(demo_models, url=store_url, only=["v1"], limit=4, progress=False) == []
