"""Judging throughput against a judge API with a fixed latency: how close ``judge`` gets to concurrency ÷ latency.

    python benchmarks/bench_judge.py                     # 200 examples (400 judgments), 200 ms, concurrency 8
    python benchmarks/bench_judge.py --latency 0.5 --concurrency 16

A loopback stub server (tests/support/openai_stub.py, in a process of its own, standing in for a remote judge
API: nothing else is contacted) answers every request after ``--latency`` seconds with a verdict. A store holds two runs over
``--examples`` examples; ``evaluator.judging`` judges one against the other in both orders through the
``openai:`` backend, storing as it goes, and the rate of stored judgments is compared with the ideal
concurrency ÷ latency (goal ≥ 0.8 of it). The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import db
from evaluator.judging._judge import judge_pair
from evaluator.models import load_backend
from evaluator.types import GenerationSettings
from tests.support.store_seed import seed_minimal

GOAL = 0.8


def _judge(base_url: str, args: argparse.Namespace):
    with tempfile.TemporaryDirectory() as tmp:
        engine = db.open_store(f"sqlite:///{Path(tmp) / 'store.sqlite'}")
        seed = seed_minimal(engine, n_examples=args.examples)
        backend = load_backend("openai:stub-judge", base_url=base_url, concurrency=args.concurrency,
                               api_key_env="BENCH_JUDGE_NO_KEY")
        started = time.perf_counter()
        run = judge_pair(session_factory=db.session_factory(engine), backend=backend, judge="openai:stub-judge",
                         candidate_id=seed["candidate"], baseline_id=seed["baseline"],
                         settings=GenerationSettings(max_new_tokens=64))
        seconds = time.perf_counter() - started
        backend.close()
        engine.dispose()
    return run, seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args(argv)
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "support" / "openai_stub.py"), "--delay",
                               str(args.latency), "--reply", "The first answer is better. [[A]]"],
                              stdout=subprocess.PIPE, text=True)
    base_url = server.stdout.readline().strip()
    try:
        run, seconds = _judge(base_url, args)
    finally:
        server.terminate()
        server.wait(timeout=10)
    rate, ideal = run.stored / seconds, args.concurrency / args.latency
    print(f"{run.stored} judgments in {seconds:.2f} s: {rate:.1f}/s; ideal {ideal:.1f}/s "
          f"(concurrency {args.concurrency} / latency {args.latency} s): {rate / ideal:.2f}")
    print(json.dumps({"benchmark": "judge_throughput", "judgments": run.stored, "seconds": round(seconds, 3),
                      "per_s": round(rate, 2), "ideal_per_s": round(ideal, 2), "ratio": round(rate / ideal, 3),
                      "goal": GOAL, "within_goal": rate / ideal >= GOAL, "concurrency": args.concurrency,
                      "latency_s": args.latency, "cpus": os.cpu_count(), "machine": platform.machine(),
                      "load_avg": list(os.getloadavg())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
