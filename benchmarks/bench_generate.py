"""Generation throughput of the evaluator against a one-prompt-at-a-time ``model.generate`` loop.

CPU (default): a tiny Llama (random weights with seeded noise, so answers differ per prompt) on 256
chat prompts of varied length. Prints the evaluator's output tokens/s, the seed-style loop's, their
ratio (goal: >= 10x) and whether the greedy outputs are identical token for token.

On CPU the tiny model's prefill costs about as much batched as one prompt at a time (it is already
parallel over tokens); batching wins on the decode steps. So the ratio grows with the answer length:
on the project's 2-core machine, 7x at 32 new tokens, 18.6x at 128. On a shared, busy machine use
``--threads 1``: two OpenMP threads competing with other processes made both paths several times slower.

    python benchmarks/bench_generate.py --threads 1          # CPU, about 2 minutes
    python benchmarks/bench_generate.py --device cuda        # Llama-3.1-8B-shaped, bf16, random weights

``--device cuda`` builds a model of Llama 3.1 8B's shape (random bf16 weights: no download) and
reports output tokens/s and the ratio to the memory-bandwidth roofline: a decode step must read
every weight once and the KV cache of the batch, so the fastest possible step takes
``(weight bytes + KV bytes) / bandwidth``; the roofline time is the sum of that over every step the
evaluator ran. The one-at-a-time loop is run on ``--baseline-prompts`` prompts only there (it is slow).

``--continuous`` also times transformers' continuous batching (``--batching continuous``) on the same
prompts, after the static run: ``continuous_tokens_per_s``, ``continuous_vs_static`` (> 1: continuous is
faster) and ``continuous_identical`` (greedy outputs equal to the static run's, token for token).

The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Peak memory bandwidth (GB/s) by device name fragment, for the roofline.
BANDWIDTH_GBS = {"H200": 4800, "H100 SXM": 3350, "H100 PCIe": 2000, "H100": 3350, "A100-SXM4-80GB": 2039,
                 "A100 80GB": 1935, "A100": 1555, "L40S": 864, "L4": 300, "A10G": 600, "A10": 600,
                 "RTX 4090": 1008, "RTX 3090": 936}

LLAMA31_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, max_position_embeddings=131072, rope_theta=500000.0, vocab_size=128256,
                  rms_norm_eps=1e-5, tie_word_embeddings=False)

GPU_DEVICE = "cuda"

WORDS = ("how do I reset my password the parcel is late tell me about Paris what is three plus four thanks "
         "a lot please explain the refund policy in detail my account was locked after several attempts").split()


def make_prompts(n: int, seed: int = 0, min_words: int = 3, max_words: int = 120) -> list[list[dict]]:
    rng = random.Random(seed)
    convs = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words))]
        conv = [{"role": "user", "content": " ".join(words) + "?"}]
        if i % 4 == 0:
            conv.insert(0, {"role": "system", "content": "You are a helpful support agent."})
        convs.append(conv)
    return convs


def build_cpu_model(directory: Path, noise: float = 0.3):
    import torch

    from evaluator.tiny import save_tiny_llama

    save_tiny_llama(directory, [" ".join(WORDS)] * 4, vocab_size=400)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(directory)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.add_(torch.randn(p.shape, generator=gen) * noise)
    model.save_pretrained(directory)
    return directory


def build_gpu_backend(directory: Path, batch_size: int):
    """A Llama-3.1-8B-shaped model with random bf16 weights on the GPU, behind the evaluator's backend."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from evaluator.models._loading import ResolvedModel
    from evaluator.models._transformers import HFBackend, load_tokenizer
    from evaluator.tiny import train_tokenizer

    tok = train_tokenizer([" ".join(WORDS)] * 4, vocab_size=400)
    tok.save_pretrained(directory)
    tokenizer = load_tokenizer(str(directory))
    eot, eos = tokenizer.convert_tokens_to_ids("<|eot_id|>"), tokenizer.convert_tokens_to_ids("<|end_of_text|>")
    config = LlamaConfig(**LLAMA31_8B, bos_token_id=tokenizer.bos_token_id, eos_token_id=[eot, eos],
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # build in bf16 directly (an fp32 8B model would take 32 GB first)
    try:
        with torch.device(GPU_DEVICE):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.eval()
    model.generation_config.eos_token_id = [eot, eos]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    resolved = ResolvedModel(base="random-llama-3.1-8b-shape", tokenizer_source=str(directory))
    return HFBackend(model, tokenizer, resolved=resolved, device=GPU_DEVICE, batch_size=batch_size,
                     max_length=8192)


def seed_loop(model, tokenizer, convs, max_new_tokens: int, stop_ids: list[int]) -> list[list[int]]:
    """What the seed code did: one ``model.generate`` call per prompt, greedy, no batching."""
    import torch

    device = model.device
    outs = []
    for conv in convs:
        text = tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        enc = tokenizer(text, add_special_tokens=False, return_tensors="pt").to(device)
        with torch.inference_mode():
            seq = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop_ids,
                                 pad_token_id=tokenizer.pad_token_id)
        new = seq[0, enc["input_ids"].shape[1]:].tolist()
        cut = next((i for i, t in enumerate(new) if t in stop_ids), None)
        outs.append(new if cut is None else new[:cut])
    return outs


def roofline_seconds(backend, gens, batch_size: int, bandwidth_gbs: float) -> float:
    """Lower bound on decode time: every step reads all weights plus the batch's KV cache once."""
    cfg = backend.model.config
    weight_bytes = sum(p.numel() * p.element_size() for p in backend.model.parameters())
    if not cfg.tie_word_embeddings:  # a decode step gathers B rows of the input embedding, not all of it
        emb = backend.model.get_input_embeddings().weight
        weight_bytes -= emb.numel() * emb.element_size()
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    kv_per_token = 2 * cfg.num_key_value_heads * head_dim * cfg.num_hidden_layers * 2  # K and V, bf16
    order = sorted(range(len(gens)), key=lambda i: -gens[i].prompt_tokens)
    total = 0.0
    for start in range(0, len(order), batch_size):
        batch = [gens[i] for i in order[start:start + batch_size]]
        width = max(g.prompt_tokens for g in batch)
        steps = max(len(g.token_ids) + (g.finish_reason == "stop") for g in batch)
        for t in range(steps):
            total += (weight_bytes + len(batch) * (width + t) * kv_per_token) / (bandwidth_gbs * 1e9)
    return total


def bandwidth_for(name: str) -> float | None:
    for key, value in BANDWIDTH_GBS.items():
        if key.lower() in name.lower():
            return float(value)
    return None


def _timed(fn, device: str):
    """(fn(), seconds), waiting for the GPU's queued work on CUDA."""
    import torch

    t0 = time.perf_counter()
    out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def _continuous_figures(backend, convs, settings, static_gens, t_static: float, device: str) -> dict:
    """The same prompts through transformers' continuous batching, against the static run just timed."""
    backend.batching = "continuous"
    try:
        gens, t = _timed(lambda: backend.generate(convs, settings, progress=False), device)
    finally:
        backend.batching = "static"
    tokens = sum(len(g.token_ids) for g in gens)
    print(f"continuous batching: {tokens / t:.1f} output tok/s ({len(convs)} prompts in {t:.1f}s)")
    return {"continuous_s": round(t, 3), "continuous_tokens_per_s": round(tokens / t, 1),
            "continuous_vs_static": round(t_static / t, 2),
            "continuous_identical": [g.token_ids for g in gens] == [g.token_ids for g in static_gens]}


def _gpu_figures(backend, gens, bandwidth_gbs, t_eval: float) -> dict:
    """Peak memory, and the roofline (weights and KV cache read once per step) when the bandwidth is known."""
    import torch

    out = {"bandwidth_gbs": bandwidth_gbs, "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
    if bandwidth_gbs:
        bs = backend.last_stats.get("batch_size") or 128  # the size that fit (after any halving)
        ideal = roofline_seconds(backend, gens, bs, bandwidth_gbs)
        out["roofline_tokens_per_s"] = round(sum(len(g.token_ids) for g in gens) / ideal, 1)
        out["fraction_of_roofline"] = round(ideal / t_eval, 3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--prompts", type=int, default=256)
    p.add_argument("--max-new-tokens", type=int, default=128,
                   help="answer length limit (default 128: a short chat answer; the evaluator's default is 256)")
    p.add_argument("--batch-size", default="auto", help="evaluator batch size (auto: largest that fits, from 128)")
    p.add_argument("--baseline-prompts", type=int, default=None,
                   help="prompts for the one-at-a-time loop (default: all on CPU, 16 on CUDA)")
    p.add_argument("--bandwidth-gbs", type=float, default=None, help="GPU memory bandwidth for the roofline")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--continuous", action="store_true",
                   help="also time transformers' continuous batching on the same prompts")
    args = p.parse_args(argv)

    import torch

    from evaluator.types import GenerationSettings

    if args.threads:
        torch.set_num_threads(args.threads)
    convs = make_prompts(args.prompts)
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    batch_size = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
    result: dict = {"device": args.device, "prompts": args.prompts, "max_new_tokens": args.max_new_tokens,
                    "torch": torch.__version__, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        if args.device == "cpu":
            from evaluator.models import load_backend

            build_cpu_model(Path(tmp))
            backend = load_backend(tmp, backend="transformers", batch_size=batch_size, dtype="float32")
            n_base = args.baseline_prompts or args.prompts
        else:
            if not torch.cuda.is_available():
                print("--device cuda: no CUDA device here", file=sys.stderr)
                return 2
            backend = build_gpu_backend(Path(tmp), batch_size)
            result["gpu"] = torch.cuda.get_device_name(0)
            n_base = args.baseline_prompts or 16
        # Warm-up (kernel selection, allocator) outside the timings.
        backend.generate(convs[:2], GenerationSettings(max_new_tokens=2), progress=False)
        if args.device == "cuda":
            torch.cuda.synchronize()
        gens, t_eval = _timed(lambda: backend.generate(convs, settings, progress=False), args.device)
        tokens = sum(len(g.token_ids) for g in gens)
        base, t_base = _timed(lambda: seed_loop(backend.model, backend.tokenizer, convs[:n_base], args.max_new_tokens,
                                                backend.stop_ids), args.device)
        base_tokens = sum(len(x) for x in base)

        eval_tps = tokens / t_eval
        base_tps = base_tokens / t_base
        identical = [g.token_ids for g in gens[:n_base]] == base
        result.update(
            output_tokens=tokens, evaluator_s=round(t_eval, 3), evaluator_tokens_per_s=round(eval_tps, 1),
            evaluator_prompts_per_s=round(len(convs) / t_eval, 2),
            baseline_prompts=n_base, baseline_s=round(t_base, 3), baseline_tokens_per_s=round(base_tps, 1),
            speedup=round(eval_tps / base_tps, 2), outputs_identical=identical,
            batch_size=backend.last_stats.get("batch_size"),
            prompt_tokens_min=min(g.prompt_tokens for g in gens), prompt_tokens_max=max(g.prompt_tokens for g in gens),
        )
        if args.device == "cuda":
            result.update(_gpu_figures(backend, gens, args.bandwidth_gbs or bandwidth_for(result["gpu"]), t_eval))
        if args.continuous:
            result.update(_continuous_figures(backend, convs, settings, gens, t_eval, args.device))
        backend.close()

    print(f"evaluator: {result['evaluator_tokens_per_s']} output tok/s ({len(convs)} prompts in {t_eval:.1f}s)")
    print(f"one-at-a-time loop: {result['baseline_tokens_per_s']} output tok/s ({n_base} prompts in {t_base:.1f}s)")
    print(f"speedup: {result['speedup']}x; greedy outputs identical: {identical}")
    if "fraction_of_roofline" in result:
        print(f"roofline: {result['roofline_tokens_per_s']} tok/s at {result['bandwidth_gbs']} GB/s; "
              f"achieved {result['fraction_of_roofline']:.1%}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
