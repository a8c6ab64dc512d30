"""Reads (and the one write) that scoring needs: a run's stored outputs with their examples, its metric
values, and which runs it has been compared with. Called by ``evaluator.scoring``."""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from db._models import Comparison, ExampleRow, Metric, MetricValue, Result, RunBaseline
from db._values import unpack_logprobs


def scoring_inputs(*, session: Session, run_id: int, with_logprobs: bool = False,
                   with_messages: bool = False) -> list[dict[str, Any]]:
    """One dict per result of the run, ordered by result id: result_id, example_id, key, output,
    output_tokens, finish_reason, failures, error, ref_nll, ref_tokens, reference, category, tags,
    and ``logprobs`` (list of floats) / ``messages`` (with conversation_id and turn_index) when asked for."""
    cols = [Result.id, Result.example_id, ExampleRow.key, Result.output, Result.output_tokens, Result.finish_reason,
            Result.failures, Result.error, Result.ref_nll, Result.ref_tokens, ExampleRow.reference,
            ExampleRow.category, ExampleRow.tags]
    if with_logprobs:
        cols.append(Result.token_logprobs)
    if with_messages:
        cols += [ExampleRow.messages, ExampleRow.conversation_id, ExampleRow.turn_index]
    stmt = (select(*cols).join(ExampleRow, ExampleRow.id == Result.example_id)
            .where(Result.run_id == run_id).order_by(Result.id))
    keys = ("result_id", "example_id", "key", "output", "output_tokens", "finish_reason", "failures", "error",
            "ref_nll", "ref_tokens", "reference", "category", "tags")
    out = []
    for row in session.execute(stmt):
        d = dict(zip(keys, row[:len(keys)]))
        d["tags"] = list(d["tags"] or [])
        d["failures"] = int(d["failures"] or 0)
        rest = list(row[len(keys):])
        if with_logprobs:
            d["logprobs"] = unpack_logprobs(rest.pop(0))
        if with_messages:
            d["messages"] = list(rest.pop(0) or [])
            d["conversation_id"], d["turn_index"] = rest
        out.append(d)
    return out


def run_metric_values(*, session: Session, run_id: int,
                      names: Optional[Iterable[str]] = None) -> dict[int, dict[str, tuple[Optional[float], Optional[str]]]]:
    """result_id -> {metric name: (value, error)} for every stored metric value of the run."""
    stmt = (select(MetricValue.result_id, Metric.name, MetricValue.value, MetricValue.error)
            .join(Metric, Metric.id == MetricValue.metric_id).where(MetricValue.run_id == run_id))
    if names is not None:
        stmt = stmt.where(Metric.name.in_(sorted(set(names))))
    out: dict[int, dict[str, tuple[Optional[float], Optional[str]]]] = {}
    for rid, name, value, error in session.execute(stmt):
        out.setdefault(rid, {})[name] = (value, error)
    return out


def comparison_partners(*, session: Session, run_id: int) -> list[tuple[int, int]]:
    """(candidate, baseline) pairs this run takes part in: stored comparisons and baseline links."""
    pairs = set(session.execute(
        select(Comparison.run_a_id, Comparison.run_b_id)
        .where(or_(Comparison.run_a_id == run_id, Comparison.run_b_id == run_id)).distinct()
    ).all())
    pairs.update(tuple(r) for r in session.execute(
        select(RunBaseline.candidate_id, RunBaseline.baseline_id)
        .where(or_(RunBaseline.candidate_id == run_id, RunBaseline.baseline_id == run_id))
    ).all())
    return sorted(pairs)


def set_reference_nll(*, session: Session, values: Mapping[int, tuple[float, int]]) -> int:
    """Store teacher-forced reference NLL and token count (result_id -> (nll, tokens)); returns rows.

    Used when ``python -m evaluator score`` computes perplexity a run did not store.
    """
    params = [dict(id=rid, ref_nll=float(nll), ref_tokens=int(tok)) for rid, (nll, tok) in values.items()]
    if params:
        session.execute(update(Result), params)  # ORM bulk UPDATE by primary key (executemany)
    return len(params)
