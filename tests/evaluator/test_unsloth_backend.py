"""The Unsloth backend with the real unsloth package (CPU fallback here, CUDA on a GPU machine).

Runs in the separate venv made by ``.ci/unsloth_env.sh`` (``.venv-unsloth/bin/python -m pytest
tests/evaluator/test_unsloth_backend.py``): unsloth patches transformers on import, so it is kept out of the
main venv. Elsewhere this module skips.
"""
from __future__ import annotations

import importlib.util
import os
import sys

import pytest

os.environ.setdefault("UNSLOTH_SKIP_TORCHVISION_CHECK", "1")  # pip's torchvision may not match the CPU torch

if importlib.util.find_spec("unsloth") is None:
    pytest.skip("unsloth is not installed in this environment; run this module with .venv-unsloth "
                "(bash .ci/unsloth_env.sh)", allow_module_level=True)

if "transformers" in sys.modules:  # pragma: no cover - depends on what pytest imported first
    print("warning: transformers was imported before unsloth in this process", file=sys.stderr)
try:
    import unsloth  # noqa: F401  (before transformers: it patches it)
    from unsloth import FastLanguageModel  # a broken install fails here, visibly
except Exception as exc:  # pragma: no cover - a broken install must be visible, not a silent skip
    if os.environ.get("CI") and os.environ.get("UNSLOTH_REQUIRED"):
        raise
    pytest.skip(f"unsloth is installed but cannot be imported: {type(exc).__name__}: {exc}", allow_module_level=True)

from evaluator.models import choose_backend, load_backend
from evaluator.types import GenerationSettings
from tests.support.runner import make_lora_adapter, make_varied_model

CONVS = [[{"role": "user", "content": "Hello there. " * (1 + i) + "What is 3 plus 4?"}] for i in range(5)]


@pytest.fixture(scope="module")
def varied_dir(tiny_model_dir, tmp_path_factory):
    return make_varied_model(tiny_model_dir, tmp_path_factory.mktemp("varied"))


@pytest.fixture(scope="module")
def backend(varied_dir):
    b = load_backend(str(varied_dir), backend="unsloth", batch_size=5)
    yield b
    b.close()


def test_unsloth_backend_loads_with_fast_language_model(backend):
    info = backend.info()
    assert info["backend"] == "unsloth" and info["unsloth_version"]
    assert len(info["chat_template_sha256"]) == 64


def test_unsloth_backend_generates_with_token_logprobs(backend):
    gens = backend.generate(CONVS, GenerationSettings(max_new_tokens=8), progress=False)
    assert len(gens) == len(CONVS)
    for g in gens:
        assert g.finish_reason in ("stop", "length")
        assert len(g.token_ids) == len(g.logprobs) == len(g.tokens) <= 8
        assert all(lp <= 0 for lp in g.logprobs)
    assert len({tuple(g.token_ids) for g in gens}) > 1


def test_unsloth_greedy_outputs_do_not_depend_on_batch_size(backend):
    backend.batch_size = 1
    one = backend.generate(CONVS, GenerationSettings(max_new_tokens=8), progress=False)
    backend.batch_size = 5
    five = backend.generate(CONVS, GenerationSettings(max_new_tokens=8), progress=False)
    assert [g.token_ids for g in one] == [g.token_ids for g in five]


def test_unsloth_backend_scores_references(backend):
    lps = backend.reference_logprobs(CONVS[:2], ["The answer is 7.", "Sure."])
    assert [len(x) > 0 for x in lps] == [True, True]
    assert all(v <= 0 for x in lps for v in x)


def test_unsloth_loads_a_peft_adapter_dir(tiny_model_dir, tmp_path):
    adapter = make_lora_adapter(tiny_model_dir, tmp_path / "lora", with_tokenizer=True)
    b = load_backend(str(adapter), backend="unsloth", batch_size=2)
    try:
        assert b.info()["adapter"] == str(adapter)
        gens = b.generate(CONVS[:2], GenerationSettings(max_new_tokens=4), progress=False)
        assert all(len(g.token_ids) == len(g.logprobs) for g in gens)
    finally:
        b.close()


def test_auto_uses_unsloth_only_with_cuda():
    import torch

    assert choose_backend("unsloth") == "unsloth"
    assert choose_backend("auto") == ("unsloth" if torch.cuda.is_available() else "transformers")


def test_an_unsloth_judge_gives_its_probabilities_at_the_verdict(tmp_path):
    """A judge loaded through Unsloth weights its verdict as a transformers one does: the judge built to answer
    "[[A]]" with P(A) : P(B) : P(C) = e² : e : 1 (tests/support/verdict_judge.py)."""
    import math

    from evaluator.judging._judge import weighted_verdict
    from tests.support.verdict_judge import VERDICT_LOGITS, make_verdict_judge

    judge = load_backend(str(make_verdict_judge(tmp_path / "judge")), backend="unsloth", top_logprobs=5)
    try:
        [gen] = judge.generate([[{"role": "user", "content": "Which answer is better, A or B?"}]],
                               GenerationSettings(max_new_tokens=6), progress=False)
    finally:
        judge.close()
    assert gen.text == "[[A]]" and len(gen.top_logprobs) == len(gen.tokens)
    total = sum(math.exp(v) for v in VERDICT_LOGITS.values())
    preference, _ = weighted_verdict(gen, "ab")
    # fp32 log-softmax against the exact shares: measured 1.9e-7 apart at most with the transformers backend
    assert preference == pytest.approx((math.exp(10) + math.exp(8) / 2) / total, abs=1e-6)


def test_an_unsloth_model_in_memory_gives_its_saved_adapters_outputs_and_goes_back_to_training(varied_dir,
                                                                                               tmp_path):
    import torch

    import db
    import evaluator
    from evaluator import cli
    from tests.support.runner import chat_rows, write_jsonl

    # float32 on both sides: in bfloat16 the saved adapter is rounded on loading, which the one in memory is not
    model, tokenizer = FastLanguageModel.from_pretrained(model_name=str(varied_dir), dtype=torch.float32,
                                                         load_in_4bit=False)
    model = FastLanguageModel.get_peft_model(model, r=4, target_modules=["q_proj", "v_proj"], lora_alpha=16,
                                             random_state=0)
    with torch.no_grad():  # a trained adapter: non-zero B, so it changes the answers
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    FastLanguageModel.for_training(model)
    data, url = write_jsonl(tmp_path / "chat.jsonl", chat_rows(6)), f"sqlite:///{tmp_path / 's.sqlite'}"
    flags = dict(max_new_tokens=6, metrics=["exact_match"], perplexity=False)
    run = evaluator.evaluate(model, tokenizer, dataset=str(data), db=url, name="in memory", progress=False, **flags)
    assert model.training  # handed back ready to train on
    model.save_pretrained(tmp_path / "adapter")
    assert cli.main(["run", "--model", str(varied_dir), "--adapter", str(tmp_path / "adapter"), "--backend", "unsloth", "--dtype", "float32",
                     "--dataset", str(data), "--db", url, "--name", "on disk", "--max-new-tokens", "6",
                     "--metric", "exact_match", "--no-perplexity", "--no-progress"]) == 0
    engine = db.open_store_readonly(url)
    with db.session_factory(engine)() as s:
        outputs = [{r["example_key"]: r["output"] for r in db.export_rows(session=s, run_id=db.find_run(session=s, ref=ref))}
                   for ref in ("in memory", "on disk")]
        backend = db.get_run(session=s, run_id=run.id)["backend"]
    engine.dispose()
    assert len(outputs[0]) == 6 and outputs[0] == outputs[1]
    assert backend == "unsloth"


def test_the_gpu_check_unsloth_step_stores_outputs_and_logprobs(tmp_path):
    """benchmarks/gpu_check.py's unsloth step (--dry-run: on CPU), run by this venv's Python."""
    import json
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--only", "unsloth", "--out",
                           str(tmp_path)], cwd=root, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    step = json.loads((tmp_path / "gpu_check.json").read_text())["steps"]["unsloth"]
    assert step["status"] == "ran" and step["examples"] == step["with_output"] == step["with_logprobs"] == 8
    assert step["with_perplexity"] == 8 and step["4bit"].startswith("not run")
