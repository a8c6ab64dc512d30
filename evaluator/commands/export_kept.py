"""``python -m evaluator export_kept NAME``: conversations kept from the Arena as a JSONL dataset."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import db
from evaluator._arena import kept_jsonl
from evaluator.errors import UserError

EPILOG = """\
examples:
  python -m evaluator export_kept                       # list the sets of kept examples
  python -m evaluator export_kept arena -o arena.jsonl  # one set as JSONL in the messages format
  python -m evaluator run --model ./v4 --dataset arena.jsonl --name v4-arena   # then a regression run on it
"""


def register(sub) -> None:
    p = sub.add_parser("export_kept", help="write the conversations kept in the Arena as a JSONL dataset",
                       description="Write a named set of conversations kept from the dashboard's Arena (each with "
                                   "the preferred answer as its reference) as JSONL in the messages format, "
                                   "ready for 'evaluator run --dataset'. Without NAME, list the sets.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME", nargs="?", help="the set's name (as given in the Arena)")
    p.add_argument("-o", "--output", metavar="PATH", help="file to write (default: standard output)")
    p.add_argument("--db", metavar="URL", help="store URL or SQLite path (default $EVAL_DB_URL)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    engine = db.open_store_readonly(db.resolve_url(args.db))
    try:
        with db.session_factory(engine)() as session:
            sets = db.kept_sets(session=session)
            if args.name is None:
                for s in sets:
                    print(f"{s['set_name']}\t{s['examples']} examples\tlast kept {s['last']:%Y-%m-%d %H:%M}")
                if not sets:
                    print("no kept examples yet: keep a conversation in the dashboard's Arena first")
                return 0
            rows = db.kept_examples(session=session, set_name=args.name)
    finally:
        engine.dispose()
    if not rows:
        known = ", ".join(s["set_name"] for s in sets) or "none yet"
        raise UserError(f"no kept examples in a set named {args.name!r} (sets: {known})")
    text = kept_jsonl(rows, args.name)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {len(rows)} examples to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
