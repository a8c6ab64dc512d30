"""``python -m evaluator demo``: build tiny models, evaluate three fine-tuned versions, open the dashboard.

Everything runs offline on a CPU in a few minutes (the README, "The built-in demo"): the models are trained
on the demo dataset (evaluator/demo) and cached; each version is then evaluated by the same runner
as ``python -m evaluator run``, with the base model as baseline, into the store the dashboard reads.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import db
from evaluator._runner import RunError, run_evaluation
from evaluator.commands.compare import judgment_line
from evaluator.config import RunConfig
from evaluator.demo import TEST_FILE, build_demo_models
from evaluator.judging._judge import JudgeRun, judge_pair
from evaluator.models import load_backend
from evaluator.types import GenerationSettings

EPILOG = """\
examples:
  # build (first time ~1-2 min) or reuse the demo models, evaluate, open the dashboard on :8501
  python -m evaluator demo

  # into a separate store, without starting the dashboard
  python -m evaluator demo --db demo.sqlite --no-dashboard

  # retrain the models from scratch (and evaluate them again), dashboard on another port
  python -m evaluator demo --rebuild --port 8600

  # then, on the evaluated store:
  python -m evaluator runs --db demo.sqlite
  EVAL_DB_URL=sqlite:///demo.sqlite streamlit run dashboard/server.py

The models are cached in --cache, else $EVALBENCH_CACHE, else ~/.cache/evalbench-demo.
The store is --db URL, else $EVAL_DB_URL, else sqlite:///eval_store.sqlite.
"""

FAMILY = "demo"
MAX_NEW_TOKENS = 40  # every reference answer fits (<= 35 tokens); a model that does not stop is cut here
JUDGE_NEW_TOKENS = 16  # the demo judge's reply: long enough for a verdict mark, short enough for a CPU
DASHBOARD_APP = Path(__file__).resolve().parents[2] / "dashboard" / "server.py"


def register(sub) -> None:
    p = sub.add_parser(
        "demo", help="train tiny demo models on the spot, evaluate them, open the dashboard (offline, CPU)",
        description="Build a tiny base model and three LoRA fine-tunes (v1-v3) on a small conversational "
                    "dataset, evaluate each version against the base on the test split, and start the "
                    "dashboard on the results. No GPU or network needed.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--db", metavar="URL", help="store URL or SQLite path (default: $EVAL_DB_URL, else "
                                               "sqlite:///eval_store.sqlite)")
    p.add_argument("--cache", metavar="DIR", help="where the demo models are cached (default: $EVALBENCH_CACHE, "
                                                  "else ~/.cache/evalbench-demo)")
    p.add_argument("--rebuild", action="store_true", help="retrain the models even if cached, and re-evaluate")
    p.add_argument("--no-dashboard", dest="dashboard", action="store_false",
                   help="evaluate only; do not start the dashboard")
    p.add_argument("--port", type=int, default=8501, metavar="N", help="dashboard port (default 8501)")
    p.add_argument("--no-serve", dest="serve", action="store_false",
                   help="do not serve the demo models for the dashboard's Arena page")
    p.add_argument("--serve-port", type=int, default=8000, metavar="N",
                   help="port of the demo models' OpenAI-compatible server (default 8000)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(func=main)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _already_evaluated(url: str, name: str, adapter: Path) -> bool:
    """A finished run of this name and adapter is in the store (a second ``demo`` adds nothing)."""

    engine = db.open_store(url)
    try:
        with db.session_factory(engine)() as session:
            runs = db.list_runs(session=session, model=name, status="finished")
    finally:
        engine.dispose()
    return any(r["name"] == name and r["family"] == FAMILY and r["adapter"] == str(adapter) for r in runs)


def evaluate_versions(models, *, url: str, force: bool = False, progress: bool = True,
                      only: Optional[list[str]] = None, limit: Optional[int] = None) -> list:
    """Evaluate each version (oldest first, so trends run forward in time) with the base as baseline.

    Returns the runner's summaries (versions already in the store are skipped unless ``force``).
    ``only`` keeps the named versions and ``limit`` the first N test conversations (for tests).
    """

    summaries = []
    versions = [(v, a) for v, a in models.versions if only is None or v in only]
    for i, (version, adapter) in enumerate(versions, 1):
        name = f"demo-{version}"
        if not force and _already_evaluated(url, name, adapter):
            print(f"[{i}/{len(versions)}] {name}: already in the store, skipped (--rebuild redoes it)")
            continue
        print(f"[{i}/{len(versions)}] evaluating {name} against the base model")
        config = RunConfig(
            model=str(models.base_dir), adapter=str(adapter), name=name, family=FAMILY,
            dataset=str(TEST_FILE), turns="all", baselines=[str(models.base_dir)], db=url,
            max_new_tokens=MAX_NEW_TOKENS, limit=limit,
        )
        summary = run_evaluation(config, progress=progress)
        for line in summary.lines():
            print(line)
        summaries.append(summary)
    return summaries


def serve_command(models, port: int) -> list[str]:
    """``evaluator serve`` for the demo: the base as ``demo-base`` and each version under its run's name, so
    Arena votes and the runs' judgments rate the same versions."""
    cmd = [sys.executable, "-m", "evaluator", "serve", "--model", str(models.base_dir), "--name", models.base_dir.name,
           "--port", str(port), "--device", "cpu"]
    for version, adapter in models.versions:
        cmd += ["--adapter", f"demo-{version}={adapter}"]
    return cmd


def start_server(models, port: int) -> Optional[subprocess.Popen]:
    """The demo models' server on ``port``, once it lists its models (None, with a message, when it cannot)."""
    import urllib.request

    if not _port_free(port):
        print(f"port {port} is in use: the Arena page will not have the demo models (pass --serve-port)")
        return None
    proc = subprocess.Popen(serve_command(models, port))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    print("the demo models' server did not start: the Arena page will say so", file=sys.stderr)
    return proc if proc.poll() is None else None


def _stop(proc: Optional[subprocess.Popen]) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def start_dashboard(url: str, port: int, arena_url: Optional[str] = None) -> subprocess.Popen:
    """``streamlit run dashboard/server.py`` headless on ``port``, reading ``url``; returns once it answers."""
    env = dict(os.environ, EVAL_DB_URL=url)
    if arena_url:
        env["EVAL_ARENA_URL"] = arena_url
    cmd = [sys.executable, "-m", "streamlit", "run", str(DASHBOARD_APP), "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    return proc


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def judge_newest(models, *, url: str, progress: bool = True) -> Optional[JudgeRun]:
    """Judge the newest version against the base with the demo's own base model as the judge (pairwise, both
    orders); what is judged already is not asked again. None when the store has no such pair."""
    engine = db.open_store(url)
    sf = db.session_factory(engine)
    try:
        with sf() as s:
            newest = f"demo-{models.versions[-1][0]}"
            try:
                cand = db.find_run(session=s, ref=newest)
            except db.StoreError:
                return None
            baselines = db.baselines_of(session=s, run_id=cand)
        if not baselines:
            return None
        backend = load_backend(str(models.base_dir), device="cpu")
        try:
            return judge_pair(session_factory=sf, backend=backend, judge="demo-base",
                              candidate_id=cand, baseline_id=baselines[0],
                              settings=GenerationSettings(max_new_tokens=JUDGE_NEW_TOKENS), progress=progress)
        finally:
            backend.close()
    finally:
        engine.dispose()


def main(args: argparse.Namespace) -> int:

    url = db.resolve_url(args.db)
    db.open_store(url).dispose()  # a store problem is reported now, not after the models are built
    if args.dashboard and not _port_free(args.port):
        print(f"error: port {args.port} is in use: pass another --port, or --no-dashboard", file=sys.stderr)
        return 2
    if args.dashboard and not DASHBOARD_APP.is_file():
        print(f"error: {DASHBOARD_APP} not found: run the demo from a checkout of the repository, "
              "or pass --no-dashboard", file=sys.stderr)
        return 2


    started = time.perf_counter()
    models = build_demo_models(args.cache, progress=args.progress, rebuild=args.rebuild)
    built = time.perf_counter()
    how = "reused from" if models.reused else f"built in {built - started:.0f} s in"
    print(f"demo models {how} {models.base_dir.parent}")
    try:
        evaluate_versions(models, url=url, force=args.rebuild or not models.reused, progress=args.progress)
    except RunError as exc:  # a UserError goes up to cli.main
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"evaluated in {time.perf_counter() - built:.0f} s; results in {db.shown_url(url)}")
    judged_at = time.perf_counter()
    judged = judge_newest(models, url=url, progress=args.progress)
    if judged is not None:
        print(f"judged run {judged.candidate_id} against run {judged.baseline_id} with the demo base model as the judge "
              f"in {time.perf_counter() - judged_at:.0f} s: {judged.stored} new judgments, {judged.failures} without a "
              "verdict (a demo-sized model does not follow a judging prompt: this shows the workflow, not a verdict)")
        for j in judged.summary:
            print(judgment_line(j))

    if not args.dashboard:
        print(f"open them with: EVAL_DB_URL={db.shown_url(url)} streamlit run dashboard/server.py")
        return 0
    server = start_server(models, args.serve_port) if args.serve else None
    arena_url = f"http://127.0.0.1:{args.serve_port}/v1" if server is not None else None
    proc = start_dashboard(url, args.port, arena_url)
    if proc.poll() is not None:
        _stop(server)
        print(f"error: the dashboard did not start (exit {proc.returncode}); "
              f"try: EVAL_DB_URL={url} streamlit run dashboard/server.py", file=sys.stderr)
        return 2
    print(f"dashboard: http://localhost:{args.port}  (Ctrl-C stops it)")
    if arena_url:
        print(f"demo models served at {arena_url} for the Arena page")
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the dashboard too, as Ctrl-C does
    try:
        return proc.wait() or 0
    except KeyboardInterrupt:
        _stop(proc)
        return 0
    finally:
        _stop(server)
