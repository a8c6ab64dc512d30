"""Link state: a page's view lives in its query parameters, so a shared link reopens it exactly.

Pages read in four steps: ``st.query_params`` (this module) -> keyed widgets -> cached loaders
(``dashboard._store``) -> render.

- ``params()`` (all, repeated keys as lists), ``param_str/int/float/bool/list``;
  ``sync_widgets(...)`` before the widgets are drawn, ``write_params(...)`` after.
- Chart selections: ``selected_values``, ``selected_interval``.
- Example-browser filter state: ``filters_from_params(params) -> db.ResultQuery`` and
  ``filters_to_params(query) -> dict`` (the link format is documented there).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Optional

import pandas as pd
import streamlit as st

import db
from dashboard import _format as fmt

PAGE_SIZES = (25, 50, 100)
BROWSER_PAGE = "views/browser.py"
COMPARE_PAGE = "views/compare.py"
RUNS_PAGE = "views/runs.py"
REVIEW_PAGE = "views/review.py"


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


def forget(keys: Iterable[str]) -> Callable[[], None]:
    """A callback for a control that switches between a page's views: it drops the state of ``keys`` so
    that the next run seeds them from the link, which holds every view's state. (A widget that was not
    drawn in a run can otherwise come back with the value a link seeded before the user changed it.)"""
    def drop() -> None:
        for key in keys:
            st.session_state.pop(key, None)
    return drop


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


def baseline_follower(runs: pd.DataFrame, a_key: str, b_key: str) -> Callable[[], None]:
    """on_change of a "run A" picker: run B becomes A's own baseline, when A has one (else B stays)."""
    def follow() -> None:
        own = fmt.own_baseline(runs, st.session_state.get(a_key))
        if own is not None:
            st.session_state[b_key] = own
    return follow


def row_picker(table_key: str, ids_key: str, target_key: str) -> Callable[[], None]:
    """The ``on_select`` callback of a single-row ``st.dataframe`` (key ``table_key``): the id of the picked
    row, from the list the page stored in ``st.session_state[ids_key]`` when it drew the table, becomes the
    value of the widget ``target_key`` (the page's "open this" selectbox)."""
    def pick() -> None:
        sel = st.session_state.get(table_key)
        ids = st.session_state.get(ids_key, [])
        rows = sel.selection.rows if sel is not None else []
        if rows and rows[0] < len(ids):
            st.session_state[target_key] = ids[rows[0]]
    return pick


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


VERDICT_FILTERS = ("unreviewed", "any", *db.VERDICTS)
JUDGE_FILTERS = db.JUDGE_FILTERS
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


def unknown_metrics(query: db.ResultQuery, metrics: list[str], sort_columns: Iterable[str] = ()) -> list[str]:
    """Metric names in a selection (its ranges and its sort) that the run does not have. A range on one of
    them selects nothing; a link that names one is a typo to show, not to drop silently."""
    known = set(metrics)
    names = [r.metric for r in query.ranges]
    if query.sort and query.sort not in set(sort_columns):
        names.append(query.sort)
    return [m for m in dict.fromkeys(names) if m not in known]


def filters_from_params(p: Mapping[str, Any]) -> db.ResultQuery:
    """The example-browser selection described by a link's query parameters.

    ``p`` maps key -> str, or -> list of str for a repeated key (``params()`` gives that shape, and so
    does a ``db.SavedView.params``). Keys, all optional but ``run``::

        run=5                    run id (required: ValueError when absent or not a number)
        text=refund              substring of prompt, output or reference (any characters, taken literally)
        category=support         tag=multi-turn
        failure=truncated        a db.FAILURE_KINDS name, "any" or "none"
        verdict=unreviewed       a db.VERDICTS value, "any" (reviewed) or "unreviewed"
        judge=worse              a judge found the answer better / worse than a baseline's, a tie; judged / unjudged
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
    judge = param_str(p, "judge")
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
        judge=judge if judge in JUDGE_FILTERS else None,
        example_ids=ids,
        sort=param_str(p, "sort"),
        descending=param_bool(p, "desc"),
    )


def filters_to_params(q: db.ResultQuery) -> dict[str, Any]:
    """Inverse of ``filters_from_params``: the query parameters (str or list of str) for ``q``."""
    out: dict[str, Any] = {"run": str(q.run_id)}
    ranges = [_range_param(r) for r in q.ranges]
    for key, value in (("text", q.text), ("category", q.category), ("tag", q.tag), ("failure", q.failure),
                       ("verdict", q.verdict), ("judge", q.judge), ("sort", q.sort)):
        if value:
            out[key] = value
    if ranges:
        out["range"] = ranges if len(ranges) > 1 else ranges[0]
    if q.descending:
        out["desc"] = "1"
    if q.example_ids:
        out["ids"] = ",".join(str(i) for i in q.example_ids)
    return out
