"""``python -m evaluator import_judgments FILE --format alpaca_eval|mt_bench``: store judgments made elsewhere."""
from __future__ import annotations

import argparse
import sys

import db
from evaluator._import_judgments import import_judgments
from evaluator._import_mt_bench import import_mt_bench
from evaluator.commands.compare import judgment_line, score_line
from evaluator.commands.score import score_run
from evaluator.scoring import builtin_metrics

EPILOG = """\
examples:
  # AlpacaEval's annotations of a model against its reference (e.g. results/<model>/<annotator>/annotations.json)
  python -m evaluator import_judgments annotations.json --format alpaca_eval
  python -m evaluator compare my-model gpt4_turbo --json | jq '.judgments'
  # FastChat's MT-Bench judgments (data/mt_bench/model_judgment/*.jsonl, beside question.jsonl and model_answer/)
  python -m evaluator import_judgments data/mt_bench/model_judgment/gpt-4_single.jsonl --format mt_bench
  python -m evaluator import_judgments gpt-4_pair.jsonl --format mt_bench --questions question.jsonl --answers answers/

alpaca_eval: each (generator_1, generator_2) pair becomes two runs (or matches two runs of those names that answer
every instruction): generator_2 the candidate, generator_1 its baseline. Each annotator is a judge. The win rate
and standard error are AlpacaEval's own.
mt_bench: the questions are the dataset of `run --dataset question.jsonl --turns rollout`; each model's answers are
a run. A single file's mean rating is the MT-Bench score; in a pair file model_1 is the candidate, model_2 its
baseline, and FastChat's own win rate is printed beside the stored figures.
Records that cannot be read are listed with the reason.
"""


def register(sub) -> None:
    p = sub.add_parser("import_judgments", help="import AlpacaEval or MT-Bench judgments as judged runs",
                       description="Store preference judgments made elsewhere, with the runs they judge.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help="AlpacaEval annotations.json, or a FastChat MT-Bench judgment JSONL")
    p.add_argument("--format", required=True, choices=["alpaca_eval", "mt_bench"], help="what FILE is")
    p.add_argument("--dataset-name", metavar="NAME", help="alpaca_eval: dataset of the instructions "
                                                          "(default: alpaca_eval)")
    p.add_argument("--questions", metavar="FILE", help="mt_bench: MT-Bench's question.jsonl "
                                                       "(default: ../question.jsonl from FILE, FastChat's layout)")
    p.add_argument("--answers", metavar="FOLDER", help="mt_bench: the folder of MODEL.jsonl answer files "
                                                       "(default: ../model_answer from FILE)")
    p.add_argument("--db", metavar="URL", help="store URL or SQLite path (default $EVAL_DB_URL)")
    p.set_defaults(func=main)


# An imported answer has no tokens or log-probabilities: only the metrics of its text apply.
TEXT_METRICS = [m for m in builtin_metrics() if m not in ("perplexity", "confidence", "min_token_prob", "output_tokens")]


def _score_created(db_url, imported: list) -> None:
    """The text metrics of each run the import created, and their comparisons with its partners: imported
    answers then sit beside evaluated ones on every metric view."""
    created = sorted({rid for i in imported for name, rid in ((i.candidate, i.candidate_id), (i.baseline, i.baseline_id))
                      if name in i.created})
    if not created:
        return
    engine = db.open_store(db_url)
    try:
        for run_id in created:
            score_run(session_factory=db.session_factory(engine), run_id=run_id, metric_names=TEXT_METRICS)
    finally:
        engine.dispose()
    print(f"scored the imported answers of run(s) {', '.join(map(str, created))} with the text metrics "
          f"({', '.join(TEXT_METRICS)})")


def _mt_bench(args: argparse.Namespace) -> list:
    imported, rejected = import_mt_bench(args.file, db_url=args.db, questions=args.questions, answers=args.answers)
    _score_created(args.db, imported)
    for i in imported:
        made = f" (created: {', '.join(i.created)})" if i.created else " (matched)"
        against = f" against run {i.baseline_id} '{i.baseline}'" if i.baseline_id else ""
        print(f"run {i.candidate_id} '{i.candidate}'{against}{made}: {i.new_judgments} new judgments")
        for j in i.judgments:
            print(judgment_line(j) if i.baseline_id else score_line(j))
        if i.fastchat:
            f = i.fastchat
            rate = "–" if f["win_rate"] is None else f"{f['win_rate']:.2f}%"
            print(f"  FastChat's own count (an inconsistent pair a tie, a record with an error left out): "
                  f"{f['wins']} / {f['ties']} / {f['losses']} of {f['n']}, win rate {rate}")
    return rejected


def main(args: argparse.Namespace) -> int:
    try:
        if args.format == "mt_bench":
            pairs, rejected = [], _mt_bench(args)
        else:
            pairs, rejected = import_judgments(args.file, format=args.format, db_url=args.db,
                                               dataset_name=args.dataset_name)
            _score_created(args.db, pairs)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for p in pairs:
        made = f" (created: {', '.join(p.created)})" if p.created else " (both runs matched)"
        print(f"run {p.candidate_id} '{p.candidate}' against run {p.baseline_id} '{p.baseline}'{made}: "
              f"{p.new_judgments} new judgments, {p.not_judged} records not judged")
        for j in p.judgments:
            print(judgment_line(j))
    for r in rejected[:20]:
        print(f"  rejected {r.reason}")
    if len(rejected) > 20:
        print(f"  ... and {len(rejected) - 20} more" + (", stored as the candidate run's rejected rows" if pairs else ""))
    return 0
