"""A password in a store URL never reaches what a user or a log reader sees: the CLI's output and its debug
log on a live PostgreSQL store (the test server trusts local connections, so it ignores the password that
the client still sends) and on an unreachable one, and the dashboard's messages for both."""
from __future__ import annotations

import logging

from sqlalchemy.engine import make_url
from streamlit.testing.v1 import AppTest

import db
from evaluator import cli
from tests.evaluator.test_failure_modes import FAST, data  # noqa: F401 (a fixture)
from tests.support.browser import free_port
from tests.support.review_data import APP, RunSpec, make_store

SECRET = "pw-s3cr3t-7f1"


def _with_password(url: str) -> str:
    return make_url(url).set(password=SECRET).render_as_string(hide_password=False)


def _unreachable() -> str:
    return f"postgresql+psycopg://evalbench:{SECRET}@127.0.0.1:{free_port()}/team"


def test_cli_output_and_debug_log_never_show_the_password(pg_url, tiny_model_dir, data, tmp_path,  # noqa: F811
                                                          capsys, caplog):
    url = _with_password(pg_url)
    caplog.set_level(logging.DEBUG)
    commands = [["-v", "run", "--model", str(tiny_model_dir), "--dataset", str(data), "--db", url, "--name", "a",
                 *FAST],
                ["-v", "runs", "--db", url],
                ["-v", "export", "a", "--db", url, "-o", str(tmp_path / "a.jsonl")],
                ["-v", "runs", "--db", _unreachable()],
                ["-v", "runs", "--db", url.replace(str(make_url(url).port), "notaport")]]
    codes = []
    for argv in commands:
        codes.append(cli.main(argv))
        out, err = capsys.readouterr()
        assert SECRET not in out + err, argv[1:3]
    assert codes[:3] == [0, 0, 0] and codes[3:] == [2, 2]
    assert caplog.records and not [r for r in caplog.records if SECRET in r.getMessage()]
    assert SECRET not in (tmp_path / "a.jsonl").read_text()


def test_the_dashboard_never_shows_the_password(pg_url, monkeypatch):
    ids = make_store(pg_url, [RunSpec("v1", metrics={"bleu": [10.0, 60.0]})], n_examples=2)
    engine = db.make_engine(pg_url)
    with db.session_factory(engine).begin() as s:
        db.save_view(session=s, name="v1", params={"run": str(ids["runs"]["v1"])}, created_by="setup")
    engine.dispose()
    monkeypatch.setenv(db.ENV_VAR, _unreachable())  # the store cannot be read
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception and len(at.error) == 1 and SECRET not in at.error[0].value
    assert "could not" in at.error[0].value or "connect" in at.error[0].value

    monkeypatch.setenv(db.ENV_VAR, pg_url)
    monkeypatch.setenv("EVAL_DB_WRITE_URL", _unreachable())  # it can be read, not written
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("views/review.py")
    at.query_params.update({"view": "v1", "pos": "1", "reviewer": "ann"})
    at.run()
    at.button(key="review_key_1").click().run()
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert error.startswith("verdict not saved") and SECRET not in error
