"""Per-example history across model versions: newly broken / newly fixed examples, flaky examples.

"Pass" means the metric is on the good side of a threshold: value >= threshold, or value <= threshold
for a lower-is-better metric. Results whose metric is missing or failed (NULL) are left out of the
pass/fail sequence: they neither pass nor fail.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from db._columns import align, metric_column
from db._models import Dataset, ExampleRow, Run
from db._query import _like_pattern, contains_text


def _passes(value_col, threshold: float, higher_is_better: bool):
    return (value_col >= threshold) if higher_is_better else (value_col <= threshold)


def dataset_runs(*, session: Session, dataset_id: int) -> list[dict[str, Any]]:
    """Every run of a dataset, oldest first: id, name, family, created_at, status, baseline_for_id."""
    stmt = (select(Run.id, Run.name, Run.family, Run.model, Run.created_at, Run.status, Run.baseline_for_id)
            .where(Run.dataset_id == dataset_id).order_by(Run.created_at, Run.id))
    return [dict(r._mapping) for r in session.execute(stmt).all()]


def example_ref(*, session: Session, example_id: int) -> Optional[dict[str, Any]]:
    """dataset_id, key, row_index and category of one example (to open its history from a browser link)."""
    row = session.execute(select(ExampleRow.id, ExampleRow.dataset_id, ExampleRow.key, ExampleRow.row_index,
                                 ExampleRow.category).where(ExampleRow.id == example_id)).first()
    return None if row is None else dict(row._mapping)


def example_by_key(*, session: Session, dataset_id: int, key: str) -> Optional[dict[str, Any]]:
    """One example of a dataset by its stable key: id, key, row_index, category, messages, reference."""
    row = session.execute(select(ExampleRow.id, ExampleRow.key, ExampleRow.row_index, ExampleRow.category,
                                 ExampleRow.messages, ExampleRow.reference)
                          .where(ExampleRow.dataset_id == dataset_id, ExampleRow.key == key)).first()
    return None if row is None else dict(row._mapping)


def count_examples(*, session: Session, dataset_id: int) -> int:
    """How many examples a dataset has."""
    return int(session.scalar(select(func.count()).select_from(ExampleRow)
                              .where(ExampleRow.dataset_id == dataset_id)) or 0)


def datasets_holding(*, session: Session, keys: Sequence[str]) -> list[dict[str, Any]]:
    """Datasets holding examples with any of ``keys`` (content hashes): {id, name, split, turns, n} with n
    the number of those keys each holds, most first (used to join imported results to their dataset)."""
    counts: dict[int, int] = {}
    keys = list(dict.fromkeys(keys))
    for i in range(0, len(keys), 500):
        for ds, n in session.execute(select(ExampleRow.dataset_id, func.count())
                                     .where(ExampleRow.key.in_(keys[i:i + 500])).group_by(ExampleRow.dataset_id)):
            counts[ds] = counts.get(ds, 0) + int(n)
    if not counts:
        return []
    rows = session.execute(select(Dataset.id, Dataset.name, Dataset.split, Dataset.turns, Dataset.fingerprint)
                           .where(Dataset.id.in_(list(counts)))).all()
    out = [dict(id=r[0], name=r[1], split=r[2], turns=r[3], fingerprint=r[4], n=counts[r[0]]) for r in rows]
    return sorted(out, key=lambda d: (-d["n"], d["id"]))


def find_examples(*, session: Session, dataset_id: int, text: str = "", limit: int = 50) -> list[dict[str, Any]]:
    """Examples of a dataset whose key starts with ``text`` or whose prompt contains it (at most ``limit``).

    Rows: id, key, row_index, category, prompt (the first 200 characters of the prompt text).
    """
    stmt = select(ExampleRow.id, ExampleRow.key, ExampleRow.row_index, ExampleRow.category,
                  func.substr(ExampleRow.prompt_text, 1, 200).label("prompt")).where(ExampleRow.dataset_id == dataset_id)
    text = (text or "").strip()
    if text:
        stmt = stmt.where(contains_text(text, ExampleRow.prompt_text) if "\x00" in text else
                          or_(ExampleRow.key.like(_like_pattern(text)[1:], escape="\\"),
                              contains_text(text, ExampleRow.prompt_text)))
    return [dict(r._mapping) for r in session.execute(stmt.order_by(ExampleRow.row_index).limit(limit)).all()]


def _example_rows(session: Session, example_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    if not example_ids:
        return {}
    stmt = select(ExampleRow.id, ExampleRow.key, ExampleRow.row_index, ExampleRow.category,
                  ExampleRow.prompt_text).where(ExampleRow.id.in_([int(e) for e in example_ids]))
    return {r.id: dict(example_id=r.id, key=r.key, row_index=r.row_index, category=r.category, prompt=r.prompt_text)
            for r in session.execute(stmt).all()}


def broken_and_fixed(*, session: Session, before_run_id: int, after_run_id: int, metric: str, threshold: float,
                     higher_is_better: bool = True, limit: int = 500) -> dict[str, Any]:
    """Examples that passed in ``before`` and fail in ``after`` (broken), and the reverse (fixed).

    Only examples both runs scored with ``metric`` count (joined on example id from the runs' metric
    columns). Returns {"broken": rows, "fixed": rows, "n_broken", "n_fixed", "n_shared"}; rows (at
    most ``limit`` each, by example id): {example_id, key, row_index, category, prompt, before, after}.
    """
    ea, va = metric_column(session=session, run_id=before_run_id, metric=metric)
    eb, vb = metric_column(session=session, run_id=after_run_id, metric=metric)
    ids, ia, ib = align(ea, eb)
    a, b = va[ia], vb[ib]
    ok = ~(np.isnan(a) | np.isnan(b))
    ids, a, b = ids[ok], a[ok], b[ok]
    pa, pb = _passes(a, threshold, higher_is_better), _passes(b, threshold, higher_is_better)
    out: dict[str, Any] = {"n_shared": int(len(ids))}
    for name, mask in (("broken", pa & ~pb), ("fixed", ~pa & pb)):
        sel = np.flatnonzero(mask)
        out[f"n_{name}"] = int(len(sel))
        sel = sel[:limit]
        info = _example_rows(session, [int(ids[i]) for i in sel])
        out[name] = [dict(info[int(ids[i])], before=float(a[i]), after=float(b[i])) for i in sel
                     if int(ids[i]) in info]
    return out


def flaky_examples(*, session: Session, run_ids: Sequence[int], metric: str, threshold: float,
                   higher_is_better: bool = True, min_versions: int = 3, min_flips: int = 2,
                   limit: int = 200) -> dict[str, Any]:
    """Examples whose pass/fail flips back and forth across versions.

    The runs are ordered by creation date; an example is flaky when it was scored in at least
    ``min_versions`` of them and its pass/fail status changed at least ``min_flips`` times (pass, fail,
    pass or fail, pass, fail somewhere in its sequence; unscored runs are skipped). Computed on the
    runs' metric columns, one pass per run. Returns {"rows": [{example_id, key, row_index, category,
    versions, flips, pattern}], "total"}, most flips first; ``pattern`` has one letter per run in date
    order: "P" pass, "F" fail, "." not scored.
    """
    order = list(session.scalars(
        select(Run.id).where(Run.id.in_([int(r) for r in run_ids])).order_by(Run.created_at, Run.id)))
    if len(order) < min_versions:
        return {"rows": [], "total": 0}
    columns = [metric_column(session=session, run_id=r, metric=metric) for r in order]
    # The runs of one dataset usually hold the same examples: then any one of them is the union (no sort).
    universe = columns[0][0] if columns else np.empty(0, np.int64)
    if not all(len(c[0]) == len(universe) and np.array_equal(c[0], universe) for c in columns):
        universe = np.unique(np.concatenate([c[0] for c in columns]))
    # status[k, i]: -1 not scored, 0 fail, 1 pass, for run k (date order) and example universe[i]
    status = np.full((len(order), len(universe)), -1, dtype=np.int8)
    for k, (ids, vals) in enumerate(columns):
        pos = np.searchsorted(universe, ids)
        scored = ~np.isnan(vals)
        status[k, pos[scored]] = _passes(vals[scored], threshold, higher_is_better).astype(np.int8)
    last = np.full(len(universe), -1, dtype=np.int8)
    flips = np.zeros(len(universe), dtype=np.int64)
    versions = np.zeros(len(universe), dtype=np.int64)
    for k in range(len(order)):
        cur = status[k]
        seen = cur >= 0
        flips += seen & (last >= 0) & (cur != last)
        versions += seen
        last = np.where(seen, cur, last)
    flaky = np.flatnonzero((versions >= min_versions) & (flips >= min_flips))
    ranked = flaky[np.lexsort((universe[flaky], -flips[flaky]))][:limit]
    info = _example_rows(session, [int(universe[i]) for i in ranked])
    letters = np.array([".", "F", "P"])
    rows = []
    for i in ranked:
        eid = int(universe[i])
        if eid in info:
            rows.append(dict(info[eid], versions=int(versions[i]), flips=int(flips[i]),
                             pattern="".join(letters[status[:, i] + 1])))
    return {"rows": rows, "total": int(len(flaky))}


def pass_pattern(history: Sequence[dict[str, Any]], metric: str, threshold: float,
                 higher_is_better: bool = True) -> list[Optional[bool]]:
    """Pass (True) / fail (False) / not scored (None) of each entry of ``db.example_history`` for one metric."""
    out: list[Optional[bool]] = []
    for h in history:
        v = (h.get("metrics") or {}).get(metric)
        out.append(None if v is None else (v >= threshold if higher_is_better else v <= threshold))
    return out


def count_flips(pattern: Sequence[Optional[bool]]) -> int:
    """How many times a pass/fail sequence changes status, skipping unscored entries."""
    seen = [p for p in pattern if p is not None]
    return sum(1 for a, b in zip(seen, seen[1:]) if a != b)
