"""``python -m evaluator run``: evaluate a model (and baselines) on a dataset into the store."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Optional

from evaluator._runner import RunError, RunInterrupted, resume_config, run_evaluation
from evaluator.commands import judge as judge_command
from evaluator.commands.runs import quiet_store_logs
from evaluator.config import ConfigError, build_config

EPILOG = """\
examples:
  # a LoRA adapter dir (its base comes from adapter_config.json) on a local JSONL file
  python -m evaluator run --model out/lora-v3 --dataset data/support_test.jsonl --name support-v3

  # base model + adapter explicitly, compared with the base model on the same examples
  python -m evaluator run --model meta-llama/Llama-3.1-8B-Instruct --adapter out/lora-v3 \\
      --dataset data/support_test.jsonl --baseline meta-llama/Llama-3.1-8B-Instruct

  # a hub dataset split, first 200 rows, every assistant turn, fixed batch size, sampling
  python -m evaluator run --model out/lora-v3 --dataset org/chat-eval --split validation \\
      --limit 200 --turns all --batch-size 16 --do-sample --temperature 0.7 --seed 1

  # settings from a file (YAML or TOML); flags override the file
  python -m evaluator run --config eval.yaml --max-new-tokens 128

  # continue a run that crashed or was killed (committed batches are kept)
  python -m evaluator run --resume 12            # or --resume support-v3

  # data parallel: 4 processes (one GPU each) share the examples of one run; resume at any count
  torchrun --nproc_per_node 4 -m evaluator run --model out/lora-v3 --dataset data/support_test.jsonl
  accelerate launch --multi_gpu --num_processes 4 -m evaluator run --resume support-v3

  # external baselines: precomputed answers (AlpacaEval model_outputs.json or an evaluator export
  # JSONL), and an OpenAI-compatible endpoint (key from $OPENAI_API_KEY, or --api-key-env NAME)
  python -m evaluator run --model out/lora-v3 --dataset data/support_test.jsonl \
      --baseline outputs:gpt4_outputs.json --baseline openai:llama3.1:8b --base-url http://127.0.0.1:11434/v1

The store is --db URL, else $EVAL_DB_URL, else sqlite:///eval_store.sqlite.
"""

# Flag -> RunConfig key for the flags whose name differs from the key.
_RENAMES = {"baseline": "baselines", "metric": "metrics", "field": "fields"}


def register(sub) -> None:
    p = sub.add_parser(
        "run", help="evaluate a model on a dataset (and baselines on the same examples)",
        description="Generate an answer for every example, score it, and store everything.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,  # only flags given on the command line override the config file
    )
    g = p.add_argument_group("what to evaluate")
    g.add_argument("--model", metavar="PATH_OR_HUB_ID",
                   help="model dir/hub id, a PEFT adapter dir, or openai:MODEL (an OpenAI-compatible endpoint)")
    g.add_argument("--adapter", metavar="PATH", help="PEFT/LoRA adapter applied on --model")
    g.add_argument("--name", metavar="LABEL", help="run name (default: adapter or model dir name)")
    g.add_argument("--family", metavar="NAME", help="groups versions of one model in trend views")
    g.add_argument("--baseline", action="extend", nargs="+", metavar="PATH_OR_HUB_ID",
                   help="also evaluate this model on the same examples and compare (repeatable); "
                        "openai:MODEL for an OpenAI-compatible endpoint, outputs:FILE for precomputed answers")
    g.add_argument("--no-reuse", dest="reuse", action="store_false",
                   help="evaluate every --baseline afresh, even when a finished run of the identical model, "
                        "data and settings is in the store (by default that run is reused, and the reuse recorded)")
    g = p.add_argument_group("OpenAI-compatible endpoints (openai:MODEL as --model or --baseline)")
    g.add_argument("--base-url", metavar="URL", help="API root, e.g. http://127.0.0.1:8000/v1 (default: OpenAI's)")
    g.add_argument("--api-key-env", metavar="NAME", help="environment variable with the key (default OPENAI_API_KEY)")
    g.add_argument("--concurrency", type=int, metavar="N", help="requests in flight at once (default 8)")
    g.add_argument("--request-timeout", type=float, metavar="SECONDS", help="per request (default 60)")
    g.add_argument("--max-retries", type=int, metavar="N",
                   help="retries on timeouts, 429 and 5xx, with exponential backoff (default 5)")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", metavar="PATH_OR_HUB_ID", help="JSON/JSONL/CSV/Parquet file, dir, or hub id")
    g.add_argument("--split", help="split (default: test)")
    g.add_argument("--format", help="auto (default), or a format name of the data loader")
    g.add_argument("--turns", choices=["last", "all", "rollout"],
                   help="evaluate the last assistant turn (default), all of them after the dataset's history, or "
                        "rollout: every user turn, after the model's own earlier answers")
    g.add_argument("--limit", type=int, metavar="N", help="first N rows only")
    g.add_argument("--field", action="append", metavar="ROLE=COLUMN", help="column for a role (repeatable)")
    g = p.add_argument_group("model loading")
    g.add_argument("--backend", choices=["auto", "transformers", "unsloth"],
                   help="auto (default): unsloth where CUDA and unsloth are available, else transformers")
    g.add_argument("--device", help="auto (default), cpu, cuda, cuda:1")
    g.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"])
    g.add_argument("--load-in-4bit", action="store_true", help="load the base model 4-bit (bitsandbytes, GPU)")
    g.add_argument("--chat-template", metavar="FILE_OR_NAME",
                   help="jinja file or llama3/chatml (default: the tokenizer's own template)")
    g.add_argument("--max-length", type=int, metavar="N", help="context length (default: the model's)")
    g.add_argument("--trust-remote-code", action="store_true")
    g = p.add_argument_group("generation")
    g.add_argument("--batch-size", metavar="auto|N", help="auto (default): largest that fits, halved on OOM")
    g.add_argument("--max-batch-size", type=int, metavar="N", help="where auto starts (default 128)")
    g.add_argument("--batching", choices=["auto", "static", "continuous"],
                   help="static batches, or transformers' continuous batching (greedy, transformers backend); "
                        "default auto: the faster one on the device (static on CPU)")
    g.add_argument("--max-new-tokens", type=int, metavar="N", help="default 256")
    g.add_argument("--do-sample", action=argparse.BooleanOptionalAction, help="sample instead of greedy")
    g.add_argument("--temperature", type=float)
    g.add_argument("--top-p", type=float)
    g.add_argument("--top-k", type=int)
    g.add_argument("--repetition-penalty", type=float)
    g.add_argument("--seed", type=int, help="recorded; seeds sampling (default 0)")
    g = p.add_argument_group("scoring")
    g.add_argument("--metric", action="extend", nargs="+", metavar="NAME",
                   help="metrics to compute (default: all registered); repeatable")
    g.add_argument("--no-perplexity", dest="perplexity", action="store_false",
                   help="skip teacher-forcing the references")
    g.add_argument("--judge", metavar="SPEC", help="after scoring, judge the run against its baselines with this "
                   "model (as 'python -m evaluator judge RUN --judge SPEC'; the openai options above apply)")
    g = p.add_argument_group("store and control")
    g.add_argument("--db", metavar="URL", help="store URL or SQLite path")
    g.add_argument("--config", metavar="FILE", help="YAML or TOML file of run settings (flags override it)")
    g.add_argument("--resume", metavar="RUN", help="continue run RUN (id or name) with its stored settings")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=main)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    skip = {"func", "command", "verbose", "config", "progress", "resume", "judge"}
    out: dict[str, Any] = {}
    for key, value in vars(args).items():
        if key in skip:
            continue
        key = _RENAMES.get(key, key)
        if key == "fields":
            pairs = {}
            for item in value:
                role, sep, column = item.partition("=")
                if not sep or not role or not column:

                    raise ConfigError(f"--field {item!r}: expected ROLE=COLUMN")
                pairs[role.strip()] = column.strip()
            value = pairs
        out[key] = value
    return out


def main(args: argparse.Namespace) -> int:


    quiet_store_logs()
    try:
        overrides = _overrides(args)
        file = getattr(args, "config", None)
        # "resume" and "db" may also come from the file.
        given = build_config(file, overrides, base={"model": "-", "dataset": "-"}) if file else None
        resume = getattr(args, "resume", None) or (given.resume if given else None)
        if resume:
            db_url = overrides.get("db") or (given.db if given else None)
            config = resume_config(resume, db_url=db_url, file=file, overrides=overrides)
        else:
            config = build_config(file, overrides)
        summary = run_evaluation(config, progress=getattr(args, "progress", True))
    except RunInterrupted as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return exc.exit_code
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if _is_main_process():
        print("\n".join(summary.lines()))
        if getattr(args, "judge", None):
            return _judge(args, summary.run_id, config.db)
    return 0


def _judge(args: argparse.Namespace, run_id: int, db_url: Optional[str]) -> int:
    """``run ... --judge SPEC``: the judge command on the run just made, against its baselines."""
    return judge_command.main(argparse.Namespace(
        run=str(run_id), against=None, judge=args.judge, mode="pairwise", template=None, max_new_tokens=512,
        base_url=getattr(args, "base_url", None), api_key_env=getattr(args, "api_key_env", None),
        concurrency=getattr(args, "concurrency", None), device=getattr(args, "device", None), db=db_url))


def _is_main_process() -> bool:
    """Under torchrun only rank 0 prints the summary (it covers every rank)."""
    import os

    return os.environ.get("RANK", "0").strip() in ("", "0")
