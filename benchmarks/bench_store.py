"""Store benchmark: ingest rate, a filtered+sorted page, and a two-run join, over a large store.

Builds a SQLite store with RUNS x EXAMPLES results (default 10 x 100,000 = 1,000,000), 8 metrics each,
texts of realistic length (prompts ~60 words, references ~40, outputs ~50), then prints:
  - ingest rate through the write API (db.insert_results, one transaction per batch) divided by the
    rate of raw sqlite3 executemany of the same rows into the same tables (goal >= 0.5);
  - median time of one page of 50 results filtered on one metric range and sorted by another, with
    its total count, as the example browser asks for it (goal <= 50 ms), and the ratio to loading
    the run into pandas and filtering there (goal >= 20x);
  - joining two runs on example key with per-metric deltas (db.delta_summary; goal <= 0.5 s).
The last line printed is one JSON object with the figures.

    python benchmarks/bench_store.py                      # 1M results (several minutes on 2 cores)
    python benchmarks/bench_store.py --runs 3 --examples 20000   # about a minute
    python benchmarks/bench_store.py --keep store.sqlite  # keep the store (e.g. for bench_dashboard)
    python benchmarks/bench_store.py --db postgresql+psycopg://user@host/empty_db   # the same on PostgreSQL

On PostgreSQL (``--db``, an empty database, kept afterwards) the reference ingest is psycopg's COPY of the
same rows into the same tables, one transaction per batch, instead of sqlite3's executemany.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd
from sqlalchemy import select, text

import db
from db import utcnow

METRICS = ["bleu", "chrf", "rouge1", "rouge2", "rougeL", "token_f1", "confidence", "perplexity"]
CATEGORIES = ["support", "smalltalk", "math", "facts", "coding"]
WORDS = ("the a to of and in is it you that for on with as your we can this be order account please thank "
         "refund password email reset shipping delivery price answer question help sorry number total minus "
         "plus equals capital city river model version update install error message check").split()


def _text(rng: random.Random, mean_words: int) -> str:
    n = max(1, int(rng.gauss(mean_words, mean_words / 3)))
    return " ".join(rng.choices(WORDS, k=n)).capitalize() + "."


def _metric_values(rng: random.Random, quality: float) -> dict[str, float]:
    q = min(1.0, max(0.0, rng.gauss(quality, 0.2)))
    return {
        "bleu": 100 * q * rng.random(), "chrf": 100 * q, "rouge1": q, "rouge2": q * rng.random(),
        "rougeL": min(1.0, q * (0.8 + 0.4 * rng.random())), "token_f1": q, "confidence": rng.random(),
        "perplexity": 1.0 + 20 * (1 - q) * rng.random(),
    }


def _result_rows(rng, example_ids, quality):
    rows = []
    for eid in example_ids:
        out = _text(rng, 50)
        n_tok = len(out) // 4
        rows.append(dict(example_id=eid, output=out, output_tokens=n_tok, prompt_tokens=80, finish_reason="stop",
                         failures=0 if rng.random() > 0.05 else 2, latency_ms=rng.random() * 500,
                         logprobs=[-rng.random() for _ in range(min(n_tok, 64))], tokens=None,
                         metrics=_metric_values(rng, quality)))
    return rows


def build(url: str, runs: int, examples: int, batch: int, rng: random.Random) -> dict:
    engine = db.open_store(url)
    Session = db.session_factory(engine)
    with Session.begin() as s:
        ds = db.get_or_create_dataset(session=s, name="bench.jsonl", split="test")
    example_ids: list[int] = []
    for start in range(0, examples, 5000):
        with Session.begin() as s:
            ids = db.upsert_examples(session=s, dataset_id=ds, examples=[
                dict(key=f"ex{i:07d}", row_index=i, messages=[{"role": "user", "content": _text(rng, 60)}],
                     reference=_text(rng, 40), category=CATEGORIES[i % len(CATEGORIES)], tags=[CATEGORIES[i % 5]])
                for i in range(start, min(examples, start + 5000))
            ])
            example_ids.extend(ids[f"ex{i:07d}"] for i in range(start, min(examples, start + 5000)))
    with Session.begin() as s:
        db.metric_ids(session=s, names=METRICS)
        mids = db.metric_ids(session=s, names=METRICS)

    run_ids, api_s, raw_s = [], 0.0, 0.0
    for r in range(runs):
        with Session.begin() as s:
            run = db.create_run(session=s, name=f"bench-v{r}", family="bench", model=f"m{r}", backend="transformers",
                                dataset_id=ds)
        run_ids.append(run)
        rows = _result_rows(rng, example_ids, quality=0.3 + 0.05 * r)
        if r == 1:  # the raw reference ingest: same rows, same tables, ids assigned up front
            engine.dispose()
            raw = _raw_copy if url.startswith("postgresql") else _raw_ingest
            raw_s = raw(url, run, rows, mids, batch)
            continue
        t0 = time.perf_counter()
        for i in range(0, len(rows), batch):
            with Session.begin() as s:
                db.insert_results(session=s, run_id=run, results=rows[i:i + batch])
        if r == 0:
            api_s = time.perf_counter() - t0
        print(f"run {r + 1}/{runs} ingested", file=sys.stderr, flush=True)
    for run in run_ids:  # what the evaluator does when it finalises a run
        with Session.begin() as s:
            db.update_run(session=s, run_id=run, status="finished", n_rows=examples, n_examples=examples)
            db.refresh_metric_columns(session=s, run_id=run)
        with Session.begin() as s:
            db.refresh_statistics(session=s)
    engine.dispose()
    return dict(engine_url=url, run_ids=run_ids, api_s=api_s, raw_s=raw_s, rows_per_run=len(example_ids))


def _raw_ingest(url: str, run_id: int, rows: list[dict], mids: dict[str, int], batch: int) -> float:
    path = url.removeprefix("sqlite:///")
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    next_id = (con.execute("SELECT max(id) FROM results").fetchone()[0] or 0) + 1
    now = utcnow()
    t0 = time.perf_counter()
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        res, mv = [], []
        for j, r in enumerate(chunk):
            rid = next_id + i + j
            res.append((rid, run_id, r["example_id"], r["output"], r["output_tokens"], r["prompt_tokens"],
                        r["finish_reason"], r["failures"], r["latency_ms"], db.pack_logprobs(r["logprobs"]), now))
            mv.extend((rid, mids[k], run_id, float(v)) for k, v in r["metrics"].items())
        con.execute("BEGIN")
        con.executemany("INSERT INTO results (id, run_id, example_id, output, output_tokens, prompt_tokens, "
                        "finish_reason, failures, latency_ms, token_logprobs, created_at) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?)", res)
        con.executemany("INSERT INTO metric_values (result_id, metric_id, run_id, value) VALUES (?,?,?,?)", mv)
        con.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    con.close()
    return elapsed


def _raw_copy(url: str, run_id: int, rows: list[dict], mids: dict[str, int], batch: int) -> float:
    """PostgreSQL's fastest load: psycopg COPY of both tables, one transaction per batch."""
    import psycopg
    from sqlalchemy.engine import make_url

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    now = utcnow()
    with psycopg.connect(conninfo) as con:
        ids = sorted(r[0] for r in con.execute("SELECT nextval(pg_get_serial_sequence('results', 'id')) "
                                                "FROM generate_series(1, %s)", (len(rows),)))
        con.commit()
        t0 = time.perf_counter()
        for i in range(0, len(rows), batch):
            with con.transaction(), con.cursor() as cur:
                with cur.copy("COPY results (id, run_id, example_id, output, output_tokens, prompt_tokens, "
                              "finish_reason, failures, latency_ms, token_logprobs, created_at) FROM STDIN") as cp:
                    for j, r in enumerate(rows[i:i + batch]):
                        cp.write_row((ids[i + j], run_id, r["example_id"], r["output"], r["output_tokens"],
                                      r["prompt_tokens"], r["finish_reason"], r["failures"], r["latency_ms"],
                                      db.pack_logprobs(r["logprobs"]), now))
                with cur.copy("COPY metric_values (result_id, metric_id, run_id, value) FROM STDIN") as cp:
                    for j, r in enumerate(rows[i:i + batch]):
                        for k, v in r["metrics"].items():
                            cp.write_row((ids[i + j], mids[k], run_id, float(v)))
        return time.perf_counter() - t0


def _store_mb(url: str) -> float:
    if not url.startswith("postgresql"):
        return round(os.path.getsize(url.removeprefix("sqlite:///")) / 2**20, 1)
    engine = db.make_engine(url)
    with engine.connect() as c:
        size = c.scalar(text("SELECT pg_database_size(current_database())"))
    engine.dispose()
    return round(size / 2**20, 1)


def _timed(fn, reps: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def measure(url: str, run_ids: list[int], reps: int) -> dict:
    engine = db.open_store_readonly(url)
    Session = db.session_factory(engine)
    run, other = run_ids[-1], run_ids[-2]
    queries = [
        db.ResultQuery(run_id=run, ranges=(db.MetricRange("rougeL", 0.2, 0.6),), sort="bleu", descending=True),
        db.ResultQuery(run_id=run, ranges=(db.MetricRange("chrf", None, 30.0),), sort="confidence"),
        db.ResultQuery(run_id=run, ranges=(db.MetricRange("token_f1", 0.6, None),), sort="perplexity", descending=True),
    ]
    page_times = []
    with Session() as s:
        for q in queries:
            for page in (0, 5):
                t, p = _timed(lambda: db.page_results(session=s, query=q, page=page, page_size=50), reps)
                assert len(p.rows) == 50, "benchmark query selected too few rows"
                page_times.append(t)

    def pandas_way():
        with engine.connect() as conn:
            res = pd.read_sql(select(db.Result.id, db.Result.output, db.Result.finish_reason, db.Result.output_tokens)
                              .where(db.Result.run_id == run), conn)
            mv = pd.read_sql(select(db.MetricValue.result_id, db.Metric.name, db.MetricValue.value)
                             .join(db.Metric, db.Metric.id == db.MetricValue.metric_id)
                             .where(db.MetricValue.run_id == run), conn)
        wide = mv.pivot(index="result_id", columns="name", values="value")
        df = res.join(wide, on="id")
        sel = df[(df["rougeL"] >= 0.2) & (df["rougeL"] <= 0.6)].sort_values("bleu", ascending=False)
        return sel.head(50), len(sel)

    pandas_s, (top, total) = _timed(pandas_way, max(1, reps // 5))
    with Session() as s:
        ours = db.page_results(session=s, query=queries[0])
        assert [r["result_id"] for r in ours.rows] == top["id"].tolist() and ours.total == total, "page disagrees with pandas"
        join_s, summary = _timed(lambda: db.delta_summary(session=s, run_a_id=run, run_b_id=other), max(1, reps // 4))
        assert len(summary) == len(METRICS)
        pairs_s, pairs = _timed(lambda: db.join_runs(session=s, run_a_id=run, run_b_id=other, metric="rougeL"),
                                max(1, reps // 4))
    engine.dispose()
    return dict(page_median_ms=statistics.median(page_times) * 1000, page_worst_median_ms=max(page_times) * 1000,
                pandas_filter_s=pandas_s, page_speedup_vs_pandas=pandas_s / statistics.median(page_times),
                join_delta_summary_s=join_s, join_one_metric_pairs_s=pairs_s, join_pairs=len(pairs))


def _has_runs(url: str) -> bool:
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return False
    engine = db.make_engine(url)
    try:
        with engine.connect() as c:
            return bool(c.scalar(text("SELECT count(*) FROM runs")))
    except Exception:  # no schema yet
        return False
    finally:
        engine.dispose()


def _server(url: str) -> str:
    if not url.startswith("postgresql"):
        return f"SQLite {sqlite3.sqlite_version}"
    engine = db.make_engine(url)
    with engine.connect() as c:
        version = c.scalar(text("SHOW server_version"))
    engine.dispose()
    return f"PostgreSQL {version}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--examples", type=int, default=100_000, help="examples per run (every run has all)")
    ap.add_argument("--batch", type=int, default=1000, help="results per transaction")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--keep", help="build (or reuse) the store at this path and keep it")
    ap.add_argument("--db", help="a PostgreSQL URL: build there (an empty database) or reuse what it holds")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.runs < 2:
        ap.error("--runs must be at least 2 (one run is ingested raw for the ratio)")
    tmp = None
    if args.db:
        url = args.db
    elif args.keep:
        url = f"sqlite:///{Path(args.keep).resolve()}"
    else:
        tmp = tempfile.TemporaryDirectory()
        url = f"sqlite:///{Path(tmp.name) / 'bench.sqlite'}"
    t0 = time.perf_counter()
    if _has_runs(url):
        engine = db.open_store_readonly(url)
        with db.session_factory(engine)() as s:
            run_ids = [r["id"] for r in sorted(db.list_runs(session=s), key=lambda r: r["id"])]
            n = sum(r["n_results"] for r in db.list_runs(session=s))
        engine.dispose()
        built = dict(run_ids=run_ids, api_s=None, raw_s=None, rows_per_run=n // max(1, len(run_ids)))
        print(f"reusing {db.shown_url(url)} ({n} results)", file=sys.stderr)
    else:
        built = build(url, args.runs, args.examples, args.batch, random.Random(args.seed))
    build_s = time.perf_counter() - t0
    figures = measure(url, built["run_ids"], args.reps)
    n_results = built["rows_per_run"] * len(built["run_ids"])
    out = dict(results=n_results, runs=len(built["run_ids"]), metrics_per_result=len(METRICS),
               store_mb=_store_mb(url), build_s=round(build_s, 1))
    if built["api_s"]:
        out.update(ingest_api_rows_per_s=round(built["rows_per_run"] / built["api_s"]),
                   ingest_raw_rows_per_s=round(built["rows_per_run"] / built["raw_s"]),
                   ingest_ratio=round(built["raw_s"] / built["api_s"], 3))
    out.update({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()})
    out["machine"] = f"{os.cpu_count()} cores, {sys.platform}, {_server(url)}"
    for k, v in out.items():
        print(f"{k:>28}: {v}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
