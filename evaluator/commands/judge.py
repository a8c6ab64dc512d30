"""``python -m evaluator judge RUN --judge SPEC``: preference judgments of a run against its baselines, or ratings."""
from __future__ import annotations

import argparse
import sys

import db
from evaluator.commands.compare import judgment_line, score_line
from evaluator.errors import UserError
from evaluator.judging._judge import MODES, Template, judge_runs
from evaluator.models import load_backend
from evaluator.types import GenerationSettings

TOP_LOGPROBS = 5

EPILOG = """\
examples:
  # v3 against each of its baselines, judged by a model behind an OpenAI-compatible API (vLLM, Ollama, ...)
  python -m evaluator judge demo-v3 --judge openai:llama3.1:70b --base-url http://127.0.0.1:8000/v1
  # against a chosen run, with the reference shown to the judge, by a local model
  python -m evaluator judge 12 --against 9 --judge meta-llama/Llama-3.1-8B-Instruct --mode reference

Every example both runs answered is judged twice, the candidate shown first and then second; a tie is
allowed. Judgments are stored after each batch: run the same command again after a crash and it judges only
what is missing. A reply without a verdict is a judge failure, counted, never a tie. `compare A B` then shows
the win rate, its CI, the length-controlled win rate and position consistency.
"""


def register(sub) -> None:
    p = sub.add_parser("judge", help="judge a run against its baselines with an LLM judge (pairwise preference)",
                       description="Preference judgments of a candidate run against baseline runs (or ratings of its answers).",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="the candidate run (id or name)")
    p.add_argument("--against", action="append", metavar="RUN_B", help="a baseline run (default: the run's baselines)")
    p.add_argument("--judge", required=True, metavar="SPEC", help="a model path, Hub id or openai:MODEL")
    p.add_argument("--mode", choices=MODES, default="pairwise",
                   help="reference: the judge sees the reference too; single: each answer rated 1-10 on its own")
    p.add_argument("--template", metavar="FILE", help="a Jinja2 template of the judge's prompt, or YAML/JSON with 'user' and optional 'system' "
                        "templates (default: built in; docs/judging.md lists the fields)")
    p.add_argument("--max-new-tokens", type=int, default=512, metavar="N", help="the judge's reply (default 512)")
    p.add_argument("--base-url", metavar="URL", help="API root of an openai: judge")
    p.add_argument("--api-key-env", metavar="NAME", help="environment variable with the key (default OPENAI_API_KEY)")
    p.add_argument("--concurrency", type=int, metavar="N", help="requests in flight at once (default 8)")
    p.add_argument("--device", metavar="DEVICE", help="device of a local judge (default: cuda when present)")
    p.add_argument("--db", metavar="URL", help="store URL or SQLite path (default $EVAL_DB_URL)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        template = Template.load(args.template, args.mode)
        engine = db.open_store(args.db)
        sf = db.session_factory(engine)
        with sf() as s:
            cand = db.find_run(session=s, ref=args.run)
            against = ([db.find_run(session=s, ref=r) for r in args.against] if args.against
                       else db.baselines_of(session=s, run_id=cand))
        if args.mode == "single":
            against = [None]  # each answer rated on its own
        elif not against:
            print(f"error: run {cand} has no baselines: name one with --against RUN_B", file=sys.stderr)
            return 2
        options = {k: v for k, v in dict(base_url=args.base_url, api_key_env=args.api_key_env,
                                         concurrency=args.concurrency, device=args.device).items() if v is not None}
        options["top_logprobs"] = TOP_LOGPROBS  # every judge's verdict is weighted by its probabilities
        backend = load_backend(args.judge, **options)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        runs = judge_runs(session_factory=sf, backend=backend, judge=args.judge, candidate_id=cand,
                          baseline_ids=against, mode=args.mode, template=template,
                          settings=GenerationSettings(max_new_tokens=args.max_new_tokens), progress=sys.stderr.isatty())
    finally:
        backend.close()
        engine.dispose()
    for r in runs:
        pair = f"run {r.candidate_id}" + ("" if r.baseline_id is None else f" against run {r.baseline_id}")
        print(f"{pair}: {r.stored} new judgments of {r.todo} asked, "
              f"{r.failures} without a verdict, {len(r.request_errors)} requests failed (asked again next time)")
        for j in r.summary:
            print(score_line(j) if j["mode"] == "single" else judgment_line(j))
    return 1 if any(r.request_errors for r in runs) else 0
