"""``python -m evaluator serve``: the demo base and its three LoRA versions behind a real uvicorn server on
127.0.0.1, driven by the real ``openai`` client, by raw HTTP for malformed input, and by the evaluator's own
``openai:`` backend, whose stored outputs must equal a direct run's, example by example."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from evaluator import _serve
from evaluator._runner import run_evaluation
from evaluator.api import open_store
from evaluator.cli import main as cli_main
from evaluator.config import RunConfig
from evaluator.demo import TEST_FILE
from tests.support.serving import RunningServer

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def served(demo_models):
    adapters = {name: str(path) for name, path in demo_models.versions}
    models = _serve.ServedModels(str(demo_models.base_dir), adapters, device="cpu", max_batch_size=16)
    yield models
    models.close()


@pytest.fixture(scope="module")
def server(served):
    app = _serve.create_app(served, limits=_serve.ServeLimits(max_body_bytes=20_000))
    s = RunningServer(app)
    yield s
    s.stop()


@pytest.fixture()
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def test_models_lists_the_base_and_every_adapter(client, served, demo_models):
    listed = {m.id: m for m in client.models.list().data}
    assert set(listed) == {served.base_id, "v1", "v2", "v3"}
    assert listed["v2"].model_extra["parent"] == served.base_id


def test_a_greedy_answer_with_logprobs_and_the_same_answer_streamed(client):
    r = client.chat.completions.create(model="v3", messages=QUESTION, max_tokens=20, temperature=0,
                                       logprobs=True, top_logprobs=2)
    choice = r.choices[0]
    assert choice.message.content and choice.finish_reason in {"stop", "length"}
    tokens = choice.logprobs.content
    assert "".join(t.token for t in tokens) == choice.message.content
    assert all(t.logprob <= 0 for t in tokens) and all(len(t.top_logprobs) == 2 for t in tokens)
    assert r.usage.completion_tokens == len(tokens) and r.usage.prompt_tokens > 0

    chunks = list(client.chat.completions.create(model="v3", messages=QUESTION, max_tokens=20, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == choice.finish_reason
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens


def test_the_raw_stream_is_server_sent_events_ending_in_done(server):
    body = {"model": "v1", "messages": QUESTION, "max_tokens": 8, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body, timeout=60) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line for line in resp.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["choices"][0]["delta"]["role"] == "assistant"


def test_each_version_answers_with_its_own_weights(client):
    answers = {m: client.chat.completions.create(model=m, messages=QUESTION, max_tokens=30, temperature=0)
               .choices[0].message.content for m in ("v1", "v3")}
    base = client.models.list().data[0].id
    answers["base"] = client.chat.completions.create(model=base, messages=QUESTION, max_tokens=30,
                                                     temperature=0).choices[0].message.content
    assert len(set(answers.values())) == 3, answers


def test_the_same_seed_samples_the_same_answer(client):
    def sample(seed):
        return client.chat.completions.create(model="v2", messages=QUESTION, max_tokens=20, temperature=1.0,
                                              seed=seed).choices[0].message.content

    assert sample(7) == sample(7)
    assert len({sample(s) for s in range(6)}) > 1


@pytest.mark.parametrize("body, status, code", [
    (b"{not json", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_request"),
    (json.dumps({"model": "v1"}).encode(), 400, "invalid_request"),
    (json.dumps({"model": "v1", "messages": [{"role": "wizard", "content": "hi"}]}).encode(), 400,
     "invalid_request"),
    (json.dumps({"model": "v1", "messages": QUESTION, "temperature": 5}).encode(), 400, "invalid_request"),
    (json.dumps({"model": "v1", "messages": QUESTION, "n": 2}).encode(), 400, "invalid_request"),
    (json.dumps({"model": "v1", "messages": QUESTION, "stop": ["\n"]}).encode(), 400, "unsupported_parameter"),
    (json.dumps({"model": "v9", "messages": QUESTION}).encode(), 404, "model_not_found"),
    (json.dumps({"model": "v1", "messages": [{"role": "user", "content": "x" * 30_000}]}).encode(), 413,
     "request_too_large"),
])
def test_malformed_requests_get_a_json_error(server, body, status, code):
    resp = httpx.post(f"{server.base_url}/chat/completions", content=body, timeout=60,
                      headers={"content-type": "application/json"})
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code


def test_a_prompt_longer_than_the_context_is_refused_not_cut(server, served):
    words = " ".join(["capital"] * served.context_length)
    resp = httpx.post(f"{server.base_url}/chat/completions", timeout=60,
                      json={"model": "v1", "messages": [{"role": "user", "content": words}]})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "context_length_exceeded"


def test_the_api_key_is_required_when_set(served):
    s = RunningServer(_serve.create_app(served, api_key="s3cret"))
    try:
        wrong = openai.OpenAI(base_url=s.base_url, api_key="guess", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
        right = openai.OpenAI(base_url=s.base_url, api_key="s3cret", max_retries=0)
        assert right.chat.completions.create(model="v1", messages=QUESTION, max_tokens=4,
                                             temperature=0).choices[0].message.content is not None
    finally:
        s.stop()


def test_a_request_past_its_timeout_gets_504(served):
    s = RunningServer(_serve.create_app(served, limits=_serve.ServeLimits(timeout_s=0.001)))
    try:
        resp = httpx.post(f"{s.base_url}/chat/completions", timeout=60,
                          json={"model": "v1", "messages": QUESTION, "max_tokens": 40, "temperature": 0})
        assert resp.status_code == 504 and resp.json()["error"]["code"] == "timeout"
    finally:
        s.stop()


def test_concurrent_requests_are_batched_and_answer_as_alone(server, client, served):
    questions = [[{"role": "user", "content": f"Tell me about item {i}."}] for i in range(12)]
    alone = [client.chat.completions.create(model="v2", messages=q, max_tokens=16, temperature=0, seed=i)
             .choices[0].message.content for i, q in enumerate(questions)]
    batcher = server.app.state.batcher
    before = dict(batcher.stats)
    with ThreadPoolExecutor(12) as pool:
        with served._lock:  # the model is busy: every request queues behind the first
            futures = [pool.submit(lambda q: client.chat.completions.create(
                model="v2", messages=q, max_tokens=16, temperature=0).choices[0].message.content, q)
                for q in questions]
            deadline = time.monotonic() + 30
            while batcher._queue.qsize() < 11 and time.monotonic() < deadline:
                time.sleep(0.01)
        together = [f.result() for f in futures]
    assert together == alone
    assert batcher.stats["requests"] - before["requests"] == 12
    assert batcher.stats["batches"] - before["batches"] <= 2  # the first, then the other eleven as one
    assert batcher.stats["largest_batch"] >= 6


def test_served_answers_equal_a_direct_run_example_by_example(server, demo_models, tmp_path):
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    adapter = dict(demo_models.versions)["v3"]
    common = dict(dataset=str(TEST_FILE), turns="all", db=url, max_new_tokens=40, limit=12, perplexity=False)
    run_evaluation(RunConfig(model=str(demo_models.base_dir), adapter=str(adapter), name="direct", **common),
                   progress=False)
    rc = cli_main(["run", "--model", "openai:v3", "--base-url", server.base_url, "--name", "served",
                   "--dataset", str(TEST_FILE), "--turns", "all", "--db", url, "--max-new-tokens", "40",
                   "--limit", "12", "--no-perplexity", "--no-progress"])
    assert rc == 0
    store = open_store(url)
    direct = store.run("direct").results().set_index("example_key")["output"]
    served = store.run("served").results().set_index("example_key")["output"]
    assert len(direct) >= 12 and (direct != "").all()
    assert served.reindex(direct.index).tolist() == direct.tolist()


def test_the_command_refuses_bad_adapters_and_a_missing_key(tmp_path, capsys):
    assert cli_main(["serve", "--model", str(tmp_path), "--adapter", "v1"]) == 2
    assert "NAME=PATH" in capsys.readouterr().err
    assert cli_main(["serve", "--model", str(tmp_path), "--adapter", f"v1={tmp_path / 'nope'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli_main(["serve", "--model", str(tmp_path), "--api-key-env", "EVALBENCH_NO_SUCH_VAR"]) == 2
    assert "not set" in capsys.readouterr().err
