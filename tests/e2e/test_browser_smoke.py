"""Real-browser smoke test: `streamlit run dashboard/server.py` on a seeded store, each page opened in headless
Chromium (Debian's /usr/bin/chromium through playwright), no exception element, hostile text literal,
one screenshot per page in $ARTIFACTS_DIR/smoke (the README's come from the demo: tests/e2e/test_demo.py).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.browser import chromium, no_error_on_page, running_dashboard, settle
from tests.support.dashboard_seed import HOSTILE, seed_store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    url = f"sqlite:///{tmp / 'store.sqlite'}"
    ids = seed_store(url)
    with running_dashboard(url, tmp / "streamlit.log") as base:
        yield base, ids


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def shots_dir() -> Path:
    d = Path(os.environ.get("ARTIFACTS_DIR", ROOT / "artifacts")) / "smoke"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _pages(ids: dict) -> list[tuple[str, str, str]]:
    latest, base = ids["latest"], ids["latest_baseline"]
    hostile = ids["hostile_example_ids"][0]
    return [
        ("runs", "/", "Runs and trends"),
        ("browser", f"/browser?run={latest}&ex={hostile}", "Example browser"),
        ("browser-filtered", f"/browser?run={latest}&failure=any&sort=latency_ms&desc=1&range=rouge_l:0.2:",
         "Example browser"),
        ("compare", f"/compare?a={latest}&b={base}&metric=rouge_l", "Compare runs"),
        ("compare-unscored", f"/compare?a={ids['candidates'][0]}&b={ids['baselines'][ids['candidates'][0]]}"
                             f"&metric=exact_match&flips=1", "Compare runs"),
        ("errors", f"/errors?run={latest}&vs={base}", "Error analysis"),
        ("history", f"/history?example={hostile}", "Example history"),
        ("review", f"/review?run={latest}&tag=hostile", "Review"),
    ]


def test_every_page_renders_in_chromium(server, browser, shots_dir):
    base, ids = server
    # Streamlit scrolls inside its own container, so a full-page shot is the viewport: make it tall.
    context = browser.new_context(viewport={"width": 1440, "height": 2400})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    shots = []
    for name, path, title in _pages(ids):
        page.goto(base + path)
        page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
        settle(page)
        no_error_on_page(page)
        target = shots_dir / f"{name}.png"
        page.screenshot(path=str(target), full_page=True)
        shots.append(target)
        if name == "browser":
            # The hostile prompt is on screen as literal text (st.text), not as markup.
            literal = [h for h in HOSTILE if page.get_by_text(h, exact=False).count() > 0]
            assert literal, "the hostile example's text should be visible literally"
            assert page.locator("script:has-text('xss')").count() == 0
            assert page.locator("img[src='x']").count() == 0
    assert dialogs == [], f"a script ran: {dialogs}"
    context.close()
    assert all(shot.stat().st_size > 10_000 for shot in shots)


def test_a_shared_link_reproduces_the_view(server, browser):
    base, ids = server
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.goto(f"{base}/browser?run={ids['latest']}&category=support&sort=bleu&desc=1&size=25")
    page.get_by_role("heading", name="Example browser").first.wait_for(timeout=60_000)
    settle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    # The app keeps the link's state in the URL after it rendered.
    for part in ("run=", "category=support", "sort=bleu", "desc=1", "size=25"):
        assert part in page.url
    context.close()
