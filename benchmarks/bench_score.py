"""Scoring throughput: ``evaluator.scoring.score_samples`` against a naive per-example loop.

The naive loop is what a first implementation does: for every example, build fresh scorers
(``sacrebleu.sentence_bleu`` / ``sentence_chrf`` build a metric object per call, and a new
``RougeScorer(use_stemmer=True)``), on one core. ``score_samples`` reuses one scorer per process,
caches Porter stems, tokenizes once for the three ROUGE variants, and spreads chunks over a process
pool. Both must give identical numbers; the script checks that before it reports anything.

    python benchmarks/bench_score.py            # 5,000 pairs, all cores
    python benchmarks/bench_score.py --n 500 --workers 2

The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TEXT_METRICS = ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "exact_match", "token_f1", "length_ratio")


def make_pairs(n: int, seed: int = 0):
    """Support-style answers: references of 2-8 sentences (~20-160 words, median ~70), outputs that
    paraphrase them (word swaps, drops, insertions, reordered sentences), a few exact copies and
    a few empty outputs."""
    from evaluator.types import Sample

    rng = random.Random(seed)
    base = ("the a your order account password email link reset refund parcel delivery team support issue "
            "please thank you we will can should have has been is are was sorry delay today tomorrow week "
            "click open settings page button check confirm update payment card invoice number details "
            "contact help information available request process receive send sent within business days "
            "running connected configured installation installed error message screen device browser "
            "version latest restart again problem resolved additional charge subscription plan").split()
    vocab = base + [w + s for w in base if len(w) > 3 for s in ("s", "ed", "ing", "ly", "ment")]
    weights = [1.0 / (i + 1) ** 0.8 for i in range(len(vocab))]

    def sentence():
        words = rng.choices(vocab, weights, k=rng.randint(6, 20))
        return " ".join(words).capitalize() + rng.choice([".", ".", ".", "!", "?"])

    samples = []
    for i in range(n):
        ref_sents = [sentence() for _ in range(rng.randint(2, 8))]
        out_sents = []
        for s in ref_sents:
            if rng.random() < 0.15:
                continue
            words = s.split()
            new = []
            for w in words:
                r = rng.random()
                if r < 0.12:
                    new.append(rng.choice(vocab))
                elif r < 0.18:
                    continue
                else:
                    new.append(w)
                if rng.random() < 0.05:
                    new.append(rng.choice(vocab))
            out_sents.append(" ".join(new))
        if rng.random() < 0.2:
            rng.shuffle(out_sents)
        output = " ".join(out_sents)
        if i % 50 == 7:
            output = " ".join(ref_sents)
        if i % 97 == 3:
            output = ""
        lps = [math.log(rng.uniform(0.05, 1.0)) for _ in range(max(1, len(output.split())))]
        ref_lps = [math.log(rng.uniform(0.01, 1.0)) for _ in range(len(" ".join(ref_sents).split()) + 1)]
        samples.append(Sample(output=output, reference=" ".join(ref_sents), output_logprobs=lps,
                              output_tokens=len(lps), reference_logprobs=ref_lps))
    return samples


def naive_scores(samples):
    """Fresh scorers per example, one core. Same definitions as the built-ins (empty output → 0)."""
    import sacrebleu
    from rouge_score import rouge_scorer

    from evaluator.scoring import get_metrics

    cheap = {m.name: m.fn for m in get_metrics(["exact_match", "token_f1", "length_ratio", "perplexity",
                                                 "confidence", "min_token_prob", "output_tokens"])}
    out = []
    for s in samples:
        empty = not s.output.strip()
        row = {}
        row["bleu"] = 0.0 if empty else float(sacrebleu.sentence_bleu(s.output, [s.reference]).score)
        row["chrf"] = 0.0 if empty else float(sacrebleu.sentence_chrf(s.output, [s.reference]).score)
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
        r = scorer.score(s.reference, s.output)
        for k in ("rouge1", "rouge2", "rougeL"):
            row[k] = 0.0 if empty else float(r[k].fmeasure)
        for name, fn in cheap.items():
            row[name] = fn(s)
        out.append(row)
    return out


def _cpu_seconds(pids) -> float:
    """User + system CPU seconds used so far by the given processes (Linux /proc; 0 elsewhere)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def _time_aggregates(samples, single) -> tuple[int, float]:
    """What finalize_run adds at the end of a run: corpus statistics and bootstrap CIs, 3 categories.
    Returns (aggregate rows, seconds)."""
    from evaluator.scoring import StoredSample, aggregate_rows
    from evaluator.scoring._text import clear_segment_stats

    stored = [StoredSample(output=x.output, reference=x.reference, result_id=i, example_id=i,
                           category=("billing", "shipping", "tech")[i % 3], tags=["hard"] if i % 4 == 0 else [],
                           ref_nll=-math.fsum(x.reference_logprobs), ref_tokens=len(x.reference_logprobs))
              for i, x in enumerate(samples)]
    values = {i: {k: (v, None) for k, v in row.items() if v is not None} for i, row in enumerate(single)}
    clear_segment_stats()  # as from the store alone; in the process that scored they are memoised
    t = time.perf_counter()
    n_rows = len(aggregate_rows(stored, values))
    return n_rows, time.perf_counter() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=5000, help="example pairs (default 5000)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="scoring processes (default: all cores)")
    p.add_argument("--block", type=int, default=250, help="pairs per interleaved timing block")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from evaluator.scoring import get_metrics, score_samples, start_pool
    from evaluator.scoring._score import _POOLS
    from evaluator.scoring._text import clear_segment_stats

    samples = make_pairs(args.n, args.seed)
    words = sum(len(s.reference.split()) for s in samples) / len(samples)
    print(f"{args.n} pairs, mean reference length {words:.0f} words, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    metrics = get_metrics()

    # Imports and first-call costs are not timed, for either side.
    naive_scores(samples[:20])
    score_samples(samples[:20], metrics)
    t = time.perf_counter()
    start_pool(args.workers)
    pool_start_s = time.perf_counter() - t
    pids = [pr.pid for pool in _POOLS.values() for pr in pool._processes.values()]

    # The three ways are timed block by block, interleaved and in rotating order, so that other
    # load on a shared machine affects them alike. Wall time and CPU time are both recorded.
    wall = dict(naive=0.0, single=0.0, pooled=0.0)
    cpu = dict(naive=0.0, single=0.0, pooled=0.0)
    out: dict[str, list] = dict(naive=[], single=[], pooled=[])
    runners = dict(naive=naive_scores, single=lambda b: score_samples(b, metrics),
                   pooled=lambda b: score_samples(b, metrics, workers=args.workers))
    order = ["naive", "single", "pooled"]
    for k, start in enumerate(range(0, args.n, args.block)):
        block = samples[start:start + args.block]
        for name in order[k % 3:] + order[:k % 3]:
            clear_segment_stats()  # no timing may reuse statistics another one computed on this block
            c0 = time.process_time() + (_cpu_seconds(pids) if name == "pooled" else 0.0)
            t0 = time.perf_counter()
            out[name].append(runners[name](block))
            wall[name] += time.perf_counter() - t0
            cpu[name] += time.process_time() + (_cpu_seconds(pids) if name == "pooled" else 0.0) - c0
    naive, single, pooled = ([row for part in out[n] for row in part] for n in order)

    rate = {k: args.n / v for k, v in wall.items()}
    cpu_rate = {k: args.n / v for k, v in cpu.items() if v > 0}
    print(f"naive loop (fresh scorers, 1 core):  {rate['naive']:7.1f} pairs/s   ({cpu_rate['naive']:.1f} per CPU-second)")
    print(f"score_samples, workers=1:            {rate['single']:7.1f} pairs/s   ({cpu_rate['single']:.1f} per CPU-second)")
    print(f"score_samples, workers={args.workers}:            {rate['pooled']:7.1f} pairs/s   "
          f"({rate['pooled'] / args.workers:.1f} per core; {cpu_rate.get('pooled', float('nan')):.1f} per CPU-second; "
          f"pool start-up {pool_start_s:.1f} s, once per process, not timed)")

    check = TEXT_METRICS + ("perplexity", "confidence", "min_token_prob", "output_tokens")
    identical = all(all(a[m] == b[m] == c[m] for m in check) for a, b, c in zip(naive, single, pooled))
    chunked = score_samples(samples[:300], metrics, workers=args.workers, chunk_size=7) == single[:300]
    print(f"identical numbers (naive = workers 1 = workers {args.workers}, any chunk size): {identical and chunked}")
    n_rows, aggregate_s = _time_aggregates(samples, single)
    print(f"aggregates of the run from the store ({n_rows} rows, 5 slices, BLEU/chrF statistics computed): "
          f"{aggregate_s:.1f} s")

    speedup = wall["naive"] / wall["pooled"]
    print(f"speed-up over the naive loop: {speedup:.2f}x wall "
          f"({wall['naive'] / wall['single']:.2f}x from scorer reuse and caching alone, in one process)")
    print(json.dumps({
        "n": args.n, "workers": args.workers, "cores": os.cpu_count(),
        "naive_pairs_per_s": round(rate["naive"], 1),
        "single_worker_pairs_per_s": round(rate["single"], 1),
        "pairs_per_s": round(rate["pooled"], 1),
        "pairs_per_s_per_core": round(rate["pooled"] / args.workers, 1),
        "speedup": round(speedup, 2),
        "speedup_single_worker": round(wall["naive"] / wall["single"], 2),
        "pairs_per_cpu_s": {k: round(v, 1) for k, v in cpu_rate.items()},
        "pool_start_s": round(pool_start_s, 2),
        "aggregate_s": round(aggregate_s, 2),
        "identical": bool(identical and chunked),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }))
    return 0 if identical and chunked else 1


if __name__ == "__main__":
    raise SystemExit(main())
