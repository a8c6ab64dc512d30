"""Quick quality check of the demo models, independent of the evaluator's runner and store.

``python -m evaluator.demo.check`` builds (or reuses) the demo models, answers every assistant turn
of the test split with greedy decoding, and prints corpus BLEU, chrF and mean ROUGE-L per model and
per category, plus how many answers were empty, truncated or repetitive. The demo's tests call
``evaluate_models`` to check that the fine-tunes beat the base.

BLEU and chrF are sacrebleu's corpus scores with its defaults (BLEU: 13a tokenisation, n-grams up
to 4, exponential smoothing; chrF: character n-grams up to 6, beta 2), the "corpus" aggregates the
evaluator stores (its run listing shows the sentence-level "mean" instead). ROUGE-L is
``rouge_score``'s F-measure with Porter stemming, averaged over answers. The evaluator's own metrics
(evaluator/scoring) are the reference definitions; these are only the demo's sanity check.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from evaluator.demo import TEST_FILE, build_demo_models

MAX_NEW_TOKENS = 40  # as the demo command: longer than every reference answer (<= 35 tokens)


@dataclass
class TurnExample:
    messages: list[dict]  # conversation before the assistant turn (gold history)
    reference: str
    category: str


@dataclass
class ModelScores:
    name: str
    bleu: float
    chrf: float
    rouge_l: float
    empty: int
    truncated: int
    repetitive: int
    per_category: dict[str, dict[str, float]] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)


def turn_examples(path: Path) -> list[TurnExample]:
    """One example per assistant turn, with the gold conversation before it as the prompt."""
    examples = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        for i, message in enumerate(row["messages"]):
            if message["role"] == "assistant":
                examples.append(TurnExample(row["messages"][:i], message["content"], row["category"]))
    return examples


def generate(model, tokenizer, prompts: list[list[dict]], *, max_new_tokens: int = MAX_NEW_TOKENS,
             batch_size: int = 32) -> list[tuple[str, str]]:
    """Greedy answers as ``(text, finish_reason)``, finish_reason "stop" or "length"."""
    import torch

    texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in prompts]
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    eos = set(model.generation_config.eos_token_id)
    results: list[Optional[tuple[str, str]]] = [None] * len(texts)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
        for row, i in enumerate(idx):
            new = out[row, enc["input_ids"].shape[1]:].tolist()
            stop = next((k for k, t in enumerate(new) if t in eos), None)
            finish = "length" if stop is None else "stop"
            new = new if stop is None else new[:stop]
            results[i] = (tokenizer.decode(new, skip_special_tokens=True).strip(), finish)
    return results  # type: ignore[return-value]


def is_repetitive(text: str, n: int = 3, min_repeats: int = 3) -> bool:
    """Some word n-gram occurs ``min_repeats`` times or more (a model stuck in a loop)."""
    words = text.split()
    counts: dict[tuple[str, ...], int] = defaultdict(int)
    for i in range(len(words) - n + 1):
        counts[tuple(words[i:i + n])] += 1
    return any(c >= min_repeats for c in counts.values())


def score(name: str, examples: list[TurnExample], answers: list[tuple[str, str]]) -> ModelScores:
    import sacrebleu
    from rouge_score import rouge_scorer

    rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)

    def corpus(idx: list[int]) -> dict[str, float]:
        hyps = [answers[i][0] for i in idx]
        refs = [examples[i].reference for i in idx]
        return {
            "bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
            "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score,
            "rouge_l": 100 * sum(rouge.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)) / len(idx),
            "n": len(idx),
        }

    everything = corpus(list(range(len(examples))))
    by_cat: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        by_cat[ex.category].append(i)
    return ModelScores(
        name=name,
        bleu=everything["bleu"],
        chrf=everything["chrf"],
        rouge_l=everything["rouge_l"],
        empty=sum(not text for text, _ in answers),
        truncated=sum(finish == "length" for _, finish in answers),
        repetitive=sum(is_repetitive(text) for text, _ in answers),
        per_category={cat: corpus(idx) for cat, idx in sorted(by_cat.items())},
        outputs=[text for text, _ in answers],
    )


def evaluate_models(models, *, test_file: Optional[Path] = None, limit: Optional[int] = None,
                    max_new_tokens: int = MAX_NEW_TOKENS, only: Optional[list[str]] = None) -> list[ModelScores]:
    """Score the base model and every version of ``models`` (a ``DemoModels``) on the test split.

    ``only`` keeps the named models ("base", "v1", ...); ``limit`` the first N examples.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer


    examples = turn_examples(test_file or TEST_FILE)[:limit]
    tokenizer = AutoTokenizer.from_pretrained(models.tokenizer_dir)
    tokenizer.padding_side = "left"
    torch.set_num_threads(1)
    results = []
    for name, adapter in [("base", None), *models.versions]:
        if only is not None and name not in only:
            continue
        model = AutoModelForCausalLM.from_pretrained(models.base_dir)
        if adapter is not None:
            model = PeftModel.from_pretrained(model, adapter)
        model.eval()
        answers = generate(model, tokenizer, [e.messages for e in examples], max_new_tokens=max_new_tokens)
        results.append(score(name, examples, answers))
    return results


def format_table(results: list[ModelScores]) -> str:
    lines = [f"{'model':6} {'BLEU':>6} {'chrF':>6} {'ROUGE-L':>8} {'empty':>6} {'trunc':>6} {'repeat':>6}"]
    for r in results:
        lines.append(f"{r.name:6} {r.bleu:6.1f} {r.chrf:6.1f} {r.rouge_l:8.1f} {r.empty:6d} {r.truncated:6d} "
                     f"{r.repetitive:6d}")
    cats = list(results[0].per_category)
    lines.append("")
    lines.append("BLEU / chrF / ROUGE-L by category (n = answers)")
    lines.append(f"{'category':12} " + " ".join(f"{r.name:>16}" for r in results))
    for cat in cats:
        n = results[0].per_category[cat]["n"]
        cells = [f"{r.per_category[cat]['bleu']:4.0f}/{r.per_category[cat]['chrf']:4.0f}/"
                 f"{r.per_category[cat]['rouge_l']:4.0f}" for r in results]
        lines.append(f"{cat + f' ({n})':12} " + " ".join(f"{c:>16}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(prog="python -m evaluator.demo.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", help="cache directory of the demo models (default: $EVALBENCH_CACHE or "
                                        "~/.cache/evalbench-demo)")
    parser.add_argument("--samples", type=int, default=0, help="also print N answers of each model")
    args = parser.parse_args(argv)
    results = evaluate_models(build_demo_models(args.cache))
    print(format_table(results))
    examples = turn_examples(__import__("evaluator.demo", fromlist=["TEST_FILE"]).TEST_FILE)
    for r in results:
        for i in range(args.samples):
            print(f"[{r.name}] {examples[i].reference!r} -> {r.outputs[i]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
