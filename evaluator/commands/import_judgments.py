"""``python -m evaluator import_judgments FILE --format alpaca_eval``: store judgments made elsewhere."""
from __future__ import annotations

import argparse
import sys

from evaluator._import_judgments import import_judgments
from evaluator.commands.compare import judgment_line

EPILOG = """\
examples:
  # AlpacaEval's annotations of a model against its reference (e.g. results/<model>/<annotator>/annotations.json)
  python -m evaluator import_judgments annotations.json --format alpaca_eval
  python -m evaluator compare my-model gpt4_turbo --json | jq '.judgments'

Each (generator_1, generator_2) pair becomes two runs (or matches two runs of those names that answer every
instruction): generator_2 the candidate, generator_1 its baseline. Each annotator is a judge. The win rate and
standard error are AlpacaEval's own. Records that cannot be read are listed with the reason.
"""


def register(sub) -> None:
    p = sub.add_parser("import_judgments", help="import AlpacaEval annotations as judged runs",
                       description="Store preference judgments made elsewhere, with the runs they judge.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help="AlpacaEval annotations.json")
    p.add_argument("--format", required=True, choices=["alpaca_eval"], help="what FILE is")
    p.add_argument("--dataset-name", metavar="NAME", help="dataset of the instructions (default: alpaca_eval)")
    p.add_argument("--db", metavar="URL", help="store URL or SQLite path (default $EVAL_DB_URL)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        pairs, rejected = import_judgments(args.file, format=args.format, db_url=args.db,
                                           dataset_name=args.dataset_name)
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
        print(f"  ... and {len(rejected) - 20} more, stored as the candidate run's rejected rows")
    return 0
