"""Queries about runs as a whole: listing with counts and headline aggregates, lookup by id or name.

(Started by the lead for the dashboard; the evaluator's `runs`/`export`/resume queries live here too.)
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Iterator, Optional

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from db._engine import StoreError
from db._lease import status_text
from db._models import (
    Aggregate,
    Comparison,
    Dataset,
    ExampleRow,
    RejectedRow,
    Result,
    Run,
    RunBaseline,
)
from db._query import contains_text, metrics_for_results
from db._values import FailureKind, unpack_logprobs

RUN_COLUMNS = ("id", "name", "family", "model", "model_revision", "adapter", "backend", "dataset_id", "generation",
               "config", "repro", "baseline_for_id", "status", "error", "n_rows", "n_examples", "n_rejected",
               "created_at", "updated_at", "finished_at", "writer", "heartbeat_at")


def _run_dict(run: Run) -> dict[str, Any]:
    """The run's columns, and ``status_text``: the status as shown to a person (a "running" run
    whose writer stopped its heartbeat reads "interrupted (no writer since ...)")."""
    d = {c: getattr(run, c) for c in RUN_COLUMNS}
    d["status_text"] = status_text(d)
    return d


def list_runs(*, session: Session, model: Optional[str] = None, dataset: Optional[str] = None,
              since: Optional[dt.datetime] = None, until: Optional[dt.datetime] = None,
              status: Optional[str] = None) -> list[dict[str, Any]]:
    """Runs newest first, each with dataset name/split, result counts and its overall aggregates;
    ``baselines`` (its baseline runs' ids, newest first) and ``is_baseline`` (it serves as one).

    Counts: ``n_results`` (results stored), ``n_failed`` (finish reason "error"), ``n_rejected``.
    ``aggregates``: {metric: {"mean": (value, ci_low, ci_high, n), "corpus": (...)}} over all examples.
    """
    stmt = select(Run, Dataset.name, Dataset.split, Dataset.source).join(Dataset, Dataset.id == Run.dataset_id)
    if model:  # "_" and "%" are literal characters here, not wildcards
        stmt = stmt.where(contains_text(model, Run.model, Run.name, Run.adapter))
    if dataset:
        stmt = stmt.where(contains_text(dataset, Dataset.name, Dataset.source))
    if since:
        stmt = stmt.where(Run.created_at >= since)
    if until:
        stmt = stmt.where(Run.created_at <= until)
    if status == "interrupted":  # stopped by a signal, or its writer vanished (stale lease)
        stmt = stmt.where(Run.status.in_(["interrupted", "running"]))
    elif status:
        stmt = stmt.where(Run.status == status)
    rows = session.execute(stmt.order_by(Run.created_at.desc(), Run.id.desc())).all()
    if status in ("interrupted", "running"):
        rows = [r for r in rows if (status_text(_run_dict(r[0])) == "running") == (status == "running")]
    ids = [r[0].id for r in rows]
    if not ids:
        return []
    counts = _result_counts(session, ids)
    aggs = _overall_aggregates(session, ids)
    out = []
    for run, ds_name, ds_split, ds_source in rows:
        d = _run_dict(run)
        n, failed = counts.get(run.id, (0, 0))
        d.update(dataset=ds_name, split=ds_split, dataset_source=ds_source, n_results=n, n_failed=failed, aggregates=aggs.get(run.id, {}))
        out.append(d)
    add_baselines(session, out)
    return out


def add_baselines(session: Session, runs: list[dict[str, Any]]) -> None:
    """Give each run dict ``baselines``: the ids of its baseline runs, newest first (a reused baseline
    serves several candidates), and ``is_baseline``: whether it is some run's baseline."""
    links = session.execute(select(RunBaseline.candidate_id, RunBaseline.baseline_id)
                            .order_by(RunBaseline.baseline_id.desc())).all()
    mine: dict[int, list[int]] = {}
    for candidate, baseline in links:
        mine.setdefault(candidate, []).append(baseline)
    serving = {b for _, b in links}
    for r in runs:
        r["baselines"] = mine.get(r["id"], [])
        r["is_baseline"] = r["id"] in serving


def _result_counts(session: Session, ids: list[int]) -> dict[int, tuple[int, int]]:
    """run id -> (results, failed results); two index-only scans (unique index, partial index)."""
    totals = session.execute(select(Result.run_id, func.count()).where(Result.run_id.in_(ids))
                             .group_by(Result.run_id)).all()
    failed = dict(session.execute(select(Result.run_id, func.count())
                                  .where(Result.run_id.in_(ids), Result.finish_reason == "error")
                                  .group_by(Result.run_id)).all())
    return {rid: (int(n), int(failed.get(rid, 0))) for rid, n in totals}


def _overall_aggregates(session: Session, ids: list[int]) -> dict[int, dict[str, dict[str, tuple]]]:
    stmt = select(Aggregate.run_id, Aggregate.metric, Aggregate.kind, Aggregate.value, Aggregate.ci_low,
                  Aggregate.ci_high, Aggregate.n).where(Aggregate.run_id.in_(ids), Aggregate.slice == "")
    out: dict[int, dict[str, dict[str, tuple]]] = {}
    for rid, metric, kind, value, lo, hi, n in session.execute(stmt):
        out.setdefault(rid, {}).setdefault(metric, {})[kind] = (value, lo, hi, n)
    return out


def get_run(*, session: Session, run_id: int) -> Optional[dict[str, Any]]:
    row = session.execute(select(Run, Dataset.name, Dataset.split, Dataset.source, Dataset.fingerprint, Dataset.turns)
                          .join(Dataset, Dataset.id == Run.dataset_id).where(Run.id == run_id)).first()
    if row is None:
        return None
    d = _run_dict(row[0])
    d.update(dataset=row[1], split=row[2], dataset_source=row[3], dataset_fingerprint=row[4], turns=row[5])
    return d


def find_run(*, session: Session, ref: str | int) -> int:
    """Run id from an id or a name (the newest run of that name). Raises StoreError if none."""
    text = str(ref).strip()
    if text.isdigit() and session.get(Run, int(text)) is not None:
        return int(text)
    found = session.scalar(select(Run.id).where(Run.name == text).order_by(Run.created_at.desc(), Run.id.desc()))
    if found is None:
        raise StoreError(f"no run {text!r} in this store: 'python -m evaluator runs' lists them")
    return found


def run_aggregates(*, session: Session, run_id: int) -> list[dict[str, Any]]:
    """All aggregate rows of a run (every metric, slice and kind)."""
    stmt = select(Aggregate).where(Aggregate.run_id == run_id).order_by(Aggregate.slice, Aggregate.metric, Aggregate.kind)
    return [dict(metric=a.metric, slice=a.slice, kind=a.kind, n=a.n, value=a.value, ci_low=a.ci_low,
                 ci_high=a.ci_high, extra=dict(a.extra or {})) for a in session.scalars(stmt)]


def stored_comparisons(*, session: Session, run_a_id: int, run_b_id: int) -> list[dict[str, Any]]:
    """Comparison rows stored for candidate A vs baseline B (empty if never computed)."""
    stmt = (select(Comparison).where(Comparison.run_a_id == run_a_id, Comparison.run_b_id == run_b_id)
            .order_by(Comparison.slice, Comparison.metric, Comparison.kind))
    cols = ("metric", "slice", "kind", "n", "value_a", "value_b", "delta", "ci_low", "ci_high", "p_value", "p_holm",
            "wins", "ties", "losses", "method", "created_at")
    return [{c: getattr(x, c) for c in cols} for x in session.scalars(stmt)]


def baselines_of(*, session: Session, run_id: int) -> list[int]:
    """The baseline runs of this candidate (evaluated for it, or reused), oldest first."""
    return list(session.scalars(select(RunBaseline.baseline_id).where(RunBaseline.candidate_id == run_id)
                                .order_by(RunBaseline.baseline_id)))


def baseline_links(*, session: Session, run_ids: Optional[list[int]] = None) -> list[dict[str, Any]]:
    """Candidate -> baseline links (candidate_id, baseline_id, reused), of ``run_ids`` as either side
    when given, else all."""
    stmt = select(RunBaseline.candidate_id, RunBaseline.baseline_id, RunBaseline.reused)
    if run_ids is not None:
        stmt = stmt.where(or_(RunBaseline.candidate_id.in_(run_ids), RunBaseline.baseline_id.in_(run_ids)))
    rows = session.execute(stmt.order_by(RunBaseline.candidate_id, RunBaseline.baseline_id)).all()
    return [dict(candidate_id=c, baseline_id=b, reused=bool(r)) for c, b, r in rows]


# The parts of a run's stored config and reproducibility record that decide its outputs and scores: two
# finished runs that agree on all of them (and on the model's files) hold the same results.
REUSE_CONFIG_KEYS = ("split", "turns", "limit", "fields", "format", "metrics", "perplexity", "chat_template",
                     "dtype", "load_in_4bit", "max_length", "backend")
REUSE_REPRO_KEYS = ("dataset_sha256", "base_model_fingerprint", "adapter_sha256", "eval_code_sha256")


def find_reusable_run(*, session: Session, dataset_id: int, generation: dict[str, Any], config: dict[str, Any],
                      repro: dict[str, Any], exclude: tuple[int, ...] | list[int] = ()) -> Optional[int]:
    """The newest finished run on this dataset with the same generation settings, the same
    ``REUSE_CONFIG_KEYS`` in its config and the same ``REUSE_REPRO_KEYS`` (each known: a run that
    lacks a hash is never reused), and the same package versions; None if there is none."""
    if any(not repro.get(k) for k in ("dataset_sha256", "base_model_fingerprint", "eval_code_sha256")):
        return None
    stmt = (select(Run).where(Run.dataset_id == dataset_id, Run.status == "finished", Run.id.not_in(list(exclude)))
            .order_by(Run.created_at.desc(), Run.id.desc()))
    for run in session.scalars(stmt):
        stored_config, stored_repro = run.config or {}, run.repro or {}
        if (run.generation or {}) != generation:
            continue
        if any(stored_config.get(k) != config.get(k) for k in REUSE_CONFIG_KEYS):
            continue
        if any(stored_repro.get(k) != repro.get(k) for k in REUSE_REPRO_KEYS):
            continue
        if stored_repro.get("packages") != repro.get("packages"):
            continue
        return run.id
    return None


def rejected_rows(*, session: Session, run_id: int) -> list[dict[str, Any]]:
    stmt = select(RejectedRow).where(RejectedRow.run_id == run_id).order_by(RejectedRow.row_index)
    return [dict(row_index=r.row_index, reason=r.reason, raw=r.raw) for r in session.scalars(stmt)]


# ---------------------------------------------------------------- evaluator: resume and export


def done_example_ids(*, session: Session, run_id: int) -> set[int]:
    """Examples that already have a committed result in the run (``--resume`` skips them)."""
    return set(session.scalars(select(Result.example_id).where(Result.run_id == run_id)))


def conversation_answers(*, session: Session, run_id: int,
                         conversation_ids: Optional[Iterable[str]] = None) -> dict[tuple[str, int], Optional[str]]:
    """(conversation_id, turn_index) -> the run's output there (None where generation failed): the history a
    ``rollout`` run's later turns were answered after. All of the run's conversations, or those given."""
    stmt = (select(ExampleRow.conversation_id, ExampleRow.turn_index, Result.output, Result.finish_reason)
            .join(ExampleRow, ExampleRow.id == Result.example_id).where(Result.run_id == run_id))
    if conversation_ids is None:
        statements = [stmt]
    else:
        wanted = sorted(set(conversation_ids))
        statements = [stmt.where(ExampleRow.conversation_id.in_(wanted[i:i + 500])) for i in range(0, len(wanted), 500)]
    return {(conv, turn): None if finish == "error" else output
            for s in statements for conv, turn, output, finish in session.execute(s)}


def export_rows(*, session: Session, run_id: int, chunk: int = 1000) -> Iterator[dict[str, Any]]:
    """One record per result of the run in dataset order, fetched ``chunk`` results at a time (keyset paging).

    Keys: run_id, example_id, example_key, row_index, category, messages, reference, output,
    finish_reason, output_tokens, prompt_tokens, failures (names), error, latency_ms, ref_nll,
    ref_tokens, token_logprobs, metrics {name: value} (None where the metric failed on the example);
    and what ``python -m evaluator import_run`` needs to rebuild the run elsewhere: run_name, model,
    run_created_at (ISO 8601), dataset, split, turns, dataset_fingerprint, turn_index, conversation_id, source, tags, metadata.
    """

    head = session.execute(select(Run.name, Run.model, Run.created_at, Dataset.name, Dataset.split, Dataset.turns,
                                  Dataset.fingerprint)
                           .join(Dataset, Dataset.id == Run.dataset_id).where(Run.id == run_id)).first()
    if head is None:
        return
    run_fields = dict(run_name=head[0], model=head[1], run_created_at=head[2].isoformat() if head[2] else None,
                      dataset=head[3], split=head[4], turns=head[5], dataset_fingerprint=head[6])
    last = (-1, -1)
    while True:
        stmt = (
            select(Result, ExampleRow)
            .join(ExampleRow, ExampleRow.id == Result.example_id)
            .where(Result.run_id == run_id)
            .where(or_(ExampleRow.row_index > last[0], and_(ExampleRow.row_index == last[0], Result.id > last[1])))
            .order_by(ExampleRow.row_index, Result.id)
            .limit(chunk)
        )
        page = session.execute(stmt).all()
        if not page:
            return
        metrics = metrics_for_results(session=session, result_ids=[r.id for r, _ in page])
        for result, example in page:
            yield {
                "run_id": run_id, "example_id": example.id, "example_key": example.key,
                "row_index": example.row_index, "category": example.category,
                "messages": list(example.messages or []), "reference": example.reference,
                "output": result.output, "finish_reason": result.finish_reason,
                "output_tokens": result.output_tokens, "prompt_tokens": result.prompt_tokens,
                "failures": FailureKind.names(result.failures or 0), "error": result.error,
                "latency_ms": result.latency_ms, "ref_nll": result.ref_nll, "ref_tokens": result.ref_tokens,
                "token_logprobs": unpack_logprobs(result.token_logprobs),
                "metrics": dict(sorted(metrics.get(result.id, {}).items())),
                **run_fields, "turn_index": example.turn_index, "conversation_id": example.conversation_id,
                "source": example.source, "tags": list(example.tags or []), "metadata": dict(example.meta or {}),
            }
        last = (page[-1][1].row_index, page[-1][0].id)
