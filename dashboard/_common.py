"""What every dashboard page shares: the store connection, cached loaders, query-parameter state.

Pages read in four steps: ``st.query_params`` (so a link reproduces the view) -> keyed widgets ->
cached loaders below -> render. Nothing here builds SQL: loaders call ``db`` query functions and
return DataFrames, dicts or lists, never ORM objects, so ``st.cache_data`` can keep them.

API for pages (the review page uses the same):

- ``store_url()``; ``require_store()`` -> url (a friendly ``st.error`` + ``st.stop()`` when the store is
  missing, empty, older or newer); ``read_session()`` for an ad-hoc read; ``write_session()`` for the
  only writes the dashboard makes (annotations, saved views) through its own small writable engine.
- ``guard()``: context manager turning store errors inside a page into a message instead of a traceback.
- Loaders ``load_*(url, ...)`` cached with a short TTL.
- Query parameters: ``params()`` (all, repeated keys as lists), ``param_str/int/float/bool``,
  ``sync_widgets(...)`` / ``write_params(...)``.
- Example-browser filter state: ``filters_from_params(params) -> db.ResultQuery`` and
  ``filters_to_params(query) -> dict`` (the link format is documented there).
"""
from __future__ import annotations

import contextlib
import math
import sys
from typing import Any, Callable, Iterator, Mapping, Optional

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

import db

TTL_S = 20  # seconds a query result is reused: short, so a run being written shows up as it grows
MAX_ENTRIES = 256  # per loader; each entry is at most one page of rows
PAGE_SIZES = (25, 50, 100)
BROWSER_PAGE = "views/browser.py"
COMPARE_PAGE = "views/compare.py"
RUNS_PAGE = "views/runs.py"
REVIEW_PAGE = "views/review.py"


# ---------------------------------------------------------------- the store


def store_url(argv: Optional[list[str]] = None) -> str:
    """``--db URL`` after ``streamlit run dashboard/app.py --``, else ``$EVAL_DB_URL``, else the default."""
    argv = sys.argv[1:] if argv is None else argv
    url = None
    for i, arg in enumerate(argv):
        if arg == "--db" and i + 1 < len(argv):
            url = argv[i + 1]
        elif arg.startswith("--db="):
            url = arg.split("=", 1)[1]
    return db.resolve_url(url)


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


_MARKDOWN_SPECIALS = set("\\`*_{}[]()#+-.!|<>~$:=&\"'")


def escape_markdown(text: str) -> str:
    """``text`` with every Markdown-significant character backslash-escaped, for the few elements that
    only take Markdown (st.error, st.info, ...) when a message must include a path or a name."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIALS else ch for ch in str(text))


def fail(message: str) -> None:
    """Show a one-line problem and stop the page. The message (it may quote a path or URL the user
    gave) is escaped, so it shows literally."""
    st.error(escape_markdown(message), icon=":material/error:")
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
def write_session(url: Optional[str] = None) -> Iterator[Any]:
    """A transaction on the writable engine: ``with write_session() as s: db.add_annotation(session=s, ...)``.

    Commits when the block ends, rolls back on an exception. The caller catches ``db.AnnotationError``.
    """
    engine = _write_engine(url or store_url())
    with db.session_factory(engine).begin() as session:
        yield session


def clear_caches() -> None:
    """Forget cached query results (call after a write so the page shows it at once)."""
    st.cache_data.clear()


def _query(url: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    with read_session(url) as session:
        return fn(session=session, **kwargs)


# ---------------------------------------------------------------- cached loaders


def family_of(name: str, family: Optional[str]) -> str:
    """A run's model family: ``run.family``, else its name up to the last "-" or ":" ("acme-v3" -> "acme")."""
    if family:
        return family
    cut = max(name.rfind("-"), name.rfind(":"))
    return name[:cut] if cut > 0 else name


_cache = st.cache_data(ttl=TTL_S, max_entries=MAX_ENTRIES, show_spinner=False)


@_cache
def load_runs(url: str) -> dict[str, pd.DataFrame]:
    """{"runs": one row per run (newest first) with counts and the human pass rate, "aggregates": one row per run x metric x kind
    (over all examples)}. Counting reads every result row (about a second for a million): pages that only
    need the list of runs use ``load_run_index``."""
    runs = _query(url, db.list_runs)
    human = _query(url, db.human_pass_rates, run_ids=[r["id"] for r in runs])
    rows, aggs = [], []
    for r in runs:
        h = human.get(r["id"], {})
        rows.append(dict(
            human_pass=h.get("pass_rate"), reviewed=h.get("reviewed", 0),
            id=r["id"], name=r["name"], family=family_of(r["name"], r["family"]), model=r["model"],
            adapter=r["adapter"], dataset_id=r["dataset_id"], dataset=r["dataset"], split=r["split"],
            created_at=r["created_at"], status=r["status_text"], evaluated=r["n_results"], rejected=r["n_rejected"],
            failed=r["n_failed"], n_examples=r["n_examples"], baseline_for_id=r["baseline_for_id"],
            error=r["error"]))
        for metric, kinds in r["aggregates"].items():
            for kind, (value, lo, hi, n) in kinds.items():
                aggs.append(dict(run_id=r["id"], metric=metric, kind=kind, value=value, ci_low=lo, ci_high=hi, n=n))
    run_cols = ["id", "name", "family", "model", "adapter", "dataset_id", "dataset", "split", "created_at", "status",
                "evaluated", "rejected", "failed", "n_examples", "baseline_for_id", "error", "human_pass", "reviewed"]
    agg_cols = ["run_id", "metric", "kind", "value", "ci_low", "ci_high", "n"]
    return {"runs": pd.DataFrame(rows, columns=run_cols), "aggregates": pd.DataFrame(aggs, columns=agg_cols)}


@_cache
def load_rejected(url: str, run_id: int) -> pd.DataFrame:
    """The dataset rows run ``run_id`` rejected: row, reason (with the file's line), the row as written."""
    rows = _query(url, db.rejected_rows, run_id=int(run_id))
    return pd.DataFrame(rows, columns=["row_index", "reason", "raw"])


@_cache
def load_run_index(url: str) -> pd.DataFrame:
    """Every run (newest first) with its dataset, for pickers and labels: cheap, unlike ``load_runs``,
    which also counts every run's results. Columns: id, name, family (resolved), model, adapter,
    dataset_id, dataset, split, created_at, status, baseline_for_id."""
    rows = _query(url, db.run_index)
    for r in rows:
        r["family"] = family_of(r["name"], r["family"])
    return pd.DataFrame(rows, columns=["id", "name", "family", "model", "adapter", "dataset_id", "dataset", "split",
                                       "created_at", "status", "baseline_for_id"])


@_cache
def load_run(url: str, run_id: int) -> Optional[dict[str, Any]]:
    return _query(url, db.get_run, run_id=int(run_id))


@_cache
def load_datasets(url: str) -> list[dict[str, Any]]:
    return _query(url, db.list_datasets)


@_cache
def load_metric_info(url: str) -> dict[str, Optional[bool]]:
    return _query(url, db.metric_info)


@_cache
def load_run_metrics(url: str, run_id: int) -> list[str]:
    return _query(url, db.run_metric_names, run_id=int(run_id))


@_cache
def load_categories(url: str, run_id: int) -> list[str]:
    return _query(url, db.run_categories, run_id=int(run_id))


@_cache
def load_bounds(url: str, run_id: int, metrics: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    return _query(url, db.metric_bounds, run_id=int(run_id), metrics=list(metrics))


@_cache
def load_page(url: str, query: db.ResultQuery, page: int, page_size: int) -> dict[str, Any]:
    """{"rows": DataFrame (one page, metrics as columns), "total": matches, "metrics": metric columns}."""
    p = _query(url, db.page_results, query=query, page=page, page_size=page_size)
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


@_cache
def load_detail(url: str, run_id: int, example_id: int) -> Optional[dict[str, Any]]:
    return _query(url, db.result_detail, run_id=int(run_id), example_id=int(example_id))


@_cache
def load_annotations(url: str, run_id: int, example_id: int) -> pd.DataFrame:
    rows = _query(url, db.annotations_of, run_id=int(run_id), example_id=int(example_id))
    return pd.DataFrame(rows, columns=["reviewer", "verdict", "comment", "created_at"])


@_cache
def load_comparison(url: str, run_a: int, run_b: int) -> dict[str, Any]:
    """{"stored": the stored comparison rows of A vs B, overall and per slice (empty when never scored),
    "summary": db.delta_summary (plain means and counts; only when nothing is stored)}."""
    stored = pd.DataFrame(_query(url, db.stored_comparisons, run_a_id=int(run_a), run_b_id=int(run_b)))
    summary = pd.DataFrame()
    if stored.empty:
        summary = pd.DataFrame(_query(url, db.delta_summary, run_a_id=int(run_a), run_b_id=int(run_b)))
    return {"stored": stored, "summary": summary}


@_cache
def load_slices(url: str, run_a: int, run_b: int) -> pd.DataFrame:
    """db.delta_by_slice: per category plain means and counts (for pairs without stored slice rows)."""
    return pd.DataFrame(_query(url, db.delta_by_slice, run_a_id=int(run_a), run_b_id=int(run_b)))


@_cache
def load_grid(url: str, run_a: int, run_b: int, metric: str, bins: int = 60) -> dict[str, Any]:
    g = _query(url, db.paired_grid, run_a_id=int(run_a), run_b_id=int(run_b), metric=metric, bins=bins)
    g["cells"] = pd.DataFrame(g["cells"], columns=["value_a", "value_b", "examples"])
    return g


@_cache
def load_compare_examples(url: str, run_a: int, run_b: int, metric: str, order: str, threshold: Optional[float],
                          flips_only: bool, box: Optional[db.Box], category: Optional[str], page: int,
                          page_size: int) -> dict[str, Any]:
    r = _query(url, db.compare_examples, run_a_id=int(run_a), run_b_id=int(run_b), metric=metric, order=order,
               threshold=threshold, flips_only=flips_only, box=box, category=category, page=page, page_size=page_size)
    rows = pd.DataFrame(r["rows"])
    if not rows.empty:  # human verdicts next to the metric, for both runs
        ids = [int(i) for i in rows["example_id"]]
        for col, run in (("verdicts_a", run_a), ("verdicts_b", run_b)):
            summary = _query(url, db.verdict_summaries, run_id=int(run), example_ids=ids)
            rows[col] = [verdict_text(summary.get(i, {})) for i in ids]
    return {"rows": rows, "total": r["total"]}


def verdict_text(counts: dict[str, int]) -> str:
    """{"pass": 2, "needs discussion": 1} -> "pass ×2, needs discussion" ("" when unreviewed)."""
    return ", ".join(v if n == 1 else f"{v} ×{n}" for v, n in sorted(counts.items(), key=lambda kv: -kv[1]))


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


# ---------------------------------------------------------------- runs: small pure helpers


def default_pair(runs: pd.DataFrame) -> tuple[Optional[int], Optional[int]]:
    """Default (A, B) to compare: the latest candidate that has a baseline and its newest baseline;
    else the two latest runs on the dataset of the latest run; else what exists."""
    if runs.empty:
        return None, None
    runs = runs.sort_values(["created_at", "id"], ascending=False)
    baselines = runs[runs["baseline_for_id"].notna()]
    for _, cand in runs[runs["baseline_for_id"].isna()].iterrows():
        mine = baselines[baselines["baseline_for_id"] == cand["id"]]
        if not mine.empty:
            return int(cand["id"]), int(mine.iloc[0]["id"])
    first = runs.iloc[0]
    same = runs[(runs["dataset_id"] == first["dataset_id"]) & (runs["id"] != first["id"])]
    return int(first["id"]), (int(same.iloc[0]["id"]) if not same.empty else None)


def headline(aggs: pd.DataFrame) -> pd.DataFrame:
    """One aggregate per (run, metric): the corpus-level figure where stored, else the mean."""
    if aggs.empty:
        return aggs
    order = aggs.assign(_rank=(aggs["kind"] != "corpus").astype(int)).sort_values("_rank")
    return order.drop_duplicates(["run_id", "metric"]).drop(columns="_rank")


def fmt_num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}g}" if abs(v) < 10 ** digits else f"{v:.0f}"


def fmt_ci(value: Any, lo: Any, hi: Any) -> str:
    """"0.612 [0.580, 0.640]"; the brackets are the 95% confidence interval."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if lo is None or hi is None or (isinstance(lo, float) and math.isnan(lo)):
        return fmt_num(value)
    return f"{fmt_num(value)} [{fmt_num(lo)}, {fmt_num(hi)}]"


def run_label(runs: pd.DataFrame) -> Callable[[Any], str]:
    """format_func for a selectbox over run ids: "#5 acme-chat-v3 · support-chat.jsonl/test · 2026-03-16".

    Option labels are plain text in Streamlit, so run names (data) are safe here; never use them in a
    widget *label*, which renders markdown.
    """
    by_id = {int(r.id): r for r in runs.itertuples()}

    def label(run_id: Any) -> str:
        if run_id is None or run_id == "":
            return "(none)"
        r = by_id.get(int(run_id))
        if r is None:
            return f"#{run_id}"
        day = pd.Timestamp(r.created_at).strftime("%Y-%m-%d") if pd.notna(r.created_at) else ""
        return f"#{r.id} {r.name} · {r.dataset}/{r.split} · {day}"
    return label


# ---------------------------------------------------------------- query parameters


def params() -> dict[str, Any]:
    """The page's query parameters: a str per key, a list of str for a repeated key."""
    out: dict[str, Any] = {}
    for key in st.query_params.keys():
        values = st.query_params.get_all(key)
        out[key] = values if len(values) > 1 else (values[0] if values else "")
    return out


def _first(value: Any) -> Optional[str]:
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else None
    if value is None:
        return None
    value = str(value)
    return value if value != "" else None


def param_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if str(v) != ""]
    return [str(value)] if str(value) != "" else []


def param_str(p: Mapping[str, Any], key: str, default: Optional[str] = None) -> Optional[str]:
    v = _first(p.get(key))
    return default if v is None else v


def param_int(p: Mapping[str, Any], key: str, default: Optional[int] = None) -> Optional[int]:
    try:
        return int(_first(p.get(key)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def param_float(p: Mapping[str, Any], key: str, default: Optional[float] = None) -> Optional[float]:
    try:
        v = float(_first(p.get(key)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def param_bool(p: Mapping[str, Any], key: str, default: bool = False) -> bool:
    v = _first(p.get(key))
    return default if v is None else v.lower() in ("1", "true", "yes", "on")


def clean_params(p: Mapping[str, Any]) -> dict[str, Any]:
    """Drop empty values; numbers and booleans become strings, as they appear in a URL."""
    out: dict[str, Any] = {}
    for k, v in p.items():
        if isinstance(v, (list, tuple)):
            vals = [str(x) for x in v if x is not None and str(x) != ""]
            if vals:
                out[k] = vals if len(vals) > 1 else vals[0]
        elif isinstance(v, bool):
            if v:
                out[k] = "1"
        elif v is not None and str(v) != "":
            out[k] = _num_str(v) if isinstance(v, float) else str(v)
    return out


def _num_str(v: float) -> str:
    return str(int(v)) if v.is_integer() else repr(v)


def write_params(p: Mapping[str, Any], *, page: str) -> None:
    """Make the URL show exactly ``p`` (empty values dropped) and remember it as this page's own state."""
    new = clean_params(p)
    if new != params():
        st.query_params.from_dict(new)
    st.session_state[f"_{page}_written"] = new


def sync_widgets(page: str, seeds: Mapping[str, Any]) -> None:
    """Set keyed widgets from the link before they are drawn.

    When the URL is not the one this page last wrote (a link was opened, or first visit), every widget
    in ``seeds`` takes its value from it; otherwise only widgets that do not exist yet are seeded, so
    what the user is typing is never overwritten. Call at the top of a page, before any widget.
    """
    current = clean_params(params())
    external = st.session_state.get(f"_{page}_written") != current
    for key, value in seeds.items():
        if external or key not in st.session_state:
            st.session_state[key] = value


def selected_values(event: Any, param: str, field: str) -> list[Any]:
    """Values of ``field`` in a point selection ``param`` of an ``st.altair_chart(on_select="rerun")`` event."""
    try:
        sel = event["selection"][param]
    except (KeyError, TypeError, AttributeError):
        return []
    if isinstance(sel, list):
        return [d[field] for d in sel if isinstance(d, dict) and field in d]
    return []


def selected_interval(event: Any, param: str) -> dict[str, tuple[float, float]]:
    """field -> (lo, hi) of an interval selection ``param`` (empty when nothing is selected)."""
    try:
        sel = event["selection"][param]
    except (KeyError, TypeError, AttributeError):
        return {}
    out = {}
    if isinstance(sel, dict):
        for field, bounds in sel.items():
            if isinstance(bounds, (list, tuple)) and len(bounds) == 2:
                try:
                    lo, hi = float(bounds[0]), float(bounds[1])
                except (TypeError, ValueError):
                    continue
                out[field] = (min(lo, hi), max(lo, hi))
    return out


# ---------------------------------------------------------------- example-browser filter state

VERDICT_FILTERS = ("unreviewed", "any", *db.VERDICTS)
FAILURE_FILTERS = ("any", "none", *db.FAILURE_KINDS)


def _range_param(r: db.MetricRange) -> str:
    def num(x: Optional[float]) -> str:
        return "" if x is None else _num_str(float(x))
    return f"{r.metric}:{num(r.lo)}:{num(r.hi)}"


def _parse_range(text: str) -> Optional[db.MetricRange]:
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        return None
    bounds = []
    for s in parts[1:]:
        try:
            v = float(s) if s.strip() else None
        except ValueError:
            return None
        bounds.append(v if v is None or math.isfinite(v) else None)
    return db.MetricRange(parts[0], bounds[0], bounds[1])


def filters_from_params(p: Mapping[str, Any]) -> db.ResultQuery:
    """The example-browser selection described by a link's query parameters.

    ``p`` maps key -> str, or -> list of str for a repeated key (``params()`` gives that shape, and so
    does a ``db.SavedView.params``). Keys, all optional but ``run``::

        run=5                    run id (required: ValueError when absent or not a number)
        text=refund              substring of prompt, output or reference (any characters, taken literally)
        category=support         tag=multi-turn
        failure=truncated        a db.FAILURE_KINDS name, "any" or "none"
        verdict=unreviewed       a db.VERDICTS value, "any" (reviewed) or "unreviewed"
        range=bleu:10:           metric:lo:hi, either bound empty; repeat the key for several metrics
        sort=bleu&desc=1         a metric name or a db.SORT_COLUMNS key; desc=1 for descending
        ids=3,17,20              only these example ids

    Values that do not parse are ignored (a hand-edited link never breaks the page). Page, page size
    and the open example (``page``, ``size``, ``ex``) are view state, not part of the selection.
    """
    run = param_int(p, "run")
    if run is None:
        raise ValueError("no run selected: add ?run=<run id> to the link")
    ranges = tuple(r for r in (_parse_range(t) for t in param_list(p.get("range"))) if r is not None)
    failure = param_str(p, "failure")
    verdict = param_str(p, "verdict")
    ids_text = param_str(p, "ids")
    ids = None
    if ids_text:
        ids = tuple(int(t) for t in ids_text.split(",") if t.strip().isdigit()) or None
    return db.ResultQuery(
        run_id=run,
        ranges=ranges,
        text=param_str(p, "text"),
        category=param_str(p, "category"),
        tag=param_str(p, "tag"),
        failure=failure if failure in FAILURE_FILTERS else None,
        verdict=verdict if verdict in VERDICT_FILTERS else None,
        example_ids=ids,
        sort=param_str(p, "sort"),
        descending=param_bool(p, "desc"),
    )


def filters_to_params(q: db.ResultQuery) -> dict[str, Any]:
    """Inverse of ``filters_from_params``: the query parameters (str or list of str) for ``q``."""
    out: dict[str, Any] = {"run": str(q.run_id)}
    ranges = [_range_param(r) for r in q.ranges]
    for key, value in (("text", q.text), ("category", q.category), ("tag", q.tag), ("failure", q.failure),
                       ("verdict", q.verdict), ("sort", q.sort)):
        if value:
            out[key] = value
    if ranges:
        out["range"] = ranges if len(ranges) > 1 else ranges[0]
    if q.descending:
        out["desc"] = "1"
    if q.example_ids:
        out["ids"] = ",".join(str(i) for i in q.example_ids)
    return out
