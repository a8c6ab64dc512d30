"""First loads in a real browser: how long a colleague waits when they open a page or a shared link.

    python benchmarks/bench_browser.py --db sqlite:///artifacts/demo/store.sqlite     # the demo store
    python benchmarks/bench_browser.py --db sqlite:///big.sqlite                      # bench_store.py --keep big.sqlite

For every page and the deep links a meeting shares (one example in the browser, one in compare, one
example's history, a review queue position), a fresh `streamlit run` serves the page (a cold server:
empty query caches, as after a deploy or a restart) and a new headless Chromium context opens it (a new
browser session: nothing cached on the client). The time is from navigation until the app has stopped
running: no running indicator and no element placeholder (a skeleton), confirmed for half a second. The
figure per view is the median of ``--repeats`` such loads; the goal is every view under 2 s. The last
line printed is one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import db
from tests.support.browser import chromium, running_dashboard

GOAL_S = 2.0


def _views(url: str) -> list[tuple[str, str]]:
    """(name, path with query) for every page and the deep links, chosen from what the store holds."""
    engine = db.open_store_readonly(url)
    try:
        with db.session_factory(engine)() as s:
            runs = db.run_index(session=s)
            candidates = [r for r in runs if r["status"] == "finished" and not r["is_baseline"]] or runs
            a = candidates[0]
            baselines = db.baselines_of(session=s, run_id=a["id"])
            b = baselines[0] if baselines else next((r["id"] for r in runs if r["id"] != a["id"]), a["id"])
            first = db.page_results(session=s, query=db.ResultQuery(run_id=a["id"]), page=0, page_size=1).rows[0]
            views = db.saved_views(session=s)
            if views:  # a queue over the run opened above, when the store has one
                views = [v for v in views if str(v["params"].get("run")) == str(a["id"])] or views
    finally:
        engine.dispose()
    out = [("runs", "/"), ("browser", "/browser"), ("compare", "/compare"), ("errors", "/errors"),
           ("history", "/history"), ("review", "/review"),
           ("browser: one example", f"/browser?run={a['id']}&ex={first['example_id']}"),
           ("compare: one example", f"/compare?a={a['id']}&b={b}&ex={first['example_id']}"),
           ("history: one example", f"/history?dataset={a['dataset_id']}&key={first['key']}")]
    if views:
        out.append(("review: a queue", f"/review?view={views[0]['name']}&pos=1"))
    return out


def _load(browser, url: str, timeout_s: float = 120.0) -> tuple[float, bool]:
    """Seconds from navigation until the app stopped running; and whether an exception box shows."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    started = time.monotonic()
    page.goto(url)
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_s * 1000)
    done_at, quiet_since = None, None
    while time.monotonic() - started < timeout_s:
        busy = (page.locator('[data-testid="stStatusWidget"]').count() > 0  # the script is running
                or page.locator('[data-testid="stSkeleton"]').count() > 0  # an element is still a placeholder
                or page.locator("h1").count() == 0)  # nothing drawn yet
        now = time.monotonic()
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since, done_at = now, now - started
        elif now - quiet_since >= 0.5:
            break
        time.sleep(0.02)
    failed = page.locator('[data-testid="stException"]').count() > 0
    context.close()
    return (done_at if done_at is not None else float("inf")), failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="the store to serve (e.g. the demo's, or bench_store --keep)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    url = db.resolve_url(args.db)
    views = _views(url)
    times: dict[str, list[float]] = {name: [] for name, _ in views}
    errors: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, chromium() as browser:
        for _ in range(args.repeats):
            for name, path in views:
                with running_dashboard(url, Path(tmp) / "streamlit.log") as base:  # a cold server per load
                    seconds, failed = _load(browser, base + path)
                times[name].append(seconds)
                if failed:
                    errors.append(name)
                print(f"{name:<24} {seconds:6.2f} s  {path}", flush=True)
    medians = {name: round(statistics.median(t), 2) for name, t in times.items()}
    print(json.dumps({
        "benchmark": "browser_first_load", "store": url.split("///")[-1] if url.startswith("sqlite") else "postgresql",
        "repeats": args.repeats, "median_s": medians, "worst_s": max(medians.values()),
        "within_goal": all(v <= GOAL_S for v in medians.values()), "goal_s": GOAL_S,
        "exceptions": sorted(set(errors)), "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "load_avg": list(os.getloadavg()),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
