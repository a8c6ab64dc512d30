"""Judgments: writing a judge's verdicts and reading them back per pair of runs.

A judgment is keyed by (candidate run, baseline run, example, order, judge config): storing the same key
again replaces nothing and adds nothing, so a re-run (or a resume after a crash) only judges what is missing,
and a changed template or judge model is another key."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping, Optional

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db._models import ExampleRow, Judgment, Metric, MetricValue, Result, Run, utcnow
from db._write import _dialect_insert

ORDERS = ("ab", "ba")
MODES = ("pairwise", "single", "reference")


def judge_key(config: Mapping[str, Any]) -> str:
    """The sha256 of a judge config (judge, mode, template, settings) as canonical JSON."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _row(j: Mapping[str, Any]) -> dict[str, Any]:
    if j["order"] not in ORDERS:
        raise ValueError(f"order is one of {ORDERS}, not {j['order']!r}")
    if j["mode"] not in MODES:
        raise ValueError(f"mode is one of {MODES}, not {j['mode']!r}")
    p = j.get("preference")
    if p is not None and not 0 <= p <= 1:
        raise ValueError(f"a preference is a probability in [0, 1], not {p}")
    baseline = j.get("baseline_id")
    return dict(candidate_id=j["candidate_id"], baseline_id=baseline, baseline_key=baseline or 0,
                example_id=j["example_id"], order=j["order"], judge=j["judge"], mode=j["mode"],
                judge_key=j["judge_key"], config=dict(j.get("config") or {}), preference=p, score=j.get("score"),
                verdict=j.get("verdict"), verdict_logprobs=j.get("verdict_logprobs"), reply=j.get("reply") or "",
                error=j.get("error"), created_at=utcnow())


def add_judgments(*, session: Session, judgments: Iterable[Mapping[str, Any]]) -> int:
    """Store judgments (candidate_id, baseline_id or None, example_id, order, judge, mode, judge_key, and
    optionally config, preference, score, verdict, verdict_logprobs, reply, error) in the caller's
    transaction; one whose key is stored already is skipped. Returns how many were new."""
    rows = [_row(j) for j in judgments]
    if not rows:
        return 0
    insert = _dialect_insert(session, Judgment)
    if insert is None:
        raise ValueError("judgments are stored in SQLite or PostgreSQL stores")
    candidates = sorted({r["candidate_id"] for r in rows})
    count = select(func.count()).select_from(Judgment).where(Judgment.candidate_id.in_(candidates))
    before = session.scalar(count)
    session.execute(insert.on_conflict_do_nothing(
        index_elements=["candidate_id", "baseline_key", "example_id", "order", "judge_key"]), rows)
    return session.scalar(count) - before


def judged_keys(*, session: Session, candidate_id: int, baseline_id: Optional[int], judge_key: str) -> set[tuple[int, str]]:
    """(example_id, order) already judged for this pair by this judge config: what a resumed run skips."""
    rows = session.execute(select(Judgment.example_id, Judgment.order).where(
        Judgment.candidate_id == candidate_id, Judgment.baseline_key == (baseline_id or 0),
        Judgment.judge_key == judge_key))
    return {(e, o) for e, o in rows}


def judgments_of_pair(*, session: Session, candidate_id: int, baseline_id: Optional[int]) -> list[dict[str, Any]]:
    """Every judgment of ``candidate_id`` against ``baseline_id`` (None: single-answer grading), with the
    judge, mode, judge_key, example_id, order, preference, score, verdict, error, and both answers' lengths
    in characters (for length control)."""
    cand, base = Result.__table__.alias("cand"), Result.__table__.alias("base")
    stmt = (select(Judgment.judge, Judgment.mode, Judgment.judge_key, Judgment.example_id, Judgment.order,
                   Judgment.preference, Judgment.score, Judgment.verdict, Judgment.error,
                   cand.c.output.label("candidate_output"), base.c.output.label("baseline_output"))
            .join(cand, (cand.c.run_id == Judgment.candidate_id) & (cand.c.example_id == Judgment.example_id))
            .outerjoin(base, (base.c.run_id == Judgment.baseline_id) & (base.c.example_id == Judgment.example_id))
            .where(Judgment.candidate_id == candidate_id, Judgment.baseline_key == (baseline_id or 0))
            .order_by(Judgment.judge_key, Judgment.example_id, Judgment.order))
    out = []
    for r in session.execute(stmt):
        row = dict(r._mapping)
        row["candidate_length"] = len(row.pop("candidate_output") or "")
        b = row.pop("baseline_output")
        row["baseline_length"] = None if b is None else len(b)
        out.append(row)
    return out


def judging_inputs(*, session: Session, candidate_id: int, baseline_id: Optional[int]) -> list[dict[str, Any]]:
    """What a judge reads, one entry per example both runs answered without an error (the candidate alone when
    ``baseline_id`` is None): example_id, messages, reference, conversation_id, turn_index, candidate_output,
    baseline_output; by example."""
    cand, base = Result.__table__.alias("cand"), Result.__table__.alias("base")
    cols = [ExampleRow.id.label("example_id"), ExampleRow.messages, ExampleRow.reference, ExampleRow.conversation_id,
            ExampleRow.turn_index, cand.c.output.label("candidate_output")]
    stmt = select(*cols, (base.c.output if baseline_id is not None else cand.c.output).label("baseline_output"))
    stmt = stmt.select_from(cand).join(ExampleRow, ExampleRow.id == cand.c.example_id).where(
        cand.c.run_id == candidate_id, cand.c.finish_reason != "error")
    if baseline_id is not None:
        stmt = stmt.join(base, (base.c.example_id == cand.c.example_id) & (base.c.run_id == baseline_id)).where(
            base.c.finish_reason != "error")
    rows = [dict(r._mapping) for r in session.execute(stmt.order_by(ExampleRow.id))]
    if baseline_id is None:
        for r in rows:
            r["baseline_output"] = None
    return rows


def judgments_of_example(*, session: Session, run_a_id: int, run_b_id: int, example_id: int) -> list[dict[str, Any]]:
    """Every judgment of one example between two runs, either run the candidate: candidate_id, judge, mode, order,
    verdict, preference, reply, error, created_at; by judge, then order."""
    stmt = (select(Judgment.candidate_id, Judgment.judge, Judgment.mode, Judgment.order, Judgment.verdict,
                   Judgment.preference, Judgment.reply, Judgment.error, Judgment.created_at)
            .where(Judgment.example_id == example_id,
                   ((Judgment.candidate_id == run_a_id) & (Judgment.baseline_id == run_b_id))
                   | ((Judgment.candidate_id == run_b_id) & (Judgment.baseline_id == run_a_id)))
            .order_by(Judgment.judge, Judgment.judge_key, Judgment.order))
    return [dict(r._mapping) for r in session.execute(stmt)]


def judgments_of_candidate(*, session: Session, candidate_id: int) -> list[dict[str, Any]]:
    """Every pairwise judgment with ``candidate_id`` as the candidate, against any baseline: judge, mode, judge_key,
    baseline_id, example_id, order, preference; for the judge's agreement with the reviewers of that run."""
    stmt = (select(Judgment.judge, Judgment.mode, Judgment.judge_key, Judgment.baseline_id, Judgment.example_id,
                   Judgment.order, Judgment.preference)
            .where(Judgment.candidate_id == candidate_id, Judgment.baseline_id.is_not(None))
            .order_by(Judgment.judge_key, Judgment.baseline_id, Judgment.example_id, Judgment.order))
    return [dict(r._mapping) for r in session.execute(stmt)]


def judgments_on_dataset(*, session: Session, dataset_id: int) -> list[dict[str, Any]]:
    """Every pairwise judgment between two runs of ``dataset_id``: candidate_id, baseline_id, judge, judge_key,
    example_id, order, preference; for ratings of every version from all its judgments."""
    stmt = (select(Judgment.candidate_id, Judgment.baseline_id, Judgment.judge, Judgment.judge_key,
                   Judgment.example_id, Judgment.order, Judgment.preference)
            .join(Run, Run.id == Judgment.candidate_id)
            .where(Run.dataset_id == dataset_id, Judgment.baseline_id.is_not(None), Judgment.preference.is_not(None))
            .order_by(Judgment.judge, Judgment.candidate_id, Judgment.baseline_id, Judgment.example_id))
    return [dict(r._mapping) for r in session.execute(stmt)]


def judged_metric_values(*, session: Session, candidate_id: int, metric: str) -> list[dict[str, Any]]:
    """Every pairwise judgment of ``candidate_id`` with the candidate's value of ``metric`` on that example:
    judge, judge_key, baseline_id, example_id, order, preference, value (None when the metric has none there)."""
    metric_id = session.scalar(select(Metric.id).where(Metric.name == metric))
    mv = MetricValue.__table__
    stmt = (select(Judgment.judge, Judgment.judge_key, Judgment.baseline_id, Judgment.example_id, Judgment.order,
                   Judgment.preference, mv.c.value)
            .join(Result, (Result.run_id == Judgment.candidate_id) & (Result.example_id == Judgment.example_id))
            .outerjoin(mv, (mv.c.result_id == Result.id) & (mv.c.metric_id == metric_id))
            .where(Judgment.candidate_id == candidate_id, Judgment.baseline_id.is_not(None))
            .order_by(Judgment.judge_key, Judgment.baseline_id, Judgment.example_id, Judgment.order))
    return [dict(r._mapping) for r in session.execute(stmt)]


def judgments_of_run_example(*, session: Session, run_id: int, example_id: int) -> list[dict[str, Any]]:
    """Every judgment of one example in which ``run_id`` took part (candidate or baseline): candidate_id,
    baseline_id, judge, mode, order, verdict, preference, score, reply, error; by judge, baseline, order."""
    stmt = (select(Judgment.candidate_id, Judgment.baseline_id, Judgment.judge, Judgment.mode, Judgment.order,
                   Judgment.verdict, Judgment.preference, Judgment.score, Judgment.reply, Judgment.error)
            .where(Judgment.example_id == example_id,
                   (Judgment.candidate_id == run_id) | (Judgment.baseline_id == run_id))
            .order_by(Judgment.judge, Judgment.judge_key, Judgment.baseline_key, Judgment.order))
    return [dict(r._mapping) for r in session.execute(stmt)]
