"""Sign-in in a real browser: Streamlit's OpenID Connect flow (st.login, Authlib) against a real OpenID
provider on this machine. oidc-provider-mock stands in for the team's identity provider, which cannot run
here: it serves discovery, authorization, tokens and signed ID tokens, and its login form takes the user
to sign in as. A reviewer's verdict is stored under the provider's email; a viewer is offered no way to write
(the write path's own refusal is tested under AppTest: tests/dashboard/test_team.py)."""
from __future__ import annotations

import json
import urllib.request
from urllib.parse import quote

import oidc_provider_mock
import pytest

import db
from tests.support.browser import chromium, free_port, no_error_on_page, running_dashboard, settle
from tests.support.review_data import RunSpec, make_store

REVIEWER, VIEWER = "rev@team.example", "view@team.example"


@pytest.fixture(scope="module")
def provider():
    with oidc_provider_mock.run_server_in_thread() as server:
        base = f"http://localhost:{server.server_port}"
        for email in (REVIEWER, VIEWER):  # the claims the provider puts in each user's ID token
            req = urllib.request.Request(f"{base}/users/{quote(email)}", data=json.dumps({"email": email}).encode(),
                                         method="PUT", headers={"Content-Type": "application/json"})
            assert urllib.request.urlopen(req, timeout=10).status == 204
        yield base


@pytest.fixture(scope="module")
def team_dashboard(provider, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sign-in")
    url = f"sqlite:///{tmp / 'store.sqlite'}"
    ids = make_store(url, [RunSpec("v1", metrics={"bleu": [10.0, 60.0]})], n_examples=2, higher_is_better={"bleu": True})
    run = ids["runs"]["v1"]
    engine = db.make_engine(url)
    with db.session_factory(engine).begin() as s:
        db.save_view(session=s, name="v1", params={"run": str(run)}, created_by="setup")
    engine.dispose()
    port = free_port()
    (tmp / ".streamlit").mkdir()
    (tmp / ".streamlit" / "secrets.toml").write_text(
        "[auth]\n"
        f'redirect_uri = "http://localhost:{port}/oauth2callback"\n'
        'cookie_secret = "a-test-only-cookie-secret"\n'
        'client_id = "evalbench"\nclient_secret = "test-only"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n')
    (tmp / ".streamlit" / "roles.toml").write_text(f'reviewers = ["{REVIEWER}"]\n')
    mp = pytest.MonkeyPatch()
    mp.setenv("EVAL_DB_WRITE_URL", url)  # the dashboard's write URL (the read URL is --db)
    with running_dashboard(url, tmp / "streamlit.log", port=port) as base:
        yield base.replace("127.0.0.1", "localhost"), url, run
    mp.undo()


def _sign_in(browser, base: str, email: str):
    context = browser.new_context(viewport={"width": 1440, "height": 1600})
    page = context.new_page()
    page.goto(base + "/review?view=v1&pos=1")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_placeholder("sub").fill(email)  # the provider's own form
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(base + "/**", timeout=60_000)
    page.goto(base + "/review?view=v1&pos=1")
    page.get_by_role("heading", name="Review").first.wait_for(timeout=60_000)
    settle(page)
    no_error_on_page(page)
    return context, page


def _reviewers(url: str, run: int) -> list[tuple[str, str]]:
    engine = db.make_engine(url)
    with db.session_factory(engine)() as s:
        rows = db.decision_log(session=s, run_ids=[run])
    engine.dispose()
    return [(r["reviewer"], r["verdict"]) for r in rows]


def test_a_reviewer_signs_in_and_records_a_verdict_under_the_providers_email(team_dashboard):
    base, url, run = team_dashboard
    with chromium() as browser:
        context, page = _sign_in(browser, base, REVIEWER)
        assert page.get_by_text(f"Signed in as {REVIEWER} · reviewer").count() == 1
        page.get_by_role("button", name="1 · pass").click()
        page.get_by_text("Verdict saved").first.wait_for(timeout=30_000)
        context.close()
    assert _reviewers(url, run) == [(REVIEWER, "pass")]


def test_a_viewer_signs_in_and_is_offered_no_write(team_dashboard):
    base, url, run = team_dashboard
    before = _reviewers(url, run)
    with chromium() as browser:
        context, page = _sign_in(browser, base, VIEWER)
        assert page.get_by_text(f"Signed in as {VIEWER} · viewer").count() == 1
        assert page.get_by_role("button", name="1 · pass").count() == 0
        assert page.get_by_text("needs the reviewer role").count() >= 1
        context.close()
    assert _reviewers(url, run) == before


def test_signed_out_the_dashboard_shows_nothing_but_sign_in(team_dashboard):
    base, _, _ = team_dashboard
    with chromium() as browser:
        context = browser.new_context()
        page = context.new_page()
        for path in ("/", "/browser", "/review?view=v1&pos=1"):
            page.goto(base + path)
            page.get_by_role("button", name="Sign in").wait_for(timeout=60_000)
            assert page.get_by_role("heading", name="Sign in").count() == 1
            assert page.locator('[data-testid="stDataFrame"]').count() == 0
        context.close()
