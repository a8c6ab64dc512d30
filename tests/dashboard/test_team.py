"""Sign-in and roles under AppTest: st.user and the [auth] secrets as Streamlit's own test harness sets them
(the real sign-in flow against an OpenID provider is tests/e2e/test_sign_in.py)."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

import db
from dashboard import _auth
from tests.support.review_data import APP, RunSpec, make_store

AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "test-only-secret",
        "client_id": "evalbench", "client_secret": "test-only", "server_metadata_url":
            "http://localhost:1/.well-known/openid-configuration"}


@pytest.fixture()
def team(store_url, tmp_path, monkeypatch):
    """A store with one run and a saved review queue, a roles file, and the write URL set."""
    ids = make_store(store_url, [RunSpec("v1", metrics={"bleu": [10.0, 60.0, 30.0]})], n_examples=3,
                     higher_is_better={"bleu": True})
    run = ids["runs"]["v1"]
    engine = db.make_engine(store_url)
    with db.session_factory(engine).begin() as s:
        db.save_view(session=s, name="all of v1", params={"run": str(run)}, created_by="setup")
    engine.dispose()
    roles = tmp_path / "roles.toml"
    roles.write_text('admins = ["ana@example.com"]\nreviewers = ["bo@example.com", "@reviewers.example"]\n')
    monkeypatch.setenv(_auth.ROLES_ENV, str(roles))
    monkeypatch.setenv(db.ENV_VAR, store_url)
    monkeypatch.setenv("EVAL_DB_WRITE_URL", store_url)
    return dict(ids, run=run, roles=roles, url=store_url)


def _app(page: str, email=None, *, sign_in=True, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if sign_in:
        at.secrets["auth"] = AUTH
    at.user = {"is_logged_in": True, "email": email} if email else {"is_logged_in": False}
    at.switch_page(f"views/{page}.py")
    for k, v in params.items():
        at.query_params[k] = str(v)
    return at.run()


def _annotations(url: str, run_id: int) -> list[tuple[str, str]]:
    engine = db.make_engine(url)
    with db.session_factory(engine)() as s:
        rows = db.decision_log(session=s, run_ids=[run_id])
    engine.dispose()
    return [(r["reviewer"], r["verdict"]) for r in rows]


@pytest.mark.parametrize("email,role", [("ana@example.com", "admin"), ("BO@example.com", "reviewer"),
                                        ("cy@reviewers.example", "reviewer"), ("dee@example.com", "viewer"),
                                        ("eve@evil.example", "viewer"), ("no-at-sign", "viewer")])
def test_roles_by_email_or_domain(email, role):
    roles = {"admins": ["ana@example.com"], "reviewers": ["bo@example.com", "@reviewers.example"]}
    assert _auth.role_of(email, roles) == role


def test_a_broken_roles_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "roles.toml"
    bad.write_text('reviewers = "bo@example.com"\n')
    with pytest.raises(ValueError, match="must be a list"):
        _auth.load_roles(bad)
    bad.write_text("reviewers = [\n")
    with pytest.raises(ValueError, match="could not be read"):
        _auth.load_roles(bad)
    assert _auth.load_roles(tmp_path / "missing.toml") == {"admins": [], "reviewers": []}


def test_signed_out_visitors_see_only_the_sign_in_button(team):
    for page in ("runs", "browser", "review", "team"):
        at = _app(page)
        assert not at.exception
        assert [t.value for t in at.title] == ["Sign in"] and at.button(key="auth_login")
        assert not at.dataframe and not at.metric


def test_local_mode_says_it_is_unauthenticated_and_keeps_the_typed_name(team):
    at = _app("review", sign_in=False, view="all of v1", pos=1)
    assert not at.exception
    assert any("Local single-user mode" in c.value for c in at.sidebar.caption)
    at.text_input(key="review_reviewer").set_value("typed name").run()
    at.button(key="review_key_1").click().run()
    assert not at.exception and _annotations(team["url"], team["run"]) == [("typed name", "pass")]


def test_a_reviewer_records_verdicts_under_the_signed_in_email(team):
    at = _app("review", "bo@example.com", view="all of v1", pos=1)
    assert not at.exception
    assert any("Signed in as bo@example.com · reviewer" in t.value for t in at.sidebar.text)
    at.button(key="review_key_2").click().run()
    assert not at.exception
    assert _annotations(team["url"], team["run"]) == [("bo@example.com", "fail: model error")]


def test_a_viewer_can_browse_but_not_write_even_by_calling_the_write_path(team):
    at = _app("review", "dee@example.com", view="all of v1", pos=1)
    assert not at.exception
    assert not [b for b in at.button if b.key and b.key.startswith("review_key_")]  # no verdict buttons
    assert any("You are a viewer" in i.value for i in at.sidebar.info)
    for page in ("runs", "browser", "compare", "errors", "history"):
        assert not _app(page, "dee@example.com").exception

    def write_anyway(run_id, example_id):  # what a page would do if it forgot to hide its button
        import streamlit as st

        from dashboard import _review, _store

        st.text(str(_review.record_verdict(lambda: _store.write_session(), run_id=run_id, example_id=example_id,
                                           reviewer="dee@example.com", verdict="pass")))

    direct = AppTest.from_function(write_anyway, args=(team["run"], team["example_ids"][0]), default_timeout=60)
    direct.secrets["auth"] = AUTH
    direct.user = {"is_logged_in": True, "email": "dee@example.com"}
    direct.run()
    assert not direct.exception
    assert "dee@example.com is a viewer" in direct.text[0].value
    assert _annotations(team["url"], team["run"]) == []


def test_without_a_write_url_every_page_is_read_only_and_says_why(team, monkeypatch):
    monkeypatch.delenv("EVAL_DB_WRITE_URL")
    at = _app("review", "ana@example.com", view="all of v1", pos=1)
    assert not at.exception
    assert any("writes are off" in i.value for i in at.sidebar.info)
    assert not [b for b in at.button if b.key and b.key.startswith("review_key_")]
    at = _app("errors", "ana@example.com", run=team["run"], metric="bleu")
    assert not at.exception and not [b for b in at.button if "pass threshold" in (b.label or "")]


def test_an_admin_edits_the_role_list_and_a_reviewer_cannot(team):
    at = _app("team", "ana@example.com")
    assert not at.exception
    at.text_area(key="team_reviewers").set_value("bo@example.com\ndee@example.com").run()
    at.button(key="team_save").click().run()
    assert not at.exception and any("Saved" in s.value for s in at.success)
    assert _auth.load_roles(team["roles"])["reviewers"] == ["bo@example.com", "dee@example.com"]
    at.text_area(key="team_admins").set_value("someone@else.example").run()
    at.button(key="team_save").click().run()
    assert any("Keep yourself among the admins" in e.value for e in at.error)
    at = _app("team", "bo@example.com")
    assert not at.exception and not [b for b in at.button if b.key == "team_save"]
    assert any("Only an admin" in c.value for c in at.caption)


def test_thresholds_and_queues_are_stored_under_the_signed_in_email(team):
    at = _app("errors", "cy@reviewers.example", run=team["run"], metric="bleu")
    (box,) = [n for n in at.number_input if n.label.startswith("Pass threshold (value")]
    box.set_value(35.0).run()
    (save,) = [b for b in at.button if b.label.startswith("Store 35 as bleu")]
    save.click().run()
    assert not at.exception
    at = _app("review", "cy@reviewers.example", run=team["run"], category="")
    at.text_input(key="review_new_name").set_value("cy's queue").run()
    at.button(key="review_new_save").click().run()
    assert not at.exception
    engine = db.make_engine(team["url"])
    with db.session_factory(engine)() as s:
        assert db.pass_thresholds(session=s, dataset_id=team["dataset_id"])["bleu"]["set_by"] == "cy@reviewers.example"
        assert db.saved_view(session=s, name="cy's queue")["created_by"] == "cy@reviewers.example"
    engine.dispose()
