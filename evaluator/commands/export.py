"""``python -m evaluator export``: one record per example of a run, as JSONL, CSV or Parquet."""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, TextIO

import db
from db import spreadsheet_safe
from evaluator.commands.runs import quiet_store_logs, stdout_closed

EPILOG = """\
examples:
  python -m evaluator export 12 --format jsonl > run12.jsonl
  python -m evaluator export support-v3 --format csv -o support-v3.csv
  python -m evaluator export 12 --format parquet -o run12.parquet --db sqlite:///evals.sqlite

Each record: run_id, example_id, example_key, row_index, category, messages, reference, output,
finish_reason, output_tokens, prompt_tokens, failures, error, latency_ms, ref_nll, ref_tokens,
token_logprobs (JSONL/Parquet), metrics {name: value}; JSONL also run_name, model, run_created_at,
dataset, split, turns, dataset_fingerprint, turn_index, conversation_id, source, tags, metadata (what 'import_run --format
export' needs to rebuild the run in another store). CSV has messages as JSON text and one
column "metric.NAME" per metric. JSONL/CSV go to stdout unless -o; Parquet needs -o (default run-ID.parquet).
"""

FORMATS = ("jsonl", "csv", "parquet")
CSV_COLUMNS = ("run_id", "example_id", "example_key", "row_index", "category", "messages", "reference", "output",
               "finish_reason", "output_tokens", "prompt_tokens", "failures", "error", "latency_ms", "ref_nll",
               "ref_tokens")
PARQUET_BATCH = 1000


def register(sub) -> None:
    p = sub.add_parser("export", help="export a run's results (JSONL, CSV or Parquet)",
                       description="Write one record per example of a run.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="run id or name (the newest run of that name)")
    p.add_argument("--format", choices=FORMATS, help="default: from the -o suffix, else jsonl")
    p.add_argument("-o", "--output", metavar="PATH", help="output file ('-' = stdout)")
    p.add_argument("--db", metavar="URL", help="store URL or SQLite path (default $EVAL_DB_URL)")
    p.set_defaults(func=main)


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    suffix = Path(args.output).suffix.lower().lstrip(".") if args.output and args.output != "-" else ""
    return suffix if suffix in FORMATS else "jsonl"


def write_jsonl(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    n = 0
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        n += 1
    return n


def write_csv(rows: Iterable[dict[str, Any]], out: TextIO, metric_names: list[str]) -> int:
    """CSV for spreadsheets: text cells that would start a formula (``=``, ``+``, ``-``, ``@``) get a
    leading apostrophe (``db.spreadsheet_safe``); JSONL and Parquet keep every string as it is."""

    writer = csv.writer(out)
    writer.writerow(list(CSV_COLUMNS) + [f"metric.{m}" for m in metric_names])
    n = 0
    for row in rows:
        cells = []
        for c in CSV_COLUMNS:
            v = row[c]
            if c == "messages":
                v = json.dumps(v, ensure_ascii=False)
            elif c == "failures":
                v = ";".join(v)
            cells.append("" if v is None else spreadsheet_safe(v))
        cells += ["" if row["metrics"].get(m) is None else row["metrics"][m] for m in metric_names]
        writer.writerow(cells)
        n += 1
    return n


def _parquet_schema(metric_names: list[str]):
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    fields = [
        ("run_id", pa.int64()), ("example_id", pa.int64()), ("example_key", pa.string()), ("row_index", pa.int64()),
        ("category", pa.string()), ("messages", pa.list_(message)), ("reference", pa.string()),
        ("output", pa.string()), ("finish_reason", pa.string()), ("output_tokens", pa.int64()),
        ("prompt_tokens", pa.int64()), ("failures", pa.list_(pa.string())), ("error", pa.string()),
        ("latency_ms", pa.float64()), ("ref_nll", pa.float64()), ("ref_tokens", pa.int64()),
        ("token_logprobs", pa.list_(pa.float32())),
        # A struct with one field per metric: reads back as {name: value} (pandas: a dict per row).
        ("metrics", pa.struct([(m, pa.float64()) for m in metric_names]) if metric_names else pa.struct([])),
    ]
    return pa.schema(fields)


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_parquet(rows: Iterable[dict[str, Any]], path: Path, metric_names: list[str]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema(metric_names)
    n = 0
    with pq.ParquetWriter(path, schema) as writer:
        for chunk in _chunks(rows, PARQUET_BATCH):
            for row in chunk:
                row["messages"] = [{"role": m.get("role"), "content": m.get("content")} for m in row["messages"]]
                row["metrics"] = {m: row["metrics"].get(m) for m in metric_names}
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
            n += len(chunk)
        if n == 0:
            writer.write_table(schema.empty_table())
    return n


def export_run(ref: str, fmt: str, output: Optional[str], db_url: Optional[str], stdout: Optional[TextIO] = None) -> tuple[int, str]:
    """Export run ``ref``; returns (records written, where)."""

    stdout = stdout or sys.stdout

    engine = db.open_store_readonly(db_url)
    try:
        with db.session_factory(engine)() as session:
            run_id = db.find_run(session=session, ref=ref)
            metric_names = db.run_metric_names(session=session, run_id=run_id)
            rows = db.export_rows(session=session, run_id=run_id)
            if fmt == "parquet":
                path = Path(output if output and output != "-" else f"run-{run_id}.parquet")
                return write_parquet(rows, path, metric_names), str(path)
            if output and output != "-":
                with open(output, "w", encoding="utf-8", newline="") as f:
                    n = write_jsonl(rows, f) if fmt == "jsonl" else write_csv(rows, f, metric_names)
                return n, output
            n = write_jsonl(rows, stdout) if fmt == "jsonl" else write_csv(rows, stdout, metric_names)
            return n, "stdout"
    finally:
        engine.dispose()


def main(args: argparse.Namespace) -> int:

    quiet_store_logs()
    try:
        n, where = export_run(args.run, _format(args), args.output, args.db)
        sys.stdout.flush()
    except BrokenPipeError:
        return stdout_closed()
    except OSError as exc:  # e.g. the -o directory does not exist
        print(f"error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"exported {n} records to {where}", file=sys.stderr)
    return 0
