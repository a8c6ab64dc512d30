"""Error-analysis queries: metric distributions, confidence vs quality, failure kinds, length, disagreement.

Every function aggregates in SQL (GROUP BY), reads a bounded deterministic sample, or works in numpy on
whole-run metric columns (two packed arrays per metric, ``db.MetricColumn``, built from metric_values
when missing). What reaches the dashboard is a few buckets or one page of rows, and no text but that
page's ever leaves the database.

Binning: a value v in [lo, hi] falls in bucket ``floor((v - lo) / width)`` (the maximum in the last
bucket), so bucket i covers [lo + i*width, lo + (i+1)*width). A metric with few distinct values
(exact match 0/1, ratings 1-5) gets one bucket per value in histograms instead.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
from sqlalchemy import BigInteger, and_, case, func, or_, select, type_coerce
from sqlalchemy.orm import Session, aliased

from db._columns import align, metric_column
from db._models import Annotation, ExampleRow, MetricValue, Result
from db._query import _metric_id_map
from db._values import FailureKind

MISLEADING = "fail: metric misleading"  # one of VERDICTS

# Deterministic order for bounded samples: Knuth's multiplicative hash of the id, frac(id * phi)
# scaled to 32 bits. Its smallest k values are spread evenly over the run (a golden-ratio sequence has no
# short period), the same store gives the same sample, and ORDER BY ... LIMIT k keeps only k rows.
_HASH_MUL, _HASH_MOD = 2654435761, 4294967296
DEFAULT_LENGTH_EDGES = (0, 8, 16, 32, 64, 128, 256, 512, 1024)
LENGTH_MEASURES = ("output_tokens", "output_chars", "reference_chars")
EXACT_MAX = 12  # a metric with at most this many distinct values gets one histogram bar per value


def _sample_order(id_col):
    # Typed BIGINT so the constants are sent as BIGINT: PostgreSQL would take them as the column's
    # INTEGER and refuse 2654435761 ("integer out of range"); SQLite's integers are 64-bit anyway.
    return (type_coerce(id_col, BigInteger) * _HASH_MUL) % _HASH_MOD


# ---------------------------------------------------------------- distributions


def metric_histograms(*, session: Session, run_ids: Sequence[int], metric: str, bins: int = 30) -> dict[str, Any]:
    """Histogram of one metric for each run, on shared buckets so the runs can be overlaid.

    Returns {"exact": bool, "lo", "hi", "width", "rows": [{run_id, bin_lo, bin_hi, count}], "n": {run_id: n}}.
    Exact mode (at most ``min(bins, 12)`` distinct values: 0/1 scores, ratings): one bucket per value,
    bin_lo == bin_hi == the value. Counted in numpy on the runs' metric columns; failed values are left out.
    """
    run_ids = [int(r) for r in run_ids]
    values = {}
    for rid in run_ids:
        _, v = metric_column(session=session, run_id=rid, metric=metric)
        values[rid] = v[~np.isnan(v)]
    present = [v for v in values.values() if len(v)]
    if not present:
        return {"exact": False, "lo": None, "hi": None, "width": None, "rows": [], "n": {}}
    lo, hi = float(min(v.min() for v in present)), float(max(v.max() for v in present))
    distinct = np.unique(np.concatenate(present))
    exact = len(distinct) <= min(bins, EXACT_MAX)
    rows: list[dict[str, Any]] = []
    width = None if exact else ((hi - lo) / bins or 1.0)
    for rid, v in values.items():
        if exact:
            keys, counts = np.unique(v, return_counts=True)
            rows += [dict(run_id=rid, bin_lo=float(k), bin_hi=float(k), count=int(c)) for k, c in zip(keys, counts)]
        else:
            counts = np.bincount(np.clip(np.floor((v - lo) / width), 0, bins - 1).astype(np.int64), minlength=bins)
            rows += [dict(run_id=rid, bin_lo=float(lo + i * width), bin_hi=float(lo + (i + 1) * width), count=int(counts[i]))
                     for i in np.flatnonzero(counts)]
    return {"exact": exact, "lo": lo, "hi": hi, "width": width, "rows": rows,
            "n": {rid: int(len(v)) for rid, v in values.items()}}


# ---------------------------------------------------------------- two metrics of one run
#
# Two metrics of a run are joined on example id from their whole-run columns (db.MetricColumn, falling
# back to metric_values): two sorted arrays intersected in numpy instead of a B-tree lookup per result.


def _two_columns(session: Session, run_id: int, metric_x: str, metric_y: str,
                 invert_x: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(example ids ascending, x, y) where both metrics have a value; x is 1 / x with ``invert_x`` (x > 0)."""
    ex, vx = metric_column(session=session, run_id=run_id, metric=metric_x)
    ey, vy = metric_column(session=session, run_id=run_id, metric=metric_y)
    ids, ix, iy = align(ex, ey)
    x, y = vx[ix], vy[iy]
    ok = ~(np.isnan(x) | np.isnan(y))
    if invert_x:
        ok &= x > 0
    ids, x, y = ids[ok], x[ok], y[ok]
    if invert_x:
        x = 1.0 / x
    return ids, x, y


def sample_order(example_ids: np.ndarray) -> np.ndarray:
    """Indexes of ``example_ids`` in the deterministic sample order (see _HASH_MUL)."""
    h = (example_ids.astype(np.uint64) * np.uint64(_HASH_MUL)) % np.uint64(_HASH_MOD)
    return np.lexsort((example_ids, h))


def metric_pair_sample(*, session: Session, run_id: int, metric_x: str, metric_y: str, limit: int = 2000,
                       invert_x: bool = False) -> dict[str, Any]:
    """A deterministic sample of at most ``limit`` (x, y) points of two metrics of a run, and the total n.

    ``invert_x`` plots 1 / x (e.g. 1 / perplexity = the geometric-mean token probability, a confidence).
    Rows: {example_id, x, y}, by example id.
    """
    ids, x, y = _two_columns(session, run_id, metric_x, metric_y, invert_x)
    pick = np.sort(sample_order(ids)[:limit])
    rows = [dict(example_id=int(ids[i]), x=float(x[i]), y=float(y[i])) for i in pick]
    return {"rows": rows, "n": int(len(ids))}


def reliability_bins(*, session: Session, run_id: int, confidence: str, metric: str, bins: int = 10,
                     invert_confidence: bool = False, threshold: Optional[float] = None,
                     higher_is_better: bool = True) -> dict[str, Any]:
    """Mean quality per confidence bucket: is the model sure when it is wrong?

    Buckets are ``bins`` equal-width intervals of [0, 1] when every confidence lies in [0, 1] (a
    probability), else of [min, max]; the maximum falls in the last. Each non-empty bucket gives a row
    {bin, bin_lo, bin_hi, n, mean_confidence, mean_quality, pass_share} (pass_share: share with quality
    >= threshold, or <= for lower-is-better; None without a threshold). Returns {"rows", "n", "lo", "hi"}.
    """
    _, x, y = _two_columns(session, run_id, confidence, metric, invert_confidence)
    if not len(x):
        return {"rows": [], "n": 0, "lo": None, "hi": None}
    lo, hi = float(x.min()), float(x.max())
    if lo >= 0.0 and hi <= 1.0:
        lo, hi = 0.0, 1.0
    width = (hi - lo) / bins or 1.0
    idx = np.clip(np.floor((x - lo) / width), 0, bins - 1).astype(np.int64)
    n = np.bincount(idx, minlength=bins)
    sum_x = np.bincount(idx, weights=x, minlength=bins)
    sum_y = np.bincount(idx, weights=y, minlength=bins)
    passed = None
    if threshold is not None:
        ok = (y >= threshold) if higher_is_better else (y <= threshold)
        passed = np.bincount(idx, weights=ok.astype(float), minlength=bins)
    rows = []
    for i in np.flatnonzero(n):
        k = int(n[i])
        rows.append(dict(bin=int(i), bin_lo=float(lo + i * width), bin_hi=float(lo + (i + 1) * width), n=k,
                         mean_confidence=float(sum_x[i] / k), mean_quality=float(sum_y[i] / k),
                         pass_share=None if passed is None else float(passed[i] / k)))
    return {"rows": rows, "n": int(len(x)), "lo": lo, "hi": hi}


def _example_texts(session: Session, run_id: int, example_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """key, row_index, category, output and reference of a page of examples of one run."""
    if not example_ids:
        return {}
    stmt = (select(Result.example_id, ExampleRow.key, ExampleRow.row_index, ExampleRow.category, Result.output,
                   ExampleRow.reference)
            .join(ExampleRow, ExampleRow.id == Result.example_id)
            .where(Result.run_id == run_id, Result.example_id.in_([int(e) for e in example_ids])))
    return {r.example_id: dict(r._mapping) for r in session.execute(stmt).all()}


def metric_disagreements(*, session: Session, run_id: int, metric_x: str, metric_y: str, x_at_least: float,
                         y_at_most: float, page: int = 0, page_size: int = 25) -> dict[str, Any]:
    """Examples where ``metric_x`` is high (>= x_at_least) while ``metric_y`` is low (<= y_at_most).

    Ordered by x - y, largest first (ties by example id). Rows {example_id, key, row_index, category,
    x, y, output, reference}; only the page's text is read.
    """
    ids, x, y = _two_columns(session, run_id, metric_x, metric_y, False)
    keep = (x >= x_at_least) & (y <= y_at_most)
    ids, x, y = ids[keep], x[keep], y[keep]
    order = np.lexsort((ids, -(x - y)))
    page = max(0, int(page))
    sel = order[page * page_size:(page + 1) * page_size]
    texts = _example_texts(session, run_id, [int(ids[i]) for i in sel])
    rows = []
    for i in sel:
        t = texts.get(int(ids[i]))
        if t is not None:
            rows.append(dict(t, x=float(x[i]), y=float(y[i])))
    return {"rows": rows, "total": int(len(ids))}


# ---------------------------------------------------------------- failure kinds


def failure_summary(*, session: Session, run_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Failure-kind counts per run and per (run, category), one grouped query.

    Rows: {run_id, category, n, any, counts: {kind: count}}; the row with ``category`` None and
    ``scope`` "all" covers the whole run; "category" rows have the example category (None when the
    example has none, ``scope`` "category"). Shares are count / n.
    """
    run_ids = [int(r) for r in run_ids]
    if not run_ids:
        return []
    kinds = list(FailureKind)
    cols = [Result.run_id, ExampleRow.category, func.count(), func.sum(case((Result.failures != 0, 1), else_=0))]
    cols += [func.sum(case((Result.failures.op("&")(int(k)) != 0, 1), else_=0)) for k in kinds]
    stmt = (select(*cols).select_from(Result).join(ExampleRow, ExampleRow.id == Result.example_id)
            .where(Result.run_id.in_(run_ids)).group_by(Result.run_id, ExampleRow.category))
    per_cat, totals = [], {}
    for row in session.execute(stmt):
        rid, cat, n, anyf = row[0], row[1], int(row[2]), int(row[3] or 0)
        counts = {k.name.lower(): int(c or 0) for k, c in zip(kinds, row[4:])}
        per_cat.append(dict(run_id=rid, scope="category", category=cat, n=n, any=anyf, counts=counts))
        t = totals.setdefault(rid, dict(run_id=rid, scope="all", category=None, n=0, any=0,
                                        counts={k.name.lower(): 0 for k in kinds}))
        t["n"] += n
        t["any"] += anyf
        for k, c in counts.items():
            t["counts"][k] += c
    per_cat.sort(key=lambda d: (run_ids.index(d["run_id"]), d["category"] is None, d["category"] or ""))
    return [totals[r] for r in run_ids if r in totals] + per_cat


# ---------------------------------------------------------------- length


def _length_expr(measure: str):
    if measure == "output_tokens":
        return Result.output_tokens
    if measure == "output_chars":
        return func.length(Result.output)
    if measure == "reference_chars":
        return func.length(ExampleRow.reference)
    raise ValueError(f"unknown length measure {measure!r}; one of {LENGTH_MEASURES}")


def length_sample(*, session: Session, run_id: int, metric: Optional[str] = None,
                  limit: int = 2000) -> dict[str, Any]:
    """Output length against reference length (characters) for a deterministic sample of the run.

    The sample's result ids are picked from the (run_id, example_id) index alone; lengths are computed
    in SQL for those rows only, so no text leaves the database. Rows: {example_id, category,
    output_chars, reference_chars (None without reference), output_tokens, value (of ``metric``)}.
    """
    n = int(session.scalar(select(func.count()).select_from(Result).where(Result.run_id == run_id)) or 0)
    ids = (select(Result.id).where(Result.run_id == run_id)
           .order_by(_sample_order(Result.id), Result.id).limit(limit).subquery())
    cols = [Result.example_id, ExampleRow.category, func.length(Result.output).label("output_chars"),
            func.length(ExampleRow.reference).label("reference_chars"), Result.output_tokens]
    stmt = (select(*cols).select_from(Result).join(ids, ids.c.id == Result.id)
            .join(ExampleRow, ExampleRow.id == Result.example_id))
    mid = _metric_id_map(session, [metric]).get(metric) if metric else None
    if mid is not None:
        mv = aliased(MetricValue, name="mv")
        stmt = stmt.add_columns(mv.value.label("value")).outerjoin(
            mv, and_(mv.result_id == Result.id, mv.metric_id == mid))
    rows = []
    for r in session.execute(stmt.order_by(Result.example_id)).all():
        d = dict(r._mapping)
        d.setdefault("value", None)
        rows.append(d)
    return {"rows": rows, "n": n}


def metric_by_length(*, session: Session, run_id: int, metric: str, measure: str = "output_tokens",
                     edges: Sequence[int] = DEFAULT_LENGTH_EDGES) -> list[dict[str, Any]]:
    """Mean of ``metric`` per length bucket, grouped in SQL.

    ``measure``: "output_tokens", "output_chars" or "reference_chars". Bucket i is [edges[i], edges[i+1]);
    the last is [edges[-1], inf). Rows: {bucket, lo, hi (None: open), n, mean, min, max}; empty buckets
    are left out, as are results without that metric (or without a reference, for reference_chars).
    """
    mid = _metric_id_map(session, [metric]).get(metric)
    if mid is None:
        return []
    edges = sorted(set(int(e) for e in edges))
    length = _length_expr(measure)
    whens = [(length < e, i - 1) for i, e in enumerate(edges) if i > 0]
    bucket = case(*whens, else_=len(edges) - 1).label("bucket")
    mv = aliased(MetricValue, name="mv")
    stmt = (select(bucket, func.count(), func.avg(mv.value), func.min(mv.value), func.max(mv.value))
            .select_from(mv).join(Result, Result.id == mv.result_id)
            .join(ExampleRow, ExampleRow.id == Result.example_id)
            .where(mv.run_id == run_id, mv.metric_id == mid, mv.value.is_not(None), length.is_not(None),
                   length >= edges[0])
            .group_by(bucket).order_by(bucket))
    out = []
    for b, k, mean, mn, mx in session.execute(stmt):
        b = int(b)
        out.append(dict(bucket=b, lo=edges[b], hi=edges[b + 1] if b + 1 < len(edges) else None, n=int(k),
                        mean=float(mean), min=float(mn), max=float(mx)))
    return out


# ---------------------------------------------------------------- metric vs human verdict


def _latest_annotation_ids(run_id: Optional[int] = None, run_ids: Optional[Sequence[int]] = None):
    """Subquery of the id of each reviewer's latest verdict per (run, example): later verdicts replace earlier."""
    stmt = select(func.max(Annotation.id).label("id")).group_by(
        Annotation.run_id, Annotation.example_id, Annotation.reviewer)
    if run_id is not None:
        stmt = stmt.where(Annotation.run_id == run_id)
    if run_ids is not None:
        stmt = stmt.where(Annotation.run_id.in_([int(r) for r in run_ids]))
    return stmt.subquery()


def verdict_metric_summary(*, session: Session, run_id: int, metric: str) -> list[dict[str, Any]]:
    """Per verdict (each reviewer's latest): how many, and the metric's mean/min/max on those examples."""
    mid = _metric_id_map(session, [metric]).get(metric)
    if mid is None:
        return []
    latest = _latest_annotation_ids(run_id=run_id)
    stmt = (select(Annotation.verdict, func.count(), func.avg(MetricValue.value), func.min(MetricValue.value),
                   func.max(MetricValue.value))
            .select_from(Annotation).join(latest, latest.c.id == Annotation.id)
            .join(Result, and_(Result.run_id == Annotation.run_id, Result.example_id == Annotation.example_id))
            .join(MetricValue, and_(MetricValue.result_id == Result.id, MetricValue.metric_id == mid))
            .where(MetricValue.value.is_not(None)).group_by(Annotation.verdict))
    keys = ("verdict", "n", "mean", "min", "max")
    return [dict(zip(keys, r)) for r in session.execute(stmt)]


def verdict_disagreements(*, session: Session, run_id: int, metric: str, good: float, bad: float,
                          higher_is_better: bool = True, page: int = 0, page_size: int = 25) -> dict[str, Any]:
    """Where the metric misleads: it calls an output good but a reviewer failed it, or bad but a reviewer passed
    it, or a reviewer's verdict says so ("fail: metric misleading") whatever the value.

    "Good" is value >= ``good`` (<= for lower-is-better metrics), "bad" is value <= ``bad`` (>=). Each
    reviewer's latest verdict counts. Rows: {example_id, key, category, value, verdict, reviewer,
    comment, kind ("metric good, human fail" | "metric bad, human pass")}.
    """
    mid = _metric_id_map(session, [metric]).get(metric)
    if mid is None:
        return {"rows": [], "total": 0}
    v = MetricValue.value
    is_good = (v >= good) if higher_is_better else (v <= good)
    is_bad = (v <= bad) if higher_is_better else (v >= bad)
    failed = Annotation.verdict.like("fail:%")
    passed = Annotation.verdict == "pass"
    flagged = Annotation.verdict == MISLEADING  # the reviewer said so, whatever the value
    cond = or_(and_(is_good, failed), and_(is_bad, passed), flagged)
    kind = case((and_(is_good, failed), "metric good, human fail"), (and_(is_bad, passed), "metric bad, human pass"),
                else_="reviewer: metric misleading").label("kind")
    latest = _latest_annotation_ids(run_id=run_id)

    def base(*cols):
        return (select(*cols).select_from(Annotation).join(latest, latest.c.id == Annotation.id)
                .join(Result, and_(Result.run_id == Annotation.run_id, Result.example_id == Annotation.example_id))
                .join(MetricValue, and_(MetricValue.result_id == Result.id, MetricValue.metric_id == mid))
                .join(ExampleRow, ExampleRow.id == Result.example_id)
                .where(v.is_not(None), cond))

    total = int(session.scalar(base(func.count())) or 0)
    stmt = (base(Result.example_id, ExampleRow.key, ExampleRow.category, v.label("value"), Annotation.verdict,
                 Annotation.reviewer, Annotation.comment, kind)
            .order_by(kind, ExampleRow.row_index, Annotation.reviewer)
            .limit(page_size).offset(max(0, int(page)) * page_size))
    return {"rows": [dict(r._mapping) for r in session.execute(stmt).all()], "total": total}
