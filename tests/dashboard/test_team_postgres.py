"""A team store on PostgreSQL with least-privilege roles (scripts/pg_team_roles.sql, docs/deploying.md): the
dashboard browses every page through the read-only role, writes through the review role only what reviewers
write, and a write through the wrong role fails with a message that says so."""
from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError
from streamlit.testing.v1 import AppTest

import db
from tests.dashboard.test_postgres import _views
from tests.dashboard.test_team import AUTH
from tests.support.dashboard_seed import seed_store
from tests.support.review_data import APP

ROLES_SQL = Path(__file__).resolve().parents[2] / "scripts" / "pg_team_roles.sql"


@pytest.fixture(scope="module")
def team_store(pg_module_url, tmp_path_factory):
    """A seeded store with a saved view, the two roles granted on it, and a roles file."""
    ids = seed_store(pg_module_url, n_examples=40, versions=3)
    engine = db.open_store(pg_module_url)
    with db.session_factory(engine).begin() as s:
        db.save_view(session=s, name="support, rouge_l >= 0.5",
                     params={"run": str(ids["latest"]), "category": "support", "range": "rouge_l:0.5:"},
                     created_by="dana")
    engine.dispose()
    owner = make_url(pg_module_url)
    with psycopg.connect(host=owner.host, port=owner.port, user=owner.username, dbname=owner.database,
                         autocommit=True) as conn:
        conn.execute(ROLES_SQL.read_text())
    roles = tmp_path_factory.mktemp("roles") / "roles.toml"
    roles.write_text('admins = ["ana@team.example"]\nreviewers = ["@team.example"]\n')
    as_role = {r: owner.set(username=r).render_as_string(hide_password=False)
               for r in ("evalbench_read", "evalbench_review")}
    return ids, as_role, roles


def _open(page: str, params: dict, email: str = "ana@team.example") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["auth"] = AUTH
    at.user = {"is_logged_in": True, "email": email}
    at.switch_page(f"views/{page}.py")
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def test_the_read_role_browses_every_page_and_writes_are_off(team_store, monkeypatch):
    ids, as_role, roles = team_store
    monkeypatch.setenv(db.ENV_VAR, as_role["evalbench_read"])
    monkeypatch.setenv("EVAL_ROLES_FILE", str(roles))
    monkeypatch.delenv("EVAL_DB_WRITE_URL", raising=False)
    for page, params in _views(ids):
        at = _open(page, params)
        where = f"{page} {params}"
        assert not at.exception, f"{where}: {at.exception}"
        assert not at.error, f"{where}: {[e.value for e in at.error]}"
        assert any("writes are off" in i.value for i in at.sidebar.info), where


def test_a_write_through_the_read_role_fails_with_a_clear_message(team_store, monkeypatch):
    ids, as_role, roles = team_store
    monkeypatch.setenv(db.ENV_VAR, as_role["evalbench_read"])
    monkeypatch.setenv("EVAL_DB_WRITE_URL", as_role["evalbench_read"])  # misconfigured: the read role to write
    monkeypatch.setenv("EVAL_ROLES_FILE", str(roles))
    at = _open("review", {"view": "support, rouge_l >= 0.5", "pos": "1"}, "bo@team.example")
    at.button(key="review_key_1").click().run()
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert "not allowed to write" in error and "permission denied for table annotations" in error
    assert "write URL" in error


def test_the_review_role_writes_verdicts_views_and_thresholds_and_nothing_else(team_store, monkeypatch):
    ids, as_role, roles = team_store
    monkeypatch.setenv(db.ENV_VAR, as_role["evalbench_read"])
    monkeypatch.setenv("EVAL_DB_WRITE_URL", as_role["evalbench_review"])
    monkeypatch.setenv("EVAL_ROLES_FILE", str(roles))
    at = _open("review", {"view": "support, rouge_l >= 0.5", "pos": "1"}, "bo@team.example")
    at.button(key="review_key_1").click().run()
    assert not at.exception and not at.error
    engine = db.make_engine(as_role["evalbench_review"])
    with db.session_factory(engine).begin() as s:
        log = db.decision_log(session=s, run_ids=[ids["latest"]])
        assert [r["verdict"] for r in log if r["reviewer"] == "bo@team.example"] == ["pass"]
        db.save_view(session=s, name="a queue", params={"run": str(ids["latest"])}, created_by="bo@team.example")
        db.set_pass_threshold(session=s, dataset_id=ids["dataset_id"], metric="bleu", threshold=20.0,
                              set_by="bo@team.example")
    for statement in ("UPDATE runs SET name = 'x'", "DELETE FROM results", "DROP TABLE annotations"):
        with pytest.raises(ProgrammingError, match="permission denied|must be owner"):
            with engine.begin() as conn:
                conn.execute(text(statement))
    engine.dispose()
