"""The GPU check: one command that turns a short window on a GPU machine into figures (docs/gpu.md).

Run through ``scripts/gpu_check.sh`` (which installs the carried wheels first). Steps, each recorded in
``OUT/gpu_check.json`` as soon as it ends (a check cut short still leaves what it measured):

1. ``model``: a Llama-3.1-8B-shaped model (hidden 4096, 32 layers, 8 KV heads, vocab 128,256) with random
   bf16 weights built on the GPU and saved, with a tokenizer carrying the Llama 3 chat template.
2. ``generate``: ``benchmarks/bench_generate.py --device cuda``: tokens/s, peak memory, the batch size
   used and ``fraction_of_roofline`` against the GPU's memory bandwidth (goal >= 0.5).
3. ``backoff``: memory capped (``torch.cuda.set_per_process_memory_fraction``) so that ``batch_size auto``
   must halve at least twice; every output must equal an uncapped run at the size it ended on.
4. ``unsloth``: ``python -m evaluator run --backend unsloth`` on the saved model (``FastLanguageModel``
   from disk), outputs and log-probabilities stored; 4-bit when bitsandbytes imports. Where Unsloth does
   not import, the step says so (``status: unavailable``) and why.
5. ``cpu_vs_gpu``: the demo's base model scored on CPU and on the GPU, both float32: greedy outputs
   identical and reference perplexity within ``PPL_REL_TOL`` relative.
6. ``torchrun``: a 1-process ``torchrun`` run on the GPU killed with SIGKILL mid-way, resumed with
   ``torchrun``: every example once, and outputs equal to an uninterrupted run.

``--dry-run`` runs the same steps on CPU with a tiny model of the same family (its vocabulary larger than
the tokenizer's, as the 8B shape's is); the out-of-memory error is then simulated (batches above
``DRY_RUN_FITS`` raise ``torch.OutOfMemoryError``; there is no GPU memory to cap), and the JSON says so.
The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import gc
import io
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_generate
from tests.support.processes import kill_tree, result_count
from tests.support.processes import torchrun as torchrun_command

STEPS = ("model", "generate", "backoff", "unsloth", "cpu_vs_gpu", "torchrun")
TINY_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=2048, rope_theta=500000.0, vocab_size=1024,
                  rms_norm_eps=1e-5, tie_word_embeddings=False)
# fp32 on both devices (TF32 off for matmuls, PyTorch's default): a sum of per-token log-probs differs by
# float rounding only, ~1e-6 relative; the bound leaves two orders of magnitude for reduction order.
PPL_REL_TOL = 1e-4
DRY_RUN_FITS = 16  # the simulated memory limit of --dry-run: batches above this size raise OutOfMemoryError
METRICS = ["exact_match", "token_f1", "perplexity"]


class Check:
    """The steps' shared state, and the JSON written after each step."""

    def __init__(self, args) -> None:
        import torch

        self.args = args
        self.dry = args.dry_run
        self.device = "cpu" if self.dry else "cuda"
        self.out = Path(args.out)
        self.work = Path(args.work) if args.work else self.out / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.model_dir = self.work / "model"
        self.result: dict = {
            "dry_run": self.dry, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(), "torch": torch.__version__,
            "gpu": None if self.dry or not torch.cuda.is_available() else torch.cuda.get_device_name(0),
            "steps": {}}

    @functools.cache
    def demo(self):
        """The demo models: from ``$EVALBENCH_CACHE`` when set, else built once under the work folder."""
        from evaluator.demo import CACHE_ENV, build_demo_models

        return build_demo_models(os.environ.get(CACHE_ENV) or self.work / "demo", progress=False)

    def run(self, name: str, fn) -> None:
        started = time.perf_counter()
        print(f"--- {name}", flush=True)
        try:
            step = fn(self)
        except Exception as exc:  # a step that fails is recorded; the next steps still run
            traceback.print_exc()
            step = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
        step["seconds"] = round(time.perf_counter() - started, 1)
        self.result["steps"][name] = step
        self.save()
        print(f"--- {name}: {json.dumps(step)}", flush=True)

    def save(self) -> None:
        steps = self.result["steps"].values()
        self.result["ok"] = bool(steps) and all(s.get("ok") or s.get("status") == "unavailable" for s in steps)
        (self.out / "gpu_check.json").write_text(json.dumps(self.result, indent=2))

    def env(self) -> dict[str, str]:
        out = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", UNSLOTH_SKIP_TORCHVISION_CHECK="1")
        out["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), out.get("PYTHONPATH")) if p)
        if self.dry:
            out["OMP_NUM_THREADS"] = "1"
        for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            out.pop(var, None)
        return out


def build_model(check: Check) -> dict:
    """Random bf16 weights of the 8B shape (tiny in --dry-run), built on the device and saved."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from evaluator.models._transformers import load_tokenizer
    from evaluator.tiny import train_tokenizer

    train_tokenizer([" ".join(bench_generate.WORDS)] * 4, vocab_size=400).save_pretrained(check.model_dir)
    tok = load_tokenizer(str(check.model_dir))
    eos = [tok.convert_tokens_to_ids("<|eot_id|>"), tok.convert_tokens_to_ids("<|end_of_text|>")]
    shape = TINY_SHAPE if check.dry else bench_generate.LLAMA31_8B
    config = LlamaConfig(**shape, bos_token_id=tok.bos_token_id, eos_token_id=eos, pad_token_id=tok.pad_token_id,
                         torch_dtype="bfloat16")
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    started = time.perf_counter()
    try:
        with torch.device(check.device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = tok.pad_token_id
    built = time.perf_counter() - started
    model.save_pretrained(check.model_dir)
    params = sum(p.numel() for p in model.parameters())
    del model
    if check.device == "cuda":
        torch.cuda.empty_cache()
    return {"ok": True, "parameters": params, "shape": "tiny" if check.dry else "llama-3.1-8b",
            "build_s": round(built, 1), "save_s": round(time.perf_counter() - started - built, 1)}


def generate(check: Check) -> dict:
    """bench_generate on the device: its JSON, plus whether the roofline goal (>= 0.5) is met."""
    argv = (["--device", "cpu", "--prompts", "16", "--max-new-tokens", "8", "--threads", "1"] if check.dry
            else ["--device", "cuda", "--prompts", "256", "--max-new-tokens", "128", "--baseline-prompts", "16"])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = bench_generate.main(argv)
    lines = printed.getvalue().strip().splitlines()
    print("\n".join(lines[:-1]))
    figures = json.loads(lines[-1]) if code == 0 else {"error": printed.getvalue()[-2000:]}
    fraction = figures.get("fraction_of_roofline")
    figures["roofline_goal_met"] = None if fraction is None else fraction >= 0.5
    figures["ok"] = code == 0 and bool(figures.get("outputs_identical"))
    return figures


def _watch_batches(model, sizes: list, fits=None):
    """Record each batch ``model.generate`` is given (and, in --dry-run, raise the simulated OOM)."""
    import torch

    real = model.generate

    def watched(*a, **kw):
        n = kw["input_ids"].shape[0]
        sizes.append(n)
        if fits is not None and n > fits:
            raise torch.OutOfMemoryError(f"CUDA out of memory. (simulated at batch {n} by --dry-run: no GPU)")
        return real(*a, **kw)

    model.generate = watched
    return real


def backoff(check: Check) -> dict:
    """Cap memory so that a start at 64 must halve at least twice; compare with an uncapped run."""
    import torch

    from evaluator.models import load_backend
    from evaluator.types import GenerationSettings

    convs = bench_generate.make_prompts(64, seed=1, min_words=40, max_words=120)
    settings = GenerationSettings(max_new_tokens=8 if check.dry else 64)
    backend = load_backend(str(check.model_dir), backend="transformers", device=check.device, dtype="bfloat16",
                           batch_size=16)
    step: dict = {"start_batch_size": 64, "simulated_oom": check.dry}
    cuda = check.device == "cuda"
    if cuda:  # what earlier steps left cached would count against the cap
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.synchronize()
        weights = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    calibration = backend.generate(convs, settings, progress=False)
    if cuda:  # between what batch 16 needed and what 32 will need (about twice as much above the weights)
        extra = torch.cuda.max_memory_allocated() - weights
        cap = weights + 1.5 * extra
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(cap / torch.cuda.get_device_properties(0).total_memory)
        step.update(weights_gib=round(weights / 2**30, 2), batch16_extra_gib=round(extra / 2**30, 3),
                    cap_gib=round(cap / 2**30, 2))
    sizes: list[int] = []
    real = _watch_batches(backend.model, sizes, fits=None if cuda else DRY_RUN_FITS)
    backend.batch_size = 64
    try:
        capped = backend.generate(convs, settings, progress=False)
    finally:
        backend.model.generate = real
        if cuda:
            torch.cuda.set_per_process_memory_fraction(1.0)
    final = backend.last_stats["batch_size"]
    backend.batch_size = final
    reference = calibration if final == 16 else backend.generate(convs, settings, progress=False)
    backend.close()
    same = sum(a.token_ids == b.token_ids for a, b in zip(capped, reference))
    halvings = sizes.index(final) if final in sizes else None
    step.update(batch_sizes_tried=sorted(set(sizes), reverse=True), final_batch_size=final, halvings=halvings,
                prompts=len(convs), identical_outputs=same)
    step["ok"] = halvings is not None and halvings >= 2 and same == len(convs)
    return step


def _evaluate(check: Check, model: Path, data: Path, url: str, name: str, *extra: str, python: str = sys.executable,
              timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [python, "-m", "evaluator", "run", "--model", str(model), "--dataset", str(data),
           "--db", url, "--name", name, "--metric", *METRICS, "--no-progress", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, env=check.env(), capture_output=True, text=True, timeout=timeout)
    print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
    return proc


def stored(url: str, name: str) -> dict[str, dict]:
    """The run's results by example key."""
    import db

    engine = db.make_engine(url)
    try:
        with db.session_factory(engine)() as s:
            return {r["example_key"]: r for r in db.export_rows(session=s, run_id=db.find_run(session=s, ref=name))}
    finally:
        engine.dispose()


def unsloth(check: Check) -> dict:
    """The Unsloth backend on the saved model, through ``python -m evaluator run``; 4-bit when it can."""
    from evaluator.demo import TEST_FILE

    python = check.args.unsloth_python or sys.executable
    probe = subprocess.run([python, "-c", "import unsloth, sys; print(unsloth.__version__)"], env=check.env(),
                           capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": "unavailable", "reason": f"unsloth does not import: {reason}"[:500]}
    step: dict = {"status": "ran", "unsloth": probe.stdout.strip().splitlines()[-1]}
    url = f"sqlite:///{check.work / 'unsloth.sqlite'}"
    proc = _evaluate(check, check.model_dir, TEST_FILE, url, "unsloth-bf16", "--backend", "unsloth", "--limit", "8",
                     "--max-new-tokens", "16", "--device", check.device, "--dtype", "bfloat16", python=python)
    if proc.returncode != 0:
        return {**step, "ok": False, "error": proc.stderr[-1500:]}
    rows = stored(url, "unsloth-bf16")
    step.update(examples=len(rows), with_output=sum(bool(r["output_tokens"]) for r in rows.values()),
                with_logprobs=sum(bool(r["token_logprobs"]) for r in rows.values()),
                with_perplexity=sum(r["metrics"].get("perplexity") is not None for r in rows.values()))
    step["ok"] = len(rows) == 8 and step["with_output"] == step["with_logprobs"] == step["with_perplexity"] == 8
    bnb = subprocess.run([python, "-c", "import bitsandbytes"], env=check.env(), capture_output=True, text=True)
    if bnb.returncode != 0 or check.dry:
        step["4bit"] = "not run: " + ("no GPU (--dry-run)" if check.dry else "bitsandbytes does not import "
                                      "(not carried: its wheel alone exceeds the 64 MiB budget)")
        return step
    four = _evaluate(check, check.model_dir, TEST_FILE, url, "unsloth-4bit", "--backend", "unsloth", "--limit", "8",
                     "--max-new-tokens", "16", "--device", "cuda", "--load-in-4bit", python=python)
    step["4bit"] = {"ok": four.returncode == 0, **({"examples": len(stored(url, "unsloth-4bit"))}
                                                   if four.returncode == 0 else {"error": four.stderr[-800:]})}
    return step


def cpu_vs_gpu(check: Check) -> dict:
    """The demo base model on CPU and on the device, float32: outputs and reference perplexity."""
    from evaluator.demo import TEST_FILE

    demo = check.demo()
    url = f"sqlite:///{check.work / 'cpu_vs_gpu.sqlite'}"
    runs = {}
    for name, device in (("cpu", "cpu"), ("device", check.device)):
        proc = _evaluate(check, demo.base_dir, TEST_FILE, url, name, "--limit", "40", "--max-new-tokens", "24",
                         "--device", device, "--dtype", "float32", "--batch-size", "8", "--backend", "transformers")
        if proc.returncode != 0:
            return {"ok": False, "error": proc.stderr[-1500:]}
        runs[name] = stored(url, name)
    cpu, dev = runs["cpu"], runs["device"]
    same = sum(cpu[k]["output"] == dev[k]["output"] for k in cpu)
    rel = [abs(dev[k]["metrics"]["perplexity"] - cpu[k]["metrics"]["perplexity"]) / cpu[k]["metrics"]["perplexity"]
           for k in cpu if cpu[k]["metrics"].get("perplexity") is not None]
    worst = max(rel, default=None)
    step = {"examples": len(cpu), "identical_outputs": same, "perplexity_compared": len(rel),
            "max_rel_perplexity_diff": worst, "tolerance": PPL_REL_TOL, "devices": ["cpu", check.device]}
    step["ok"] = dev.keys() == cpu.keys() and same == len(cpu) and bool(rel) and worst <= PPL_REL_TOL
    return step


def torchrun(check: Check) -> dict:
    """torchrun, 1 process on the device: SIGKILL mid-way, resume with torchrun, compare with a clean run."""
    from evaluator.demo import TEST_FILE

    demo = check.demo()
    url = f"sqlite:///{check.work / 'torchrun.sqlite'}"
    args = ["--model", str(demo.base_dir), "--dataset", str(TEST_FILE), "--limit", "60", "--max-new-tokens", "24",
            "--batch-size", "1", "--backend", "transformers", "--device", check.device, "--metric", *METRICS, "--no-progress"]
    proc = subprocess.Popen([*torchrun_command(1), *args, "--db", url, "--name", "killed"], cwd=ROOT,
                            env=check.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while result_count(url) < 8:
            if proc.poll() is not None:
                return {"ok": False, "error": proc.stdout.read().decode()[-1500:]}
            if time.monotonic() > deadline:
                return {"ok": False, "error": "the run committed nothing in 300 s"}
            time.sleep(0.05)
        kill_tree(proc.pid)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)
    killed_at = result_count(url)
    run = partial(subprocess.run, cwd=ROOT, env=check.env(), capture_output=True, text=True, timeout=600)
    resume = run([*torchrun_command(1), "--resume", "killed", "--db", url, "--no-progress"])
    clean_url = f"sqlite:///{check.work / 'torchrun-clean.sqlite'}"
    clean = run([sys.executable, "-m", "evaluator", "run", *args, "--db", clean_url, "--name", "clean"])
    for proc in (resume, clean):
        if proc.returncode != 0:
            return {"ok": False, "killed_at": killed_at, "error": proc.stderr[-1500:]}
    got, want = stored(url, "killed"), stored(clean_url, "clean")
    differ = [k for k in want if k not in got or (got[k]["output"], got[k]["metrics"])
              != (want[k]["output"], want[k]["metrics"])]
    step = {"examples": len(want), "killed_at": killed_at, "results_after_resume": result_count(url),
            "resume_said_finished": "finished" in resume.stdout, "differing_from_clean_run": len(differ)}
    step["ok"] = (0 < killed_at < len(want) and step["results_after_resume"] == len(want)
                  and step["resume_said_finished"] and not differ)
    return step


STEP_FUNCTIONS = {"model": build_model, "generate": generate, "backoff": backoff, "unsloth": unsloth,
                  "cpu_vs_gpu": cpu_vs_gpu, "torchrun": torchrun}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="the same steps on CPU with a tiny model")
    p.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "artifacts" / "gpu"),
                   help="folder for gpu_check.json (default: $OUT, else artifacts/gpu/)")
    p.add_argument("--work", help="folder for the models and stores (default: OUT/work)")
    p.add_argument("--only", help="comma-separated steps (default: all; model is built when a step needs it)")
    p.add_argument("--unsloth-python", help="the Python that runs the unsloth step (default: this one)")
    args = p.parse_args(argv)
    steps = args.only.split(",") if args.only else list(STEPS)
    unknown = set(steps) - set(STEPS)
    if unknown:
        p.error(f"unknown steps {sorted(unknown)}; known: {', '.join(STEPS)}")
    if {"backoff", "unsloth"} & set(steps) and "model" not in steps:
        steps.insert(0, "model")
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (use --dry-run on CPU)", file=sys.stderr)
        return 2
    Path(args.out).mkdir(parents=True, exist_ok=True)
    check = Check(args)
    started = time.perf_counter()
    for name in STEPS:
        if name in steps:
            check.run(name, STEP_FUNCTIONS[name])
    check.result["seconds"] = round(time.perf_counter() - started, 1)
    check.save()
    print(json.dumps(check.result))
    return 0 if check.result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
