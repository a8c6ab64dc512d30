"""``python -m evaluator``: one sub-command per module in ``evaluator/commands``.

Each command module defines ``register(subparsers)`` which adds its parser and sets
``func=<callable(args) -> int>``. Command modules import heavy libraries inside ``func`` only.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from evaluator.errors import UserError

# Order is the order shown by --help.
COMMANDS = ["run", "runs", "rejected", "export", "score", "compare", "demo", "serve", "import_run", "import_judgments",
            "judge", "export_kept"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evaluator",
        description="Evaluate fine-tuned chat LLMs example by example and store the results.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'python -m evaluator COMMAND --help' for the examples of each command.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"evaluator.commands.{name}")
        except ModuleNotFoundError as exc:  # a command not written yet
            if exc.name == f"evaluator.commands.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migration steps are not news
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:  # one line that says what to do, never a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; what was committed is kept", file=sys.stderr)
        return 130
