"""EvalCallback in a real (tiny) transformers Trainer run: LoRA training on the tiny Llama with two saves
gives two finished runs in one family, training untouched; a failing evaluation does not stop training."""
from __future__ import annotations

from pathlib import Path

import pytest

import db
import evaluator
from tests.support.runner import chat_rows, write_jsonl

pytest.importorskip("torch")

SETTINGS = dict(max_new_tokens=4, metrics=["exact_match"], perplexity=False, backend="transformers")


def _trainer(base: Path, out: Path, callback, steps: int = 4, save_steps: int = 2):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    texts = [f"User: question {i}\nAssistant: answer {i}" for i in range(16)]
    train = [dict(tokenizer(t, truncation=True, max_length=32)) for t in texts]
    args = TrainingArguments(output_dir=str(out), max_steps=steps, save_steps=save_steps, per_device_train_batch_size=4,
                             learning_rate=1e-3, logging_steps=1, report_to=[], use_cpu=True, save_strategy="steps",
                             gradient_checkpointing=True)
    return Trainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                   data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False), callbacks=[callback])


def test_each_save_becomes_a_version_of_the_family_and_training_goes_on(tiny_model_dir, tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(4))
    callback = evaluator.EvalCallback(dataset=str(data), family="tiny-lora", db=url, **SETTINGS)
    trainer = _trainer(tiny_model_dir, tmp_path / "out", callback)
    result = trainer.train()
    assert result.global_step == 4 and callback.errors == []
    engine = db.open_store_readonly(url)
    with db.session_factory(engine)() as s:
        runs = [db.get_run(session=s, run_id=r.id) for r in callback.runs]
    engine.dispose()
    assert [(r["name"], r["family"], r["status"]) for r in runs] == [
        ("tiny-lora step 2", "tiny-lora", "finished"), ("tiny-lora step 4", "tiny-lora", "finished")]
    assert runs[0]["repro"]["adapter_sha256"] != runs[1]["repro"]["adapter_sha256"]  # the adapter trained on
    timed = [e for e in trainer.state.log_history if "eval_seconds" in e]
    assert [e["step"] for e in timed] == [2, 4] and all(e["eval_seconds"] > 0 for e in timed)
    assert trainer.model.training  # back in train mode after each evaluation
    assert any("loss" in e for e in trainer.state.log_history if e.get("step") == 4)  # it trained after step 2


def test_a_failing_evaluation_does_not_stop_training(tiny_model_dir, tmp_path):
    callback = evaluator.EvalCallback(dataset=str(tmp_path / "missing.jsonl"), family="f",
                                      db=f"sqlite:///{tmp_path / 's.sqlite'}", every=1, **SETTINGS)
    result = _trainer(tiny_model_dir, tmp_path / "out", callback, steps=3, save_steps=10).train()
    assert result.global_step == 3
    assert [step for step, _ in callback.errors] == [1, 2, 3] and callback.runs == []
    assert "missing.jsonl" in callback.errors[0][1]


def test_every_must_be_save_or_a_number_of_steps():
    with pytest.raises(ValueError, match="every must be"):
        evaluator.EvalCallback(dataset="d.jsonl", family="f", every="epoch")
