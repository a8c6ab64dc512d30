"""Continuous batching (transformers' own manager, ``--batching continuous``) against static batches: the same
greedy outputs, results committed in groups as they finish, the choice recorded with the run."""
from __future__ import annotations

import pytest

import db
from evaluator._runner import run_evaluation
from evaluator.config import ConfigError, build_config
from evaluator.models import BackendError
from evaluator.models._loading import resolve_model
from evaluator.models._transformers import resolve_batching
from evaluator.models._unsloth import load_unsloth
from evaluator.types import GenerationSettings
from tests.conftest import TINY_TEXTS
from tests.support.runner import chat_rows, make_varied_model, write_jsonl

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def varied_dir(tiny_model_dir, tmp_path_factory):
    return make_varied_model(tiny_model_dir, tmp_path_factory.mktemp("varied"))


@pytest.fixture(scope="module")
def backend(varied_dir):
    from evaluator.models import load_backend

    b = load_backend(str(varied_dir), backend="transformers", batch_size=4)
    yield b
    b.close()


def conversations(n: int) -> list[list[dict]]:
    return [[{"role": "user", "content": TINY_TEXTS[i % len(TINY_TEXTS)] * (1 + i % 5) + f" #{i}"}]
            for i in range(n)]


def generate(backend, batching: str, convs, max_new_tokens: int = 24, on_batch=None):
    backend.batching = batching
    try:
        return backend.generate(convs, GenerationSettings(max_new_tokens=max_new_tokens), on_batch=on_batch,
                                progress=False)
    finally:
        backend.batching = "static"


def test_greedy_outputs_equal_static_batching_and_every_result_is_committed_once(backend):
    convs = conversations(14)
    static = generate(backend, "static", convs)
    commits: list[list[int]] = []
    continuous = generate(backend, "continuous", convs, on_batch=lambda idx, gens: commits.append(list(idx)))
    assert backend.last_stats["batching"] == "continuous"
    assert [g.token_ids for g in continuous] == [g.token_ids for g in static]
    assert [g.finish_reason for g in continuous] == [g.finish_reason for g in static]
    assert {g.finish_reason for g in static} == {"stop", "length"}  # early stops and cut answers both in play
    assert [g.text for g in continuous] == [g.text for g in static]
    assert [g.prompt_tokens for g in continuous] == [g.prompt_tokens for g in static]
    # groups of the batch size (4) as prompts finish, the rest at the end; each prompt exactly once
    assert [len(c) for c in commits] == [4, 4, 4, 2]
    assert sorted(i for c in commits for i in c) == list(range(14))
    for a, b in zip(continuous, static):
        # the packed, masked attention of continuous batching against SDPA over a padded batch: measured at most
        # 2.7e-5 (AMD EPYC, 2026-12-05, 64 and 256 prompts x 128 tokens, 8 cache sizes); the bound leaves ~4x
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
        assert len(a.tokens) == len(a.token_ids) == len(a.logprobs)


def test_sampling_a_repetition_penalty_or_alternatives_run_static(backend):
    backend.batching = "continuous"
    try:
        assert backend._batching_for(GenerationSettings()) == "continuous"
        assert backend._batching_for(GenerationSettings(do_sample=True)) == "static"
        assert backend._batching_for(GenerationSettings(repetition_penalty=1.2)) == "static"
        backend.top_logprobs = 5
        assert backend._batching_for(GenerationSettings()) == "static"
    finally:
        backend.batching, backend.top_logprobs = "static", 0


def test_auto_is_static_on_cpu_and_is_recorded(backend):
    assert resolve_batching("auto", "cpu") == "static"
    assert resolve_batching("continuous", "cpu") == "continuous"
    assert backend.info()["batching"] == "static"


def test_a_continuous_run_stores_the_static_runs_outputs_and_records_its_batching(varied_dir, tmp_path, store_url,
                                                                                  engine):
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(9))
    common = dict(model=str(varied_dir), dataset=str(data), db=store_url, max_new_tokens=12, batch_size=4,
                  backend="transformers", metrics=["exact_match"], perplexity=False, reuse=False)
    runs = {mode: run_evaluation(build_config(overrides=dict(common, name=mode, batching=mode)), progress=False)
            for mode in ("static", "continuous")}
    with db.session_factory(engine)() as s:
        stored = {mode: {r["example_key"]: (r["output"], r["finish_reason"], r["output_tokens"])
                         for r in db.export_rows(session=s, run_id=summary.run_id)}
                  for mode, summary in runs.items()}
        recorded = {mode: db.get_run(session=s, run_id=summary.run_id)["repro"]["backend"]["batching"]
                    for mode, summary in runs.items()}
    assert len(stored["static"]) == 9 and stored["continuous"] == stored["static"]
    assert recorded == {"static": "static", "continuous": "continuous"}


def test_continuous_batching_with_sampling_is_refused_in_one_line(varied_dir, tmp_path):
    with pytest.raises(ConfigError, match="continuous is greedy only"):
        build_config(overrides=dict(model=str(varied_dir), dataset=str(tmp_path / "d.jsonl"), batching="continuous",
                                    do_sample=True))


def test_the_unsloth_backend_refuses_continuous_batching_before_loading(varied_dir):
    with pytest.raises(BackendError, match="continuous runs on the transformers backend"):
        load_unsloth(resolve_model(str(varied_dir)), batching="continuous")
