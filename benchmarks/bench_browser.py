"""First loads in a real browser: how long a colleague waits when they open a page or a shared link.

    python benchmarks/bench_browser.py --db sqlite:///artifacts/demo/store.sqlite     # the demo store
    python benchmarks/bench_browser.py --db sqlite:///big.sqlite                      # bench_store.py --keep big.sqlite

For every page and the deep links a meeting shares (one example in the browser, one in compare, one
example's history, a review queue position), a fresh `streamlit run` serves the page (a cold server:
empty query caches, as after a deploy or a restart) and a new headless Chromium context opens it (a new
browser session: nothing cached on the client). The time is from navigation until the app has stopped
running and its title is drawn ("ready", what ../shared/tools/screenshot.py times), and until no element
is still a placeholder ("drawn": the browser has fetched and compiled the code of every table and chart),
each confirmed for half a second. The figure per view is the median of ``--repeats`` such loads; the goal
is every view ready within 2 s. The same is measured for two one-file Streamlit apps, a title alone and
a title with one 50-row table and one chart, served with the same warm start, as the floor this machine and
Streamlit set. The last line
printed is one JSON object with the figures.
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

from sqlalchemy.engine import make_url

import db
from tests.support.browser import chromium, running_dashboard

GOAL_S = 2.0
FLOOR_SERVER = """import contextlib, streamlit as st
from pathlib import Path
from dashboard.server import warm

@contextlib.asynccontextmanager
async def lifespan(_app):
    warm()
    yield

app = st.App(Path(__file__).with_name("{page}"), lifespan=lifespan)
"""
FLOOR_APPS = {
    "floor: title only": 'import streamlit as st\nst.title("Floor")\n',
    "floor: table and chart": (
        'import altair as alt, pandas as pd, streamlit as st\nst.title("Floor")\n'
        'df = pd.DataFrame({"x": range(50), "y": range(50)})\nst.dataframe(df)\n'
        'st.altair_chart(alt.Chart(df).mark_line().encode(x="x", y="y"))\n'),
}


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


def _absolute(url: str) -> str:
    """A relative SQLite path made absolute: each server runs in its own temporary directory."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:" \
            and not u.database.startswith("file:") and not Path(u.database).is_absolute():
        return u.set(database=str(Path(u.database).resolve())).render_as_string(hide_password=False)
    return url


def _load(browser, url: str, timeout_s: float = 120.0) -> tuple[float, float, bool]:
    """(ready, drawn, exception shown) for one first load in a new browser context.

    ready: seconds from navigation until the page's script has finished (no running indicator, the title
    drawn), confirmed for half a second: what ../shared/tools/screenshot.py times, and what the issue measured.
    drawn: until, in addition, no element is still a placeholder (a skeleton, shown while the browser
    fetches and compiles the code of a table or chart it has not drawn before)."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    started = time.monotonic()
    page.goto(url)
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_s * 1000)
    ready = drawn = None
    while time.monotonic() - started < timeout_s:
        now = time.monotonic() - started
        running = (page.locator('[data-testid="stStatusWidget"]').count() > 0
                   or page.locator("h1").count() == 0)
        if running:
            ready = drawn = None
        else:
            ready = ready if ready is not None else now
            if page.locator('[data-testid="stSkeleton"]').count() > 0:
                drawn = None
            else:
                drawn = drawn if drawn is not None else now
        if drawn is not None and now - ready >= 0.5 and now - drawn >= 0.5:
            break
        time.sleep(0.02)
    failed = page.locator('[data-testid="stException"]').count() > 0
    context.close()
    inf = float("inf")
    return (ready if ready is not None else inf), (drawn if drawn is not None else inf), failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="the store to serve (e.g. the demo's, or bench_store --keep)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="", help="measure only the views whose name contains this text")
    args = parser.parse_args(argv)
    url = _absolute(db.resolve_url(args.db))
    views = [(name, path) for name, path in _views(url) if args.only in name]
    ready: dict[str, list[float]] = {name: [] for name, _ in views}
    drawn: dict[str, list[float]] = {name: [] for name, _ in views}
    errors: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, chromium() as browser:
        for name, source in FLOOR_APPS.items():
            if args.only not in name:
                continue
            page, server = Path(tmp) / f"floor{len(views)}.py", Path(tmp) / f"floor{len(views)}_server.py"
            page.write_text(source)
            server.write_text(FLOOR_SERVER.format(page=page.name))  # the same warm start as the dashboard's
            views.append((name, server))
            ready[name], drawn[name] = [], []
        for _ in range(args.repeats):
            for name, path in views:
                time.sleep(1.0)  # let the previous server and browser context finish shutting down
                app = path if isinstance(path, Path) else ROOT / "dashboard" / "server.py"
                with running_dashboard(url, Path(tmp) / "streamlit.log", app) as base:  # a cold server per load
                    path = "/" if isinstance(path, Path) else path
                    r, d, failed = _load(browser, base + path)
                ready[name].append(r)
                drawn[name].append(d)
                if failed:
                    errors.append(name)
                print(f"{name:<24} ready {r:5.2f} s  drawn {d:5.2f} s  {path}", flush=True)
    ready_s = {name: round(statistics.median(t), 2) for name, t in ready.items()}
    drawn_s = {name: round(statistics.median(t), 2) for name, t in drawn.items()}
    ours = [name for name in ready_s if name not in FLOOR_APPS]
    print(json.dumps({
        "benchmark": "browser_first_load", "store": url.split("///")[-1] if url.startswith("sqlite") else "postgresql",
        "repeats": args.repeats, "ready_s": ready_s, "drawn_s": drawn_s, "worst_ready_s": max((ready_s[n] for n in ours), default=None),
        "worst_drawn_s": max((drawn_s[n] for n in ours), default=None), "ready_within_goal": all(ready_s[n] <= GOAL_S for n in ours),
        "goal_s": GOAL_S,
        "exceptions": sorted(set(errors)), "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "load_avg": list(os.getloadavg()),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
