"""External baselines: precomputed outputs (``outputs:FILE``) and OpenAI-compatible endpoints
(``openai:MODEL``, against a stub server on 127.0.0.1 — nothing else is ever contacted)."""
from __future__ import annotations

import json

import pytest

import db
from evaluator._runner import run_evaluation
from evaluator.config import build_config
from evaluator.models import BackendError, _openai
from evaluator.models._openai import chat_url, retry_after_s
from tests.support.openai_stub import ChatStub
from tests.support.runner import write_jsonl

PROMPTS = ["How do I reset my password?", "What is 3 plus 4? #slow", "Tell me about Paris. #limited",
           "My parcel is late. #stall", "Say something. #broken", "Thanks a lot! #slow"]
REFERENCE = "echo: the answer"


@pytest.fixture()
def stub():
    with ChatStub() as s:
        yield s


@pytest.fixture()
def dataset(tmp_path):
    rows = [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": REFERENCE}]}
            for p in PROMPTS]
    return write_jsonl(tmp_path / "chat.jsonl", rows)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(_openai, "BACKOFF_S", 0.01)


def config(model, dataset, store_url, stub, **kw):
    base = dict(model=str(model), dataset=str(dataset), db=store_url, max_new_tokens=4, batch_size=3,
                backend="transformers", metrics=["exact_match", "token_f1", "perplexity"], base_url=stub.base_url,
                concurrency=3, request_timeout=1.0, max_retries=2)
    base.update(kw)
    return build_config(overrides=base)


def rows(engine, run_id):
    with db.session_factory(engine)() as s:
        return {r["messages"][-1]["content"]: r for r in db.export_rows(session=s, run_id=run_id)}


def run_row(engine, run_id):
    with db.session_factory(engine)() as s:
        return db.get_run(session=s, run_id=run_id)


# ---------------------------------------------------------------- OpenAI-compatible endpoint


def test_openai_baseline_retries_records_errors_per_example_and_is_compared(tiny_model_dir, dataset, store_url,
                                                                           engine, stub, monkeypatch):
    monkeypatch.setenv("EVAL_TEST_KEY", "sk-test")
    summary = run_evaluation(config(tiny_model_dir, dataset, store_url, stub, baselines=["openai:gpt-test"],
                                    api_key_env="EVAL_TEST_KEY"), progress=False)
    base = summary.baselines[0]
    assert base.status == "finished" and base.failures["error"] == 1
    run = run_row(engine, base.run_id)
    assert (run["model"], run["backend"], run["baseline_for_id"]) == ("gpt-test", "openai", summary.run_id)

    assert stub.requests["#limited"] == 2  # 429 (Retry-After: 0), then answered
    assert stub.requests["#stall"] >= 2  # timed out, then answered
    assert stub.requests["#broken"] == 3  # 1 + max_retries, then recorded as an error
    assert 1 < stub.max_in_flight <= 3  # concurrency limit
    body = stub.bodies[0]
    assert body["model"] == "gpt-test" and body["max_tokens"] == 4 and body["temperature"] == 0.0
    assert body["logprobs"] is True and body["messages"][-1]["role"] == "user"
    assert all(h.get("Authorization") == "Bearer sk-test" for h in stub.headers)

    got = rows(engine, base.run_id)
    broken = got["Say something. #broken"]
    assert broken["finish_reason"] == "error" and "HTTP 500" in broken["error"] and "after 3 attempts" in broken["error"]
    assert "exact_match" in broken["metrics"] and set(broken["metrics"].values()) == {None}  # failed, not 0
    for prompt, r in got.items():
        if prompt != "Say something. #broken":
            assert r["output"].startswith("echo:") and r["finish_reason"] in ("stop", "length")
            assert r["output_tokens"] == len(r["token_logprobs"]) > 0  # log-probs from the endpoint
            assert "perplexity" not in r["metrics"]  # no teacher forcing through an API
    with db.session_factory(engine)() as s:
        comparison = db.stored_comparisons(session=s, run_a_id=summary.run_id, run_b_id=base.run_id)
    f1 = next(c for c in comparison if c["metric"] == "token_f1" and c["slice"] == "" and c["kind"] == "mean")
    assert f1["n"] == len(PROMPTS) - 1  # the failed example is left out of the pairs


def test_openai_auth_failure_stops_the_run_with_what_to_fix(dataset, store_url, engine, stub):
    stub.required_key = "right"
    with pytest.raises(BackendError, match=r"401.*\$NO_SUCH_KEY_VAR"):
        run_evaluation(config("openai:gpt-test", dataset, store_url, stub, api_key_env="NO_SUCH_KEY_VAR"),
                       progress=False)
    assert run_row(engine, 1)["status"] == "failed"


def test_chat_url_and_retry_after_parsing():
    assert chat_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1/chat/completions"
    assert chat_url("http://127.0.0.1:11434/") == "http://127.0.0.1:11434/v1/chat/completions"
    assert chat_url("http://h/api/v2/chat/completions") == "http://h/api/v2/chat/completions"
    assert retry_after_s("2.5") == 2.5 and retry_after_s(None) is None and retry_after_s("soon") is None
    assert retry_after_s("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(10.0)


# ---------------------------------------------------------------- precomputed outputs


def test_alpacaeval_outputs_match_on_the_prompt_and_unmatched_rows_are_reported(dataset, store_url, engine, stub,
                                                                                tmp_path):
    # The candidate is an endpoint too: nothing in this test loads weights.
    outputs = [{"instruction": "  How do I reset   my password?", "output": "Use the link.", "generator": "gpt-x"},
               {"instruction": PROMPTS[1], "output": "7", "generator": "gpt-x"},
               {"instruction": PROMPTS[2], "output": "A city.", "generator": "gpt-x"},
               {"instruction": PROMPTS[2], "output": "A city.", "generator": "gpt-x"},  # duplicate, same answer
               {"instruction": PROMPTS[3], "output": "Sorry.", "generator": "gpt-x"},
               {"instruction": PROMPTS[3], "output": "Too bad.", "generator": "gpt-x"},  # conflicting answers
               {"instruction": "Not in the dataset.", "output": "?", "generator": "gpt-x"}]
    path = tmp_path / "model_outputs.json"
    path.write_text(json.dumps(outputs))
    summary = run_evaluation(config("openai:gpt-test", dataset, store_url, stub, baselines=[f"outputs:{path}"],
                                    metrics=["exact_match", "token_f1", "output_tokens"]), progress=False)
    base = summary.baselines[0]
    run = run_row(engine, base.run_id)
    assert (run["model"], run["backend"], run["name"]) == ("gpt-x", "outputs", "gpt-x")
    info = run["repro"]["backend"]
    assert (info["matched_examples"], info["examples_without_output"], info["unmatched_rows"]) == (3, 3, 1)
    assert "Not in the dataset." in info["unmatched_reasons"][0]

    got = rows(engine, base.run_id)
    assert [got[p]["output"] for p in PROMPTS[:3]] == ["Use the link.", "7", "A city."]
    assert "different outputs; not choosing one" in got[PROMPTS[3]]["error"]
    assert "no output for this example" in got[PROMPTS[4]]["error"]
    assert all(got[p]["finish_reason"] == "error" for p in PROMPTS[3:])
    assert "output_tokens" not in got[PROMPTS[0]]["metrics"]  # the file gives no token count
    with db.session_factory(engine)() as s:
        assert db.stored_comparisons(session=s, run_a_id=summary.run_id, run_b_id=base.run_id)


def test_an_export_jsonl_is_matched_on_example_keys(dataset, store_url, engine, stub, tmp_path):
    from evaluator.cli import main

    first = run_evaluation(config("openai:gpt-test", dataset, store_url, stub, name="first"), progress=False)
    exported = tmp_path / "first.jsonl"
    assert main(["export", str(first.run_id), "--db", store_url, "-o", str(exported)]) == 0
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    for r in lines:
        r["messages"] = [{"role": "user", "content": "changed, so only the key can match"}]

    exported.write_text("".join(json.dumps(r) + "\n" for r in lines))
    second = run_evaluation(config("openai:gpt-test", dataset, store_url, stub, name="second",
                                   baselines=[f"outputs:{exported}"]), progress=False)
    base = second.baselines[0]
    run = run_row(engine, base.run_id)
    assert run["model"] == "first" and run["repro"]["backend"]["matched_examples"] == len(PROMPTS)
    want, got = rows(engine, first.run_id), rows(engine, base.run_id)
    assert {p: (r["output"], r["finish_reason"], r["output_tokens"]) for p, r in got.items()} == \
           {p: (r["output"], r["finish_reason"], r["output_tokens"]) for p, r in want.items()}


def test_rescoring_perplexity_of_an_outputs_run_leaves_it_missing_with_a_warning(dataset, store_url, engine, stub,
                                                                                  tmp_path, caplog):
    from evaluator.cli import main

    first = run_evaluation(config("openai:gpt-test", dataset, store_url, stub, name="first"), progress=False)
    exported = tmp_path / "first.jsonl"
    assert main(["export", str(first.run_id), "--db", store_url, "-o", str(exported)]) == 0
    second = run_evaluation(config("openai:gpt-test", dataset, store_url, stub, name="second",
                                   baselines=[f"outputs:{exported}"]), progress=False)
    base = second.baselines[0].run_id
    with caplog.at_level("WARNING"):
        assert main(["score", str(base), "--metric", "perplexity", "--db", store_url]) == 0
    assert "perplexity of the reference cannot be computed" in caplog.text
    assert all(r["metrics"].get("perplexity") is None for r in rows(engine, base).values())
