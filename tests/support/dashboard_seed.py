"""A realistic store for dashboard tests, the smoke test, screenshots and benchmarks.

``seed_store(url)`` writes, through the db write API only:

- dataset ``support-chat.jsonl`` / ``test`` with ``n_examples`` examples in five categories, multi-turn
  conversations with system prompts, tags, a few without reference, and HOSTILE strings (HTML, script,
  markdown links, SQL metacharacters, right-to-left text) in prompts, references, outputs and categories;
- ``versions`` fine-tuned versions of family ``acme-chat`` (runs ``acme-chat-v1`` ... a week apart), each
  with a baseline run of the base model (``baseline_for_id``), metrics with aggregates and 95% CIs per
  category, failures of every ``db.FailureKind``, per-token log-probabilities, a failed metric value;
- a second family without ``family`` set (``qwen-tune:r1``, ``qwen-tune:r2``: the dashboard groups them by
  the name prefix), a run still ``running`` (half its results), a ``failed`` run, a small second dataset;
- metric columns (db.refresh_metric_columns) for finished runs except the qwen ones (readers fall back);
- a stored comparison (overall and per category) for the latest candidate vs its baseline only (older pairs: none, so the compare page
  shows the on-the-fly SQL summary), rejected rows, and a few annotations.

Deterministic: the same arguments write the same rows (a seeded ``random.Random``, fixed dates).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # python tests/support/dashboard_seed.py PATH: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import db

# Strings that must come out literally wherever the dashboard shows data.
HOSTILE = [
    "<script>alert('xss')</script>",
    '<img src=x onerror="alert(1)">',
    "[click me](javascript:alert(1)) and **bold** and `code`",
    "'; DROP TABLE results; -- 100% _match_ \\ \"quoted\"",
    "<b>bold?</b> &amp; &lt;tag&gt; {{7*7}} ${x}",
    "שלום עולם ‮reversed‬ 👋 ∑∫ \u200b",
]
HOSTILE_CATEGORY = "<i>weird</i> & co"
METRICS = {"exact_match": True, "rouge_l": True, "bleu": True, "perplexity": False}
CATEGORIES = ["support", "smalltalk", "arithmetic", "factual", "spelling"]
START = dt.datetime(2026, 3, 2, 9, 30)

_SUPPORT = [("Where is my order {n}?", "Your order {n} ships tomorrow and arrives in two days."),
            ("Can I return the {p}?", "Yes, you can return the {p} within 30 days for a full refund."),
            ("My {p} arrived broken.", "I am sorry about the broken {p}; a replacement is on its way.")]
_SMALLTALK = [("Hello!", "Hello! How can I help you today?"), ("Thanks a lot!", "You are welcome."),
              ("Tell me a joke.", "Why did the scarecrow win an award? He was outstanding in his field.")]
_FACTS = [("What is the capital of France?", "The capital of France is Paris."),
          ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au."),
          ("How many legs does a spider have?", "A spider has eight legs.")]
_WORDS = ["garden", "window", "planet", "rocket", "silver", "bottle"]
_PRODUCTS = ["blue kettle", "desk lamp", "yoga mat", "rain jacket"]


def _example(i: int, rng: random.Random) -> dict[str, Any]:
    cat = CATEGORIES[i % len(CATEGORIES)]
    system = None
    if cat == "support":
        q, a = rng.choice(_SUPPORT)
        q, a = (s.format(n=rng.randint(10000, 99999), p=rng.choice(_PRODUCTS)) for s in (q, a))
        system = "You are a friendly support agent for Nimbus. Keep answers short."
    elif cat == "smalltalk":
        q, a = rng.choice(_SMALLTALK)
    elif cat == "arithmetic":
        x, y = rng.randint(2, 40), rng.randint(2, 40)
        q, a = f"What is {x} plus {y}?", f"{x} plus {y} is {x + y}."
    elif cat == "factual":
        q, a = rng.choice(_FACTS)
    else:
        w = rng.choice(_WORDS)
        q, a = f"Spell {w} backwards.", f"Spelled backwards, {w} is {'-'.join(reversed(w))}."
    hostile = i % 10 == 7
    if hostile:
        h = HOSTILE[(i // 10) % len(HOSTILE)]
        q, a = f"{q} {h}", f"{a} {h}"
    messages = [{"role": "system", "content": system}] if system else []
    if i % 4 == 1:  # a multi-turn conversation
        messages += [{"role": "user", "content": "Hi there."}, {"role": "assistant", "content": "Hello! How can I help?"}]
    messages.append({"role": "user", "content": q})
    reference = None if i % 23 == 22 else a
    tags = ["multi-turn"] if i % 4 == 1 else []
    if hostile:
        tags.append("hostile")
    category = HOSTILE_CATEGORY if i % 29 == 28 else cat
    key = hashlib.sha256(f"{i}|{q}".encode()).hexdigest()[:32]
    return dict(key=key, row_index=i, messages=messages, reference=reference, category=category, tags=tags,
                conversation_id=f"conv-{i // 2}", turn_index=0, source="support-chat.jsonl",
                metadata={"id": f"row-{i}"})


def _words(s: str) -> list[str]:
    return s.split()


def _rouge_l(hyp: str, ref: str) -> float:
    h, r = _words(hyp), _words(ref)
    if not h or not r:
        return 0.0
    prev = [0] * (len(r) + 1)
    for a in h:
        cur = [0]
        for j, b in enumerate(r):
            cur.append(prev[j] + 1 if a == b else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if not lcs:
        return 0.0
    p, rc = lcs / len(h), lcs / len(r)
    return 2 * p * rc / (p + rc)


def _answer(ex: dict, skill: float, rng: random.Random) -> dict[str, Any]:
    """A plausible output for ``ex`` from a model whose quality is ``skill`` in [0, 1]."""
    ref = ex["reference"] or "I can help with that."
    roll = rng.random()
    failures = 0
    finish = "stop"
    error = None
    if roll < 0.03:
        out, finish, error, failures = "", "error", "CUDA out of memory while generating (batch 8)", db.FailureKind.ERROR
    elif roll < 0.06:
        out, failures = "   ", db.FailureKind.EMPTY
    elif roll < 0.10:
        out, finish, failures = " ".join(["the order"] * 12), "length", db.FailureKind.TRUNCATED | db.FailureKind.REPETITION
    elif roll < 0.13:
        out, finish, failures = ref + " Also, let me tell you about", "length", db.FailureKind.TRUNCATED
    elif roll < 0.16:
        out, failures = ref, db.FailureKind.PROMPT_TRUNCATED
    elif rng.random() < skill:
        out = ref
    else:
        words = _words(ref)
        k = max(1, int(len(words) * rng.uniform(0.3, 0.9)))
        out = " ".join(words[:k] + rng.sample(["maybe", "sorry", "the", "order", "please", "7", "Paris"], 2))
    tokens = [w + " " for w in out.split()] if out.strip() else []
    logprobs = [-abs(rng.gauss(0.15 if out == ref else 1.2, 0.5)) for _ in tokens]
    return dict(output=out, finish_reason=finish, failures=int(failures), error=error, tokens=tokens,
                logprobs=logprobs, output_tokens=len(tokens), prompt_tokens=20 + len(ex["messages"]) * 7,
                latency_ms=round(rng.uniform(80, 900), 1))


def _metrics(ex: dict, ans: dict, i: int) -> dict[str, Any]:
    if ans["finish_reason"] == "error":
        return {}
    if ex["reference"] is None:
        ppl = math.exp(-sum(ans["logprobs"]) / len(ans["logprobs"])) if ans["logprobs"] else None
        return {"perplexity": ppl}
    em = float(ans["output"].strip() == ex["reference"].strip())
    rl = _rouge_l(ans["output"], ex["reference"])
    m = {"exact_match": em, "rouge_l": rl, "bleu": round(100 * rl ** 1.5, 2)}
    lp = ans["logprobs"]
    m["perplexity"] = math.exp(-sum(lp) / len(lp)) if lp else None
    if i == 3:
        m["bleu"] = (None, "tokenizer failed on this output")
    return m


def _ci(values: list[float]) -> tuple[float, float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, mean, mean
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = 1.96 * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def _aggregates(rows: list[tuple[dict, dict]]) -> list[dict]:
    """Mean with a normal-approximation 95% CI per metric, over all examples and per category."""
    groups: dict[str, list[dict]] = {"": []}
    for ex, m in rows:
        groups[""].append(m)
        groups.setdefault(f"category={ex['category']}", []).append(m)
    out = []
    for slice_, ms in groups.items():
        for name in METRICS:
            vals = [v for m in ms if isinstance((v := m.get(name)), (int, float))]
            if vals:
                mean, lo, hi = _ci(vals)
                out.append(dict(metric=name, slice=slice_, kind="mean", n=len(vals), value=mean, ci_low=lo, ci_high=hi))
    return out


def _write_run(s, *, name, model, dataset_id, examples, ids, skill, rng, when, family=None, adapter=None,
               baseline_for_id=None, status="finished", fraction=1.0, columns=True) -> tuple[int, dict[int, dict]]:
    run = db.create_run(session=s, name=name, model=model, backend="transformers", dataset_id=dataset_id,
                        family=family, adapter=adapter, baseline_for_id=baseline_for_id,
                        generation={"max_new_tokens": 64, "do_sample": False},
                        config={"model": model, "adapter": adapter, "dataset": "support-chat.jsonl"},
                        repro={"git_sha": "0123abc", "seed": 0})
    keep = examples[: max(1, int(len(examples) * fraction))]
    results, scored, per_example = [], [], {}
    for i, ex in enumerate(keep):
        ans = _answer(ex, skill, rng)
        m = _metrics(ex, ans, i)
        results.append(dict(example_id=ids[ex["key"]], metrics=m, **ans))
        flat = {k: (None if isinstance(v, tuple) else v) for k, v in m.items()}
        scored.append((ex, flat))
        per_example[ids[ex["key"]]] = flat
    db.insert_results(session=s, run_id=run, results=results, higher_is_better=METRICS)
    if status != "running":
        db.replace_aggregates(session=s, run_id=run, rows=_aggregates(scored))
    fields = dict(status=status, n_rows=len(examples) + 2, n_examples=len(examples), n_rejected=2,
                  created_at=when, updated_at=when)
    if status == "failed":
        fields["error"] = "RuntimeError: backend crashed after <b>12</b> batches"
    db.update_run(session=s, run_id=run, **fields)
    if status != "running" and columns:  # what the evaluator does when it finalises a run
        db.refresh_metric_columns(session=s, run_id=run)
    db.add_rejected(session=s, run_id=run, rows=[
        dict(row_index=len(examples), reason="no assistant turn to evaluate", raw='{"messages": [{"role": "user"}]}'),
        dict(row_index=len(examples) + 1, reason="invalid JSON: Expecting value", raw="<script>{not json"),
    ])
    return run, per_example


def _comparison_rows(a: dict[int, dict], b: dict[int, dict], slice_: str = "",
                     only: set[int] | None = None) -> list[dict]:
    rows = []
    shared = [k for k in a if k in b and (only is None or k in only)]
    for name, hib in METRICS.items():
        pairs = [(a[k][name], b[k][name]) for k in shared
                 if isinstance(a[k].get(name), (int, float)) and isinstance(b[k].get(name), (int, float))]
        if not pairs:
            continue
        diffs = [x - y for x, y in pairs]
        mean, lo, hi = _ci(diffs)
        better = [(d > 0) if hib else (d < 0) for d in diffs]
        worse = [(d < 0) if hib else (d > 0) for d in diffs]
        rows.append(dict(metric=name, slice=slice_, n=len(pairs), value_a=sum(x for x, _ in pairs) / len(pairs),
                         value_b=sum(y for _, y in pairs) / len(pairs), delta=mean, ci_low=lo, ci_high=hi,
                         p_value=0.004 if name == "exact_match" else 0.03, wins=sum(better),
                         ties=sum(1 for d in diffs if d == 0), losses=sum(worse), method="paired bootstrap (seed)"))
    ps = sorted(range(len(rows)), key=lambda i: rows[i]["p_value"])
    running = 0.0
    for rank, i in enumerate(ps):  # Holm step-down
        running = max(running, min(1.0, rows[i]["p_value"] * (len(rows) - rank)))
        rows[i]["p_holm"] = running
    return rows


def seed_store(url: str, *, n_examples: int = 60, versions: int = 3) -> dict[str, Any]:
    """Fill the (migrated or new) store at ``url``; returns the ids it created (see module docstring)."""
    rng = random.Random(1234)
    engine = db.open_store(url)
    try:
        Session = db.session_factory(engine)
        examples = [_example(i, rng) for i in range(n_examples)]
        out: dict[str, Any] = {"runs": {}, "candidates": [], "baselines": {}}
        with Session.begin() as s:
            ds = db.get_or_create_dataset(session=s, name="support-chat.jsonl", split="test", format="messages")
            ids = db.upsert_examples(session=s, dataset_id=ds, examples=examples)
            per_run: dict[int, dict] = {}
            for v in range(1, versions + 1):
                when = START + dt.timedelta(days=7 * (v - 1))
                cand, res_c = _write_run(
                    s, name=f"acme-chat-v{v}", model="meta-llama/Llama-3.2-1B-Instruct", family="acme-chat",
                    adapter=f"checkpoints/acme-chat-v{v}", dataset_id=ds, examples=examples, ids=ids,
                    skill=0.35 + 0.15 * v, rng=rng, when=when)
                base, res_b = _write_run(
                    s, name=f"llama-3.2-1b-base-for-v{v}", model="meta-llama/Llama-3.2-1B-Instruct",
                    family="llama-3.2-1b-base", baseline_for_id=cand, dataset_id=ds, examples=examples, ids=ids,
                    skill=0.3, rng=rng, when=when + dt.timedelta(minutes=30))
                out["runs"][f"acme-chat-v{v}"] = cand
                out["runs"][f"llama-3.2-1b-base-for-v{v}"] = base
                out["candidates"].append(cand)
                out["baselines"][cand] = base
                per_run[cand], per_run[base] = res_c, res_b
            latest = out["candidates"][-1]
            pa, pb = per_run[latest], per_run[out["baselines"][latest]]
            rows = _comparison_rows(pa, pb)
            for cat in sorted({e["category"] for e in examples}):
                members = {ids[e["key"]] for e in examples if e["category"] == cat}
                rows += _comparison_rows(pa, pb, f"category={cat}", members)
            db.replace_comparisons(session=s, run_a_id=latest, run_b_id=out["baselines"][latest], rows=rows)
            for r, when in (("qwen-tune:r1", START + dt.timedelta(days=3)), ("qwen-tune:r2", START + dt.timedelta(days=10))):
                # No metric columns: like a store written before they existed (readers fall back).
                out["runs"][r], _ = _write_run(s, name=r, model="Qwen/Qwen2.5-0.5B-Instruct", dataset_id=ds,
                                               examples=examples, ids=ids, skill=0.5, rng=rng, when=when,
                                               columns=False)
            last = START + dt.timedelta(days=7 * versions)
            out["running"], _ = _write_run(s, name="acme-chat-nightly", model="meta-llama/Llama-3.2-1B-Instruct",
                                           family="acme-chat-nightly", dataset_id=ds, examples=examples, ids=ids,
                                           skill=0.8, rng=rng, when=last, status="running", fraction=0.5)
            out["failed"], _ = _write_run(s, name="acme-chat-broken", model="meta-llama/Llama-3.2-1B-Instruct",
                                          dataset_id=ds, examples=examples, ids=ids, skill=0.1, rng=rng,
                                          when=last - dt.timedelta(days=1), status="failed", fraction=0.2)
            out["runs"]["acme-chat-nightly"], out["runs"]["acme-chat-broken"] = out["running"], out["failed"]
            ds2 = db.get_or_create_dataset(session=s, name="arithmetic-probe.jsonl", split="validation")
            small = [_example(i * 5 + 2, rng) for i in range(8)]
            ids2 = db.upsert_examples(session=s, dataset_id=ds2, examples=small)
            out["runs"]["acme-chat-v1-probe"], _ = _write_run(
                s, name="acme-chat-v1-probe", model="meta-llama/Llama-3.2-1B-Instruct", family="acme-chat",
                dataset_id=ds2, examples=small, ids=ids2, skill=0.4, rng=rng, when=START + dt.timedelta(days=1))
            hostile_ids = [ids[e["key"]] for e in examples if "hostile" in e["tags"]]
            for j, ex_id in enumerate(hostile_ids[:3]):
                db.add_annotation(session=s, run_id=latest, example_id=ex_id, reviewer="dana",
                                  verdict=db.VERDICTS[j % len(db.VERDICTS)], comment=HOSTILE[j])
        out.update(dataset_id=ds, dataset2_id=ds2, latest=latest, latest_baseline=out["baselines"][latest],
                   example_ids=[ids[e["key"]] for e in examples], hostile_example_ids=hostile_ids,
                   metrics=list(METRICS), categories=sorted({e["category"] for e in examples}))
        return out
    finally:
        engine.dispose()


if __name__ == "__main__":  # python tests/support/dashboard_seed.py PATH [N_EXAMPLES]
    target = sys.argv[1] if len(sys.argv) > 1 else "dashboard_demo.sqlite"
    print(seed_store(db.resolve_url(target), n_examples=int(sys.argv[2]) if len(sys.argv) > 2 else 60)["runs"])
