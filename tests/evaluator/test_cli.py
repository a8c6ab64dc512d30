"""``python -m evaluator run`` end to end into a temp store, then ``runs`` and ``export`` (all formats)."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import db
from evaluator.cli import build_parser, main
from tests.support.runner import CHAT_JSONL

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def finished_store(tiny_model_dir, tmp_path_factory):
    """A store filled by a real ``python -m evaluator run`` (candidate + one baseline)."""
    pytest.importorskip("torch")
    tmp = tmp_path_factory.mktemp("cli")
    cfg = tmp / "eval.yaml"
    cfg.write_text(f"model: {tiny_model_dir}\ndataset: {CHAT_JSONL}\nmax_new_tokens: 64\nbackend: transformers\n"
                   "metrics: [exact_match, token_f1, perplexity]\n")
    url = f"sqlite:///{tmp / 'store.sqlite'}"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "evaluator", "run", "--config", str(cfg), "--db", url, "--name", "cli-run",
         "--max-new-tokens", "5", "--batch-size", "auto", "--baseline", str(tiny_model_dir), "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return url, proc


def _run_cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_run_prints_a_summary_of_rows_failures_and_time(finished_store):
    _, proc = finished_store
    assert "run 1 'cli-run': finished" in proc.stdout
    assert "rows in 13 = 12 examples + 1 rejected" in proc.stdout
    assert "failures:" in proc.stdout and "tok/s" in proc.stdout
    assert "run 2 'tiny-llama" in proc.stdout and "(baseline for run 1)" in proc.stdout


def test_flags_override_the_config_file_and_the_config_is_stored(finished_store):
    url, _ = finished_store
    engine = db.make_engine(url)
    try:
        with db.session_factory(engine)() as s:
            run = db.get_run(session=s, run_id=1)
    finally:
        engine.dispose()
    assert run["config"]["max_new_tokens"] == 5  # flag over the file's 64
    assert run["config"]["metrics"] == ["exact_match", "token_f1", "perplexity"]  # from the file
    assert run["generation"]["max_new_tokens"] == 5


def test_runs_json_gives_one_object_per_run(finished_store, capsys):
    url, _ = finished_store
    code, out, _ = _run_cli(["runs", "--db", url, "--json"], capsys)
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in records] == [2, 1]
    cand = records[1]
    for key in ("id", "name", "model", "adapter", "dataset", "status", "counts", "created_at", "finished_at",
                "metrics", "aggregates"):
        assert key in cand
    assert cand["status"] == "finished" and cand["name"] == "cli-run"
    assert cand["counts"] == {"rows": 13, "examples": 12, "rejected": 1, "results": 12, "errors": 0}
    assert set(cand["metrics"]) >= {"exact_match", "token_f1", "perplexity"}
    assert records[0]["baseline_for_id"] == 1


def test_runs_table(finished_store, capsys):
    url, _ = finished_store
    code, out, _ = _run_cli(["runs", "--db", url], capsys)
    assert code == 0 and "cli-run" in out and "12/12" in out


def _check_record(rec):
    assert rec["run_id"] == 1 and len(rec["example_key"]) >= 16
    assert isinstance(rec["messages"], list) and rec["messages"][-1]["role"] == "user"
    assert rec["finish_reason"] in ("stop", "length", "error")
    assert isinstance(rec["output_tokens"], int)
    assert set(rec["metrics"]) >= {"exact_match", "token_f1", "perplexity"}


def test_export_jsonl(finished_store, capsys):
    url, _ = finished_store
    code, out, err = _run_cli(["export", "1", "--format", "jsonl", "--db", url], capsys)
    assert code == 0 and "exported 12 records" in err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 12 and len({r["example_key"] for r in records}) == 12
    for rec in records:
        _check_record(rec)
    assert [r["row_index"] for r in records] == sorted(r["row_index"] for r in records)


def test_export_csv_by_name(finished_store, capsys, tmp_path):
    url, _ = finished_store
    path = tmp_path / "out.csv"
    code, _, _ = _run_cli(["export", "cli-run", "-o", str(path), "--db", url], capsys)  # format from the suffix
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert len(rows) == 12
    assert {"metric.exact_match", "metric.perplexity", "messages", "output", "finish_reason"} <= set(rows[0])
    assert json.loads(rows[0]["messages"])[-1]["role"] == "user"


def test_export_parquet(finished_store, capsys, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    url, _ = finished_store
    path = tmp_path / "out.parquet"
    code, _, _ = _run_cli(["export", "1", "--format", "parquet", "-o", str(path), "--db", url], capsys)
    assert code == 0
    records = pq.read_table(path).to_pylist()
    assert len(records) == 12
    for rec in records:
        _check_record(rec)
    assert all(len(r["token_logprobs"]) == r["output_tokens"] for r in records)


def test_export_of_an_unknown_run_is_one_line(finished_store, capsys):
    url, _ = finished_store
    code, _, err = _run_cli(["export", "nope", "--db", url], capsys)
    assert code == 2 and err.strip().startswith("error: no run 'nope'") and err.count("\n") == 1


def test_run_with_an_unknown_config_key_is_one_line_error(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: m\ndataset: d\nbatchsize: 4\n")
    code, _, err = _run_cli(["run", "--config", str(cfg), "--db", f"sqlite:///{tmp_path / 's.sqlite'}"], capsys)
    assert code == 2 and "unknown key 'batchsize'" in err and err.count("\n") == 1


def test_run_with_a_missing_model_dir_is_one_line_error(tmp_path, capsys):
    code, _, err = _run_cli(["run", "--model", str(tmp_path / "none"), "--dataset", str(CHAT_JSONL),
                             "--backend", "transformers", "--db", f"sqlite:///{tmp_path / 's.sqlite'}"], capsys)
    assert code == 2 and "does not exist" in err and err.count("\n") == 1


@pytest.mark.parametrize("command", ["run", "runs", "export"])
def test_every_command_has_examples_in_its_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"python -m evaluator {command}" in out


def test_help_does_not_import_torch():
    code = ("import sys; from evaluator.cli import build_parser; build_parser().format_help(); "
            "print(sorted(m for m in ('torch', 'transformers', 'unsloth') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "[]", out.stderr


def _user_error_types() -> list[type]:
    from evaluator._import import ImportFileError
    from evaluator._lease import RunBusyError
    from evaluator.config import ConfigError
    from evaluator.data import DataError
    from evaluator.models import BackendError, ChatTemplateError, ModelResolutionError
    from evaluator.models._outputs import OutputsFileError

    return [db.StoreError, db.AnnotationError, ConfigError, RunBusyError, DataError, BackendError,
            ChatTemplateError, ModelResolutionError, ImportFileError, OutputsFileError]


@pytest.mark.parametrize("error", _user_error_types(), ids=lambda t: t.__name__)
def test_every_user_error_is_one_line_and_status_2_from_any_command(error, monkeypatch, capsys):
    """One type (evaluator.errors.UserError), handled once in cli.main, for every command."""
    from evaluator.commands import runs as runs_cmd
    from evaluator.errors import UserError

    assert issubclass(error, UserError)

    def fails(args):
        raise error("the store at X is read-only: pass --db with a writable path")

    monkeypatch.setattr(runs_cmd, "main", fails)
    assert main(["runs"]) == 2
    err = capsys.readouterr().err
    assert err == "error: the store at X is read-only: pass --db with a writable path\n"


def test_an_error_that_is_not_the_users_keeps_its_traceback(monkeypatch):
    from evaluator.commands import runs as runs_cmd

    def fails(args):
        raise KeyError("a bug")

    monkeypatch.setattr(runs_cmd, "main", fails)
    with pytest.raises(KeyError):
        main(["runs"])
