"""Store access for the dashboard: connection, one-line errors, and the cached loaders pages read through.

Nothing here builds SQL: loaders call ``db`` query functions and return DataFrames, dicts or lists,
never ORM objects, so ``st.cache_data`` can keep them.

- ``store_url()``; ``require_store()`` -> url (a friendly ``st.error`` + ``st.stop()`` when the store is
  missing, empty, older or newer); ``read_session()`` for an ad-hoc read; ``write_session()`` for the
  only writes the dashboard makes (annotations, saved views) through its own small writable engine.
- ``guard()``: context manager turning store errors inside a page into a message instead of a traceback.
- ``cached``: the cache every loader uses (short TTL); ``read(url, db_fn, **kwargs)`` runs one ``db``
  query function in a read session. A page's own loaders are ``@cached`` functions calling ``read``.
- Loaders ``load_*(url, ...)`` shared by several pages.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, Iterator, Optional

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

import db
from dashboard import _auth
from dashboard import _format as fmt
from evaluator._arena import kept_jsonl
from evaluator.data import rollout_prompts
from evaluator.judging import (
    judge_agreement,
    judge_metric_disagreements,
    ratings,
    score_summary,
    summarize,
    version_ratings,
)

TTL_S = 20  # seconds a query result is reused: short, so a run being written shows up as it grows
MAX_ENTRIES = 256  # per loader; each entry is at most one page of rows


WRITE_ENV = "EVAL_DB_WRITE_URL"


def _arg(argv: list[str], flag: str) -> Optional[str]:
    value = None
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value


def store_url(argv: Optional[list[str]] = None) -> str:
    """The read URL: ``--db URL`` after ``streamlit run dashboard/server.py --``, else ``$EVAL_DB_URL``, else the
    default."""
    return db.resolve_url(_arg(sys.argv[1:] if argv is None else argv, "--db"))


def write_url(argv: Optional[list[str]] = None) -> Optional[str]:
    """The URL given for writes (verdicts, views, thresholds): ``--write-db URL``, else ``$EVAL_DB_WRITE_URL``.

    Without one, local single-user mode writes through the read URL (as before there were two), and with
    sign-in configured nothing is written: every page is read-only and says why."""
    return _arg(sys.argv[1:] if argv is None else argv, "--write-db") or os.environ.get(WRITE_ENV) or None


def may_write(role: str = "reviewer") -> bool:
    """Whether to offer a write (a button): the user's role allows it and a write URL is there. The write
    path checks both again when it runs."""
    return _auth.current_user().may(role) and writes_off_reason() is None


def writes_off_reason() -> Optional[str]:
    """Why this dashboard cannot write, or None when it can."""
    if write_url() is None and _auth.sign_in_configured():
        return (f"writes are off: sign-in is configured and no write URL is set (--write-db or ${WRITE_ENV}), "
                "so this dashboard is read-only")
    return None


@st.cache_resource(ttl=300, show_spinner=False, on_release=lambda engine: engine.dispose())


def _read_engine(url: str) -> Engine:
    # Raises StoreError (not cached) until the store exists and is at head; re-checked every 5 minutes.
    return db.open_store_readonly(url)


@st.cache_resource(ttl=300, show_spinner=False, on_release=lambda engine: engine.dispose())


def _write_engine(url: str) -> Engine:
    """A small writable engine for annotations; never migrates (the evaluator owns the schema)."""
    engine = db.make_engine(url, must_exist=True)
    try:
        db.check_schema(engine)
    except db.StoreError:
        engine.dispose()
        raise
    return engine


def _describe(exc: BaseException) -> str:
    if isinstance(exc, db.StoreError):
        return str(exc)
    text = str(getattr(exc, "orig", exc)).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    if "locked" in first or "busy" in first:
        return ("the store is busy (an evaluator is writing to it right now): reload the page in a few seconds. "
                f"({first})")
    if "no such table" in first or "no such column" in first or "does not exist" in first:
        return ("the store's tables do not match this dashboard (it may be mid-migration or from another "
                f"version): run 'alembic upgrade head' or update this checkout. ({first})")
    return f"could not read the store: {first}"


def fail(message: str) -> None:
    """Show a one-line problem and stop the page. The message (it may quote a path or URL the user
    gave) is escaped, so it shows literally."""
    st.error(fmt.escape_markdown(message), icon=":material/error:")
    st.stop()


@contextlib.contextmanager


def guard() -> Iterator[None]:
    """Store errors inside the block become a friendly message and stop the page (never a traceback)."""
    try:
        yield
    except (db.StoreError, SQLAlchemyError) as exc:
        fail(_describe(exc))


def require_store() -> str:
    """The store URL once its engine opens; otherwise a friendly error and ``st.stop()``."""
    url = store_url()
    with guard():
        _read_engine(url)
    return url


def read_engine(url: str) -> Engine:
    with guard():
        return _read_engine(url)


@contextlib.contextmanager


def read_session(url: str) -> Iterator[Any]:
    with db.session_factory(_read_engine(url))() as session:
        yield session


@contextlib.contextmanager


def write_session(url: Optional[str] = None, *, role: str = "reviewer") -> Iterator[Any]:
    """A transaction on the writable engine: ``with write_session() as s: db.add_annotation(session=s, ...)``.

    The only way the dashboard writes. It first checks that the signed-in user's role allows ``role``'s
    writes (``_auth.AccessDenied`` otherwise) and that a write URL is configured (``db.StoreError``
    otherwise); ``url`` is the page's read URL, written through only in local mode. Commits when the block
    ends, rolls back on an exception. The caller catches ``db.AnnotationError``.
    """
    _auth.require(role)
    reason = writes_off_reason()
    if reason:
        raise db.StoreError(reason)
    engine = _write_engine(write_url() or url or store_url())
    with db.session_factory(engine).begin() as session:
        yield session


def clear_caches() -> None:
    """Forget cached query results (call after a write so the page shows it at once)."""
    st.cache_data.clear()


def read(url: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    with read_session(url) as session:
        return fn(session=session, **kwargs)


cached = st.cache_data(ttl=TTL_S, max_entries=MAX_ENTRIES, show_spinner=False)


@cached


def load_runs(url: str) -> dict[str, pd.DataFrame]:
    """{"runs": one row per run (newest first) with counts and the human pass rate, "aggregates": one row per run x metric x kind
    (over all examples)}. Counting reads every result row (about a second for a million): pages that only
    need the list of runs use ``load_run_index``."""
    runs = read(url, db.list_runs)
    human = read(url, db.human_pass_rates, run_ids=[r["id"] for r in runs])
    rows, aggs = [], []
    for r in runs:
        h = human.get(r["id"], {})
        rows.append(dict(
            human_pass=h.get("pass_rate"), reviewed=h.get("reviewed", 0),
            id=r["id"], name=r["name"], family=fmt.family_of(r["name"], r["family"]), model=r["model"],
            adapter=r["adapter"], dataset_id=r["dataset_id"], dataset=r["dataset"], split=r["split"],
            dataset_source=r["dataset_source"],
            created_at=r["created_at"], status=r["status_text"], evaluated=r["n_results"], rejected=r["n_rejected"],
            failed=r["n_failed"], n_examples=r["n_examples"], baseline_for_id=r["baseline_for_id"],
            baselines=r["baselines"], is_baseline=r["is_baseline"], error=r["error"]))
        for metric, kinds in r["aggregates"].items():
            for kind, (value, lo, hi, n) in kinds.items():
                aggs.append(dict(run_id=r["id"], metric=metric, kind=kind, value=value, ci_low=lo, ci_high=hi, n=n))
    run_cols = ["id", "name", "family", "model", "adapter", "dataset_id", "dataset", "split", "dataset_source",
                "created_at", "status",
                "evaluated", "rejected", "failed", "n_examples", "baseline_for_id", "baselines", "is_baseline", "error",
                "human_pass", "reviewed"]
    agg_cols = ["run_id", "metric", "kind", "value", "ci_low", "ci_high", "n"]
    return {"runs": pd.DataFrame(rows, columns=run_cols), "aggregates": pd.DataFrame(aggs, columns=agg_cols)}


@cached


def load_rejected(url: str, run_id: int) -> pd.DataFrame:
    """The dataset rows run ``run_id`` rejected: row, reason (with the file's line), the row as written."""
    rows = read(url, db.rejected_rows, run_id=int(run_id))
    return pd.DataFrame(rows, columns=["row_index", "reason", "raw"])


@cached


def load_run_index(url: str) -> pd.DataFrame:
    """Every run (newest first) with its dataset, for pickers and labels: cheap, unlike ``load_runs``,
    which also counts every run's results. Columns: id, name, family (resolved), model, adapter,
    dataset_id, dataset, split, created_at, status, baseline_for_id, baselines (its baseline runs' ids,
    newest first), is_baseline."""
    rows = read(url, db.run_index)
    for r in rows:
        r["family"] = fmt.family_of(r["name"], r["family"])
    return pd.DataFrame(rows, columns=["id", "name", "family", "model", "adapter", "dataset_id", "dataset", "split",
                                       "created_at", "status", "baseline_for_id", "baselines", "is_baseline"])


@cached


def load_run(url: str, run_id: int) -> Optional[dict[str, Any]]:
    return read(url, db.get_run, run_id=int(run_id))


@cached


def load_datasets(url: str) -> list[dict[str, Any]]:
    return read(url, db.list_datasets)


@cached


def load_metric_info(url: str) -> dict[str, Optional[bool]]:
    return read(url, db.metric_info)


@cached


def load_run_metrics(url: str, run_id: int) -> list[str]:
    return read(url, db.run_metric_names, run_id=int(run_id))


@cached


def load_categories(url: str, run_id: int) -> list[str]:
    return read(url, db.run_categories, run_id=int(run_id))


@cached


def load_bounds(url: str, run_id: int, metrics: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    return read(url, db.metric_bounds, run_id=int(run_id), metrics=list(metrics))


@cached
def load_thresholds(url: str, dataset_id: int) -> dict[str, dict[str, Any]]:
    """Metric -> {"threshold", "set_by", "updated_at"}: the pass thresholds the team stored for a dataset."""
    return read(url, db.pass_thresholds, dataset_id=int(dataset_id))


@cached


def load_page(url: str, query: db.ResultQuery, page: int, page_size: int) -> dict[str, Any]:
    """{"rows": DataFrame (one page, metrics as columns), "total": matches, "metrics": metric columns}."""
    p = read(url, db.page_results, query=query, page=page, page_size=page_size)
    return {"rows": results_frame(p.rows), "total": p.total}


def results_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows of ``db.page_results``/``db.iter_results`` as a flat DataFrame, one column per metric."""
    flat = []
    for r in rows:
        d = {k: v for k, v in r.items() if k != "metrics"}
        d["failures"] = ", ".join(r.get("failures") or [])
        d.update({f"metric:{k}": v for k, v in sorted((r.get("metrics") or {}).items())})
        flat.append(d)
    return pd.DataFrame(flat)


@cached


def load_detail(url: str, run_id: int, example_id: int) -> Optional[dict[str, Any]]:
    """``db.result_detail``; after a rollout its ``messages`` are what the run was given: its own earlier answers."""
    d = read(url, db.result_detail, run_id=int(run_id), example_id=int(example_id))
    if d is not None and d["turn_index"] and (load_run(url, run_id) or {}).get("turns") == "rollout":
        answers = read(url, db.conversation_answers, run_id=int(run_id), conversation_ids=[d["conversation_id"]])
        d["messages"] = rollout_prompts([d], answers)[0]
    return d


@cached


def load_annotations(url: str, run_id: int, example_id: int) -> pd.DataFrame:
    rows = read(url, db.annotations_of, run_id=int(run_id), example_id=int(example_id))
    return pd.DataFrame(rows, columns=["reviewer", "verdict", "comment", "created_at"])


@cached


def load_comparison(url: str, run_a: int, run_b: int) -> dict[str, Any]:
    """{"stored": the stored comparison rows of A vs B, overall and per slice (empty when never scored),
    "summary": db.delta_summary (plain means and counts; only when nothing is stored)}."""
    stored = pd.DataFrame(read(url, db.stored_comparisons, run_a_id=int(run_a), run_b_id=int(run_b)))
    summary = pd.DataFrame()
    if stored.empty:
        summary = pd.DataFrame(read(url, db.delta_summary, run_a_id=int(run_a), run_b_id=int(run_b)))
    return {"stored": stored, "summary": summary}


@cached


def load_slices(url: str, run_a: int, run_b: int) -> pd.DataFrame:
    """db.delta_by_slice: per category plain means and counts (for pairs without stored slice rows)."""
    return pd.DataFrame(read(url, db.delta_by_slice, run_a_id=int(run_a), run_b_id=int(run_b)))


@cached


def load_judgments(url: str, run_a: int, run_b: int) -> pd.DataFrame:
    """One row per judge config that compared the two runs, for A against B (judgments of B as the candidate
    against A are turned around: win rates 100 - x, wins and losses swapped): ``evaluator.judging.summarize``."""
    rows = summarize(read(url, db.judgments_of_pair, candidate_id=int(run_a), baseline_id=int(run_b)))
    flipped = summarize(read(url, db.judgments_of_pair, candidate_id=int(run_b), baseline_id=int(run_a)))
    for j in flipped:
        for a, b in (("win_rate", "win_rate"), ("ci_low", "ci_high"), ("lc_win_rate", "lc_win_rate"),
                     ("lc_ci_low", "lc_ci_high")):
            j[a], j[b] = (None if j[b] is None else 100 - j[b]), (None if j[a] is None else 100 - j[a])
        j["wins"], j["losses"] = j["losses"], j["wins"]
    return pd.DataFrame(rows + flipped)


@cached


def load_example_judgments(url: str, run_a: int, run_b: int, example_id: int) -> pd.DataFrame:
    """db.judgments_of_example: every judge's verdict on this example, in both orders, with its reply."""
    return pd.DataFrame(read(url, db.judgments_of_example, run_a_id=int(run_a), run_b_id=int(run_b),
                             example_id=int(example_id)))


@cached


def load_judge_agreement(url: str, run_id: int) -> list[dict[str, Any]]:
    """``evaluator.judging.judge_agreement`` of every judge of this run (as the candidate) with its reviewers."""
    judgments = read(url, db.judgments_of_candidate, candidate_id=int(run_id))
    if not judgments:
        return []
    return judge_agreement(judgments, read(url, db.latest_verdicts, run_id=int(run_id)))


@cached


def load_ratings(url: str, dataset_id: int) -> dict[str, pd.DataFrame]:
    """``evaluator.judging.ratings`` of the runs of one dataset, one table per judge."""
    judgments = read(url, db.judgments_on_dataset, dataset_id=int(dataset_id))
    if not judgments:
        return {}
    index = load_run_index(url)
    names = {int(i): f"#{i} {n}" for i, n in zip(index["id"], index["name"])}
    return ratings(judgments, names)


@cached


def load_judge_metric_disagreements(url: str, run_id: int, metric: str, threshold: float,
                                    higher_is_better: bool) -> pd.DataFrame:
    """``evaluator.judging.judge_metric_disagreements`` of this run's judges against ``metric``'s pass rule."""
    rows = read(url, db.judged_metric_values, candidate_id=int(run_id), metric=metric)
    return pd.DataFrame(judge_metric_disagreements(rows, threshold=float(threshold),
                                                   higher_is_better=bool(higher_is_better)))


@cached


def load_ratings_of_run(url: str, run_id: int) -> pd.DataFrame:
    """Single-answer grading of one run: one row per judge config (``evaluator.judging.score_summary``)."""
    return pd.DataFrame(score_summary(read(url, db.judgments_of_pair, candidate_id=int(run_id), baseline_id=None)))


@cached


def load_run_example_judgments(url: str, run_id: int, example_id: int) -> pd.DataFrame:
    """db.judgments_of_run_example: every judgment of this example that this run took part in."""
    return pd.DataFrame(read(url, db.judgments_of_run_example, run_id=int(run_id), example_id=int(example_id)))


@cached


def load_grid(url: str, run_a: int, run_b: int, metric: str, bins: int = 60) -> dict[str, Any]:
    g = read(url, db.paired_grid, run_a_id=int(run_a), run_b_id=int(run_b), metric=metric, bins=bins)
    g["cells"] = pd.DataFrame(g["cells"], columns=["value_a", "value_b", "examples"])
    return g


@cached


def load_compare_examples(url: str, run_a: int, run_b: int, metric: str, order: str, threshold: Optional[float],
                          flips_only: bool, box: Optional[db.Box], category: Optional[str], page: int,
                          page_size: int) -> dict[str, Any]:
    r = read(url, db.compare_examples, run_a_id=int(run_a), run_b_id=int(run_b), metric=metric, order=order,
               threshold=threshold, flips_only=flips_only, box=box, category=category, page=page, page_size=page_size)
    rows = pd.DataFrame(r["rows"])
    if not rows.empty:  # human verdicts next to the metric, for both runs
        ids = [int(i) for i in rows["example_id"]]
        for col, run in (("verdicts_a", run_a), ("verdicts_b", run_b)):
            summary = read(url, db.verdict_summaries, run_id=int(run), example_ids=ids)
            rows[col] = [fmt.verdict_text(summary.get(i, {})) for i in ids]
    return {"rows": rows, "total": r["total"]}


def _csv_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``results_frame`` for a CSV file: text a spreadsheet would run as a formula becomes inert."""
    return results_frame(rows).map(db.spreadsheet_safe)


def export_csv(url: str, query: db.ResultQuery) -> Callable[[], bytes]:
    """A callable for ``st.download_button(data=...)``: runs only on click, reads ``chunk`` rows at a time."""
    def build() -> bytes:
        parts: list[str] = []
        chunk: list[dict] = []
        header = True
        with read_session(url) as session:
            for row in db.iter_results(session=session, query=query, chunk=1000):
                chunk.append(row)
                if len(chunk) == 1000:
                    parts.append(_csv_frame(chunk).to_csv(index=False, header=header))
                    chunk, header = [], False
            if chunk or header:
                parts.append(_csv_frame(chunk).to_csv(index=False, header=header))
        return "".join(parts).encode("utf-8")
    return build


@cached
def load_version_ratings(url: str) -> pd.DataFrame:
    """``evaluator.judging.version_ratings``: one Bradley–Terry rating per version from the Arena's votes, the
    judges' pairwise judgments and the reviewers' verdicts."""
    with read_session(url) as session:
        return version_ratings(db.arena_votes(session=session), db.judge_preferences(session=session),
                               db.reviewer_verdicts(session=session))


@cached
def load_kept_sets(url: str) -> list[dict[str, Any]]:
    return read(url, db.kept_sets)


@cached
def load_kept_jsonl(url: str, set_name: str) -> str:
    """One kept set as JSONL in the messages format (``evaluator._arena.kept_jsonl``)."""
    return kept_jsonl(read(url, db.kept_examples, set_name=set_name), set_name)


@cached
def load_example_messages(url: str, example_id: int) -> Optional[list[dict[str, str]]]:
    return read(url, db.example_messages, example_id=int(example_id))


@cached
def load_examples_found(url: str, dataset_id: int, text: str) -> list[dict[str, Any]]:
    return read(url, db.find_examples, dataset_id=int(dataset_id), text=text, limit=50)
