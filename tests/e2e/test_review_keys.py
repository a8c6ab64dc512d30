"""A review meeting driven from the keyboard, in headless Chromium: a key per verdict (1-5, saved at once),
p and n for the previous and next example."""
from __future__ import annotations

import time

import pytest

import db
from tests.support.browser import chromium, no_error_on_page, running_dashboard, settle
from tests.support.dashboard_seed import seed_store

VIEW = "keyboard queue"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keys")
    url = f"sqlite:///{tmp / 'store.sqlite'}"
    ids = seed_store(url, n_examples=20, versions=1)
    engine = db.open_store(url)
    with db.session_factory(engine).begin() as s:
        db.save_view(session=s, name=VIEW, params={"run": str(ids["latest"]), "category": "support"})
    with db.session_factory(engine)() as s:
        queue = db.queue_example_ids(session=s, query=db.ResultQuery(run_id=ids["latest"], category="support"))
    engine.dispose()
    with running_dashboard(url, tmp / "streamlit.log") as base:
        yield base, url, ids["latest"], queue


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _verdict(url, run_id, example_id, reviewer):
    engine = db.open_store_readonly(url)
    try:
        with db.session_factory(engine)() as s:
            mine = [a for a in db.annotations_of(session=s, run_id=run_id, example_id=example_id)
                    if a["reviewer"] == reviewer]
    finally:
        engine.dispose()
    return mine[0]["verdict"] if mine else None  # newest first


def _wait_for(page, condition, timeout=30.0):
    """Poll ``condition``, letting the page process its events meanwhile (``time.sleep`` would freeze
    playwright's view of it: ``page.url`` only changes while playwright runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        page.wait_for_timeout(200)
    return False


def _shows(page, text: str) -> None:
    """Wait until the page has rerun onto ``text`` and finished drawing (a key pressed mid-run is lost)."""
    page.get_by_text(text).first.wait_for(timeout=30_000)
    settle(page)


def test_keys_record_verdicts_and_move_through_the_queue(server, browser):
    base, url, run, queue = server
    assert len(queue) >= 3
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{base}/review?view={VIEW.replace(' ', '+')}&pos=1&reviewer=kim")
    settle(page)
    no_error_on_page(page)

    page.keyboard.press("2")  # 2 · fail: model error, saved at once, then the next example
    assert _wait_for(page, lambda: _verdict(url, run, queue[0], "kim") == db.VERDICTS[1])
    assert _wait_for(page, lambda: "pos=2" in page.url)
    _shows(page, f"example 2 of {len(queue)}")

    page.keyboard.press("p")  # back to the first example
    assert _wait_for(page, lambda: "pos=1" in page.url)
    _shows(page, f"example 1 of {len(queue)}")
    page.keyboard.press("n")
    assert _wait_for(page, lambda: "pos=2" in page.url)
    _shows(page, f"example 2 of {len(queue)}")
    page.keyboard.press("p")
    _shows(page, f"example 1 of {len(queue)}")

    # A click on a verdict's key button saves it too (a mouse in the meeting)
    page.get_by_role("button", name=f"3 · {db.VERDICTS[2]}").click()
    assert _wait_for(page, lambda: _verdict(url, run, queue[0], "kim") == db.VERDICTS[2])
    settle(page)
    no_error_on_page(page)
    page.close()
