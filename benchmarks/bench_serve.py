"""Throughput of ``python -m evaluator serve`` at 1, 4 and 16 concurrent clients, against the batch evaluator on
the same prompts.

A tiny Llama (bench_generate's: random weights with seeded noise, so answers differ per prompt) is served by a
real ``evaluator serve`` process on a free loopback port; a pool of N client threads sends every prompt once
(greedy, ``max_tokens`` fixed) through HTTP. Per concurrency: requests/s, completion tokens/s, the ratio to the
batch evaluator's tokens/s on the same prompts in this process (``HFBackend.generate``, batch size auto), and
whether every served answer equals the evaluator's.

    python benchmarks/bench_serve.py                    # 64 prompts, 64 new tokens, about 2 minutes on 2 cores
    python benchmarks/bench_serve.py --prompts 128 --threads 1

The server batches what arrives together (up to --max-batch-size), so a single client gets no batching at all
and 16 clients get batches of up to 16; the batch evaluator sees all prompts at once. The last line printed is one
JSON object with the figures.
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
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (ROOT, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_generate import build_cpu_model, make_prompts


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: Path, port: int, max_batch: int, threads: int) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if threads else dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-m", "evaluator", "serve", "--model", str(model_dir), "--port", str(port),
                             "--device", "cpu", "--max-batch-size", str(max_batch)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode()[-2000:])
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the server did not start")


def batch_evaluator(model_dir: Path, prompts, max_new_tokens: int) -> tuple[list[str], dict]:
    from evaluator.models import load_backend
    from evaluator.types import GenerationSettings

    backend = load_backend(str(model_dir), backend="transformers", device="cpu")
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    backend.generate(prompts[:4], settings, progress=False)  # warm-up
    started = time.perf_counter()
    gens = backend.generate(prompts, settings, progress=False)
    seconds = time.perf_counter() - started
    tokens = sum(g.n_tokens for g in gens)
    backend.close()
    return [g.text for g in gens], {"seconds": round(seconds, 2), "requests_per_s": round(len(prompts) / seconds, 2),
                                    "tokens_per_s": round(tokens / seconds, 1), "tokens": tokens}


def clients(base_url: str, model: str, prompts, max_new_tokens: int, concurrency: int) -> tuple[list[str], dict]:
    import httpx

    with httpx.Client(timeout=600, limits=httpx.Limits(max_connections=concurrency)) as http:
        def ask(messages):
            r = http.post(f"{base_url}/chat/completions", json={
                "model": model, "messages": messages, "max_tokens": max_new_tokens, "temperature": 0})
            r.raise_for_status()
            body = r.json()
            return body["choices"][0]["message"]["content"], body["usage"]["completion_tokens"]

        ask(prompts[0])  # warm-up
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            answers = list(pool.map(ask, prompts))
        seconds = time.perf_counter() - started
    tokens = sum(n for _, n in answers)
    return [a for a, _ in answers], {"seconds": round(seconds, 2),
                                     "requests_per_s": round(len(prompts) / seconds, 2),
                                     "tokens_per_s": round(tokens / seconds, 1), "tokens": tokens}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--max-batch-size", type=int, default=16, help="the server's (default 16)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads in both processes (default: torch's)")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    prompts = make_prompts(args.prompts)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_cpu_model(Path(tmp) / "tiny")
        direct, reference = batch_evaluator(model_dir, prompts, args.max_new_tokens)
        print(f"batch evaluator: {reference['tokens_per_s']} tok/s, {reference['requests_per_s']} req/s")
        port = _free_port()
        server = start_server(model_dir, port, args.max_batch_size, args.threads)
        try:
            served = {}
            for c in args.concurrency:
                answers, figures = clients(f"http://127.0.0.1:{port}/v1", str(model_dir), prompts,
                                           args.max_new_tokens, c)
                figures["vs_batch_evaluator"] = round(figures["tokens_per_s"] / reference["tokens_per_s"], 3)
                figures["identical_to_evaluator"] = answers == direct
                served[str(c)] = figures
                print(f"concurrency {c:>2}: {figures['tokens_per_s']} tok/s, {figures['requests_per_s']} req/s, "
                      f"{figures['vs_batch_evaluator']}x the batch evaluator, identical: "
                      f"{figures['identical_to_evaluator']}")
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(json.dumps({"benchmark": "serve", "prompts": args.prompts, "max_new_tokens": args.max_new_tokens,
                      "server_max_batch_size": args.max_batch_size, "threads": args.threads or torch.get_num_threads(),
                      "batch_evaluator": reference, "served": served, "machine": platform.processor() or platform.machine(),
                      "cpus": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
