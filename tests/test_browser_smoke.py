"""Real-browser smoke test: `streamlit run dashboard/app.py` on a seeded store, each page opened in headless
Chromium (Debian's /usr/bin/chromium through playwright), no exception element, hostile text literal,
one screenshot per page in $ARTIFACTS_DIR (default artifacts/screenshots), copied to docs/screenshots/.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.dashboard_seed import HOSTILE, seed_store

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

# Both come from `bash scripts/setup.sh --tests` (CI runs it): missing is a setup error, not a skip.
try:
    import playwright.sync_api as playwright_api
except ImportError:  # pragma: no cover
    raise RuntimeError("playwright is not installed: bash scripts/setup.sh --tests") from None
if not Path(CHROMIUM).exists():  # pragma: no cover
    raise RuntimeError(f"no Chromium at {CHROMIUM}: bash scripts/setup.sh --tests (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    url = f"sqlite:///{tmp / 'store.sqlite'}"
    ids = seed_store(url)
    port = _free_port()
    env = dict(os.environ, EVAL_DB_URL="sqlite:///not-this-one.sqlite", PYTHONPATH=str(ROOT))
    log = open(tmp / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none", "--", "--db", url],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"streamlit did not start:\n{(tmp / 'streamlit.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield base, ids
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots_dir() -> Path:
    d = Path(os.environ.get("ARTIFACTS_DIR", ROOT / "artifacts" / "screenshots"))
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


def _settle(page) -> None:
    """Wait until the script run is over and every element is drawn: no running indicator and no
    placeholder skeleton for a short while."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=30_000)
    quiet_since = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        busy = (page.locator('[data-testid="stStatusWidget"]').count()
                + page.locator('[data-testid="stSkeleton"]').count()) > 0
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.5:
            return
        page.wait_for_timeout(250)


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
        _settle(page)
        assert page.locator('[data-testid="stException"]').count() == 0, f"exception on {path}"
        assert page.get_by_text("Page not found").count() == 0, f"page not found: {path}"
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
    docs = ROOT / "docs" / "screenshots"
    docs.mkdir(parents=True, exist_ok=True)
    for shot in shots:
        shutil.copyfile(shot, docs / shot.name)


def test_a_shared_link_reproduces_the_view(server, browser):
    base, ids = server
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.goto(f"{base}/browser?run={ids['latest']}&category=support&sort=bleu&desc=1&size=25")
    page.get_by_role("heading", name="Example browser").first.wait_for(timeout=60_000)
    _settle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    # The app keeps the link's state in the URL after it rendered.
    for part in ("run=", "category=support", "sort=bleu", "desc=1", "size=25"):
        assert part in page.url
    context.close()
