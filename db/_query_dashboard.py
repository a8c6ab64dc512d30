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

from db._columns import paired_metric
from db._models import Annotation, Dataset, ExampleRow, Metric, MetricValue, PassThreshold, Result, Run
from db._query import _metric_id_map, run_metric_names
from db._query_runs import add_baselines

# Orders of compare_examples: the difference is value A - value B.
COMPARE_ORDERS = ("diff_desc", "diff_asc", "abs_desc", "row")


def run_index(*, session: Session) -> list[dict[str, Any]]:
    """Every run, newest first, with its dataset: what pickers and labels need, without ``db.list_runs``'s
    per-run counts and aggregates (those read every result row; this reads only runs and datasets)."""
    stmt = (select(Run.id, Run.name, Run.family, Run.model, Run.adapter, Run.dataset_id, Dataset.name, Dataset.split,
                   Run.created_at, Run.status, Run.baseline_for_id)
            .join(Dataset, Dataset.id == Run.dataset_id).order_by(Run.created_at.desc(), Run.id.desc()))
    keys = ("id", "name", "family", "model", "adapter", "dataset_id", "dataset", "split", "created_at", "status",
            "baseline_for_id")
    rows = [dict(zip(keys, row)) for row in session.execute(stmt).all()]
    add_baselines(session, rows)
    return rows


def list_datasets(*, session: Session) -> list[dict[str, Any]]:
    """Every dataset with how many runs it has, most recently evaluated first."""
    stmt = (
        select(Dataset.id, Dataset.name, Dataset.split, Dataset.turns, func.count(Run.id), func.max(Run.created_at),
               Dataset.fingerprint, Dataset.source)
        .outerjoin(Run, Run.dataset_id == Dataset.id)
        .group_by(Dataset.id, Dataset.name, Dataset.split, Dataset.turns, Dataset.fingerprint, Dataset.source)
        # NULLS LAST: SQLite's default for DESC, not PostgreSQL's (datasets without runs go last on both)
        .order_by(func.max(Run.created_at).desc().nulls_last(), Dataset.id)
    )
    keys = ("id", "name", "split", "turns", "n_runs", "last_run_at", "fingerprint", "source")
    return [dict(zip(keys, row)) for row in session.execute(stmt)]


def metric_info(*, session: Session) -> dict[str, Optional[bool]]:
    """Metric name -> higher_is_better (None when the writer did not say)."""
    return dict(session.execute(select(Metric.name, Metric.higher_is_better).order_by(Metric.name)).all())


def pass_thresholds(*, session: Session, dataset_id: int) -> dict[str, dict[str, Any]]:
    """Metric -> {"threshold", "set_by", "updated_at"}: the pass thresholds stored for a dataset."""
    rows = session.execute(select(PassThreshold.metric, PassThreshold.threshold, PassThreshold.set_by,
                                  PassThreshold.updated_at).where(PassThreshold.dataset_id == dataset_id)
                           .order_by(PassThreshold.metric))
    return {m: dict(threshold=float(t), set_by=by, updated_at=at) for m, t, by, at in rows}


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
# Whole-run work on two runs (scatter, sort by difference, per-slice deltas) joins the runs' metric
# columns in numpy (db.paired_metric: packed arrays written when a run is finalised, or built from
# metric_values for a run without them). Only a page of examples (page_size ids) goes back to SQL
# for its texts.


@dataclass(frozen=True)
class Box:
    """A rectangle in the (value A, value B) plane, bounds inclusive; None leaves a side open."""

    a_lo: Optional[float] = None
    a_hi: Optional[float] = None
    b_lo: Optional[float] = None
    b_hi: Optional[float] = None


def paired_grid(*, session: Session, run_a_id: int, run_b_id: int, metric: str,
                bins: int = 60) -> dict[str, Any]:
    """A's vs B's value of one metric on the examples both runs have, counted on a grid.

    Returns {"cells": [(a, b, n), ...], "n": examples, "lo", "hi", "width"}. When the values take at
    most ``bins`` distinct values (0/1 exact match, 1-5 ratings) the cells are the exact (a, b) pairs
    and ``width`` is None; otherwise (a, b) is the lower-left corner of a cell of side ``width`` on a
    bins x bins grid over [lo, hi]. Either way there are at most bins**2 cells whatever the number of
    examples, so the scatter of a million examples is as small as that of a hundred.
    """
    _, va, vb = paired_metric(session=session, run_a_id=run_a_id, run_b_id=run_b_id, metric=metric)
    if not len(va):
        return {"cells": [], "n": 0, "lo": None, "hi": None, "width": None}
    lo, hi = float(min(va.min(), vb.min())), float(max(va.max(), vb.max()))
    width = None
    distinct = np.unique(np.concatenate([va, vb]))
    if distinct.size <= bins:
        edges, ia, ib = distinct, np.searchsorted(distinct, va), np.searchsorted(distinct, vb)
    else:
        width = (hi - lo) / bins
        edges = lo + np.arange(bins) * width
        ia = np.minimum(np.floor((va - lo) / width), bins - 1).astype(np.int64)
        ib = np.minimum(np.floor((vb - lo) / width), bins - 1).astype(np.int64)
    # Each cell counted by its index: ascending codes are the cells in (a, b) order.
    k = len(edges)
    counts = np.bincount(ia * k + ib, minlength=k * k)
    cells = [(float(edges[c // k]), float(edges[c % k]), int(counts[c])) for c in np.flatnonzero(counts)]
    return {"cells": cells, "n": int(len(va)), "lo": lo, "hi": hi, "width": width}


def _dataset_id(session: Session, run_id: int) -> Optional[int]:
    return session.scalar(select(Run.dataset_id).where(Run.id == run_id))


def _category_ids(session: Session, dataset_id: Optional[int], category: str) -> np.ndarray:
    return np.fromiter(session.scalars(select(ExampleRow.id).where(
        ExampleRow.dataset_id == dataset_id, ExampleRow.category == category)), dtype=np.int64)


def compare_examples(*, session: Session, run_a_id: int, run_b_id: int, metric: str, order: str = "abs_desc",
                     threshold: Optional[float] = None, flips_only: bool = False, box: Optional[Box] = None,
                     category: Optional[str] = None, page: int = 0, page_size: int = 25) -> dict[str, Any]:
    """One page of the examples both runs have a value of ``metric`` for, with both outputs and the reference.

    ``order`` (COMPARE_ORDERS): "diff_desc" (A - B, largest first), "diff_asc", "abs_desc" (|A - B|), or
    "row" (example order). ``flips_only`` with a ``threshold``: only examples that pass (value >= threshold)
    in one run and fail in the other. ``box`` limits both values (a region selected on the scatter).
    Returns {"rows": [...], "total": n}; ties keep example order.
    """
    ids, va, vb = paired_metric(session=session, run_a_id=run_a_id, run_b_id=run_b_id, metric=metric)
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
        keep &= np.isin(ids, _category_ids(session, _dataset_id(session, run_a_id), category))
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


def delta_by_slice(*, session: Session, run_a_id: int, run_b_id: int) -> list[dict[str, Any]]:
    """``db.delta_summary`` per category: the same keys plus ``slice`` = "category=<name>", sorted by slice
    then metric (examples without a category are left out)."""
    names = sorted(set(run_metric_names(session=session, run_id=run_a_id))
                   & set(run_metric_names(session=session, run_id=run_b_id)))
    hib = dict(session.execute(select(Metric.name, Metric.higher_is_better)).all())
    dataset_id = _dataset_id(session, run_a_id)
    labels = sorted(session.scalars(select(ExampleRow.category).where(
        ExampleRow.dataset_id == dataset_id, ExampleRow.category.is_not(None)).distinct()))
    if not labels:
        return []
    # Per category, its example ids (index scans of (dataset_id, category)); then one sorted id -> code map.
    parts = [_category_ids(session, dataset_id, c) for c in labels]
    cat_ids = np.concatenate(parts)
    cat_codes = np.concatenate([np.full(len(p), i, dtype=np.int64) for i, p in enumerate(parts)])
    order = np.argsort(cat_ids, kind="stable")
    cat_ids, cat_codes = cat_ids[order], cat_codes[order]
    out = []
    for name in names:
        ids, va, vb = paired_metric(session=session, run_a_id=run_a_id, run_b_id=run_b_id, metric=name)
        pos = np.minimum(np.searchsorted(cat_ids, ids), len(cat_ids) - 1)
        codes = np.where(cat_ids[pos] == ids, cat_codes[pos], -1)  # -1: no category
        for code in np.unique(codes[codes >= 0]):
            mask = codes == code
            a, b = va[mask], vb[mask]
            d = a - b
            out.append(dict(metric=name, higher_is_better=hib.get(name), slice=f"category={labels[code]}",
                            n=int(len(a)), mean_a=float(a.mean()), mean_b=float(b.mean()), mean_delta=float(d.mean()),
                            a_greater=int((d > 0).sum()), equal=int((d == 0).sum()), a_less=int((d < 0).sum())))
    out.sort(key=lambda r: (r["slice"], r["metric"]))
    return out
