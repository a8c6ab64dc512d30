"""Missing, empty, older, newer, foreign and busy stores give a message on the page, never a traceback."""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

import db
from tests.support.dashboard_seed import seed_store

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
PAGES = ["views/runs.py", "views/browser.py", "views/compare.py", "views/errors.py", "views/history.py",
         "views/review.py"]


def _run_all_pages(url, monkeypatch) -> Iterator[AppTest]:
    """Each page in turn (the same AppTest, switched): check it before asking for the next."""
    monkeypatch.setenv("EVAL_DB_URL", url)
    at = AppTest.from_file(APP, default_timeout=60).run()
    yield at
    for page in PAGES[1:]:
        at.switch_page(page).run()
        yield at


def _errors(at) -> list[str]:
    return [e.value for e in at.error]


def _expect_message(url, monkeypatch, fragment):
    for at in _run_all_pages(url, monkeypatch):
        assert not at.exception, at.exception
        errors = _errors(at)
        assert len(errors) == 1 and fragment in errors[0], errors


def test_no_store(tmp_path, monkeypatch):
    _expect_message(f"sqlite:///{tmp_path / 'missing.sqlite'}", monkeypatch, "no store at")


def test_missing_directory(tmp_path, monkeypatch):
    _expect_message(f"sqlite:///{tmp_path / 'nope' / 'x.sqlite'}", monkeypatch, "no store at")


def test_empty_store(tmp_path, monkeypatch):
    path = tmp_path / "empty.sqlite"
    sqlite3.connect(path).close()
    _expect_message(f"sqlite:///{path}", monkeypatch, "the store is empty")


def test_not_a_store(tmp_path, monkeypatch):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (x TEXT)")
    _expect_message(f"sqlite:///{path}", monkeypatch, "not a store of this tool")


def test_corrupt_file(tmp_path, monkeypatch):
    path = tmp_path / "corrupt.sqlite"
    path.write_bytes(b"this is not a database at all" * 100)
    _expect_message(f"sqlite:///{path}", monkeypatch, "not a store")


def _stamp(url, revision):
    engine = db.make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    engine.dispose()


def test_store_from_a_newer_version(store_url, monkeypatch):
    _stamp(store_url, "ffffffffffff")
    _expect_message(store_url, monkeypatch, "newer version")


def test_store_from_an_older_version(store_url, monkeypatch):
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(APP).parent.parent / "migrations"))
    revisions = [r.revision for r in ScriptDirectory.from_config(cfg).walk_revisions()]
    if len(revisions) < 2:
        pytest.skip("only one schema revision exists")
    _stamp(store_url, revisions[-1])  # the first revision
    _expect_message(store_url, monkeypatch, "older than this code")


def test_migrated_store_without_runs(store_url, monkeypatch):
    for at in _run_all_pages(store_url, monkeypatch):
        assert not at.exception and not at.error
        assert any("no runs" in i.value or "two runs" in i.value for i in at.info)


def test_store_being_written_right_now(tmp_path, monkeypatch):
    """A writer holds an open transaction with new rows: pages show what is committed, nothing breaks."""
    url = f"sqlite:///{tmp_path / 'busy.sqlite'}"
    ids = seed_store(url, n_examples=20, versions=1)
    engine = db.make_engine(url)
    Session = db.session_factory(engine)
    s = Session()
    try:
        s.begin()
        run = db.create_run(session=s, name="in-flight", model="m", backend="transformers", dataset_id=ids["dataset_id"])
        db.insert_results(session=s, run_id=run, results=[
            dict(example_id=e, output="partial", output_tokens=1, finish_reason="stop", metrics={"bleu": 1.0})
            for e in ids["example_ids"][:5]])
        s.flush()  # rows written, transaction (and SQLite's write lock) held open
        for i, at in enumerate(_run_all_pages(url, monkeypatch)):
            assert not at.exception and not at.error
            if i == 0:
                assert "in-flight" not in set(at.dataframe[0].value["name"])
    finally:
        s.rollback()
        s.close()
        engine.dispose()


def test_errors_inside_a_page_become_a_message(monkeypatch, tmp_path):
    def page():
        from sqlalchemy.exc import OperationalError

        from dashboard import _store

        with _store.guard():
            raise OperationalError("SELECT 1", {}, Exception("database is locked"))

    at = AppTest.from_function(page, default_timeout=30).run()
    assert not at.exception
    assert "busy" in at.error[0].value and "reload" in at.error[0].value


def test_a_path_in_an_error_message_is_not_markdown(tmp_path, monkeypatch):
    odd = tmp_path / "[x](javascript:alert(1)) **b**"
    odd.mkdir()
    for at in _run_all_pages(f"sqlite:///{odd / 'missing.sqlite'}", monkeypatch):
        assert not at.exception
        body = at.error[0].value
        assert "\\[x\\]\\(javascript\\:alert\\(1\\)\\) \\*\\*b\\*\\*" in body
