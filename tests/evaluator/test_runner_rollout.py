"""--turns rollout in the runner: each user turn answered after the model's own earlier answers (tiny Llama,
temp SQLite), resumed after a crash, a failed turn's conversation, and whole conversations per process."""
from __future__ import annotations

import pytest

import db
from evaluator._runner import RunError, conversation_shard, resume_config, run_evaluation
from evaluator.config import build_config
from evaluator.types import Generation
from tests.support.runner import make_varied_model, write_jsonl

pytest.importorskip("torch")

QUESTIONS = [
    {"question_id": 1, "category": "writing", "turns": ["Write a haiku about rain.", "Now make it about snow.",
                                                        "Translate it to French."]},
    {"question_id": 2, "category": "math", "turns": ["What is 12 * 7?", "And divided by 3?"], "reference": ["84", "28"]},
    {"question_id": 3, "category": "roleplay", "turns": ["You are a pirate. Greet me.", "FAIL this turn's sequel."]},
]


@pytest.fixture(scope="module")
def varied_dir(tiny_model_dir, tmp_path_factory):
    return make_varied_model(tiny_model_dir, tmp_path_factory.mktemp("varied"))


@pytest.fixture()
def questions(tmp_path):
    return write_jsonl(tmp_path / "question.jsonl", QUESTIONS)


def config(model, dataset, store_url, **kw):
    base = dict(model=str(model), dataset=str(dataset), db=store_url, max_new_tokens=5, batch_size=8,
                backend="transformers", turns="rollout", metrics=["exact_match", "perplexity"])
    base.update(kw)
    return build_config(overrides=base)


def wrapping(change):
    """A loader whose backend's ``generate`` goes through ``change(convs, real_generate, settings, on_batch)``."""
    from evaluator.models import load_backend

    def loader(model, adapter, **kw):
        backend = load_backend(model, adapter, **kw)
        real = backend.generate
        backend.generate = lambda convs, settings, *, on_batch=None, progress=True: change(
            convs, real, settings, on_batch)
        return backend

    return loader


def stored(engine, run_id):
    """(conversation_id, turn_index) -> (output, finish_reason, error)."""
    with db.session_factory(engine)() as s:
        return {(r["conversation_id"], r["turn_index"]): (r["output"], r["finish_reason"], r["error"])
                for r in db.export_rows(session=s, run_id=run_id)}


def test_each_turn_is_answered_after_the_models_own_earlier_answers(varied_dir, questions, store_url, engine):
    prompts = []

    def record(convs, real, settings, on_batch):
        prompts.extend(convs)
        return real(convs, settings, on_batch=on_batch, progress=False)

    summary = run_evaluation(config(varied_dir, questions, store_url), loader=wrapping(record), progress=False)
    assert summary.status == "finished" and summary.n_examples == 7
    out = stored(engine, summary.run_id)
    assert sorted(out) == [("1", 0), ("1", 1), ("1", 2), ("2", 0), ("2", 1), ("3", 0), ("3", 1)]
    turns = QUESTIONS[0]["turns"]
    third = [m for m in prompts if m[-1]["content"] == turns[2]]
    assert third == [[{"role": "user", "content": turns[0]}, {"role": "assistant", "content": out[("1", 0)][0]},
                      {"role": "user", "content": turns[1]}, {"role": "assistant", "content": out[("1", 1)][0]},
                      {"role": "user", "content": turns[2]}]]
    # turn by turn: every first turn is asked before any second turn, and so on
    assert [len(m) for m in prompts] == [1, 1, 1, 3, 3, 3, 5]


def test_a_rollout_crashed_after_its_first_turns_resumes_on_the_stored_answers(varied_dir, questions, store_url,
                                                                              engine, tmp_path):
    def crash_on_second_turns(convs, real, settings, on_batch):
        if len(convs[0]) > 1:
            raise RuntimeError("simulated crash")
        return real(convs, settings, on_batch=on_batch, progress=False)

    with pytest.raises(RunError, match="simulated crash"):
        run_evaluation(config(varied_dir, questions, store_url), loader=wrapping(crash_on_second_turns), progress=False)
    assert sorted(stored(engine, 1)) == [("1", 0), ("2", 0), ("3", 0)]
    summary = run_evaluation(resume_config("1", db_url=store_url), progress=False)
    assert (summary.status, summary.n_skipped, summary.n_generated) == ("finished", 3, 4)
    other = f"sqlite:///{tmp_path / 'other.sqlite'}"
    clean = run_evaluation(config(varied_dir, questions, other), progress=False)
    other_engine = db.make_engine(other)
    try:
        assert stored(engine, 1) == stored(other_engine, clean.run_id)
    finally:
        other_engine.dispose()


def test_a_failed_turn_fails_the_later_turns_of_its_conversation_only(varied_dir, questions, store_url, engine):
    def fail_the_pirate(convs, real, settings, on_batch):
        def commit(indices, gens):
            gens = [Generation(text="", token_ids=[], tokens=[], logprobs=[], finish_reason="error", error="HTTP 500")
                    if "pirate" in convs[i][-1]["content"] else g for i, g in zip(indices, gens)]
            on_batch(indices, gens)
        return real(convs, settings, on_batch=commit, progress=False)

    summary = run_evaluation(config(varied_dir, questions, store_url), loader=wrapping(fail_the_pirate), progress=False)
    out = stored(engine, summary.run_id)
    assert out[("3", 0)][1:] == ("error", "HTTP 500")
    assert out[("3", 1)] == ("", "error", "turn 0 of this conversation has no answer to stand as its history")
    assert all(finish != "error" for key, (_, finish, _) in out.items() if key[0] != "3")


def test_a_rollout_keeps_each_conversation_on_one_process():
    conversation_of = {10: "a", 11: "a", 12: "b", 13: "c", 14: "b", 15: "c", 16: "a"}
    pending = sorted(conversation_of)
    shares = [conversation_shard(pending, conversation_of, rank, 2) for rank in (0, 1)]
    assert shares == [[10, 11, 13, 15, 16], [12, 14]]  # a and c on rank 0, b on rank 1
    assert conversation_shard([11, 12], conversation_of, 0, 3) == [11]
