"""Dashboard benchmark: how long each page takes to render, and how much memory, through AppTest.

    python benchmarks/bench_dashboard.py --db sqlite:///big.sqlite   # a store you have (e.g. bench_store --keep)
    python benchmarks/bench_dashboard.py --db postgresql+psycopg://user@host/big   # or bench_store --db's
    python benchmarks/bench_dashboard.py                              # builds a seeded store (tests/dashboard_seed)
    python benchmarks/bench_dashboard.py --examples 5000 --reps 5

For every view (a page plus the query parameters of a link) it reports:
  cold_s  median time of a script run with empty query caches (someone opens the link): the goal is < 2 s;
  warm_s  median time of a rerun with the caches filled (someone changes a widget that reuses them);
  peak_mb Python heap high-water mark during one cold run (tracemalloc; numpy and pandas buffers included),
          which should not grow with the store: pages fetch one page of rows, grids of at most 60x60 cells.
Times include AppTest's own overhead (building and walking the element tree), so a browser session is a
little faster. The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import streamlit as st
from streamlit.testing.v1 import AppTest

import db

logging.disable(logging.WARNING)  # streamlit logs "No runtime found" on every AppTest run
warnings.filterwarnings("ignore", category=DeprecationWarning)
APP = str(ROOT / "dashboard" / "app.py")
GOAL_S = 2.0


def _views(url: str) -> list[tuple[str, str, dict]]:
    """(name, page file, query parameters) for the views people open, chosen from what the store holds."""
    engine = db.open_store_readonly(url)
    try:
        with db.session_factory(engine)() as s:
            runs = db.list_runs(session=s)
            finished = [r for r in runs if r["status"] == "finished"] or runs
            a = finished[0]
            baselines = db.baselines_of(session=s, run_id=a["id"])
            others = [r for r in finished[1:] if r["dataset_id"] == a["dataset_id"]]
            b = baselines[0] if baselines else (others[0]["id"] if others else a["id"])
            metrics = db.run_metric_names(session=s, run_id=a["id"])
            page = db.page_results(session=s, query=db.ResultQuery(run_id=a["id"]), page=0, page_size=1)
            first = page.rows[0]
            words = [w for w in (first["prompt_text"] or "").split() if w.isalpha() and len(w) > 3]
            word = words[len(words) // 2] if words else "the"
            bounds = db.metric_bounds(session=s, run_id=a["id"], metrics=metrics[:2])
    finally:
        engine.dispose()
    m1 = metrics[0]
    m2 = metrics[1] if len(metrics) > 1 else m1
    lo, hi = bounds.get(m1, (0.0, 1.0))
    mid = f"{(lo + hi) / 2:.6g}"
    total_pages = max(1, a["n_results"] // 50)
    run = str(a["id"])
    return [
        ("runs", "views/runs.py", {}),
        ("runs_filtered", "views/runs.py", {"model": a["name"][:3], "metric": m2}),
        ("browser", "views/browser.py", {"run": run}),
        ("browser_range_sort", "views/browser.py", {"run": run, "range": f"{m1}:{mid}:", "sort": m2, "desc": "1"}),
        ("browser_text_search", "views/browser.py", {"run": run, "text": word}),
        ("browser_failures", "views/browser.py", {"run": run, "failure": "any", "sort": "latency_ms", "desc": "1"}),
        ("browser_deep_page", "views/browser.py", {"run": run, "page": str(max(1, total_pages // 2))}),
        ("browser_example", "views/browser.py", {"run": run, "ex": str(first["example_id"])}),
        ("compare", "views/compare.py", {"a": run, "b": str(b)}),
        ("compare_flips", "views/compare.py", {"a": run, "b": str(b), "metric": m1, "flips": "1", "thr": mid,
                                               "order": "diff_desc"}),
        ("compare_example", "views/compare.py", {"a": run, "b": str(b), "metric": m2, "ex": str(first["example_id"])}),
    ]


def _app(url: str, page: str, params: dict) -> AppTest:
    os.environ[db.ENV_VAR] = url
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()  # the default page registers the navigation
    at.switch_page(page)
    at.query_params = dict(params)
    return at


def _check(at: AppTest, name: str) -> None:
    if at.exception:
        raise SystemExit(f"{name}: the page raised: {at.exception[0].message}")
    if at.error:
        raise SystemExit(f"{name}: the page showed an error: {at.error[0].value}")


def measure(url: str, reps: int) -> dict:
    out = {}
    for name, page, params in _views(url):
        at = _app(url, page, params)
        cold, warm = [], []
        for _ in range(reps):
            st.cache_data.clear()
            gc.collect()
            t0 = time.perf_counter()
            at.run()
            cold.append(time.perf_counter() - t0)
            _check(at, name)
            t0 = time.perf_counter()
            at.run()
            warm.append(time.perf_counter() - t0)
        st.cache_data.clear()
        gc.collect()
        tracemalloc.start()
        at.run()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out[name] = dict(cold_s=round(statistics.median(cold), 3), cold_max_s=round(max(cold), 3),
                         warm_s=round(statistics.median(warm), 3), peak_mb=round(peak / 2**20, 1))
        print(f"{name:>22}: cold {out[name]['cold_s']:.3f} s (max {out[name]['cold_max_s']:.3f}), "
              f"warm {out[name]['warm_s']:.3f} s, peak {out[name]['peak_mb']} MB", file=sys.stderr, flush=True)
    return out


def _store_facts(url: str) -> dict:
    engine = db.open_store_readonly(url)
    try:
        with db.session_factory(engine)() as s:
            runs = db.list_runs(session=s)
    finally:
        engine.dispose()
    facts = dict(runs=len(runs), results=sum(r["n_results"] for r in runs))
    path = url.removeprefix("sqlite:///")
    if url.startswith("sqlite:///") and os.path.exists(path):
        facts["store_mb"] = round(os.path.getsize(path) / 2**20, 1)
    elif url.startswith("postgresql"):
        from sqlalchemy import text

        engine = db.make_engine(url)
        with engine.connect() as c:
            facts["store_mb"] = round(c.scalar(text("SELECT pg_database_size(current_database())")) / 2**20, 1)
            facts["server"] = f"PostgreSQL {c.scalar(text('SHOW server_version'))}"
        engine.dispose()
    return facts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", help="store URL or SQLite path (default: build a seeded store in a temp dir)")
    ap.add_argument("--examples", type=int, default=2000, help="examples per run of the built store")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    tmp = None
    if args.db:
        url = db.resolve_url(args.db)
    else:
        from tests.support.dashboard_seed import seed_store

        tmp = tempfile.TemporaryDirectory()
        url = f"sqlite:///{Path(tmp.name) / 'dashboard_bench.sqlite'}"
        t0 = time.perf_counter()
        seed_store(url, n_examples=args.examples, versions=3)
        print(f"built a seeded store in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    # Warm the interpreter (imports of pages, altair, pandas) once, as a running server would be.
    _app(url, "views/browser.py", {}).run()
    pages = measure(url, args.reps)
    worst = max(v["cold_max_s"] for v in pages.values())
    out = dict(store=_store_facts(url), reps=args.reps, pages=pages,
               worst_cold_s=worst, max_peak_mb=max(v["peak_mb"] for v in pages.values()),
               all_under_goal=all(v["cold_s"] < GOAL_S for v in pages.values()),
               machine=f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, {sys.platform}")
    print(json.dumps(out))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
