"""``python -m evaluator rejected``: the dataset rows a run could not evaluate, each with its reason."""
from __future__ import annotations

import argparse
import sys

import db
from evaluator.commands.runs import (
    json_line,
    quiet_store_logs,
    stdout_closed,
    terminal_safe,
)

EPILOG = """\
examples:
  python -m evaluator rejected 12                 # row, reason (with the file's line number), the row as written
  python -m evaluator rejected support-v3 --json  # one JSON object per rejected row
"""

SNIPPET_CHARS = 120  # of the row as written, in the table view (--json has the stored 500)


def register(sub) -> None:
    p = sub.add_parser("rejected", help="list the dataset rows a run rejected, with reasons",
                       description="List the rows of a run's dataset that did not become examples, and why.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="run id or name (the newest run of that name)")
    p.add_argument("--json", action="store_true", help="one JSON object per row: run_id, row_index, reason, raw")
    p.add_argument("--db", metavar="URL", help="store URL or SQLite path (default $EVAL_DB_URL)")
    p.set_defaults(func=main)


def _snippet(raw: str | None) -> str:
    text = " ".join((raw or "").split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 3] + "..."


def main(args: argparse.Namespace) -> int:

    quiet_store_logs()
    engine = db.open_store_readonly(args.db)
    try:
        with db.session_factory(engine)() as session:
            run_id = db.find_run(session=session, ref=args.run)
            rows = db.rejected_rows(session=session, run_id=run_id)
    finally:
        engine.dispose()
    try:
        if args.json:
            for r in rows:
                print(json_line({"run_id": run_id, **r}))
        elif not rows:
            print(f"run {run_id}: no rejected rows")
        else:
            print(f"run {run_id}: {len(rows)} rejected row{'s' if len(rows) != 1 else ''}")
            for r in rows:
                print(f"  {terminal_safe(r['reason'])}")
                if r.get("raw"):
                    print(f"      {terminal_safe(_snippet(r['raw']))}")
        sys.stdout.flush()
    except BrokenPipeError:
        return stdout_closed()
    return 0
