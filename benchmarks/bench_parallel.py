"""Data-parallel speed-up: the same evaluation with 1 process and with N processes (torchrun, gloo, CPU).

A tiny Llama (random weights with seeded noise, so answers differ per prompt) on 64 chat prompts of
varied length, every built-in metric and perplexity, each run into its own SQLite store:

    python -m evaluator run ...                                    (1 process, T threads)
    torchrun --standalone --nproc_per_node N -m evaluator run ...  (N processes, T/N threads each)

The machine's cores are shared out, not multiplied: ``--threads`` (default: all cores) is the total
for both runs, so the figure is what splitting a fixed machine into ranks buys. A third run, 1 process
with T/N threads, separates the ranks' gain from the threads' (on a busy 2-core machine two OpenMP
threads in one process can be slower than one). Printed: wall time of
each command (process start, model load, generation, scoring, store writes, aggregates), the runner's
own generation time ("tokens in X s" of its summary), the speed-ups, whether outputs and finish
reasons are identical example for example, the largest relative difference of any metric value
(perplexity moves in the last digits when teacher-forcing batches are composed differently), and
the load average before and after (the project's machines are shared). The last line printed is one
JSON object with the figures.

    python benchmarks/bench_parallel.py                  # 64 prompts, 32 new tokens, 2 processes
    python benchmarks/bench_parallel.py --prompts 128 --max-new-tokens 64
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from bench_generate import build_cpu_model, make_prompts

REFERENCES = ("Click the reset link in the email.", "The answer is 7.", "Paris is the capital of France.",
              "I am sorry about the delay.")


def write_dataset(path: Path, n: int) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i, conv in enumerate(make_prompts(n)):
            row = {"messages": [*conv, {"role": "assistant", "content": REFERENCES[i % len(REFERENCES)]}]}
            f.write(json.dumps(row) + "\n")
    return path


def run(nproc: int, threads: int, model: Path, data: Path, url: str, max_new_tokens: int) -> dict:
    """One evaluation with ``nproc`` processes sharing ``threads`` CPU threads."""
    args = ["--model", str(model), "--dataset", str(data), "--db", url, "--name", f"bench-{nproc}",
            "--max-new-tokens", str(max_new_tokens), "--backend", "transformers", "--batch-size", "auto",
            "--no-progress"]
    if nproc == 1:
        cmd = [sys.executable, "-m", "evaluator", "run", *args]
    else:
        exe = Path(sys.executable).with_name("torchrun")
        launcher = [str(exe)] if exe.is_file() else [sys.executable, "-m", "torch.distributed.run"]
        cmd = [*launcher, "--standalone", "--nproc_per_node", str(nproc), "-m", "evaluator", "run", *args]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS=str(max(1, threads // nproc)), PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:6])} ... failed:\n{proc.stderr[-3000:]}")
    m = re.search(r"(\d+) tokens in ([\d.]+)s", proc.stdout)
    return {"wall_s": round(wall, 2), "generate_s": float(m.group(2)) if m else None,
            "output_tokens": int(m.group(1)) if m else None, "threads_per_process": max(1, threads // nproc)}


def results(url: str) -> dict:
    import db

    engine = db.make_engine(url)
    try:
        with db.session_factory(engine)() as s:
            return {r["example_key"]: (r["output"], r["finish_reason"], r["metrics"])
                    for r in db.export_rows(session=s, run_id=1)}
    finally:
        engine.dispose()


def compare(a: dict, b: dict) -> tuple[bool, float]:
    """(outputs and finish reasons identical for every example, largest relative metric difference)."""
    same = a.keys() == b.keys() and all(a[k][:2] == b[k][:2] for k in a)
    worst = 0.0
    for k in a.keys() & b.keys():
        for name, x in a[k][2].items():
            y = b[k][2].get(name)
            if x is None or y is None:
                worst = max(worst, 0.0 if x is y else float("inf"))
            elif x != y:
                worst = max(worst, abs(x - y) / max(abs(x), abs(y)))
    return same, worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--nproc", type=int, default=2, help="processes of the parallel run (default 2)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="total CPU threads for each run")
    args = ap.parse_args(argv)

    per = max(1, args.threads // args.nproc)
    configs = [("single", 1, args.threads), ("single_thin", 1, per), ("parallel", args.nproc, args.nproc * per)]
    if per == args.threads:
        configs = [configs[0], configs[2]]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp:
        tmp = Path(tmp)
        model = build_cpu_model(tmp / "model")
        data = write_dataset(tmp / "chat.jsonl", args.prompts)
        figures, outputs = {}, {}
        for label, nproc, threads in configs:
            url = f"sqlite:///{tmp / f'{label}.sqlite'}"
            figures[label] = run(nproc, threads, model, data, url, args.max_new_tokens)
            outputs[label] = results(url)
        identical, metric_diff = compare(outputs["single"], outputs["parallel"])
    load_after = os.getloadavg()

    many = figures["parallel"]
    speedups = {}
    for label in figures:
        if label != "parallel":
            f = figures[label]
            speedups[label] = {"wall": round(f["wall_s"] / many["wall_s"], 3),
                               "generate": round(f["generate_s"] / many["generate_s"], 3)}
    print(f"{args.prompts} prompts, {args.max_new_tokens} new tokens, {args.threads} CPU threads in total, "
          f"{os.cpu_count()} cores; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    for label, nproc, _ in configs:
        f = figures[label]
        print(f"  {nproc} process{'es' if nproc > 1 else ''} x {f['threads_per_process']} thread(s): wall "
              f"{f['wall_s']:.1f}s, generation {f['generate_s']:.1f}s ({f['output_tokens']} tokens)")
    for label, sp in speedups.items():
        threads = figures[label]["threads_per_process"]
        print(f"  speed-up of {args.nproc} processes over 1 process x {threads} thread(s): wall {sp['wall']:.2f}x, "
              f"generation {sp['generate']:.2f}x")
    print(f"  outputs identical to the single-process run: {identical}; largest relative metric difference "
          f"{metric_diff:.1e}")
    print(json.dumps({
        "bench": "parallel", "prompts": args.prompts, "max_new_tokens": args.max_new_tokens, "nproc": args.nproc,
        "threads": args.threads, "cores": os.cpu_count(), **figures, "speedup": speedups,
        "identical_outputs": identical, "max_metric_rel_diff": metric_diff,
        "load_avg_before": round(load_before[0], 2), "load_avg_after": round(load_after[0], 2),
    }))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
