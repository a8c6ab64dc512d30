"""Read queries for the dashboard and the CLI: runs, pages of results, one example, joined runs.

Every function takes the session keyword-only and returns plain data (dicts, dataclasses, tuples),
never live ORM objects, so callers can cache the results.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

from sqlalchemy import Text, and_, case, cast, exists, func, not_, or_, select
from sqlalchemy.orm import Session, aliased

from db._models import Annotation, Dataset, ExampleRow, Metric, MetricValue, Result, Run
from db._values import FailureKind, unpack_logprobs

# Result columns that can be sorted on besides metrics.
SORT_COLUMNS = {
    "row": ExampleRow.row_index,
    "output_tokens_col": Result.output_tokens,
    "latency_ms": Result.latency_ms,
    "id": Result.id,
}


@dataclass(frozen=True)
class MetricRange:
    metric: str
    lo: Optional[float] = None
    hi: Optional[float] = None


@dataclass(frozen=True)
class ResultQuery:
    """What the example browser selects in one run. Every field is optional except ``run_id``."""

    run_id: int
    ranges: tuple[MetricRange, ...] = ()
    text: Optional[str] = None  # substring of prompt, output or reference (case-insensitive)
    category: Optional[str] = None
    tag: Optional[str] = None
    failure: Optional[str] = None  # a db.FAILURE_KINDS name, "any" or "none"
    verdict: Optional[str] = None  # a db.VERDICTS value, "any" (reviewed) or "unreviewed"
    example_ids: Optional[tuple[int, ...]] = None
    sort: Optional[str] = None  # a metric name or a key of SORT_COLUMNS; default: dataset row order
    descending: bool = False

    def replace(self, **changes: Any) -> "ResultQuery":
        return dataclasses.replace(self, **changes)


@dataclass
class ResultPage:
    rows: list[dict[str, Any]]
    total: int
    page: int
    page_size: int


def _metric_id_map(session: Session, names: Sequence[str]) -> dict[str, int]:
    if not names:
        return {}
    return dict(session.execute(select(Metric.name, Metric.id).where(Metric.name.in_(list(names)))).all())


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _filtered(session: Session, q: ResultQuery, columns: Sequence[Any]):
    """SELECT ``columns`` FROM results (+ filters of q) — without ordering. Returns (stmt, sort_col)."""
    names = [r.metric for r in q.ranges] + ([q.sort] if q.sort and q.sort not in SORT_COLUMNS else [])
    mids = _metric_id_map(session, names)
    stmt = select(*columns).select_from(Result).join(ExampleRow, ExampleRow.id == Result.example_id)
    stmt = stmt.where(Result.run_id == q.run_id)
    for i, r in enumerate(q.ranges):
        if r.lo is None and r.hi is None:
            continue
        mid = mids.get(r.metric)
        if mid is None:  # a metric this store has never seen matches nothing
            return stmt.where(False), None
        mv = aliased(MetricValue, name=f"f{i}")
        cond = [mv.result_id == Result.id, mv.metric_id == mid, mv.run_id == q.run_id]
        if r.lo is not None:
            cond.append(mv.value >= r.lo)
        if r.hi is not None:
            cond.append(mv.value <= r.hi)
        stmt = stmt.join(mv, and_(*cond))
    if q.text:
        pat = _like_pattern(q.text.lower())
        stmt = stmt.where(or_(
            func.lower(ExampleRow.prompt_text).like(pat, escape="\\"),
            func.lower(Result.output).like(pat, escape="\\"),
            func.lower(func.coalesce(ExampleRow.reference, "")).like(pat, escape="\\"),
        ))
    if q.category:
        stmt = stmt.where(ExampleRow.category == q.category)
    if q.tag:
        stmt = stmt.where(cast(ExampleRow.tags, Text).like(_like_pattern(f'"{q.tag}"'), escape="\\"))
    if q.failure:
        if q.failure == "any":
            stmt = stmt.where(Result.failures != 0)
        elif q.failure == "none":
            stmt = stmt.where(Result.failures == 0)
        else:
            stmt = stmt.where(Result.failures.op("&")(int(FailureKind.parse(q.failure))) != 0)
    if q.verdict:
        reviewed = exists().where(Annotation.run_id == Result.run_id, Annotation.example_id == Result.example_id)
        if q.verdict == "unreviewed":
            stmt = stmt.where(not_(reviewed))
        elif q.verdict == "any":
            stmt = stmt.where(reviewed)
        else:
            stmt = stmt.where(reviewed.where(Annotation.verdict == q.verdict))
    if q.example_ids is not None:
        stmt = stmt.where(Result.example_id.in_(list(q.example_ids)))
    sort_col = None
    if q.sort in SORT_COLUMNS:
        sort_col = SORT_COLUMNS[q.sort]
    elif q.sort:
        mid = mids.get(q.sort)
        if mid is not None:
            sv = aliased(MetricValue, name="s")
            stmt = stmt.outerjoin(sv, and_(sv.result_id == Result.id, sv.metric_id == mid))
            sort_col = sv.value
    return stmt, sort_col


def count_results(*, session: Session, query: ResultQuery) -> int:
    stmt, _ = _filtered(session, query.replace(sort=None), [func.count()])
    return int(session.scalar(stmt) or 0)


def _ordered(stmt, sort_col, descending: bool):
    if sort_col is None:
        return stmt.order_by(ExampleRow.row_index, Result.id)
    # NULLs (metric missing or failed) last in both directions; portable across SQLite and PostgreSQL.
    nulls_last = case((sort_col.is_(None), 1), else_=0)
    return stmt.order_by(nulls_last, sort_col.desc() if descending else sort_col.asc(), Result.id)


_ROW_COLUMNS = (
    Result.id.label("result_id"), Result.example_id, ExampleRow.key, ExampleRow.row_index, ExampleRow.category,
    ExampleRow.prompt_text, ExampleRow.reference, Result.output, Result.finish_reason, Result.failures,
    Result.output_tokens, Result.latency_ms, Result.error,
)


def metrics_for_results(*, session: Session, result_ids: Sequence[int]) -> dict[int, dict[str, Optional[float]]]:
    """result id -> {metric name: value} (None where the metric failed)."""
    out: dict[int, dict[str, Optional[float]]] = {rid: {} for rid in result_ids}
    ids = list(result_ids)
    for i in range(0, len(ids), 500):
        rows = session.execute(
            select(MetricValue.result_id, Metric.name, MetricValue.value)
            .join(Metric, Metric.id == MetricValue.metric_id)
            .where(MetricValue.result_id.in_(ids[i:i + 500]))
        )
        for rid, name, value in rows:
            out[rid][name] = value
    return out


def _row_dict(row, metrics: dict[str, Optional[float]]) -> dict[str, Any]:
    d = dict(row._mapping)
    d["failures"] = FailureKind.names(d["failures"] or 0)
    d["metrics"] = metrics
    return d


def page_results(*, session: Session, query: ResultQuery, page: int = 0, page_size: int = 50,
                 with_total: bool = True) -> ResultPage:
    """One page of a run's results (filtered and sorted in SQL), each row with all its metrics."""
    page = max(0, int(page))
    stmt, sort_col = _filtered(session, query, _ROW_COLUMNS)
    stmt = _ordered(stmt, sort_col, query.descending).limit(page_size).offset(page * page_size)
    rows = session.execute(stmt).all()
    metrics = metrics_for_results(session=session, result_ids=[r.result_id for r in rows])
    total = count_results(session=session, query=query) if with_total else len(rows)
    return ResultPage([_row_dict(r, metrics[r.result_id]) for r in rows], total, page, page_size)


def iter_results(*, session: Session, query: ResultQuery, chunk: int = 1000) -> Iterator[dict[str, Any]]:
    """Every selected result in order, ``chunk`` rows at a time (for CSV export of a filter)."""
    page = 0
    while True:
        p = page_results(session=session, query=query, page=page, page_size=chunk, with_total=False)
        yield from p.rows
        if len(p.rows) < chunk:
            return
        page += 1


def run_metric_names(*, session: Session, run_id: int) -> list[str]:
    """Names of the metrics stored for a run."""
    stmt = (select(Metric.name).where(exists().where(MetricValue.metric_id == Metric.id, MetricValue.run_id == run_id))
            .order_by(Metric.name))
    return list(session.scalars(stmt))


def result_detail(*, session: Session, run_id: int, example_id: int) -> Optional[dict[str, Any]]:
    """Everything about one example in one run: conversation, reference, output, metrics, tokens."""
    row = session.execute(
        select(Result, ExampleRow).join(ExampleRow, ExampleRow.id == Result.example_id)
        .where(Result.run_id == run_id, Result.example_id == example_id)
    ).first()
    if row is None:
        return None
    res, ex = row
    metric_rows = session.execute(
        select(Metric.name, MetricValue.value, MetricValue.error).join(Metric, Metric.id == MetricValue.metric_id)
        .where(MetricValue.result_id == res.id).order_by(Metric.name)
    ).all()
    return dict(
        result_id=res.id, run_id=run_id, example_id=ex.id, key=ex.key, row_index=ex.row_index,
        messages=list(ex.messages or []), reference=ex.reference, category=ex.category, tags=list(ex.tags or []),
        conversation_id=ex.conversation_id, turn_index=ex.turn_index, metadata=dict(ex.meta or {}),
        output=res.output, output_tokens=res.output_tokens, prompt_tokens=res.prompt_tokens,
        finish_reason=res.finish_reason, failures=FailureKind.names(res.failures or 0), latency_ms=res.latency_ms,
        error=res.error, tokens=list(res.tokens or []), logprobs=unpack_logprobs(res.token_logprobs),
        ref_nll=res.ref_nll, ref_tokens=res.ref_tokens,
        metrics={n: v for n, v, _ in metric_rows}, metric_errors={n: e for n, _, e in metric_rows if e},
    )


def join_runs(*, session: Session, run_a_id: int, run_b_id: int, metric: str) -> list[tuple]:
    """Examples both runs have, joined on example: (example_id, key, category, value_a, value_b)."""
    mid = _metric_id_map(session, [metric]).get(metric)
    if mid is None:
        return []
    ra, rb = aliased(Result, name="ra"), aliased(Result, name="rb")
    ma, mb = aliased(MetricValue, name="ma"), aliased(MetricValue, name="mb")
    stmt = (
        select(ra.example_id, ExampleRow.key, ExampleRow.category, ma.value, mb.value)
        .select_from(ra)
        .join(rb, and_(rb.example_id == ra.example_id, rb.run_id == run_b_id))
        .join(ExampleRow, ExampleRow.id == ra.example_id)
        .join(ma, and_(ma.result_id == ra.id, ma.metric_id == mid))
        .join(mb, and_(mb.result_id == rb.id, mb.metric_id == mid))
        .where(ra.run_id == run_a_id)
    )
    return [tuple(r) for r in session.execute(stmt).all()]


def delta_summary(*, session: Session, run_a_id: int, run_b_id: int) -> list[dict[str, Any]]:
    """Per metric over the examples both runs have: n, mean A, mean B, mean delta, A>B / A=B / A<B counts.

    Computed in SQL (one grouped join); wins here mean "A's value is larger" — callers flip it for
    metrics where lower is better (``higher_is_better`` is returned with each row).
    """
    ra, rb = aliased(Result, name="ra"), aliased(Result, name="rb")
    ma, mb = aliased(MetricValue, name="ma"), aliased(MetricValue, name="mb")
    d = ma.value - mb.value
    stmt = (
        select(Metric.name, Metric.higher_is_better, func.count(), func.avg(ma.value), func.avg(mb.value), func.avg(d),
               func.sum(case((d > 0, 1), else_=0)), func.sum(case((d == 0, 1), else_=0)),
               func.sum(case((d < 0, 1), else_=0)))
        .select_from(ra)
        .join(rb, and_(rb.example_id == ra.example_id, rb.run_id == run_b_id))
        .join(ma, ma.result_id == ra.id)
        .join(mb, and_(mb.result_id == rb.id, mb.metric_id == ma.metric_id))
        .join(Metric, Metric.id == ma.metric_id)
        .where(ra.run_id == run_a_id, ma.value.is_not(None), mb.value.is_not(None))
        .group_by(Metric.name, Metric.higher_is_better)
        .order_by(Metric.name)
    )
    keys = ("metric", "higher_is_better", "n", "mean_a", "mean_b", "mean_delta", "a_greater", "equal", "a_less")
    return [dict(zip(keys, row)) for row in session.execute(stmt)]


def metric_values(*, session: Session, run_id: int, metric: str) -> list[float]:
    """All non-null values of one metric in a run (for distributions)."""
    mid = _metric_id_map(session, [metric]).get(metric)
    if mid is None:
        return []
    stmt = select(MetricValue.value).where(MetricValue.run_id == run_id, MetricValue.metric_id == mid,
                                           MetricValue.value.is_not(None))
    return list(session.scalars(stmt))


def example_history(*, session: Session, dataset_id: int, key: str) -> list[dict[str, Any]]:
    """One example across every run of its dataset, oldest run first: output, finish reason, metrics."""
    rows = session.execute(
        select(Run.id, Run.name, Run.family, Run.created_at, Result.id, Result.output, Result.finish_reason,
               Result.failures)
        .join(Result, Result.run_id == Run.id)
        .join(ExampleRow, ExampleRow.id == Result.example_id)
        .where(ExampleRow.dataset_id == dataset_id, ExampleRow.key == key)
        .order_by(Run.created_at, Run.id)
    ).all()
    metrics = metrics_for_results(session=session, result_ids=[r[4] for r in rows])
    return [
        dict(run_id=r[0], run_name=r[1], family=r[2], created_at=r[3], result_id=r[4], output=r[5],
             finish_reason=r[6], failures=FailureKind.names(r[7] or 0), metrics=metrics[r[4]])
        for r in rows
    ]


def dataset_of_run(*, session: Session, run_id: int) -> Optional[dict[str, Any]]:
    row = session.execute(
        select(Dataset.id, Dataset.name, Dataset.split, Dataset.turns).join(Run, Run.dataset_id == Dataset.id)
        .where(Run.id == run_id)
    ).first()
    return None if row is None else dict(row._mapping)


def run_categories(*, session: Session, run_id: int) -> list[str]:
    stmt = (select(ExampleRow.category).join(Result, Result.example_id == ExampleRow.id)
            .where(Result.run_id == run_id, ExampleRow.category.is_not(None)).distinct().order_by(ExampleRow.category))
    return list(session.scalars(stmt))
