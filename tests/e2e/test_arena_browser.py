"""The Arena in headless Chromium against the demo models served by the real ``python -m evaluator serve``
process, as ``evaluator demo`` starts it: a blind match, a vote that lands in the store and in the runs page's
rating, and the preferred answer kept as a test example."""
from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import db
from evaluator.commands.demo import serve_command
from tests.support.browser import chromium, no_error_on_page, running_dashboard, settle
from tests.support.dashboard_seed import seed_store
from tests.support.serving import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served(demo_models, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(serve_command(demo_models, port), stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{base}/models", timeout=2) as r:
                listed = r.read().decode()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
    yield base, listed, proc
    if proc.poll() is None:
        proc.kill()


def test_the_demo_serves_its_base_and_versions_under_their_run_names(served):
    _, listed, proc = served
    for name in ("demo-base", "demo-v1", "demo-v2", "demo-v3"):
        assert f'"id":"{name}"' in listed


def test_a_blind_vote_in_chromium_is_stored_and_rated(served, tmp_path):
    base, _, _ = served
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    seed_store(url, n_examples=8, versions=1)
    shots = Path(os.environ.get("ARTIFACTS_DIR", ROOT / "artifacts")) / "arena"
    shots.mkdir(parents=True, exist_ok=True)
    with running_dashboard(url, tmp_path / "streamlit.log", env={"EVAL_ARENA_URL": base}) as dash, \
            chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 1600})
        page.goto(f"{dash}/arena")
        settle(page)
        page.get_by_test_id("stSelectbox").filter(has_text="Model 2").click()
        page.get_by_role("option", name="demo-v3").click()
        settle(page)
        page.get_by_role("button", name="Start a blind match").click()
        settle(page)
        page.get_by_test_id("stChatInputTextArea").fill("Where is my order?")
        page.get_by_test_id("stChatInputTextArea").press("Enter")
        settle(page)
        no_error_on_page(page)
        assert page.get_by_text("demo-v3").count() == 0  # hidden until the vote
        page.screenshot(path=str(shots / "match.png"), full_page=True)
        page.get_by_role("textbox", name="Your name").fill("ana")
        page.get_by_role("textbox", name="Your name").press("Enter")
        settle(page)
        page.get_by_role("button", name="A is better").click()
        settle(page)
        assert page.get_by_text("Vote saved").count() == 1
        page.get_by_role("button", name="Keep as a test example").click()
        settle(page)
        page.screenshot(path=str(shots / "voted.png"), full_page=True)
        assert page.get_by_text("Kept as test example").count() == 1
        page.goto(f"{dash}/")  # the runs page is the default
        settle(page)
        no_error_on_page(page)
        assert page.get_by_text("Preference rating per version").count() == 1
        page.screenshot(path=str(shots / "rating.png"), full_page=True)
    engine = db.open_store_readonly(url)
    with db.session_factory(engine)() as s:
        (vote,) = db.arena_votes(session=s)
        (kept,) = db.kept_examples(session=s, set_name="arena")
    engine.dispose()
    assert (vote["model_a"], vote["model_b"], vote["reviewer"]) == ("demo-base", "demo-v3", "ana")
    assert vote["verdict"] == vote["left"]  # "A is better" favours whichever was drawn for the left
    preferred = vote[f"conversation_{vote['verdict']}"]
    assert kept["messages"] == preferred[:-1] == [{"role": "user", "content": "Where is my order?"}]
    assert kept["reference"] == preferred[-1]["content"]


def test_the_server_stops_on_sigterm(served):
    base, _, proc = served
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught: the exit status says SIGTERM
    assert proc.wait(timeout=30) == -signal.SIGTERM
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{base}/models", timeout=2)
