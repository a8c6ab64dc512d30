"""Store-side failure modes a user meets early: spreadsheet formulas in exports, a read-only store,
an unsupported URL, LIKE wildcards and NUL in searches, terminal escapes in run names, a store
stamped at an older revision. Each asserts what the user sees: exit code, one-line message, data."""
from __future__ import annotations

import csv
import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from alembic import command
from streamlit.testing.v1 import AppTest

import db
from dashboard import _store
from evaluator import cli

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")
HOSTILE_OUTPUTS = ["=HYPERLINK(\"http://x\",\"click\")", "+1+1", "-2+3", "@SUM(A1:A2)", "\tTAB", "plain answer"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def seed(url: str, *, run_names=("cand",), outputs=HOSTILE_OUTPUTS) -> dict:
    """A finished run per name over one small dataset, with the given outputs and a negative metric."""
    engine = db.open_store(url)
    try:
        with db.session_factory(engine).begin() as s:
            ds = db.get_or_create_dataset(session=s, name="data.jsonl", split="test")
            keys = db.upsert_examples(session=s, dataset_id=ds, examples=[
                dict(key=f"k{i}", row_index=i, messages=[{"role": "user", "content": f"=question {i}"}],
                     reference=f"answer {i}", category="-cat") for i in range(len(outputs))])
            ids = {}
            for name in run_names:
                rid = db.create_run(session=s, name=name, model=f"org/{name}", backend="transformers", dataset_id=ds)
                db.insert_results(session=s, run_id=rid, results=[
                    dict(example_id=keys[f"k{i}"], output=out, output_tokens=2, finish_reason="stop",
                         metrics={"delta_score": -0.5 - i}) for i, out in enumerate(outputs)],
                    higher_is_better={"delta_score": True})
                db.update_run(session=s, run_id=rid, status="finished", n_rows=len(outputs), n_examples=len(outputs))
                ids[name] = rid
        return ids
    finally:
        engine.dispose()


# ---------------------------------------------------------------- 3. CSV formula injection


def test_export_csv_defuses_formulas_and_keeps_numbers(capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    seed(url)
    path = tmp_path / "out.csv"
    code, _, _ = run_cli(capsys, "export", "1", "-o", str(path), "--db", url)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert [r["output"] for r in rows] == ["'" + o if o[0] in "=+-@\t" else o for o in HOSTILE_OUTPUTS]
    assert {r["category"] for r in rows} == {"'-cat"}
    assert [float(r["metric.delta_score"]) for r in rows] == [-0.5 - i for i in range(len(rows))]  # numbers stay
    code, out, _ = run_cli(capsys, "export", "1", "--format", "jsonl", "--db", url)
    assert [json.loads(x)["output"] for x in out.splitlines()] == HOSTILE_OUTPUTS  # JSONL keeps the data as is


def test_example_browser_csv_download_defuses_formulas(tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    seed(url)
    frame = pd.read_csv(io.BytesIO(_store.export_csv(url, db.ResultQuery(run_id=1))()), keep_default_na=False)
    assert sorted(frame["output"]) == sorted("'" + o if o[0] in "=+-@\t" else o for o in HOSTILE_OUTPUTS)
    texts = [v for col in frame.columns for v in frame[col] if isinstance(v, str)]
    assert texts and not any(v.startswith(("=", "+", "-", "@", "\t")) for v in texts)


# ---------------------------------------------------------------- 7. a read-only store


def _readonly(argv: list[str], store_dir: Path) -> list[str]:
    """``argv`` run where ``store_dir`` cannot be written. Root may write any file whatever its mode, so as
    root the command runs in a private mount namespace with the directory bind-mounted read-only (a
    read-only mount, as a shared archive is); otherwise the directory and file modes are enough."""
    if os.geteuid() != 0:
        return argv
    d = shlex.quote(str(store_dir))
    inner = f"mount --bind {d} {d} && mount -o remount,bind,ro {d} && exec {shlex.join(argv)}"
    return ["unshare", "--mount", "sh", "-c", inner]


def _cli(args: list[str], store_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return subprocess.run(_readonly([sys.executable, "-m", "evaluator", *args], store_dir), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture()
def readonly_store(tmp_path):
    """A store in a directory that cannot be written: 0555 directory, 0444 file, and for root a
    read-only mount (an archive, a shared read-only volume)."""
    store_dir = tmp_path / "archive"
    store_dir.mkdir()
    url = f"sqlite:///{store_dir / 'store.sqlite'}"
    seed(url)
    assert not (store_dir / "store.sqlite-wal").exists()  # the last connection checkpointed it
    (store_dir / "store.sqlite").chmod(0o444)
    store_dir.chmod(0o555)
    try:
        yield url, store_dir / "store.sqlite"
    finally:
        store_dir.chmod(0o755)


def test_a_read_only_store_can_be_listed_and_exported_but_not_written(readonly_store):
    url, path = readonly_store
    listed = _cli(["runs", "--db", url], path.parent)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "cand" in listed.stdout and "unable to open" not in listed.stderr
    assert "is read-only here" in listed.stderr and "opened read-only" in listed.stderr  # it says so
    exported = _cli(["export", "1", "--format", "jsonl", "--db", url], path.parent)
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert len(exported.stdout.splitlines()) == len(HOSTILE_OUTPUTS)
    written = _cli(["score", "1", "--db", url], path.parent)
    assert written.returncode == 2
    assert written.stderr.strip().splitlines()[-1].startswith(f"error: the store {path} is read-only here")
    assert sorted(p.name for p in path.parent.iterdir()) == ["store.sqlite"]  # nothing was created beside it


DASHBOARD_SCRIPT = """
import json, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=60).run()
print(json.dumps({"exception": [str(e.value) for e in at.exception], "error": [e.value for e in at.error],
                  "title": [t.value for t in at.title], "tables": len(at.dataframe)}))
"""


def test_the_dashboard_reads_a_read_only_store(readonly_store):
    url, path = readonly_store
    env = dict(os.environ, EVAL_DB_URL=url, PYTHONPATH=str(ROOT))
    proc = subprocess.run(_readonly([sys.executable, "-c", DASHBOARD_SCRIPT, APP], path.parent), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = json.loads(proc.stdout.strip().splitlines()[-1])
    assert page == {"exception": [], "error": [], "title": ["Runs and trends"], "tables": 1}


# ---------------------------------------------------------------- 8. unsupported URLs


def test_an_unsupported_store_url_is_one_line_naming_the_supported_ones(capsys):
    for command_line in (["runs", "--db", "mysql://user:secret@host/evals"],
                         ["export", "1", "--db", "mysql://user:secret@host/evals"]):
        code, _, err = run_cli(capsys, *command_line)
        assert code == 2
        assert err.strip() == ("error: store URL 'mysql://user:***@host/evals': mysql is not supported; use "
                               f"{db._engine.SUPPORTED}")


def test_the_dashboard_on_an_unsupported_url_shows_a_message(monkeypatch):
    monkeypatch.setenv("EVAL_DB_URL", "mysql://user:secret@host/evals")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert len(at.error) == 1 and "is not supported" in at.error[0].value and "secret" not in at.error[0].value


# ---------------------------------------------------------------- 9. searches and terminal output


def test_runs_model_filter_takes_wildcards_literally(capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    seed(url, run_names=("plain", "with_underscore", "hundred%"), outputs=["x"])
    for needle, expected in (("_", {"with_underscore"}), ("%", {"hundred%"}), ("plain", {"plain"})):
        code, out, _ = run_cli(capsys, "runs", "--db", url, "--model", needle, "--json")
        assert code == 0 and {json.loads(x)["name"] for x in out.splitlines()} == expected, needle


def test_a_nul_character_in_a_search_matches_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    seed(url)
    engine = db.open_store_readonly(url)
    try:
        with db.session_factory(engine)() as s:
            assert db.count_results(session=s, query=db.ResultQuery(run_id=1, text="plain")) == 1
            assert db.count_results(session=s, query=db.ResultQuery(run_id=1, text="\x00")) == 0
            assert db.count_results(session=s, query=db.ResultQuery(run_id=1, text="plain\x00")) == 0
            assert db.count_results(session=s, query=db.ResultQuery(run_id=1, tag="\x00")) == 0
            assert db.find_examples(session=s, dataset_id=1, text="\x00") == []
            assert db.list_runs(session=s, model="\x00") == []
    finally:
        engine.dispose()


def test_runs_never_prints_terminal_escapes_from_a_run_name(capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    seed(url, run_names=("evil\x1b]0;owned\x07\x1b[2J\x9b31m",), outputs=["x"])
    code, out, _ = run_cli(capsys, "runs", "--db", url)
    assert code == 0
    assert not any(ch in out for ch in "\x1b\x07\x9b")
    assert "evil\\x1b]0;owned\\x07\\x1b[2J\\x9b31m" in out
    code, out, _ = run_cli(capsys, "runs", "--db", url, "--json")
    assert not any(ch in out for ch in "\x1b\x07\x9b")
    assert json.loads(out)["name"] == "evil\x1b]0;owned\x07\x1b[2J\x9b31m"  # the data itself is intact


# ---------------------------------------------------------------- a store stamped at an older revision


def test_a_store_stamped_at_an_older_revision_gives_one_line_and_changes_nothing(capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    seed(url)
    engine = db.make_engine(url)
    cfg = db._engine._alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.stamp(cfg, "d8fede65d34f")  # two revisions back, with the tables of head
    engine.dispose()
    code, _, err = run_cli(capsys, "score", "1", "--db", url)
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: migrating the store from schema d8fede65d34f to ")
    assert "alembic stamp head" in line and "Traceback" not in err
    engine = db.make_engine(url)
    try:
        assert db.current_revision(engine) == "d8fede65d34f"  # rolled back whole
    finally:
        engine.dispose()
