"""Read queries for the dashboard and the CLI: runs, pages of results, one example, joined runs.

Every function takes the session keyword-only and returns plain data (dicts, dataclasses, tuples),
never live ORM objects, so callers can cache the results.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

from sqlalchemy import Text, and_, case, cast, exists, false, func, not_, or_, select
from sqlalchemy.orm import Session

from db._models import Annotation, Dataset, ExampleRow, Judgment, Metric, MetricValue, Result, Run
from db._values import FailureKind, unpack_logprobs

# Result columns that can be sorted on besides metrics.
# The hot paths below use Core tables, not ORM entities: building and running an ORM statement
# costs several milliseconds of Python per query, more than SQLite needs to answer it.
R, E, MV, M, A, J = (Result.__table__, ExampleRow.__table__, MetricValue.__table__, Metric.__table__,
                     Annotation.__table__, Judgment.__table__)

# Result columns that can be sorted on besides metrics.
SORT_COLUMNS = {
    "row": E.c.row_index,
    "latency_ms": R.c.latency_ms,
    "finish_reason": R.c.finish_reason,
}


# Sorting by a metric with metric-range filters: up to this many selected rows, sort the selection;
# above it, walk the sort metric's index until a page is full (see _page_ids).
FILTER_DRIVEN_MAX = 5_000


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
    judge: Optional[str] = None  # a JUDGE_FILTERS value: what a judge said of this run's answer against a baseline
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
    return dict(session.execute(select(M.c.name, M.c.id).where(M.c.name.in_(list(names)))).all())


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def contains_text(text: str, *columns):
    """Case-insensitive "contains ``text``" over any of ``columns``, with ``%`` and ``_`` taken literally.

    A NUL character matches nothing: no stored text can hold one on PostgreSQL (it refuses them), and
    SQLite's LIKE stops reading a pattern at a NUL, so "%<NUL>%" would otherwise match every row.
    """
    if "\x00" in text:
        return false()
    pat = _like_pattern(text.lower())
    return or_(*[func.lower(func.coalesce(c, "")).like(pat, escape="\\") for c in columns])


JUDGE_FILTERS = ("better", "worse", "tie", "judged", "unjudged", "disagrees")


def _needs_rows(q: ResultQuery) -> bool:
    """Whether a filter needs columns of results/examples (not only metric_values)."""
    return bool(q.text or q.category or q.tag or q.failure or q.verdict or q.judge or q.example_ids is not None)


def _latest_verdict(verdict: str):
    """Some reviewer's latest verdict on the result's answer is ``verdict`` (a later one replaces an earlier one)."""
    later = A.alias("later")  # pragma: no mutate (an alias's name changes no result)
    superseded = exists().where(later.c.run_id == A.c.run_id, later.c.example_id == A.c.example_id,
                                later.c.reviewer == A.c.reviewer, later.c.id > A.c.id)
    return exists().where(A.c.run_id == R.c.run_id, A.c.example_id == R.c.example_id, A.c.verdict == verdict,
                          not_(superseded))


def _judge_condition(kind: str):
    """A judge's verdict on the result's answer against a baseline (pairwise, parsed): "better" when some judge
    config's preference for it, averaged over the orders it judged, is above 0.5 against some baseline; "worse"
    below; "tie" exactly 0.5; "judged" / "unjudged" whether any such judgment exists; "disagrees" when a judge
    and a reviewer disagree: a reviewer's latest verdict passes the answer while a judge prefers the baseline's,
    or fails it as a model error while a judge prefers it."""
    if kind == "disagrees":
        return or_(and_(_latest_verdict("pass"), _judge_condition("worse")),
                   and_(_latest_verdict("fail: model error"), _judge_condition("better")))
    judged = select(J.c.judge_key).where(J.c.candidate_id == R.c.run_id, J.c.example_id == R.c.example_id,
                                         J.c.baseline_id.is_not(None), J.c.preference.is_not(None))
    if kind in ("judged", "unjudged"):
        return exists(judged) if kind == "judged" else not_(exists(judged))
    mean = func.avg(J.c.preference)
    having = {"better": mean > 0.5, "worse": mean < 0.5, "tie": mean == 0.5}[kind]
    return exists(judged.group_by(J.c.judge_key, J.c.baseline_id).having(having))


def _active_ranges(q: ResultQuery) -> list[MetricRange]:
    return [r for r in q.ranges if r.lo is not None or r.hi is not None]


def _in_range(value_col, r: MetricRange) -> list:
    """Conditions "value within [lo, hi]" (either bound optional)."""
    return ([value_col >= r.lo] if r.lo is not None else []) + ([value_col <= r.hi] if r.hi is not None else [])


def _apply_filters(stmt, q: ResultQuery, mids: dict[str, int], anchor, *, rows_joined: bool,
                   run_on_ranges: bool = False):
    """Add q's filters to ``stmt`` whose result id column is ``anchor``. Returns None if nothing can match.

    Metric ranges join metric_values by primary key (result_id, metric_id) — small rows, no table
    lookups; the other filters need results (and examples), joined only when used. ``run_on_ranges``
    also names the run on each range (PostgreSQL's planner then weighs a hash join of the two index ranges).
    """
    for i, r in enumerate(_active_ranges(q)):
        mid = mids.get(r.metric)
        if mid is None:  # a metric this store has never seen matches nothing
            return None
        mv = MV.alias(f"f{i}")  # pragma: no mutate (an alias's name changes no result)
        on_run = (mv.c.run_id == q.run_id,) if run_on_ranges else ()
        stmt = stmt.join(mv, and_(mv.c.result_id == anchor, mv.c.metric_id == mid, *on_run, *_in_range(mv.c.value, r)))
    if not _needs_rows(q):
        return stmt
    if not rows_joined:
        stmt = stmt.join(R, R.c.id == anchor)
    if q.text or q.category or q.tag:
        stmt = stmt.join(E, E.c.id == R.c.example_id)
    if q.text:
        stmt = stmt.where(contains_text(q.text, E.c.prompt_text, R.c.output, E.c.reference))
    if q.category:
        stmt = stmt.where(E.c.category == q.category)
    if q.tag:
        stmt = stmt.where(false() if "\x00" in q.tag else
                          cast(E.c.tags, Text).like(_like_pattern(f'"{q.tag}"'), escape="\\"))
    if q.failure:
        if q.failure == "any":
            stmt = stmt.where(R.c.failures != 0)
        elif q.failure == "none":
            stmt = stmt.where(R.c.failures == 0)
        else:
            stmt = stmt.where(R.c.failures.op("&")(int(FailureKind.parse(q.failure))) != 0)
    if q.verdict:
        reviewed = exists().where(A.c.run_id == R.c.run_id, A.c.example_id == R.c.example_id)
        if q.verdict == "unreviewed":
            stmt = stmt.where(not_(reviewed))
        elif q.verdict == "any":
            stmt = stmt.where(reviewed)
        else:
            stmt = stmt.where(_latest_verdict(q.verdict))
    if q.judge:
        if q.judge not in JUDGE_FILTERS:
            raise ValueError(f"judge filter is one of {JUDGE_FILTERS}, not {q.judge!r}")
        stmt = stmt.where(_judge_condition(q.judge))
    if q.example_ids is not None:
        stmt = stmt.where(R.c.example_id.in_(list(q.example_ids)))
    return stmt


def _mids(session: Session, q: ResultQuery) -> dict[str, int]:
    names = [r.metric for r in q.ranges] + ([q.sort] if q.sort and q.sort not in SORT_COLUMNS else [])
    return _metric_id_map(session, names)


def count_results(*, session: Session, query: ResultQuery) -> int:
    """How many results of the run the filters select."""
    q, mids = query, _mids(session, query)
    ranges = _active_ranges(q)
    if ranges and not _needs_rows(q):
        # Drive from the first range's index: a covering index range scan, no table rows read.
        mid = mids.get(ranges[0].metric)
        if mid is None:
            return 0
        f0 = MV.alias("c0")  # pragma: no mutate (an alias's name changes no result)
        stmt = select(func.count()).select_from(f0).where(f0.c.run_id == q.run_id, f0.c.metric_id == mid,
                                                          *_in_range(f0.c.value, ranges[0]))
        stmt = _apply_filters(stmt, q.replace(ranges=tuple(ranges[1:])), mids, f0.c.result_id, rows_joined=False)
    else:
        stmt = _apply_filters(select(func.count()).select_from(R).where(R.c.run_id == q.run_id), q, mids,
                              R.c.id, rows_joined=True)
    return 0 if stmt is None else int(session.scalar(stmt) or 0)


def _page_ids(session: Session, q: ResultQuery, offset: int, limit: int, selected: Optional[int] = None) -> list[int]:
    """Result ids of one page, in order. Only ids: row text is fetched for the page alone.

    ``selected`` is count_results(q) when the caller already has it (it picks the plan).
    """
    mids = _mids(session, q)
    sort_mid = mids.get(q.sort) if q.sort and q.sort not in SORT_COLUMNS else None
    if sort_mid is None:
        col = SORT_COLUMNS.get(q.sort or "", None)
        stmt = _apply_filters(select(R.c.id).where(R.c.run_id == q.run_id), q, mids, R.c.id, rows_joined=True)
        if stmt is None:
            return []
        if col is None:  # dataset order: walks the (run_id, example_id) index and stops after one page
            order = (R.c.example_id.desc(),) if q.descending else (R.c.example_id,)
        else:
            nulls_last = case((col.is_(None), 1), else_=0)
            if col is E.c.row_index and not (q.text or q.category or q.tag):
                stmt = stmt.join(E, E.c.id == R.c.example_id)
            order = (nulls_last, col.desc() if q.descending else col.asc(), R.c.id)
        return list(session.scalars(stmt.order_by(*order).offset(offset).limit(limit)))
    s = MV.alias("s")  # pragma: no mutate (an alias's name changes no result)
    postgres = session.get_bind().dialect.name == "postgresql"
    ranges = _active_ranges(q)
    if any(r.metric not in mids for r in ranges):  # a metric this store has never seen matches nothing
        return []
    if ranges and not _needs_rows(q) and (selected if selected is not None else count_results(
            session=session, query=q)) <= FILTER_DRIVEN_MAX:
        # Few rows pass the filters: scan the first range's index, look up each row's sort value by
        # primary key, sort those. ("s.c.run_id + 0" keeps SQLite from walking s's index instead; on
        # PostgreSQL the same hint turned the lookups into a sequential scan of every metric value.)
        f0 = MV.alias("d0")  # pragma: no mutate (an alias's name changes no result)
        in_range = (f0.c.run_id == q.run_id, f0.c.metric_id == mids[ranges[0].metric], *_in_range(f0.c.value, ranges[0]))
        if postgres:
            # PostgreSQL estimates a value range over every metric's values at once (chrf <= 30 holds for
            # most values of 0-1 metrics), so it walked the sort index instead: a MATERIALIZED CTE keeps
            # the range scan first (chrf <= 30 sorted by confidence at 1M results: 89 ms -> 4 ms).
            f = select(f0.c.result_id).where(*in_range).cte("f").prefix_with("MATERIALIZED")
            stmt = select(s.c.result_id).where(s.c.run_id == q.run_id, s.c.metric_id == sort_mid,
                                               s.c.value.is_not(None), s.c.result_id.in_(select(f.c.result_id)))
        else:
            stmt = select(s.c.result_id).select_from(f0).join(s, and_(
                s.c.result_id == f0.c.result_id, s.c.metric_id == sort_mid, s.c.run_id + 0 == q.run_id,
                s.c.value.is_not(None))).where(*in_range)
        stmt = _apply_filters(stmt, q.replace(ranges=tuple(ranges[1:])), mids, s.c.result_id, rows_joined=False,
                              run_on_ranges=postgres)
    else:
        # Many rows pass: walk the sort metric's (run, metric, value) index in order, probing the
        # filters per row, and stop after one page.
        stmt = _apply_filters(
            select(s.c.result_id).where(s.c.run_id == q.run_id, s.c.metric_id == sort_mid, s.c.value.is_not(None)),
            q, mids, s.c.result_id, rows_joined=False, run_on_ranges=postgres)
    if stmt is None:
        return []
    # Results without a value for the sort metric come after those with one.
    order = (s.c.value.desc(), s.c.result_id.desc()) if q.descending else (s.c.value, s.c.result_id)
    ids = list(session.scalars(stmt.order_by(*order).offset(offset).limit(limit)))
    if len(ids) == limit:
        return ids
    n_valued = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    has_value = exists().where(s.c.result_id == R.c.id, s.c.metric_id == sort_mid, s.c.value.is_not(None))
    rest = _apply_filters(select(R.c.id).where(R.c.run_id == q.run_id, not_(has_value)), q, mids, R.c.id,
                          rows_joined=True)
    rest = rest.order_by(R.c.example_id).offset(max(0, offset - n_valued)).limit(limit - len(ids))
    return ids + list(session.scalars(rest))


def selected_example_ids(*, session: Session, query: ResultQuery, limit: int = 500, offset: int = 0) -> list[int]:
    """Example ids of the results a filter selects, in the browser's order (e.g. a review queue)."""
    ids = _page_ids(session, query, offset, limit)
    found = dict(session.execute(select(R.c.id, R.c.example_id).where(R.c.id.in_(ids))).all())
    return [int(found[i]) for i in ids]


_ROW_COLUMNS = (
    R.c.id.label("result_id"), R.c.example_id, E.c.key, E.c.row_index, E.c.category,
    E.c.prompt_text, E.c.reference, R.c.output, R.c.finish_reason, R.c.failures,
    R.c.output_tokens, R.c.latency_ms, R.c.error,
)


def metrics_for_results(*, session: Session, result_ids: Sequence[int]) -> dict[int, dict[str, Optional[float]]]:
    """result id -> {metric name: value} (None where the metric failed)."""
    out: dict[int, dict[str, Optional[float]]] = {rid: {} for rid in result_ids}
    ids = list(result_ids)
    names = dict(session.execute(select(M.c.id, M.c.name)).all())
    for i in range(0, len(ids), 500):
        rows = session.execute(
            select(MV.c.result_id, MV.c.metric_id, MV.c.value)
            .where(MV.c.result_id.in_(ids[i:i + 500]))
        )
        for rid, mid, value in rows:
            out[rid][names[mid]] = value
    return out


def _row_dict(row, metrics: dict[str, Optional[float]]) -> dict[str, Any]:
    d = dict(row._mapping)
    d["failures"] = FailureKind.names(d["failures"] or 0)
    d["metrics"] = metrics
    return d


def page_results(*, session: Session, query: ResultQuery, page: int = 0, page_size: int = 50,
                 with_total: bool = True) -> ResultPage:
    """One page of a run's results (filtered and sorted in SQL), each row with all its metrics.

    Default order is the dataset's (example id); ``query.sort`` names a metric or a SORT_COLUMNS key.
    Rows whose sort value is missing (metric failed or not applicable) come last in both directions.
    """
    page = max(0, int(page))
    total = count_results(session=session, query=query) if with_total else None
    ids = _page_ids(session, query, page * page_size, page_size, selected=total)
    rows = {r.result_id: r for r in session.execute(
        select(*_ROW_COLUMNS).join(E, E.c.id == R.c.example_id).where(R.c.id.in_(ids)))}
    metrics = metrics_for_results(session=session, result_ids=ids)
    return ResultPage([_row_dict(rows[i], metrics[i]) for i in ids], len(ids) if total is None else total,
                      page, page_size)


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
    """The categories of the examples ``run_id`` has results for, sorted.

    The dataset's categories come from the (dataset, category) index, and each is kept when one result of the
    run is in it: a probe per category, not a DISTINCT over the run's 100k results (0.33 s on the 1M store)."""
    dataset_id = session.scalar(select(Run.dataset_id).where(Run.id == run_id))
    if dataset_id is None:
        return []
    has_result = exists().where(Result.run_id == run_id, Result.example_id == ExampleRow.id)
    categories = select(ExampleRow.category).where(ExampleRow.dataset_id == dataset_id,
                                                   ExampleRow.category.is_not(None)).distinct()
    return [c for c in session.scalars(categories.order_by(ExampleRow.category))
            if session.scalar(select(exists().where(ExampleRow.dataset_id == dataset_id, ExampleRow.category == c,
                                                    has_result)))]
