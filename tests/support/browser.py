"""A running dashboard and a headless Chromium for the real-browser tests.

Chromium comes from Debian (`apt-get install chromium`) and playwright from PyPI; both are
installed by `bash scripts/setup.sh --tests`, so their absence is a setup error, not a skip.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Optional

from tests.support.serving import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

try:
    import playwright.sync_api as playwright_api
except ImportError:  # pragma: no cover
    raise RuntimeError("playwright is not installed: bash scripts/setup.sh --tests") from None
if not Path(CHROMIUM).exists():  # pragma: no cover
    raise RuntimeError(f"no Chromium at {CHROMIUM}: bash scripts/setup.sh --tests (apt-get install chromium)")


@contextlib.contextmanager
def running_dashboard(store_url: str, log_path: Path, app: Path = ROOT / "dashboard" / "server.py",
                      port: Optional[int] = None, env: Optional[dict[str, str]] = None) -> Iterator[str]:
    """`streamlit run dashboard/server.py -- --db URL` on a free loopback port (or ``port``); yields its base URL.

    Started as a user starts it: the venv's `streamlit` command, from another directory (the log's: its
    `.streamlit/` folder is the server's), with nothing added to the import path (the project is installed
    in the venv by scripts/setup.sh)."""
    port = port or free_port()
    extra = env or {}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["EVAL_DB_URL"] = "sqlite:///not-this-one.sqlite"
    env.update(extra)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("streamlit")), "run", str(app),
             "--server.headless",
             "true", "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats",
             "false", "--server.fileWatcherType", "none", "--", "--db", store_url],
            cwd=log_path.parent, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                        if r.read().strip() == b"ok":
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise RuntimeError(f"streamlit did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.3)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.contextmanager
def chromium() -> Iterator["playwright_api.Browser"]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def settle(page) -> None:
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


def no_error_on_page(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, f"exception on {page.url}"
    assert page.get_by_text("Page not found").count() == 0, f"page not found: {page.url}"
