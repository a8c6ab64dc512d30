"""``python -m evaluator runs``: list the runs in the store."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import sys
from typing import Any

import db

EPILOG = """\
examples:
  python -m evaluator runs                               # table, newest first
  python -m evaluator runs --db sqlite:///evals.sqlite --json | jq 'select(.status=="failed")'
  python -m evaluator runs --model llama --status finished
"""

HEADLINE_METRICS = 3  # metric columns in the table view


def register(sub) -> None:
    p = sub.add_parser("runs", help="list runs with their counts and headline metrics",
                       description="List the runs in the store, newest first.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", metavar="URL", help="store URL or SQLite path (default $EVAL_DB_URL)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per run: id, name, model, adapter, dataset, status, counts, "
                        "created/finished, baselines (ids of its baseline runs; a reused one serves several "
                        "candidates), aggregate metrics")
    p.add_argument("--model", metavar="TEXT", help="only runs whose model, adapter or name contains TEXT")
    p.add_argument("--dataset", metavar="TEXT", help="only runs on a dataset whose name contains TEXT")
    p.add_argument("--status", choices=["running", "finished", "failed", "interrupted"],
                   help="interrupted: stopped by a signal, or its writer vanished (no heartbeat)")
    p.set_defaults(func=main)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, (dt.datetime, dt.date)) else value


def run_record(r: dict[str, Any]) -> dict[str, Any]:
    """The JSON form of one ``db.list_runs`` row."""
    aggregates = {
        metric: {kind: {"value": v, "ci_low": lo, "ci_high": hi, "n": n} for kind, (v, lo, hi, n) in kinds.items()}
        for metric, kinds in sorted(r.get("aggregates", {}).items())
    }
    return {
        "id": r["id"], "name": r["name"], "family": r.get("family"), "model": r["model"], "adapter": r["adapter"],
        "backend": r["backend"], "dataset": r["dataset"], "split": r["split"], "status": r["status"],
        "status_text": r.get("status_text", r["status"]), "writer": r.get("writer"),
        "heartbeat_at": _iso(r.get("heartbeat_at")),
        "error": r.get("error"), "baseline_for_id": r.get("baseline_for_id"),
        "baselines": list(r.get("baselines") or []), "is_baseline": bool(r.get("is_baseline")),
        "counts": {"rows": r["n_rows"], "examples": r["n_examples"], "rejected": r["n_rejected"],
                   "results": r["n_results"], "errors": r["n_failed"]},
        "created_at": _iso(r["created_at"]), "finished_at": _iso(r["finished_at"]),
        "metrics": {m: (k.get("mean") or k.get("corpus") or {}).get("value") for m, k in aggregates.items()},
        "aggregates": aggregates,
    }


def _table(records: list[dict[str, Any]]) -> str:
    if not records:
        return "no runs in this store"
    header = ["id", "status", "name", "dataset", "done/examples", "created"]
    rows = []
    for r in records:
        metrics = list(r["metrics"].items())[:HEADLINE_METRICS]
        rows.append([str(r["id"]), r["status_text"], terminal_safe(r["name"])[:40],
                     terminal_safe(f"{r['dataset']}:{r['split']}")[-40:],
                     f"{r['counts']['results']}/{r['counts']['examples']}", (r["created_at"] or "")[:16],
                     "  ".join(f"{terminal_safe(m)}={v:.4g}" if isinstance(v, (int, float)) else f"{terminal_safe(m)}=-"
                               for m, v in metrics)])
    widths = [max(len(x[i]) for x in rows + [header + [""]]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header) + "  metrics"]
    lines += [fmt.format(*row[:-1]) + "  " + row[-1] for row in rows]
    return "\n".join(lines)


# C0 and C1 control characters and DEL: ESC and CSI start terminal escape sequences (colours, cursor
# moves, window titles, hyperlinks) that a run name or a dataset path must not be able to send.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def terminal_safe(text: Any) -> str:
    """Text for a terminal: each control character shown as an escape (``\x1b``), never sent raw."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def json_line(record: Any) -> str:
    """One JSON object on a line, with control characters (C1 and DEL included) as \\u escapes."""
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(record, ensure_ascii=False))


def quiet_store_logs() -> None:
    """Alembic logs every migration step at INFO; a listing or an export should not show them."""
    logging.getLogger("alembic").setLevel(logging.WARNING)


def stdout_closed() -> int:
    """The reader of our stdout went away (``| head``): stop quietly, as ``ls | head`` does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


def main(args: argparse.Namespace) -> int:

    quiet_store_logs()
    engine = db.open_store_readonly(args.db)
    try:
        with db.session_factory(engine)() as session:
            rows = db.list_runs(session=session, model=args.model, dataset=args.dataset, status=args.status)
    finally:
        engine.dispose()
    records = [run_record(r) for r in rows]
    try:
        if args.json:
            for rec in records:
                print(json_line(rec))
        else:
            print(_table(records))
        sys.stdout.flush()
    except BrokenPipeError:
        return stdout_closed()
    return 0
