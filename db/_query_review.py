"""Review-mode queries: saved views, review queues, human verdicts, decision logs, human pass rates.

Annotations append: a reviewer who changes their mind adds a row, and each reviewer's latest verdict
on an example (highest id) is the one that counts. Verdicts are few (they are typed by people), so
these queries return them whole; the queue itself is a bounded list of example ids.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional, Sequence

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from db._models import Annotation, ExampleRow, Run, SavedView
from db._query import ResultQuery, selected_example_ids
from db._query_errors import _latest_annotation_ids

QUEUE_LIMIT = 1000


def saved_views(*, session: Session) -> list[dict[str, Any]]:
    """Every saved example-browser filter, by name: {id, name, params, created_by, created_at}."""
    stmt = select(SavedView).order_by(SavedView.name)
    return [dict(id=v.id, name=v.name, params=dict(v.params or {}), created_by=v.created_by,
                 created_at=v.created_at) for v in session.scalars(stmt)]


def saved_view(*, session: Session, name: str) -> Optional[dict[str, Any]]:
    v = session.scalar(select(SavedView).where(SavedView.name == name))
    if v is None:
        return None
    return dict(id=v.id, name=v.name, params=dict(v.params or {}), created_by=v.created_by, created_at=v.created_at)


def queue_example_ids(*, session: Session, query: ResultQuery, limit: int = QUEUE_LIMIT) -> list[int]:
    """Example ids selected by an example-browser filter, in the browser's order (at most ``limit``)."""
    return selected_example_ids(session=session, query=query, limit=limit)


def latest_verdicts(*, session: Session, run_id: Optional[int] = None, run_ids: Optional[Sequence[int]] = None,
                    example_ids: Optional[Sequence[int]] = None) -> list[dict[str, Any]]:
    """Each reviewer's latest verdict per (run, example): {run_id, example_id, reviewer, verdict, comment, created_at}."""
    latest = _latest_annotation_ids(run_id=run_id, run_ids=run_ids)
    stmt = (select(Annotation.run_id, Annotation.example_id, Annotation.reviewer, Annotation.verdict,
                   Annotation.comment, Annotation.created_at)
            .join(latest, latest.c.id == Annotation.id))
    if example_ids is not None:
        stmt = stmt.where(Annotation.example_id.in_([int(e) for e in example_ids]))
    stmt = stmt.order_by(Annotation.run_id, Annotation.example_id, Annotation.reviewer)
    return [dict(r._mapping) for r in session.execute(stmt).all()]


def verdict_summaries(*, session: Session, run_id: int, example_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """example id -> {verdict: number of reviewers whose latest verdict it is}; for a "verdicts" column."""
    out: dict[int, dict[str, int]] = {}
    for v in latest_verdicts(session=session, run_id=run_id, example_ids=example_ids):
        d = out.setdefault(v["example_id"], {})
        d[v["verdict"]] = d.get(v["verdict"], 0) + 1
    return out


def decision_log(*, session: Session, run_ids: Sequence[int], example_ids: Optional[Sequence[int]] = None,
                 since: Optional[dt.datetime] = None, reviewer: Optional[str] = None) -> list[dict[str, Any]]:
    """Every verdict given (history included), oldest first, with the example's key and the run's name.

    Rows: {annotation_id, created_at, reviewer, verdict, comment, run_id, run_name, example_id, key,
    row_index, category, latest} where ``latest`` says whether it is still that reviewer's verdict.
    """
    run_ids = [int(r) for r in run_ids]
    if not run_ids:
        return []
    latest = _latest_annotation_ids(run_ids=run_ids)
    is_latest = case((latest.c.id.is_not(None), True), else_=False)
    stmt = (select(Annotation.id.label("annotation_id"), Annotation.created_at, Annotation.reviewer,
                   Annotation.verdict, Annotation.comment, Annotation.run_id, Run.name.label("run_name"),
                   Annotation.example_id, ExampleRow.key, ExampleRow.row_index, ExampleRow.category,
                   is_latest.label("latest"))
            .join(Run, Run.id == Annotation.run_id).join(ExampleRow, ExampleRow.id == Annotation.example_id)
            .outerjoin(latest, latest.c.id == Annotation.id)
            .where(Annotation.run_id.in_(run_ids)))
    if example_ids is not None:
        stmt = stmt.where(Annotation.example_id.in_([int(e) for e in example_ids]))
    if since is not None:
        stmt = stmt.where(Annotation.created_at >= since)
    if reviewer:
        stmt = stmt.where(Annotation.reviewer == reviewer)
    rows = [dict(r._mapping) for r in session.execute(stmt.order_by(Annotation.created_at, Annotation.id)).all()]
    for r in rows:
        r["latest"] = bool(r["latest"])
    return rows


def human_pass_rates(*, session: Session, run_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Human pass rate per run, next to the automatic metrics.

    An example counts as passed when more than half of its reviewers' latest verdicts are "pass".
    Returns run id -> {reviewed (examples), passed, pass_rate (None when nothing reviewed), verdicts
    (latest verdicts given), by_verdict {verdict: count of latest verdicts}}. Runs without any verdict
    are present with reviewed 0.
    """
    run_ids = [int(r) for r in run_ids]
    out = {r: dict(reviewed=0, passed=0, pass_rate=None, verdicts=0, by_verdict={}) for r in run_ids}
    if not run_ids:
        return out
    latest = _latest_annotation_ids(run_ids=run_ids)
    per_example = (select(Annotation.run_id.label("run_id"), Annotation.example_id,
                          func.count().label("k"),
                          func.sum(case((Annotation.verdict == "pass", 1), else_=0)).label("p"))
                   .join(latest, latest.c.id == Annotation.id)
                   .group_by(Annotation.run_id, Annotation.example_id)).subquery()
    stmt = (select(per_example.c.run_id, func.count(), func.sum(case((2 * per_example.c.p > per_example.c.k, 1),
                                                                     else_=0)))
            .group_by(per_example.c.run_id))
    for rid, reviewed, passed in session.execute(stmt):
        d = out[rid]
        d.update(reviewed=int(reviewed), passed=int(passed or 0))
        d["pass_rate"] = d["passed"] / d["reviewed"] if d["reviewed"] else None
    stmt = (select(Annotation.run_id, Annotation.verdict, func.count()).join(latest, latest.c.id == Annotation.id)
            .group_by(Annotation.run_id, Annotation.verdict))
    for rid, verdict, k in session.execute(stmt):
        out[rid]["by_verdict"][verdict] = int(k)
        out[rid]["verdicts"] += int(k)
    return out
