"""Read queries that only the dashboard needs: datasets, metric bounds, two runs side by side, verdicts.

Like ``db._query``, every function takes the session keyword-only and returns plain data, and what it
returns is bounded whatever the store size: at most one page of rows or one grid of cells. Two-run
analytics hold the two runs' metric columns (16 bytes an example) in numpy while they run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, aliased

from db._models import Annotation, Dataset, ExampleRow, Metric, MetricColumn, MetricValue, Result, Run
from db._query import run_metric_names

# Orders of compare_examples: the difference is value A - value B.
COMPARE_ORDERS = ("diff_desc", "diff_asc", "abs_desc", "row")


def _metric_id_map(session: Session, names: list[str]) -> dict[str, int]:
    if not names:
        return {}
    return dict(session.execute(select(Metric.name, Metric.id).where(Metric.name.in_(list(names)))).all())


def list_datasets(*, session: Session) -> list[dict[str, Any]]:
    """Every dataset with how many runs it has, most recently evaluated first."""
    stmt = (
        select(Dataset.id, Dataset.name, Dataset.split, Dataset.turns, func.count(Run.id), func.max(Run.created_at))
        .outerjoin(Run, Run.dataset_id == Dataset.id)
        .group_by(Dataset.id, Dataset.name, Dataset.split, Dataset.turns)
        .order_by(func.max(Run.created_at).desc(), Dataset.id)
    )
    keys = ("id", "name", "split", "turns", "n_runs", "last_run_at")
    return [dict(zip(keys, row)) for row in session.execute(stmt)]


def metric_info(*, session: Session) -> dict[str, Optional[bool]]:
    """Metric name -> higher_is_better (None when the writer did not say)."""
    return dict(session.execute(select(Metric.name, Metric.higher_is_better).order_by(Metric.name)).all())


def metric_bounds(*, session: Session, run_id: int, metrics: list[str]) -> dict[str, tuple[float, float]]:
    """(min, max) of each metric's non-null values in a run; metrics without values are left out.

    One MIN and one MAX query per metric: each is a single seek in the covering index
    (run_id, metric_id, value, result_id), so this costs the same for 100 or 1,000,000 results.
    """
    out: dict[str, tuple[float, float]] = {}
    for name, mid in _metric_id_map(session, metrics).items():
        where = (MetricValue.run_id == run_id, MetricValue.metric_id == mid, MetricValue.value.is_not(None))
        lo = session.scalar(select(func.min(MetricValue.value)).where(*where))
        if lo is None:
            continue
        hi = session.scalar(select(func.max(MetricValue.value)).where(*where))
        out[name] = (float(lo), float(hi))
    return out


def annotations_of(*, session: Session, run_id: int, example_id: int) -> list[dict[str, Any]]:
    """Every verdict given on one example of one run, newest first."""
    stmt = (select(Annotation.reviewer, Annotation.verdict, Annotation.comment, Annotation.created_at)
            .where(Annotation.run_id == run_id, Annotation.example_id == example_id)
            .order_by(Annotation.created_at.desc(), Annotation.id.desc()))
    keys = ("reviewer", "verdict", "comment", "created_at")
    return [dict(zip(keys, row)) for row in session.execute(stmt)]


# ---------------------------------------------------------------- two runs side by side
#
# Whole-run work on two runs (scatter, sort by difference, per-slice deltas) reads each run's metric as
# a packed column (db.MetricColumn, written when a run is finalised) and joins the two in numpy: two
# 100k-example runs cost a few milliseconds instead of 200k index lookups. A run without columns (still
# running, or written before they existed) gets the same arrays from metric_values. Only pages of
# examples (at most page_size ids) go back to SQL for their texts.


@dataclass(frozen=True)
class Box:
    """A rectangle in the (value A, value B) plane, bounds inclusive; None leaves a side open."""

    a_lo: Optional[float] = None
    a_hi: Optional[float] = None
    b_lo: Optional[float] = None
    b_hi: Optional[float] = None


def metric_column(*, session: Session, run_id: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(example ids ascending as int64, values as float64 with NaN where the metric failed) of one metric."""
    mid = _metric_id_map(session, [metric]).get(metric)
    if mid is None:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    row = session.execute(select(MetricColumn.example_ids, MetricColumn.values)
                          .where(MetricColumn.run_id == run_id, MetricColumn.metric_id == mid)).first()
    if row is not None:
        return np.frombuffer(row[0], dtype="<i8").astype(np.int64), np.frombuffer(row[1], dtype="<f8").astype(np.float64)
    rows = session.execute(
        select(Result.example_id, MetricValue.value).join(Result, Result.id == MetricValue.result_id)
        .where(MetricValue.run_id == run_id, MetricValue.metric_id == mid).order_by(Result.example_id)
    ).all()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vals = np.fromiter((np.nan if r[1] is None else r[1] for r in rows), dtype=np.float64, count=len(rows))
    return ids, vals


def paired_values(*, session: Session, run_a_id: int, run_b_id: int,
                  metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(example ids, A's values, B's values) on the examples where both runs have a value of ``metric``."""
    ia, xa = metric_column(session=session, run_id=run_a_id, metric=metric)
    ib, xb = metric_column(session=session, run_id=run_b_id, metric=metric)
    ids, ja, jb = np.intersect1d(ia, ib, assume_unique=True, return_indices=True)
    va, vb = xa[ja], xb[jb]
    ok = ~(np.isnan(va) | np.isnan(vb))
    return ids[ok], va[ok], vb[ok]


def paired_grid(*, session: Session, run_a_id: int, run_b_id: int, metric: str,
                bins: int = 60) -> dict[str, Any]:
    """A's vs B's value of one metric on the examples both runs have, counted on a grid.

    Returns {"cells": [(a, b, n), ...], "n": examples, "lo", "hi", "width"}. When the values take at
    most ``bins`` distinct values (0/1 exact match, 1-5 ratings) the cells are the exact (a, b) pairs
    and ``width`` is None; otherwise (a, b) is the lower-left corner of a cell of side ``width`` on a
    bins x bins grid over [lo, hi]. Either way there are at most bins**2 cells whatever the number of
    examples, so the scatter of a million examples is as small as that of a hundred.
    """
    _, va, vb = paired_values(session=session, run_a_id=run_a_id, run_b_id=run_b_id, metric=metric)
    if not len(va):
        return {"cells": [], "n": 0, "lo": None, "hi": None, "width": None}
    lo, hi = float(min(va.min(), vb.min())), float(max(va.max(), vb.max()))
    width = None
    if np.unique(np.concatenate([va, vb])).size <= bins:
        ca, cb = va, vb
    else:
        width = (hi - lo) / bins
        ca = lo + np.minimum(np.floor((va - lo) / width), bins - 1) * width
        cb = lo + np.minimum(np.floor((vb - lo) / width), bins - 1) * width
    pairs, counts = np.unique(np.stack([ca, cb], axis=1), axis=0, return_counts=True)
    cells = [(float(a), float(b), int(k)) for (a, b), k in zip(pairs, counts)]
    return {"cells": cells, "n": int(len(va)), "lo": lo, "hi": hi, "width": width}


def _dataset_id(session: Session, run_id: int) -> Optional[int]:
    return session.scalar(select(Run.dataset_id).where(Run.id == run_id))


def compare_examples(*, session: Session, run_a_id: int, run_b_id: int, metric: str, order: str = "abs_desc",
                     threshold: Optional[float] = None, flips_only: bool = False, box: Optional[Box] = None,
                     category: Optional[str] = None, page: int = 0, page_size: int = 25) -> dict[str, Any]:
    """One page of the examples both runs have a value of ``metric`` for, with both outputs and the reference.

    ``order`` (COMPARE_ORDERS): "diff_desc" (A - B, largest first), "diff_asc", "abs_desc" (|A - B|), or
    "row" (example order). ``flips_only`` with a ``threshold``: only examples that pass (value >= threshold)
    in one run and fail in the other. ``box`` limits both values (a region selected on the scatter).
    Returns {"rows": [...], "total": n}; ties keep example order.
    """
    ids, va, vb = paired_values(session=session, run_a_id=run_a_id, run_b_id=run_b_id, metric=metric)
    keep = np.ones(len(ids), dtype=bool)
    if box is not None:
        for vals, lo, hi in ((va, box.a_lo, box.a_hi), (vb, box.b_lo, box.b_hi)):
            if lo is not None:
                keep &= vals >= lo
            if hi is not None:
                keep &= vals <= hi
    if flips_only and threshold is not None:
        keep &= (va >= threshold) != (vb >= threshold)
    if category is not None and len(ids):
        in_cat = np.fromiter(session.scalars(select(ExampleRow.id).where(
            ExampleRow.dataset_id == _dataset_id(session, run_a_id), ExampleRow.category == category)), dtype=np.int64)
        keep &= np.isin(ids, in_cat)
    ids, va, vb = ids[keep], va[keep], vb[keep]
    diff = va - vb
    if order == "diff_desc":
        idx = np.argsort(-diff, kind="stable")
    elif order == "diff_asc":
        idx = np.argsort(diff, kind="stable")
    elif order == "abs_desc":
        idx = np.argsort(-np.abs(diff), kind="stable")
    else:
        idx = np.arange(len(ids))
    page = max(0, int(page))
    sel = idx[page * page_size:(page + 1) * page_size]
    page_ids = [int(i) for i in ids[sel]]
    rows = []
    if page_ids:
        ra, rb = aliased(Result, name="ra"), aliased(Result, name="rb")
        texts = {r.example_id: r for r in session.execute(
            select(ExampleRow.id.label("example_id"), ExampleRow.key, ExampleRow.row_index, ExampleRow.category,
                   ExampleRow.prompt_text, ExampleRow.reference, ra.output.label("output_a"),
                   rb.output.label("output_b"), ra.finish_reason.label("finish_a"), rb.finish_reason.label("finish_b"))
            .join(ra, and_(ra.example_id == ExampleRow.id, ra.run_id == run_a_id))
            .join(rb, and_(rb.example_id == ExampleRow.id, rb.run_id == run_b_id))
            .where(ExampleRow.id.in_(page_ids))
        ).all()}
        for i in sel:
            t = texts.get(int(ids[i]))
            if t is None:
                continue
            d = dict(t._mapping)
            d.update(value_a=float(va[i]), value_b=float(vb[i]), diff=float(diff[i]))
            rows.append(d)
    return {"rows": rows, "total": int(len(ids))}


def paired_summary(*, session: Session, run_a_id: int, run_b_id: int,
                   by_category: bool = False) -> list[dict[str, Any]]:
    """What ``db.delta_summary`` returns (per metric over the examples both runs have a value for: n, mean A,
    mean B, mean delta, A>B / A=B / A<B counts, higher_is_better), from the metric columns.

    With ``by_category`` one row per metric and category, with ``slice`` = "category=<name>"
    (examples without a category are left out of the slices).
    """
    names = sorted(set(run_metric_names(session=session, run_id=run_a_id))
                   & set(run_metric_names(session=session, run_id=run_b_id)))
    hib = dict(session.execute(select(Metric.name, Metric.higher_is_better)).all())
    cats: dict[int, Optional[str]] = {}
    if by_category:
        cats = dict(session.execute(select(ExampleRow.id, ExampleRow.category).where(
            ExampleRow.dataset_id == _dataset_id(session, run_a_id))).all())
    out = []
    for name in names:
        ids, va, vb = paired_values(session=session, run_a_id=run_a_id, run_b_id=run_b_id, metric=name)
        if not len(ids):
            continue
        groups: list[tuple[str, np.ndarray]]
        if by_category:
            labels = np.array([cats.get(int(i)) or "" for i in ids], dtype=object)
            groups = [(f"category={c}", labels == c) for c in sorted(set(labels.tolist())) if c]
        else:
            groups = [("", np.ones(len(ids), dtype=bool))]
        for slice_, mask in groups:
            a, b = va[mask], vb[mask]
            d = a - b
            row = dict(metric=name, higher_is_better=hib.get(name), n=int(len(a)), mean_a=float(a.mean()),
                       mean_b=float(b.mean()), mean_delta=float(d.mean()), a_greater=int((d > 0).sum()),
                       equal=int((d == 0).sum()), a_less=int((d < 0).sum()))
            if by_category:
                row["slice"] = slice_
            out.append(row)
    if by_category:
        out.sort(key=lambda r: (r["slice"], r["metric"]))
    return out
