"""Compare two runs: per metric and per slice (delta, 95% CI, Holm-adjusted p, wins/ties/losses), a scatter
of A's vs B's score per example with region selection, and the examples sorted by the difference.

Query parameters: a, b (run ids), view ("metrics": per metric, the default; "examples": per example, the
default when the link sets any of the examples' own parameters), metric, order, thr (pass threshold), flips
(1: only flips), category, page (1-based), box (a_lo:a_hi:b_lo:b_hi, a region of the scatter), ex (example id,
opened over either view), slices (1: show the per-slice table).

One view at a time: each is computed only when shown, so a first load does not wait for both (on a
1M-result store the per-example scatter and table took a fifth of it; docs/dashboard.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import altair as alt
import pandas as pd
import streamlit as st

import db
from dashboard import _format as fmt
from dashboard import _links as links
from dashboard import _store as store
from dashboard import _threshold as threshold

PAGE = "compare"
PAGE_SIZE = 25
ORDERS = {"abs_desc": "largest |A - B| first", "diff_desc": "A better than B first (A - B descending)",
          "diff_asc": "B better than A first (A - B ascending)", "row": "dataset order"}
VIEWS = {"metrics": "Per metric", "examples": "Per example"}
VIEW_STATE = ("cmp_metric", "cmp_order", "cmp_thr", "cmp_flips", "cmp_category", "cmp_page", "cmp_box", "cmp_ex",
              "cmp_slices")  # re-seeded from the link when the view changes
EXAMPLE_PARAMS = ("metric", "order", "thr", "flips", "category", "page", "box")  # the per-example view's state
NOT_SCORED = ("Not yet scored: these are plain means and counts computed from the stored values. "
              "Run `python -m evaluator compare A B` for confidence intervals and Holm-corrected p-values.")


def parse_box(text: Optional[str]) -> Optional[db.Box]:
    """"a_lo:a_hi:b_lo:b_hi" (any part may be empty) -> db.Box; None when absent or malformed."""
    if not text:
        return None
    parts = text.split(":")
    if len(parts) != 4:
        return None
    vals = []
    for s in parts:
        try:
            v = float(s) if s.strip() else None
        except ValueError:
            return None
        vals.append(v if v is None or math.isfinite(v) else None)
    return db.Box(*vals) if any(v is not None for v in vals) else None


def box_param(box: Optional[db.Box]) -> Optional[str]:
    if box is None:
        return None
    return ":".join("" if v is None else f"{v:.6g}" for v in (box.a_lo, box.a_hi, box.b_lo, box.b_hi))


def summary_table(comp: dict[str, Any], slice_rows: bool) -> pd.DataFrame:
    """The per-metric (or per-slice) table: stored rows when present, else the SQL summary."""
    stored: pd.DataFrame = comp["stored"]
    if not stored.empty:
        stored = stored[(stored["slice"] != "") if slice_rows else (stored["slice"] == "")]
    if not stored.empty:
        rows = stored
        scale = rows[["value_a", "value_b"]].abs().max(axis=1)  # each metric's differences at its own precision
        out = pd.DataFrame({
            **({"slice": rows["slice"]} if slice_rows else {}),
            "metric": rows["metric"], "kind": rows["kind"], "n": rows["n"],
            "A": rows["value_a"], "B": rows["value_b"],
            "delta (A - B)": [fmt.fmt_delta(d, s) for d, s in zip(rows["delta"], scale)],
            "95% CI of delta": [fmt.fmt_delta_ci(lo, hi, s)
                                for lo, hi, s in zip(rows["ci_low"], rows["ci_high"], scale)],
            "significance": [fmt.significance(p) for p in rows["p_holm"]],
            "p (Holm)": [fmt.fmt_p(p) for p in rows["p_holm"]], "p": [fmt.fmt_p(p) for p in rows["p_value"]],
            # a corpus-level figure has no per-example wins, ties or losses: blank, not 0 / 0 / 0
            **{c: rows[c].astype("Int64").mask(rows["kind"] == "corpus") for c in ("wins", "ties", "losses")},
            "method": rows["method"],
        })
        return out.reset_index(drop=True)
    rows = comp.get("by_slice", pd.DataFrame()) if slice_rows else comp["summary"]
    if rows.empty:
        return pd.DataFrame()
    lower = rows["higher_is_better"].eq(False)
    scale = rows[["mean_a", "mean_b"]].abs().max(axis=1)
    out = pd.DataFrame({
        **({"slice": rows["slice"]} if slice_rows else {}),
        "metric": rows["metric"], "n": rows["n"], "A": rows["mean_a"], "B": rows["mean_b"],
        "delta (A - B)": [fmt.fmt_delta(d, s) for d, s in zip(rows["mean_delta"], scale)],
        # wins: examples where A is better, whichever direction the metric goes
        "wins": rows["a_less"].where(lower, rows["a_greater"]), "ties": rows["equal"],
        "losses": rows["a_greater"].where(lower, rows["a_less"]),
        "better": ["lower" if x is False else "higher" if x is True else "higher (assumed)"
                   for x in rows["higher_is_better"]],
    })
    return out.reset_index(drop=True)


HEADLINE = ["bleu", "chrf", "rougeL", "token_f1", "exact_match", "perplexity", "confidence"]


def headline_rows(overall: pd.DataFrame, limit: int = 4) -> pd.DataFrame:
    """The few rows a meeting looks at first: corpus BLEU/chrF, then the means of the usual metrics."""
    if overall.empty:
        return overall
    rows = overall.copy()
    if "kind" in rows:  # stored comparisons: one row per metric, corpus figures where they exist
        rows = rows.sort_values("kind", key=lambda k: k.ne("corpus")).drop_duplicates("metric")
    order = {m: i for i, m in enumerate(HEADLINE)}
    rows = rows.assign(_o=rows["metric"].map(lambda m: order.get(m, len(order)))).sort_values(["_o", "metric"])
    return rows.drop(columns="_o").head(limit)


def _p_phrase(p: str) -> str:
    return p if p.startswith("<") else f"= {p}"


def _significance_colours(table: pd.DataFrame):
    """The table with its significance column in colour: green when significant, grey when not."""
    if "significance" not in table:
        return table
    return table.style.map(lambda v: "color: #1a7f37; font-weight: 600" if str(v).startswith("significant")
                           else "color: #6e7781", subset=["significance"])


def _headline_cards(overall: pd.DataFrame) -> None:
    heads = headline_rows(overall)
    for col, (_, r) in zip(st.columns(max(1, len(heads))), heads.iterrows()):
        interval = r.get("95% CI of delta")  # "[+47.2, +59.4]"
        delta = r["delta (A - B)"] + (f", 95% CI {interval}" if isinstance(interval, str) and "[" in interval else "")
        lower_better = r.get("better") == "lower" or r["metric"] == "perplexity"
        kind = f" ({r['kind']})" if "kind" in r and r["kind"] == "corpus" else ""
        counts = ("a corpus-level figure: no per-example wins, ties or losses" if kind else
                  f"wins / ties / losses: {r['wins']} / {r['ties']} / {r['losses']}")
        p = r.get("p (Holm)")
        col.metric(f"{r['metric']}{kind}: A vs B", f"{r['A']:.3g} vs {r['B']:.3g}", delta,
                   delta_color="inverse" if lower_better else "normal",
                   help=counts + ("" if p is None or p == "–" else f"; Holm-adjusted p {_p_phrase(p)}"))
        words = r.get("significance")
        if words:
            col.badge(words, color="green" if words.startswith("significant") else "gray",
                      icon=":material/check_circle:" if words.startswith("significant") else None)


def _scatter(cells: pd.DataFrame, lo: float, hi: float, metric: str) -> alt.LayerChart:
    box = alt.selection_interval(name="box", encodings=["x", "y"])
    pad = (hi - lo) * 0.05 or 0.5
    scale = alt.Scale(domain=[lo - pad, hi + pad], nice=False)
    diag = alt.Chart(pd.DataFrame({"v": [lo - pad, hi + pad]})).mark_line(color="gray", strokeDash=[4, 4]).encode(
        x=alt.X("v:Q", scale=scale), y=alt.Y("v:Q", scale=scale))
    points = alt.Chart(cells).mark_circle(opacity=0.7).encode(
        x=alt.X("value_a:Q", title=f"{metric} in run A", scale=scale),
        y=alt.Y("value_b:Q", title=f"{metric} in run B", scale=scale),
        size=alt.Size("examples:Q", title="examples", scale=alt.Scale(range=[30, 900])),
        color=alt.Color("side:N", title="", scale=alt.Scale(domain=["A higher", "equal", "B higher"],
                                                            range=["#2a9d8f", "#8d99ae", "#e76f51"])),
        tooltip=[alt.Tooltip("value_a:Q", title="A", format=".4g"), alt.Tooltip("value_b:Q", title="B", format=".4g"),
                 alt.Tooltip("examples:Q")],
    ).add_params(box)
    return alt.layer(diag, points).properties(height=420)


def _runs_header(url: str, a: int, b: int) -> tuple[dict, dict]:
    ra, rb = store.load_run(url, a) or {}, store.load_run(url, b) or {}
    for tag, r in (("A", ra), ("B", rb)):
        st.text(f"{tag}: #{r.get('id')} {r.get('name')} · model {r.get('model')} · adapter {r.get('adapter') or '-'} · "
                f"{r.get('dataset')}/{r.get('split') or '-'} · {r.get('status')}")
    if ra.get("dataset_id") != rb.get("dataset_id"):
        st.warning("The two runs are on different datasets: only examples with the same key in both are compared "
                   "(usually none).")
    return ra, rb


def _seed_widgets(url: str, p: dict[str, Any], all_runs: pd.DataFrame) -> None:
    """1. link -> widgets."""
    run_ids = [int(i) for i in all_runs["id"]]
    da, dbb = fmt.default_pair(all_runs)
    a = links.param_int(p, "a", da)
    b = links.param_int(p, "b", fmt.own_baseline(all_runs, a) if "a" in p else dbb)
    a = a if a in run_ids else da
    b = b if b in run_ids else dbb
    metrics_a = store.load_run_metrics(url, a) if a is not None else []
    metric = links.param_str(p, "metric")
    links.sync_widgets(PAGE, {
        "cmp_a": a, "cmp_b": b,
        "cmp_metric": metric if metric in metrics_a else None,
        "cmp_order": links.param_str(p, "order") if links.param_str(p, "order") in ORDERS else "abs_desc",
        "cmp_thr": links.param_float(p, "thr"),
        "cmp_flips": links.param_bool(p, "flips"),
        "cmp_category": links.param_str(p, "category"),
        "cmp_page": max(1, links.param_int(p, "page", 1) or 1),
        "cmp_ex": links.param_int(p, "ex"),
        "cmp_box": parse_box(links.param_str(p, "box")),
        "cmp_slices": links.param_bool(p, "slices"),
        "cmp_view": _default_view(p),
    })


def _default_view(p: dict[str, Any]) -> str:
    """The link's view; without one, per example when the link sets the examples' own parameters."""
    view = links.param_str(p, "view")
    if view in VIEWS:
        return view
    return "examples" if any(links.param_str(p, k) not in (None, "0") for k in EXAMPLE_PARAMS if k != "metric") \
        else "metrics"


def _pick_runs(all_runs: pd.DataFrame) -> tuple[int, int]:
    """2. the two runs (stops the page when they are the same run)."""
    run_ids = [int(i) for i in all_runs["id"]]
    label = fmt.run_label(all_runs)
    k1, k2 = st.columns(2)
    a = k1.selectbox("Run A (candidate)", run_ids, key="cmp_a", format_func=label,
                     on_change=links.baseline_follower(all_runs, "cmp_a", "cmp_b"))
    b = k2.selectbox("Run B (baseline)", run_ids, key="cmp_b", format_func=label)
    if a == b:
        st.warning("Choose two different runs.")
        links.write_params({"a": a, "b": b}, page=PAGE)
        st.stop()
    return a, b


def _per_metric(url: str, a: int, b: int) -> bool:
    """The per-metric summary, and per slice when asked. Returns whether the slice table is open."""
    comp = store.load_comparison(url, a, b)
    st.subheader("Per metric")
    if comp["stored"].empty:
        st.info(NOT_SCORED, icon=":material/info:")
    overall = summary_table(comp, slice_rows=False)
    num = st.column_config.NumberColumn(format="%.4g")
    cfg = {c: num for c in ("A", "B")}
    if overall.empty:
        st.caption("The two runs share no scored example.")
    else:
        _headline_cards(overall)
        st.dataframe(_significance_colours(overall), hide_index=True, width="stretch", height="content",
                     column_config=cfg)
    stored_slices = not comp["stored"].empty and (comp["stored"]["slice"] != "").any()
    by_slice = st.toggle("Per slice (category)", key="cmp_slices",
                         help=None if stored_slices else "Computed from the stored scores when you ask for it.")
    if by_slice:
        if not stored_slices:
            comp = dict(comp, by_slice=store.load_slices(url, a, b))
            st.caption("No per-slice comparison is stored: plain means and counts per category.")
        slices = summary_table(comp, slice_rows=True)
        if slices.empty:
            st.caption("No slice (category) figures.")
        else:
            st.dataframe(_significance_colours(slices), hide_index=True, width="stretch", column_config=cfg)
    return by_slice


def _scatter_region(url: str, a: int, b: int, metric: str) -> tuple[dict[str, Any], Optional[db.Box]]:
    """A's vs B's value of ``metric`` per example; a dragged rectangle selects a region. Returns the grid
    (its value range sets the default threshold) and the region."""
    grid = store.load_grid(url, a, b, metric)
    box: Optional[db.Box] = st.session_state.get("cmp_box")
    if grid["n"] == 0:
        st.caption("No example has this metric in both runs.")
    else:
        cells = grid["cells"].copy()
        if grid["width"]:  # binned: draw each cell at its centre
            cells["value_a"] += grid["width"] / 2
            cells["value_b"] += grid["width"] / 2
        cells["side"] = ["A higher" if x > y else "B higher" if y > x else "equal"
                         for x, y in zip(cells["value_a"], cells["value_b"])]
        how = (f"binned on a {60}x{60} grid" if grid["width"] else "exact values")
        st.caption(f"{fmt.count(grid['n'], 'example')} scored in both runs ({how}; dot size = examples). "
                   "Drag a rectangle to list the examples in it.")
        nonce = st.session_state.setdefault("_cmp_chart_nonce", 0)
        event = st.altair_chart(_scatter(cells, grid["lo"], grid["hi"], metric), on_select="rerun",
                                key=f"cmp_scatter_{nonce}", selection_mode="box", width="stretch")
        region = links.selected_interval(event, "box")
        if region:
            (a_lo, a_hi), (b_lo, b_hi) = region.get("value_a", (None, None)), region.get("value_b", (None, None))
            box = db.Box(a_lo, a_hi, b_lo, b_hi)
    if box is not None:
        st.text(f"Region: A in [{fmt.fmt_num(box.a_lo)}, {fmt.fmt_num(box.a_hi)}], "
                f"B in [{fmt.fmt_num(box.b_lo)}, {fmt.fmt_num(box.b_hi)}]")
        if st.button("Clear region", key="cmp_clear"):
            st.session_state["_cmp_chart_nonce"] = st.session_state.get("_cmp_chart_nonce", 0) + 1
            box = None
    st.session_state["cmp_box"] = box
    return grid, box


@dataclass
class _ExampleFilters:
    order: str
    thr: Optional[float]  # as typed (None: the default threshold)
    threshold: float
    flips: bool
    category: Optional[str]


def _example_filters(url: str, a: int, dataset_id: int, metric: str, grid: dict[str, Any]) -> _ExampleFilters:
    stored = store.load_thresholds(url, dataset_id).get(metric)
    default_thr = stored["threshold"] if stored else threshold.proposed(
        (grid["lo"], grid["hi"]) if grid["lo"] is not None else None)
    f1, f2, f3, f4 = st.columns([3, 1, 1, 2], vertical_alignment="bottom")
    order = f1.selectbox("Order", list(ORDERS), key="cmp_order", format_func=ORDERS.get)
    thr = f2.number_input("Pass threshold", key="cmp_thr", format="%g", placeholder=f"{default_thr:g}",
                          help=("The dataset's stored pass threshold" if stored else
                                "No pass threshold is stored for this dataset and metric: proposed") +
                               f" {default_thr:g} (error analysis and history use the same). A flip is a pass in "
                               "one run and not in the other.")
    flips = f3.toggle("Only flips", key="cmp_flips")
    categories = store.load_categories(url, a)
    if st.session_state.get("cmp_category") not in (None, *categories):
        st.session_state["cmp_category"] = None
    category = f4.selectbox("Category", [None, *categories], key="cmp_category", placeholder="(any)",
                            format_func=lambda c: "(any)" if c is None else c)
    return _ExampleFilters(order, thr, default_thr if thr is None else float(thr), flips, category)


def _example_table(url: str, a: int, b: int, metric: str, box: Optional[db.Box], f: _ExampleFilters,
                   scale: Optional[float]) -> int:
    """The examples of the selection, one page at a time, sorted as asked (differences at the precision of
    a metric about ``scale`` in size). Returns the page shown."""
    state = (a, b, metric, f.order, f.threshold, f.flips, f.category, box)
    if st.session_state.get("_cmp_state") not in (None, state):
        st.session_state["cmp_page"] = 1
    st.session_state["_cmp_state"] = state
    page = max(1, int(st.session_state.get("cmp_page") or 1))

    def load(page: int) -> dict[str, Any]:
        return store.load_compare_examples(url, a, b, metric, f.order, f.threshold, f.flips, box, f.category,
                                           page - 1, PAGE_SIZE)
    data = load(page)
    pages = max(1, math.ceil(data["total"] / PAGE_SIZE))
    if page > pages:
        page = st.session_state["cmp_page"] = pages
        data = load(page)
    g1, g2 = st.columns([3, 1], vertical_alignment="bottom")
    g1.markdown(f"**{data['total']:,}** {'example' if data['total'] == 1 else 'examples'} · page {page} of {pages}")
    page = g2.number_input("Page", min_value=1, step=1, key="cmp_page")
    rows: pd.DataFrame = data["rows"]
    ids: list[int] = []
    if rows.empty:
        st.info("No example matches.")
    else:
        ids = [int(i) for i in rows["example_id"]]
        passes_a, passes_b = rows["value_a"] >= f.threshold, rows["value_b"] >= f.threshold
        table = pd.DataFrame({
            "example": rows["example_id"], "row": rows["row_index"], "category": rows["category"],
            "A": rows["value_a"], "B": rows["value_b"], "A - B": rows["diff"], "flip": passes_a != passes_b,
            "verdicts A": rows["verdicts_a"], "verdicts B": rows["verdicts_b"],
            "reference": rows["reference"], "output A": rows["output_a"], "output B": rows["output_b"],
            "prompt": rows["prompt_text"],
        })
        num = st.column_config.NumberColumn(format="%.4g")
        decimals = fmt.delta_decimals(scale)
        st.dataframe(table, hide_index=True, width="stretch", key="cmp_table", selection_mode="single-row",
                     on_select=links.row_picker("cmp_table", "_cmp_page_ids", "cmp_ex"),
                     column_config={"A": num, "B": num,  # a signed difference, at the metric's precision
                                    "A - B": st.column_config.NumberColumn(format=f"%+.{decimals}f", width="small")})
    st.session_state["_cmp_page_ids"] = ids
    return page


def _open_example(url: str, a: int, b: int) -> Optional[int]:
    ids = st.session_state.get("_cmp_page_ids", [])
    options = [None, *ids]
    if st.session_state.get("cmp_ex") not in options:
        options.append(st.session_state.get("cmp_ex"))
    ex = st.selectbox("Open example (or select a row above)", options, key="cmp_ex", placeholder="(none)",
                      format_func=lambda i: "(none)" if i is None else f"example {i}")
    if ex is not None:
        _example_dialog(url, a, b, int(ex))
    return ex


def _close_example() -> None:
    st.session_state["cmp_ex"] = None


@st.dialog("Example, A and B side by side", width="large", on_dismiss=_close_example)
def _example_dialog(url: str, a: int, b: int, example_id: int) -> None:
    """The opened example over the page, where the reader is (a long page would put it 3,000 px below)."""
    _example(url, a, b, example_id)


def main() -> None:
    url = store.require_store()
    p = links.params()
    all_runs = store.load_run_index(url)
    if len(all_runs) < 2:
        st.title("Compare runs")
        st.info("Comparing needs two runs in the store; this one has fewer.")
        st.stop()
    _seed_widgets(url, p, all_runs)
    st.title("Compare runs")
    a, b = _pick_runs(all_runs)
    _runs_header(url, a, b)
    view = st.segmented_control("Show", list(VIEWS), key="cmp_view", required=True, format_func=VIEWS.get,
                                on_change=links.forget(VIEW_STATE))
    if view == "metrics":
        state = {"slices": _per_metric(url, a, b), **{k: p.get(k) for k in EXAMPLE_PARAMS}}  # kept for the other view
        _judgments(url, a, b)
        ex = st.session_state.get("cmp_ex")  # from the link, or a row picked in the other view
        if ex is not None:
            _example_dialog(url, a, b, int(ex))
        state["ex"] = ex
    else:
        state = {"slices": links.param_bool(p, "slices"), **_per_example(url, a, b, all_runs)}

    # widgets -> link (values equal to the defaults are left out, so a plain link stays plain)
    da, dbb = fmt.default_pair(all_runs)
    state = {"a": a if a != da else None, "b": b if (a, b) != (da, dbb) else None, **state}  # b goes with a
    state["view"] = None if view == _default_view(links.clean_params(state)) else view
    links.write_params(state, page=PAGE)


def _per_example(url: str, a: int, b: int, all_runs: pd.DataFrame) -> dict[str, Any]:
    """The per-example view: a metric's scatter, the examples by difference, one opened. Returns its link state."""
    shared_metrics = [m for m in store.load_run_metrics(url, a) if m in store.load_run_metrics(url, b)]
    if not shared_metrics:
        st.info("The two runs have no metric in common.")
        return {}
    if st.session_state.get("cmp_metric") not in shared_metrics:
        st.session_state["cmp_metric"] = shared_metrics[0]
    metric = st.selectbox("Metric", shared_metrics, key="cmp_metric")
    grid, box = _scatter_region(url, a, b, metric)
    dataset_id = int(all_runs.loc[all_runs["id"] == a, "dataset_id"].iloc[0])
    f = _example_filters(url, a, dataset_id, metric, grid)
    scale = max(abs(grid["lo"]), abs(grid["hi"])) if grid["lo"] is not None else None
    page = _example_table(url, a, b, metric, box, f, scale)
    ex = _open_example(url, a, b)
    return {"metric": metric if metric != shared_metrics[0] else None,
            "order": f.order if f.order != "abs_desc" else None, "thr": f.thr, "flips": f.flips,
            "category": f.category, "page": page if page > 1 else None, "box": box_param(box), "ex": ex}


def _pct(x: Any) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}%"


def judgment_table(judged: pd.DataFrame) -> pd.DataFrame:
    """The judges' verdicts on A against B, one row per judge config, as the compare page shows them."""
    rows = []
    for _, j in judged.iterrows():
        ci = "" if j["ci_low"] is None or pd.isna(j["ci_low"]) else f" [{j['ci_low']:.1f}, {j['ci_high']:.1f}]"
        pc = j["position_consistency"]
        rows.append({"judge": j["judge"], "A wins (95% CI)": _pct(j["win_rate"]) + ci,
                     "± s.e.": "–" if pd.isna(j["standard_error"]) else f"{j['standard_error']:.1f}",
                     "length-controlled": _pct(j["lc_win_rate"]), "n": int(j["n"]),
                     "W / T / L": f"{j['wins']} / {j['ties']} / {j['losses']}",
                     "consistent": "–" if pc is None or pd.isna(pc) else f"{100 * pc:.0f}%",
                     "failures": int(j["failures"]), "mode": j["mode"]})
    return pd.DataFrame(rows)


def rating_table(ra: pd.DataFrame, rb: pd.DataFrame) -> pd.DataFrame:
    """Single-answer ratings (1-10) of A and B side by side, one row per judge config that rated either."""
    def cell(r) -> str:
        if r is None or r["mean_score"] is None or pd.isna(r["mean_score"]):
            return "–"
        ci = "" if pd.isna(r["ci_low"]) else f" [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
        return f"{r['mean_score']:.2f}{ci} (n {int(r['n'])})"

    keys = list(dict.fromkeys([*ra.get("judge_key", []), *rb.get("judge_key", [])]))
    rows = []
    for k in keys:
        x = ra[ra["judge_key"] == k].iloc[0] if not ra.empty and k in set(ra["judge_key"]) else None
        y = rb[rb["judge_key"] == k].iloc[0] if not rb.empty and k in set(rb["judge_key"]) else None
        rows.append({"judge": (x if x is not None else y)["judge"], "A: mean rating (95% CI)": cell(x),
                     "B: mean rating (95% CI)": cell(y)})
    return pd.DataFrame(rows)


def _judgments(url: str, a: int, b: int) -> None:
    judged = store.load_judgments(url, a, b)
    st.subheader("Preference judgments")
    rated = rating_table(store.load_ratings_of_run(url, a), store.load_ratings_of_run(url, b))
    if not rated.empty:
        st.caption("Single-answer grading: each answer rated 1 to 10 on its own by the judge.")
        st.dataframe(rated, hide_index=True, width="stretch")
    if judged.empty:
        st.caption(f"No judge has compared these runs. `python -m evaluator judge {a} --against {b} --judge SPEC` "
                   "asks one (docs/judging.md).")
        return
    st.caption("A wins: the share of examples where the judge prefers A's answer (ties count half; both orders "
               "averaged where judged both ways). Length-controlled: the same at equal answer lengths. Consistent: "
               "the share of examples where swapping the answers did not change the verdict. Failures: replies "
               "without a verdict.")
    st.dataframe(judgment_table(judged), hide_index=True, width="stretch")


def _example(url: str, a: int, b: int, example_id: int) -> None:
    da, dbb = store.load_detail(url, a, example_id), store.load_detail(url, b, example_id)
    d = da or dbb
    if d is None:
        st.warning(f"Example {example_id} is in neither run.")
        return
    st.subheader(f"Example {example_id}")
    st.text("prompt")
    prompt = "\n\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in d["messages"])
    st.code(prompt or "(no prompt)", language=None, wrap_lines=True)
    c0, c1, c2 = st.columns(3)
    c0.text("reference")
    c0.code(d["reference"] if d["reference"] is not None else "(no reference)", language=None, wrap_lines=True)
    for col, tag, det, run in ((c1, "A", da, a), (c2, "B", dbb, b)):
        col.text(f"output {tag} (run #{run})")
        if det is None:
            col.caption("not in this run")
            continue
        col.code(det["output"], language=None, wrap_lines=True)
        col.dataframe(pd.DataFrame([{"metric": k, "value": v} for k, v in det["metrics"].items()]),
                      hide_index=True, width="stretch", height="content")
        col.page_link(links.BROWSER_PAGE, label=f"Open in the browser ({tag})", icon=":material/open_in_new:",
                      query_params={"run": str(run), "ex": str(example_id)})
    _example_judgments(url, a, b, example_id)


def _example_judgments(url: str, a: int, b: int, example_id: int) -> None:
    judged = store.load_example_judgments(url, a, b, example_id)
    if judged.empty:
        return
    st.text("judges")
    for _, j in judged.iterrows():
        with st.expander(f"{j['judge']} ({j['mode']}): {fmt.verdict_words(j, a)}"):
            st.code(j["reply"] or "(empty reply)", language=None, wrap_lines=True)


if __name__ == "__main__":  # st.navigation runs a page as __main__; tests import it for its helpers
    with store.guard():
        main()
