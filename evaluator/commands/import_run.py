"""``python -m evaluator import_run FILE --format lm-eval|export``: store an earlier evaluation as a run."""
from __future__ import annotations

import argparse
import sys

from evaluator._import import import_run

EPILOG = """\
examples:
  # an lm-evaluation-harness run made with --log_samples (model name from the results_*.json beside it)
  python -m evaluator import_run out/llama/samples_gsm8k_2024-05-13T12-34-56.789012.jsonl --format lm-eval
  python -m evaluator import_run samples_truthfulqa_gen_2024-05-13T12-34-56.jsonl --format lm-eval \\
      --model my-org/llama-3-8b-sft --family llama-sft --db postgresql+psycopg://eval@dbhost/evals

  # joined to the examples of the dataset it was drawn from, to compare with a native run of that data
  python -m evaluator import_run samples_support_2024-05-13T12-34-56.jsonl --format lm-eval \
      --dataset data/support_chats.jsonl --tokenizer meta-llama/Llama-3.1-8B-Instruct

  # a run exported from another store ('python -m evaluator export 12 > run12.jsonl') joins its dataset here
  python -m evaluator import_run run12.jsonl --format export --db sqlite:///team.sqlite

Examples are keyed as the evaluator keys them (messages, reference, turn), so imported results join the
stored examples with the same content. lm-eval metrics are kept as lm_eval:<name>; the built-in
reference-based metrics are computed on the outputs (--metric to choose). Rows that cannot be mapped are
listed with the reason and stored as the run's rejected rows.
"""


def register(sub) -> None:
    p = sub.add_parser("import_run", help="import an lm-eval samples file or an export as a run",
                       description="Store an evaluation made elsewhere as a run, so that it joins the history.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help="lm-eval samples_<task>_<date>.jsonl, or an export .jsonl")
    p.add_argument("--format", required=True, choices=["lm-eval", "export"], help="what FILE is")
    p.add_argument("--name", metavar="NAME", help="run name (default: the exported run's, or '<model> <task>')")
    p.add_argument("--model", metavar="NAME", help="model that produced the outputs (default: from the file)")
    p.add_argument("--family", metavar="NAME", help="groups versions of one model in trend views")
    p.add_argument("--dataset-name", metavar="NAME",
                   help="dataset to join (default: the export's dataset, or lm-eval:<task>)")
    p.add_argument("--split", metavar="SPLIT", help="dataset split (default: the export's, or none)")
    p.add_argument("--metric", action="extend", nargs="+", metavar="NAME",
                   help="metrics to compute on the outputs where the file has none (default: lm-eval: the "
                        "built-in reference-based ones; export: none)")
    p.add_argument("--dataset", metavar="FILE",
                   help="lm-eval: the dataset the samples were drawn from (as run --dataset reads it): each "
                        "sample joins the example that renders to its prompt, so the run compares with a native "
                        "run of that data")
    p.add_argument("--tokenizer", metavar="PATH",
                   help="lm-eval: the model's tokenizer (directory or hub id): counts tokens, renders the chat "
                        "template for --dataset, and marks outputs that reached max_gen_toks as cut ('length')")
    p.add_argument("--db", metavar="URL", help="store URL or SQLite path (default $EVAL_DB_URL)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:

    try:
        summary = import_run(args.file, format=args.format, db_url=args.db, name=args.name, model=args.model,
                             family=args.family, dataset_name=args.dataset_name, split=args.split,
                             metrics=args.metric, dataset=args.dataset, tokenizer=args.tokenizer)
    except ValueError as exc:  # the file cannot be imported (ImportFileError), or an unknown --metric
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(summary.lines()))
    return 0
