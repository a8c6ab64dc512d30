"""The failure modes of a user's first week: each asserts what the user sees (exit code, the one-line
message) and what the store says afterwards. Signals are real signals sent to a real
``python -m evaluator run`` subprocess."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

import db
from evaluator import cli
from evaluator._runner import run_evaluation
from evaluator.config import build_config
from evaluator.models import load_backend
from tests.support.openai_stub import ChatStub
from tests.support.runner import chat_rows, make_varied_model, write_jsonl

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--max-new-tokens", "4", "--backend", "transformers", "--metric", "exact_match", "--no-progress",
        "--no-perplexity"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    """The last line on stderr: the one-line message a user reads (log lines come before it)."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    assert "Traceback" not in err, err[-3000:]
    return lines[-1]


def run_rows(url: str) -> list[dict]:
    path = db.resolve_url(url).removeprefix("sqlite:///")
    if not Path(path).exists():
        return []
    engine = db.make_engine(url)
    try:
        if db.current_revision(engine) is None:
            return []
        with db.session_factory(engine)() as s:
            return db.list_runs(session=s)
    finally:
        engine.dispose()


def result_count(url: str, run_id: int = 1) -> int:
    engine = db.make_engine(url)
    try:
        with engine.connect() as c:
            return int(c.scalar(select(func.count()).select_from(db.Result).where(db.Result.run_id == run_id)) or 0)
    except Exception:  # no tables yet
        return 0
    finally:
        engine.dispose()


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def wait_for_results(url: str, proc: subprocess.Popen, at_least: int) -> None:
    deadline = time.monotonic() + 600
    while result_count(url) < at_least:
        assert proc.poll() is None, (proc.stdout.read() if proc.stdout else "")[-3000:]
        assert time.monotonic() < deadline, "the run committed nothing in time"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def slow_model(tiny_model_dir, tmp_path_factory) -> Path:
    """A model whose greedy answers differ per prompt (the tiny one's weights, perturbed)."""
    return make_varied_model(tiny_model_dir, tmp_path_factory.mktemp("varied"))


@pytest.fixture()
def data(tmp_path) -> Path:
    return write_jsonl(tmp_path / "chat.jsonl", chat_rows(6))


# ---------------------------------------------------------------- 1. models are checked before any work


def test_a_bad_baseline_fails_before_the_candidate_runs_and_leaves_no_run(capsys, tiny_model_dir, data, tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    code, _, err = run_cli(capsys, "run", "--model", str(tiny_model_dir), "--dataset", str(data), "--db", url,
                           "--baseline", "/no/such/model", *FAST)
    assert code == 2
    assert error_line(err).startswith("error: --baseline /no/such/model") and "does not exist" in err
    assert run_rows(url) == []


def test_a_missing_outputs_file_baseline_fails_up_front(capsys, tiny_model_dir, data, tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    code, _, err = run_cli(capsys, "run", "--model", str(tiny_model_dir), "--dataset", str(data), "--db", url,
                           "--baseline", f"outputs:{tmp_path / 'missing.json'}", *FAST)
    assert code == 2 and "missing.json" in error_line(err)
    assert run_rows(url) == []


def test_a_model_directory_without_config_json_says_so_and_leaves_no_run(capsys, tiny_model_dir, data, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_model_dir.iterdir():  # the tokenizer and weights, but no config.json
        if f.name != "config.json":
            shutil.copy(f, broken / f.name)
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    code, _, err = run_cli(capsys, "run", "--model", str(broken), "--dataset", str(data), "--db", url, *FAST)
    assert code == 2
    line = error_line(err)
    assert "has no config.json" in line and "sentencepiece" not in line and "--resume" not in line
    assert run_rows(url) == []


def test_an_uncached_hub_id_offline_says_what_is_missing(capsys, tiny_model_dir, data, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # an empty cache
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    code, _, err = run_cli(capsys, "run", "--model", str(tiny_model_dir), "--dataset", str(data), "--db", url,
                           "--baseline", "some-org/not-downloaded-model", *FAST)
    assert code == 2
    line = error_line(err)
    assert "some-org/not-downloaded-model" in line and "not in the Hugging Face cache" in line
    assert "HF_HUB_OFFLINE is set" in line
    assert run_rows(url) == []


def test_device_cuda_without_cuda_fails_up_front(capsys, tiny_model_dir, data, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal is for machines without it")
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    code, _, err = run_cli(capsys, "run", "--model", str(tiny_model_dir), "--dataset", str(data), "--db", url,
                           "--device", "cuda", *FAST)
    assert code == 2 and "--device cuda: no CUDA device is visible here" in error_line(err)
    assert run_rows(url) == []


def test_an_openai_baseline_is_checked_against_the_endpoint(capsys, tiny_model_dir, data, tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    with ChatStub() as stub:
        stub.models = ["llama3.1:8b"]
        code, _, err = run_cli(capsys, "run", "--model", str(tiny_model_dir), "--dataset", str(data), "--db", url,
                               "--baseline", "openai:llama3.1:80b", "--base-url", stub.base_url, *FAST)
        assert code == 2
        assert "does not serve 'llama3.1:80b' (it serves: llama3.1:8b)" in error_line(err)
        stub.required_key = "right"
        code, _, err = run_cli(capsys, "run", "--model", str(tiny_model_dir), "--dataset", str(data), "--db", url,
                               "--baseline", "openai:llama3.1:8b", "--base-url", stub.base_url, *FAST)
        assert code == 2 and "refused the key (HTTP 401)" in error_line(err)
        closed = stub.base_url
    code, _, err = run_cli(capsys, "run", "--model", str(tiny_model_dir), "--dataset", str(data), "--db", url,
                           "--baseline", "openai:llama3.1:8b", "--base-url", closed, *FAST)
    assert code == 2 and f"cannot reach {closed}" in error_line(err)
    assert run_rows(url) == []


def _crashing_baseline_run(model: Path, data: Path, url: str) -> None:
    """A run as an older version left it: the candidate finished, then its baseline could not load
    (a custom loader skips the up-front check, as the notebook API's in-memory models do)."""
    cfg = build_config(overrides=dict(model=str(model), dataset=str(data), db=url, baselines=["/no/such/model"],
                                      max_new_tokens=4, backend="transformers", metrics=["exact_match"],
                                      perplexity=False))
    with pytest.raises(Exception, match="/no/such/model"):
        run_evaluation(cfg, loader=lambda m, a, **kw: load_backend(m, a, **kw), progress=False)


def test_resume_replaces_a_baseline_that_never_started(capsys, tiny_model_dir, data, tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    _crashing_baseline_run(tiny_model_dir, data, url)
    assert [r["status"] for r in run_rows(url)] == ["finished"]  # the candidate only

    code, _, err = run_cli(capsys, "run", "--resume", "1", "--db", url)  # the same bad baseline
    assert code == 2 and "--baseline /no/such/model" in error_line(err)

    code, out, err = run_cli(capsys, "run", "--resume", "1", "--db", url, "--baseline", str(tiny_model_dir),
                             "--no-progress")
    assert code == 0, err[-2000:]
    assert "(baseline for run 1): finished" in out
    runs = {r["id"]: r for r in run_rows(url)}
    assert runs[2]["baseline_for_id"] == 1 and runs[2]["status"] == "finished"
    assert runs[1]["config"]["baselines"] == [str(tiny_model_dir)]  # a later resume agrees with it
    engine = db.make_engine(url)
    with db.session_factory(engine)() as s:
        assert db.stored_comparisons(session=s, run_a_id=1, run_b_id=2)
    engine.dispose()

    # A baseline that has a run is part of the record: it cannot be swapped out.
    code, _, err = run_cli(capsys, "run", "--resume", "1", "--db", url, "--baseline", "/another/model")
    assert code == 2 and "already has a run in the store" in error_line(err)


# ---------------------------------------------------------------- 2. rejected rows


def test_when_every_row_is_bad_the_error_gives_the_first_reasons_with_line_numbers(capsys, tiny_model_dir,
                                                                                   tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": "not a list"}\n{"messages": []}\nnot json at all\n{"oops": 1}\n')
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    code, _, err = run_cli(capsys, "run", "--model", str(tiny_model_dir), "--dataset", str(bad), "--db", url, *FAST)
    assert code == 2
    line = error_line(err)
    assert "all 4 rows rejected" in line
    assert "row 0 (line 1)" in line and "row 1 (line 2)" in line and "row 2 (line 3)" in line
    assert "and 1 more" in line
    assert run_rows(url) == []


def test_the_rejected_command_lists_each_row_with_its_reason(capsys, tiny_model_dir, tmp_path):
    rows = chat_rows(3)
    data = tmp_path / "mixed.jsonl"
    data.write_text("\n".join([json.dumps(rows[0]), '{"messages": "\x1b[31mnot a list"}', json.dumps(rows[1]),
                               "{broken json", json.dumps(rows[2])]) + "\n")
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    code, _, err = run_cli(capsys, "run", "--model", str(tiny_model_dir), "--dataset", str(data), "--db", url, *FAST)
    assert code == 0, err[-2000:]
    code, out, _ = run_cli(capsys, "rejected", "1", "--db", url)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "run 1: 2 rejected rows"
    assert lines[1].strip().startswith("row 1 (line 2):") and lines[3].strip().startswith("row 3 (line 4):")
    assert "\\x1b[31mnot a list" in out and "\x1b" not in out  # the row as written, never a live escape
    code, out, _ = run_cli(capsys, "rejected", "1", "--db", url, "--json")
    records = [json.loads(x) for x in out.splitlines()]
    assert [r["row_index"] for r in records] == [1, 3] and records[1]["raw"] == "{broken json"


# ---------------------------------------------------------------- 4-5. signals, leases, overlapping writers


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_keeps_committed_batches_and_marks_the_run_interrupted(sig, code, slow_model, tmp_path):
    n = 30
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(n))
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "evaluator", "run", "--model", str(slow_model), "--dataset", str(data), "--db", url,
         "--name", "stopped", "--batch-size", "1", "--max-new-tokens", "12", "--backend", "transformers",
         "--metric", "exact_match", "--no-progress"],
        cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_results(url, proc, 3)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    name = signal.Signals(sig).name
    assert proc.returncode == code, err[-3000:]
    line = error_line(err)
    assert line.startswith(f"stopped: run 1 ('stopped') interrupted by {name}: ")
    assert "python -m evaluator run --resume 1'" in line
    kept = result_count(url)
    assert 3 <= kept < n and f"{kept} of {n} examples are committed" in line
    run = run_rows(url)[0]
    assert run["status"] == "interrupted" and run["error"] == f"interrupted by {name}"
    assert run["writer"] is None  # the lease was given back

    resumed = subprocess.run([sys.executable, "-m", "evaluator", "run", "--resume", "1", "--db", url, "--no-progress"],
                             cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"skipped {kept} already committed" in resumed.stdout
    assert result_count(url) == n and run_rows(url)[0]["status"] == "finished"


def test_a_writer_killed_without_a_word_shows_as_interrupted_once_its_heartbeat_stops(capsys, slow_model, tmp_path,
                                                                                      monkeypatch):
    n = 30
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(n))
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    lease = "4"  # seconds, for the writer and for the readers below; the heartbeat renews every lease / 6
    monkeypatch.setenv("EVAL_LEASE_S", lease)
    proc = subprocess.Popen(
        [sys.executable, "-m", "evaluator", "run", "--model", str(slow_model), "--dataset", str(data), "--db", url,
         "--batch-size", "1", "--max-new-tokens", "12", "--backend", "transformers", "--metric", "exact_match",
         "--no-progress"],
        cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_results(url, proc, 2)
        code, out, _ = run_cli(capsys, "runs", "--db", url, "--status", "running")
        assert code == 0 and out.splitlines()[1].split()[1] == "running"  # alive: its heartbeat is fresh
        proc.kill()  # SIGKILL: no handler runs, nothing is marked
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(float(lease) + 0.5)
    code, out, _ = run_cli(capsys, "runs", "--db", url)
    assert code == 0
    assert "interrupted (no writer since " in out.splitlines()[1]
    code, out, _ = run_cli(capsys, "runs", "--db", url, "--status", "interrupted", "--json")
    record = json.loads(out)
    assert record["status"] == "running" and record["status_text"].startswith("interrupted (no writer since")
    code, out, _ = run_cli(capsys, "runs", "--db", url, "--status", "running")
    assert out.strip() == "no runs in this store"


def test_a_second_resume_of_a_live_run_is_refused_naming_the_writer(capsys, slow_model, tmp_path):
    n = 30
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(n))
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    first = subprocess.Popen(
        [sys.executable, "-m", "evaluator", "run", "--model", str(slow_model), "--dataset", str(data), "--db", url,
         "--name", "busy", "--batch-size", "1", "--max-new-tokens", "12", "--backend", "transformers",
         "--metric", "exact_match", "--no-progress"],
        cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_results(url, first, 2)
        code, _, err = run_cli(capsys, "run", "--resume", "busy", "--db", url, "--no-progress")
        assert code == 2
        line = error_line(err)
        assert line.startswith("error: run 1 is being written by another evaluator")
        assert f"pid {first.pid};" in line
        out, _ = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, out[-3000:]
    run = run_rows(url)[0]
    assert run["status"] == "finished" and run["writer"] is None and result_count(url) == n


# ---------------------------------------------------------------- 9. smaller problems


def _fails_after_first_batch(model, adapter, **kw):
    backend = load_backend(model, adapter, **kw)
    real = backend.generate

    def generate(convs, settings, *, on_batch=None, progress=True):
        def commit(idx, gens):
            on_batch(idx, gens)
            raise RuntimeError("crash after the first batch")
        return real(convs, settings, on_batch=commit, progress=progress)

    backend.generate = generate
    return backend


def test_after_a_resume_the_summary_counts_the_failures_of_the_whole_run(capsys, slow_model, tmp_path):
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(6))
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    cfg = build_config(overrides=dict(model=str(slow_model), dataset=str(data), db=url, max_new_tokens=2,
                                      batch_size=2, backend="transformers", metrics=["exact_match"], perplexity=False))
    with pytest.raises(Exception, match="crash after the first batch"):
        run_evaluation(cfg, loader=_fails_after_first_batch, progress=False)
    assert result_count(url) == 2
    code, out, err = run_cli(capsys, "run", "--resume", "1", "--db", url, "--no-progress")
    assert code == 0, err[-2000:]
    # Two new tokens never finish an answer: every one of the 6 results hit the limit, not just the 4 resumed.
    assert "generated 4 (skipped 2 already committed)" in out
    assert "failures: truncated 6" in out


def test_a_refused_resume_adds_nothing_to_the_dataset(capsys, tiny_model_dir, tmp_path):
    rows = chat_rows(4)
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    cfg = build_config(overrides=dict(model=str(tiny_model_dir), dataset=str(data), db=url, max_new_tokens=2,
                                      batch_size=2, backend="transformers", metrics=["exact_match"], perplexity=False))
    with pytest.raises(Exception, match="crash after the first batch"):
        run_evaluation(cfg, loader=_fails_after_first_batch, progress=False)
    rows[3]["messages"][-1]["content"] = "an edited reference"
    write_jsonl(data, rows)
    code, _, err = run_cli(capsys, "run", "--resume", "1", "--db", url)
    assert code == 2 and "the dataset changed since run 1 started" in error_line(err)
    engine = db.make_engine(url)
    with engine.connect() as c:
        assert c.scalar(select(func.count()).select_from(db.ExampleRow)) == 4
    engine.dispose()
