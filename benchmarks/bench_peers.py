"""evalbench side by side with lm-evaluation-harness: the same model, the same prompts, greedy, same length.

    python benchmarks/bench_peers.py                  # 120 prompts, 64 new tokens, 3 repetitions (~10 minutes)
    python benchmarks/bench_peers.py --prompts 40 --repeats 1

lm-eval runs in its own virtual environment (``.venv-lmeval``, made by this script with ``lm-eval==0.4.13``
when it is missing), as a user runs it: ``lm_eval --model hf ... --apply_chat_template --log_samples``, on a
task written for these prompts (a JSON file, ``generate_until``, ``until`` empty, ``max_gen_toks``). evalbench
runs ``python -m evaluator run`` on the same conversations. Both use the same tiny Llama (random weights with
seeded noise, so answers differ per prompt; built on the spot), on CPU, float32, one thread each, and they
alternate, ``--repeats`` times each. Every figure is a wall time of the whole command (start, load, generate,
score, write), and of the generation alone where the tool reports it (evalbench's summary; lm-eval's
progress bar of its generate_until requests).

The last line printed is one JSON object: ``speedup_end_to_end`` (lm-eval's median wall time ÷ evalbench's),
``speedup_generate`` (the same for generation alone), ``identical`` (outputs equal, after stripping white
space at the ends, as lm-eval strips nothing and evalbench nothing: the count is of exact equals), ``n``,
``load_avg``, and the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import db
from benchmarks.bench_generate import build_cpu_model, make_prompts

LM_EVAL = "lm-eval==0.4.13"
TASK = """task: evalbench_peer
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{target}}}}"
generation_kwargs:
  until: []
  max_gen_toks: {max_new_tokens}
  do_sample: false
metric_list:
  - metric: exact_match
"""
_ELAPSED = re.compile(r"Running generate_until requests: 100%.*?\[(?:(\d+):)?(\d+):(\d+)<")


def lm_eval_venv(path: Path) -> Path:
    """The lm-eval environment's ``lm_eval`` command, made when missing (a few minutes, once)."""
    exe = path / "bin" / "lm_eval"
    if not exe.exists():
        print(f"making {path} with {LM_EVAL} (once)", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        # lm-eval's "hf" model imports accelerate (and peft) without declaring them
        subprocess.run([str(path / "bin" / "pip"), "install", "-q", LM_EVAL, "torch<2.14", "accelerate>=1.0,<2",
                        "peft>=0.13,<1"], check=True)
    return exe


def write_data(work: Path, n: int) -> tuple[Path, Path, list[str]]:
    """The same user messages as an evalbench dataset and as lm-eval's documents; the prompts in order."""
    prompts = [c[-1]["content"] for c in make_prompts(n, seed=0)]
    ours, theirs = work / "chats.jsonl", work / "docs.jsonl"
    ours.write_text("".join(json.dumps({"messages": [{"role": "user", "content": p},
                                                     {"role": "assistant", "content": "ok"}]}) + "\n"
                            for p in prompts))
    theirs.write_text("".join(json.dumps({"prompt": p, "target": "ok"}) + "\n" for p in prompts))
    return ours, theirs, prompts


def run_evalbench(model: Path, data: Path, work: Path, max_new: int, rep: int) -> tuple[float, float, dict[str, str]]:
    url = f"sqlite:///{work / f'evalbench-{rep}.sqlite'}"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "evaluator", "run", "--model", str(model), "--dataset", str(data),
                           "--db", url, "--name", "peer", "--max-new-tokens", str(max_new), "--metric",
                           "exact_match", "--no-perplexity", "--no-progress", "--backend", "transformers",
                           "--device", "cpu", "--dtype", "float32"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"evalbench failed:\n{proc.stderr[-3000:]}")
    engine = db.open_store_readonly(url)
    with db.session_factory(engine)() as s:
        run_id = db.find_run(session=s, ref="peer")
        rows = list(db.export_rows(session=s, run_id=run_id))
    engine.dispose()
    match = re.search(r"tokens in ([\d.]+)s", proc.stdout)  # the run summary's "generated ... in 12.3s"
    gen = float(match.group(1)) if match else float("nan")
    return wall, gen, {r["messages"][-1]["content"]: r["output"] for r in rows}


def run_lm_eval(exe: Path, model: Path, docs: Path, work: Path, max_new: int, rep: int
                ) -> tuple[float, float, dict[str, str]]:
    tasks = work / f"tasks-{rep}"
    tasks.mkdir(exist_ok=True)
    (tasks / "evalbench_peer.yaml").write_text(TASK.format(data=docs, max_new_tokens=max_new))
    out = work / f"lm-eval-{rep}"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    t0 = time.perf_counter()
    proc = subprocess.run([str(exe), "--model", "hf", "--model_args", f"pretrained={model},dtype=float32", "--device", "cpu",
                           "--tasks", "evalbench_peer", "--include_path", str(tasks), "--apply_chat_template",
                           "--batch_size", "auto", "--log_samples", "--output_path", str(out)],
                          cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"lm-eval failed:\n{proc.stderr[-3000:]}")
    (samples,) = list(out.rglob("samples_evalbench_peer_*.jsonl"))
    outputs = {}
    for line in samples.read_text().splitlines():
        rec = json.loads(line)
        outputs[rec["doc"]["prompt"]] = rec["resps"][0][0]
    m = None
    for m in _ELAPSED.finditer(proc.stderr):
        pass
    gen = (int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + int(m.group(3))) if m else float("nan")
    return wall, float(gen), outputs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=120)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lm-eval-venv", type=Path, default=ROOT / ".venv-lmeval")
    args = ap.parse_args(argv)
    exe = lm_eval_venv(args.lm_eval_venv)
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        work = Path(tmp)
        model = build_cpu_model(work / "tiny")
        ours, theirs, prompts = write_data(work, args.prompts)
        times: dict[str, list[float]] = {"evalbench": [], "lm_eval": [], "evalbench_gen": [], "lm_eval_gen": []}
        identical = None
        for rep in range(args.repeats):
            for tool in ("lm_eval", "evalbench") if rep % 2 else ("evalbench", "lm_eval"):
                if tool == "evalbench":
                    wall, gen, a = run_evalbench(model, ours, work, args.max_new_tokens, rep)
                else:
                    wall, gen, b = run_lm_eval(exe, model, theirs, work, args.max_new_tokens, rep)
                times[tool].append(wall)
                times[f"{tool}_gen"].append(gen)
                print(f"{tool:9s} rep {rep + 1}: {wall:.1f} s wall, {gen:.1f} s generating", file=sys.stderr,
                      flush=True)
            identical = sum(1 for p in prompts if a.get(p) is not None and a.get(p) == b.get(p))
        med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "peers", "peer": LM_EVAL, "n": len(prompts), "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats, "evalbench_s": round(med["evalbench"], 2), "lm_eval_s": round(med["lm_eval"], 2),
        "speedup_end_to_end": round(med["lm_eval"] / med["evalbench"], 3),
        "evalbench_generate_s": round(med["evalbench_gen"], 2), "lm_eval_generate_s": round(med["lm_eval_gen"], 2),
        "speedup_generate": round(med["lm_eval_gen"] / med["evalbench_gen"], 3) if med["evalbench_gen"] else None,
        "identical": identical, "load_avg": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
