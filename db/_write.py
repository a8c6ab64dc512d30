"""Everything the evaluator (and the dashboard's review mode) writes.

Bulk rows go through Core ``insert()`` with a list of parameter dicts (executemany) inside the
caller's transaction; ORM ``add_all`` is several times slower for this.
"""
from __future__ import annotations

import json
import math
from typing import Any, Iterable, Mapping, Optional, Sequence

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.orm import Session

from db._errors import UserError
from db._models import (
    Aggregate,
    Annotation,
    Comparison,
    Dataset,
    ExampleRow,
    Metric,
    MetricValue,
    PassThreshold,
    RejectedRow,
    Result,
    Run,
    RunBaseline,
    SavedView,
    utcnow,
)
from db._records import AggregateRecord, ComparisonRecord, ExampleRecord, RejectedRecord, ResultRecord
from db._values import VERDICTS, pack_logprobs, prompt_text

RUN_STATUSES = ("running", "finished", "failed", "interrupted")
_EXAMPLE_CHUNK = 500  # keys per IN (...) lookup; stays under every driver's parameter limit
_PG_EXAMPLES_LOCK = 0x6576  # advisory lock space of "adding examples to dataset N" on PostgreSQL


def _dialect_insert(session: Session, table):
    name = session.get_bind().dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as ins
    elif name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as ins
    else:
        return None
    return ins(table)


def get_or_create_dataset(*, session: Session, name: str, split: str = "", turns: str = "last",
                          format: Optional[str] = None, fingerprint: Optional[str] = None,
                          source: Optional[str] = None) -> int:
    """The dataset of this content (``fingerprint``), split and turns, created if new; ``name`` is its
    display name and ``source`` where it was read from (recorded, not part of its identity).

    Without a fingerprint the dataset is identified by its name (``name:NAME``: imported runs). A
    dataset stored before datasets had fingerprints is identified by its old name, the source as then
    given: the first run of that source with a fingerprint takes that row over, so its history goes on."""
    fingerprint = fingerprint or f"name:{name}"
    stmt = select(Dataset.id).where(Dataset.fingerprint == fingerprint, Dataset.split == split,
                                    Dataset.turns == turns)
    found = session.scalar(stmt)
    if found is None and source and not fingerprint.startswith("name:"):
        legacy = session.scalar(select(Dataset.id).where(Dataset.fingerprint == f"name:{source}",
                                                         Dataset.split == split, Dataset.turns == turns))
        if legacy is not None:
            session.execute(update(Dataset).where(Dataset.id == legacy)
                            .values(fingerprint=fingerprint, name=name, source=source))
            return legacy
    if found is not None:
        if source:
            session.execute(update(Dataset).where(Dataset.id == found, Dataset.source.is_distinct_from(source))
                            .values(source=source))
        return found
    ins = _dialect_insert(session, Dataset)
    values = dict(name=name, fingerprint=fingerprint, source=source, split=split, turns=turns, format=format,
                  created_at=utcnow())
    if ins is not None:  # two evaluators may create the same dataset at once
        session.execute(ins.values(**values).on_conflict_do_nothing())
    else:
        session.execute(insert(Dataset).values(**values))
    return session.scalar(stmt)


def upsert_examples(*, session: Session, dataset_id: int, examples: Sequence[ExampleRecord]) -> dict[str, int]:
    """Insert the examples whose key is new for this dataset; return key -> example id for all of them.

    Each record has the fields of ``evaluator.types.Example`` (``db.ExampleRecord``).
    An existing key keeps its stored content: keys are content hashes, so equal keys mean equal examples.
    """
    keys = [e["key"] for e in examples]
    ids: dict[str, int] = {}
    for i in range(0, len(keys), _EXAMPLE_CHUNK):
        chunk = keys[i:i + _EXAMPLE_CHUNK]
        ids.update(session.execute(
            select(ExampleRow.key, ExampleRow.id).where(ExampleRow.dataset_id == dataset_id, ExampleRow.key.in_(chunk))
        ).all())
    new = [
        dict(
            dataset_id=dataset_id,
            key=e["key"],
            row_index=e.get("row_index", 0),
            messages=list(e["messages"]),
            prompt_text=prompt_text(e["messages"]),
            reference=e.get("reference"),
            category=e.get("category"),
            source=e.get("source"),
            conversation_id=e.get("conversation_id"),
            turn_index=e.get("turn_index"),
            tags=list(e.get("tags") or []),
            meta=dict(e.get("metadata") or {}),
        )
        for e in examples
        if e["key"] not in ids
    ]
    if new:
        if session.get_bind().dialect.name == "postgresql":
            # Writers adding examples to one dataset take turns (until commit): two of them inserting
            # overlapping keys in different orders would otherwise wait on each other's rows (deadlock).
            # The second then skips the rows the first wrote (ON CONFLICT DO NOTHING). SQLite writers
            # already take turns (BEGIN IMMEDIATE). Ids keep following the caller's (row) order.
            session.execute(text("SELECT pg_advisory_xact_lock(:space, :dataset)"),
                            {"space": _PG_EXAMPLES_LOCK, "dataset": dataset_id})
        ins = _dialect_insert(session, ExampleRow)
        if ins is not None:
            session.execute(ins.on_conflict_do_nothing(), new)
        else:
            session.execute(insert(ExampleRow), new)
        missing = [r["key"] for r in new]
        for i in range(0, len(missing), _EXAMPLE_CHUNK):
            chunk = missing[i:i + _EXAMPLE_CHUNK]
            ids.update(session.execute(
                select(ExampleRow.key, ExampleRow.id).where(ExampleRow.dataset_id == dataset_id, ExampleRow.key.in_(chunk))
            ).all())
    return ids


def create_run(*, session: Session, name: str, model: str, backend: str, dataset_id: int, **fields: Any) -> int:
    """Insert a run in status "running"; ``fields`` are other ``Run`` columns (adapter, config, repro, ...)."""
    now = utcnow()
    run = Run(name=name, model=model, backend=backend, dataset_id=dataset_id, status="running",
              created_at=now, updated_at=now, **fields)
    session.add(run)
    session.flush()
    if fields.get("baseline_for_id") is not None:
        link_baseline(session=session, candidate_id=fields["baseline_for_id"], baseline_id=run.id)
    return run.id


def link_baseline(*, session: Session, candidate_id: int, baseline_id: int, reused: bool = False) -> None:
    """Record run ``baseline_id`` as a baseline of ``candidate_id`` (``reused``: a run that already
    existed, found identical); linking the same pair twice changes nothing."""
    if candidate_id == baseline_id:
        raise ValueError(f"run {candidate_id} cannot be its own baseline")
    exists = session.scalar(select(RunBaseline.candidate_id).where(RunBaseline.candidate_id == candidate_id,
                                                                   RunBaseline.baseline_id == baseline_id))
    if exists is None:
        session.execute(insert(RunBaseline).values(candidate_id=candidate_id, baseline_id=baseline_id,
                                                   reused=reused, created_at=utcnow()))


def update_run(*, session: Session, run_id: int, **fields: Any) -> None:
    if "status" in fields and fields["status"] not in RUN_STATUSES:
        raise ValueError(f"status must be one of {RUN_STATUSES}")
    if fields.get("status") in ("finished", "failed", "interrupted") and "finished_at" not in fields:
        fields["finished_at"] = utcnow()
    fields["updated_at"] = utcnow()
    session.execute(update(Run).where(Run.id == run_id).values(**fields))


def add_rejected(*, session: Session, run_id: int, rows: Iterable[RejectedRecord]) -> int:
    """Store rejected dataset rows (row_index, reason, raw) for a run; returns how many."""
    params = [dict(run_id=run_id, row_index=r["row_index"], reason=r["reason"], raw=r.get("raw")) for r in rows]
    if params:
        session.execute(insert(RejectedRow), params)
    return len(params)


def metric_ids(*, session: Session, names: Iterable[str],
               higher_is_better: Optional[Mapping[str, Optional[bool]]] = None) -> dict[str, int]:
    """Intern metric names; returns name -> id, creating the missing ones."""
    names = sorted(set(names))
    found = dict(session.execute(select(Metric.name, Metric.id).where(Metric.name.in_(names))).all())
    missing = [n for n in names if n not in found]
    if missing:
        hib = higher_is_better or {}
        params = [dict(name=n, higher_is_better=hib.get(n)) for n in missing]
        ins = _dialect_insert(session, Metric)
        session.execute(ins.on_conflict_do_nothing() if ins is not None else insert(Metric), params)
        found.update(session.execute(select(Metric.name, Metric.id).where(Metric.name.in_(missing))).all())
    return found


def _metric_rows(run_id: int, result_id: int, metrics: Mapping[str, Any], ids: Mapping[str, int]) -> list[dict]:
    rows = []
    for name, value in metrics.items():
        error = None
        if isinstance(value, tuple):  # (None, "error text") for a metric that failed on this example
            value, error = value
        if value is None and error is None:
            continue  # not applicable (e.g. reference-based metric without a reference)
        rows.append(dict(result_id=result_id, metric_id=ids[name], run_id=run_id,
                         value=None if value is None else float(value), error=error))
    return rows


# The columns a ResultRecord fills directly; example_id, logprobs and metrics are written their own way.
_RESULT_FIELDS = tuple(k for k in ResultRecord.__annotations__ if k not in ("example_id", "logprobs", "metrics"))


def insert_results(*, session: Session, run_id: int, results: Sequence[ResultRecord],
                   higher_is_better: Optional[Mapping[str, Optional[bool]]] = None) -> list[int]:
    """Insert a batch of results with their metric values; returns the new result ids in order.

    Each record (``db.ResultRecord``): example_id, output, output_tokens, finish_reason, and optionally
    prompt_tokens, failures (db.FailureKind bits), latency_ms, logprobs (list of floats), tokens, ref_nll,
    ref_tokens, error, and ``metrics``: name -> value, or name -> (None, "error") for a metric that failed.
    Call inside one transaction (``with Session.begin()``): the batch lands whole or not at all.
    """
    if not results:
        return []
    now = utcnow()
    params = []
    for r in results:
        row = {f: r.get(f) for f in _RESULT_FIELDS}
        row.update(run_id=run_id, example_id=r["example_id"], created_at=now,
                   token_logprobs=pack_logprobs(r.get("logprobs")))
        row["output"] = row["output"] or ""
        row["output_tokens"] = row["output_tokens"] or 0
        row["prompt_tokens"] = row["prompt_tokens"] or 0
        row["failures"] = int(row["failures"] or 0)
        params.append(row)
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        # SQLite writers hold the database's write lock from BEGIN IMMEDIATE (see db._engine), so
        # no other writer can take ids between max(id) and the insert: assign them here and use a
        # plain executemany, which is ~2x faster than INSERT .. RETURNING over many rows.
        first = (session.scalar(select(func.max(Result.id))) or 0) + 1
        ids = list(range(first, first + len(params)))
        for rid, row in zip(ids, params):
            row["id"] = rid
        # Core inserts of the tables: the ORM's bulk path spends a third of an ingest collecting its
        # per-row commands, for rows that are plain dicts already (bench_store's ingest ratio).
        session.execute(insert(Result.__table__), params)
    elif dialect == "postgresql":
        # PostgreSQL's bulk path is COPY, inside the caller's transaction: ids are drawn from the table's
        # sequence first (one query), then both tables are copied (bench_store at 1M results: 6,570 results/s,
        # the speed of a raw COPY; INSERT .. RETURNING executemany did ~2,000, docs/benchmarks.md).
        ids = sorted(session.scalars(text("SELECT nextval(pg_get_serial_sequence('results', 'id')) "
                                          "FROM generate_series(1, :n)"), {"n": len(params)}))
        for rid, row in zip(ids, params):
            row["id"] = rid
            row["tokens"] = None if row["tokens"] is None else json.dumps(row["tokens"], ensure_ascii=False)
        _copy(session, Result.__table__, params)
    else:
        ids = list(session.scalars(insert(Result).returning(Result.id, sort_by_parameter_order=True), params))
    names = {n for r in results for n in (r.get("metrics") or {})}
    if names:
        mids = metric_ids(session=session, names=names, higher_is_better=higher_is_better)
        rows = [row for rid, r in zip(ids, results) for row in _metric_rows(run_id, rid, r.get("metrics") or {}, mids)]
        if rows and dialect == "postgresql":
            _copy(session, MetricValue.__table__, rows)
        elif rows:
            session.execute(insert(MetricValue.__table__), rows)
    return ids


def refresh_statistics(*, session: Session) -> None:
    """After a bulk load (a run's results), let PostgreSQL's planner see the new rows: ``ANALYZE`` of the
    tables a run fills. Autovacuum analyzes only after a share of the table changed, so without this the
    second run of a store was estimated at 1 row and read 240,000 index entries where 8 probes do. A role
    that does not own the tables gets a warning from the server, not an error. SQLite: nothing (its plans
    are steered by the queries themselves)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ANALYZE results, metric_values, examples"))


def _copy(session: Session, table, rows: Sequence[Mapping[str, Any]]) -> None:
    """``COPY table FROM STDIN`` of ``rows`` (dicts with the same keys) on the session's own connection, so
    it is part of the session's transaction (psycopg's ``cursor.copy``; text format, values adapted by psycopg)."""
    import psycopg
    from sqlalchemy.exc import DBAPIError

    columns = list(rows[0])
    raw = session.connection().connection.driver_connection
    quoted = ", ".join('"%s"' % c for c in columns)
    statement = f'COPY "{table.name}" ({quoted}) FROM STDIN'
    try:
        with raw.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])
    except psycopg.Error as exc:  # as SQLAlchemy raises it for its own statements (IntegrityError, ...)
        raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc


def replace_metric_values(*, session: Session, run_id: int, values: Mapping[int, Mapping[str, Any]],
                          only: Optional[Iterable[str]] = None,
                          higher_is_better: Optional[Mapping[str, Optional[bool]]] = None) -> int:
    """Re-scoring: set metrics of existing results (result_id -> {name: value}). Returns rows written.

    Replaces the named metrics of those results (``only`` limits which metric names are touched).
    """
    names = set(only) if only is not None else {n for m in values.values() for n in m}
    if not names:
        return 0
    mids = metric_ids(session=session, names=names, higher_is_better=higher_is_better)
    result_ids = list(values)
    for i in range(0, len(result_ids), _EXAMPLE_CHUNK):
        session.execute(delete(MetricValue).where(
            MetricValue.result_id.in_(result_ids[i:i + _EXAMPLE_CHUNK]),
            MetricValue.metric_id.in_([mids[n] for n in names]),
        ))
    rows = [row for rid, m in values.items()
            for row in _metric_rows(run_id, rid, {k: v for k, v in m.items() if k in names}, mids)]
    if rows:
        session.execute(insert(MetricValue), rows)
    return len(rows)


def replace_aggregates(*, session: Session, run_id: int, rows: Sequence[AggregateRecord]) -> None:
    """Replace all aggregates of a run (``db.AggregateRecord`` rows)."""
    session.execute(delete(Aggregate).where(Aggregate.run_id == run_id))
    if rows:
        session.execute(insert(Aggregate), [
            dict(run_id=run_id, slice=r.get("slice", ""), extra=r.get("extra") or {},
                 ci_low=r.get("ci_low"), ci_high=r.get("ci_high"),
                 **{k: r[k] for k in ("metric", "kind", "n", "value")})
            for r in rows
        ])


_COMPARISON_FIELDS = tuple(ComparisonRecord.__annotations__)


def replace_comparisons(*, session: Session, run_a_id: int, run_b_id: int,
                        rows: Sequence[ComparisonRecord]) -> None:
    """Replace the stored comparison of candidate A with baseline B."""
    session.execute(delete(Comparison).where(Comparison.run_a_id == run_a_id, Comparison.run_b_id == run_b_id))
    if rows:
        now = utcnow()
        session.execute(insert(Comparison), [
            dict({k: r.get(k) for k in _COMPARISON_FIELDS}, slice=r.get("slice", ""), kind=r.get("kind", "mean"),
                 wins=r.get("wins") or 0, ties=r.get("ties") or 0, losses=r.get("losses") or 0,
                 method=r.get("method") or "", run_a_id=run_a_id, run_b_id=run_b_id, created_at=now)
            for r in rows
        ])


class AnnotationError(UserError, ValueError):
    """A verdict that cannot be saved; the message says why."""


def add_annotation(*, session: Session, run_id: int, example_id: int, reviewer: str, verdict: str,
                   comment: str = "") -> int:
    """Record one reviewer's verdict. Appends (history is kept); the latest per reviewer counts."""
    reviewer = (reviewer or "").strip()
    if not reviewer:
        raise AnnotationError("enter your name before saving a verdict")
    if verdict not in VERDICTS:
        raise AnnotationError(f"unknown verdict {verdict!r}; choose one of {VERDICTS}")
    exists = session.scalar(select(Result.id).where(Result.run_id == run_id, Result.example_id == example_id))
    if exists is None:
        raise AnnotationError("this example is no longer in the run (it may have been deleted); verdict not saved")
    ann = Annotation(run_id=run_id, example_id=example_id, reviewer=reviewer[:200], verdict=verdict,
                     comment=comment or "", created_at=utcnow())
    session.add(ann)
    session.flush()
    return ann.id


def save_view(*, session: Session, name: str, params: Mapping[str, Any], created_by: str = "") -> int:
    """Create or replace a named example-browser filter."""
    name = (name or "").strip()
    if not name:
        raise ValueError("a saved view needs a name")
    existing = session.scalar(select(SavedView).where(SavedView.name == name))
    if existing is not None:
        existing.params = dict(params)
        existing.created_by = created_by
        session.flush()
        return existing.id
    view = SavedView(name=name, params=dict(params), created_by=created_by, created_at=utcnow())
    session.add(view)
    session.flush()
    return view.id


def set_pass_threshold(*, session: Session, dataset_id: int, metric: str, threshold: Optional[float],
                       set_by: str = "") -> None:
    """Set (or, with ``threshold=None``, remove) the pass threshold of ``metric`` on a dataset; the
    identity that set it is kept with it."""
    metric = (metric or "").strip()
    if not metric:
        raise ValueError("a pass threshold needs a metric")
    if threshold is not None and not math.isfinite(float(threshold)):
        raise ValueError(f"a pass threshold must be a finite number, not {threshold!r}")
    existing = session.scalar(select(PassThreshold).where(PassThreshold.dataset_id == dataset_id,
                                                          PassThreshold.metric == metric))
    if threshold is None:
        if existing is not None:
            session.delete(existing)
            session.flush()
        return
    if existing is None:
        session.add(PassThreshold(dataset_id=dataset_id, metric=metric, threshold=float(threshold), set_by=set_by,
                                  updated_at=utcnow()))
    else:
        existing.threshold, existing.set_by, existing.updated_at = float(threshold), set_by, utcnow()
    session.flush()
