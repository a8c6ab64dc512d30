"""Runs and trends: every run with counts and headline metrics (95% CIs), model versions over time,
and the pair of runs to compare.

Query parameters: model (substring of model/name/adapter), dataset (id), since, until (YYYY-MM-DD),
show (metric columns, repeated), tds (trend dataset id), metric (trend metric), a, b (runs to compare),
rejected (a run whose rejected dataset rows are listed).
"""
from __future__ import annotations

import datetime as dt

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import _format as fmt
from dashboard import _links as links
from dashboard import _store as store

PAGE = "runs"


def _date(p, key):
    text = links.param_str(p, key)
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _runs_table(runs: pd.DataFrame, aggs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    table = runs.assign(dataset=runs["dataset"] + "/" + runs["split"])[
        ["id", "name", "model", "adapter", "dataset", "created_at", "status", "evaluated", "rejected", "failed",
         "human_pass", "reviewed", "error"]].copy()
    head = fmt.headline(aggs)
    for m in metrics:
        sub = head[head["metric"] == m].set_index("run_id")
        table[m] = table["id"].map(sub["value"])
        table[f"{m} 95% CI"] = [fmt.fmt_ci(sub["value"].get(i), sub["ci_low"].get(i), sub["ci_high"].get(i))
                                if i in sub.index else "–" for i in table["id"]]
    return table


def _open_from_table() -> None:
    sel = st.session_state.get("runs_table")
    ids = st.session_state.get("_runs_table_ids", [])
    rows = sel.selection.rows if sel is not None else []
    if rows and rows[0] < len(ids):
        st.session_state["runs_open"] = ids[rows[0]]


def _trend_chart(data: pd.DataFrame, metric: str) -> alt.LayerChart:
    pick = alt.selection_point(name="pick", fields=["run_id"], on="click", clear="dblclick")
    base = alt.Chart(data).encode(
        x=alt.X("created_at:T", title="run date"),
        color=alt.Color("family:N", title="model family"),
    )
    band = base.mark_area(opacity=0.15).encode(y=alt.Y("ci_low:Q", title=metric), y2="ci_high:Q")
    rule = base.mark_rule(opacity=0.5).encode(y="ci_low:Q", y2="ci_high:Q")
    line = base.mark_line().encode(y=alt.Y("value:Q", title=metric))
    tooltip = [alt.Tooltip("run:N", title="run"), alt.Tooltip("family:N"), alt.Tooltip("created_at:T", title="date"),
               alt.Tooltip("value:Q", format=".4g"), alt.Tooltip("ci:N", title="95% CI"),
               alt.Tooltip("run_id:Q", title="run id")]
    points = base.mark_point(filled=True, size=90).encode(
        y="value:Q", tooltip=tooltip,
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.6)),
    ).add_params(pick)
    return alt.layer(band, rule, line, points).properties(height=320)


def _rejected_rows(url: str, run_id: int, run_label: str) -> None:
    """The rows of the run's dataset that did not become examples, each with its reason (shown as text)."""
    rows = store.load_rejected(url, run_id)
    st.subheader(f"Rejected dataset rows of {run_label}")
    if rows.empty:
        st.info("This run's dataset had no rejected rows.")
        return
    st.caption(f"{len(rows)} rows did not become examples; each reason gives the row and, for JSONL, the line. "
               f"The same list: `python -m evaluator rejected {run_id}`.")
    st.dataframe(rows, hide_index=True, width="stretch", key="runs_rejected", column_config={
        "row_index": st.column_config.NumberColumn("row", format="%d"),
        "reason": st.column_config.TextColumn("reason", width="large"),
        "raw": st.column_config.TextColumn("the row as written", width="large"),
    })


def main() -> None:
    url = store.require_store()
    p = links.params()

    # 1. link -> widgets
    datasets = store.load_datasets(url)
    ds_ids = [d["id"] for d in datasets]
    ds_label = {d["id"]: f"{d['name']} / {d['split'] or '-'} ({d['n_runs']} runs)" for d in datasets}
    everything = store.load_runs(url)
    all_runs, all_aggs = everything["runs"], everything["aggregates"]
    if all_runs.empty:
        st.title("Runs and trends")
        st.info("This store has no runs yet. Evaluate a model with `python -m evaluator run ...` "
                "or fill a demo store with `python -m evaluator demo`.")
        st.stop()
    metric_names = sorted(all_aggs["metric"].unique()) if not all_aggs.empty else []
    run_ids = [int(i) for i in all_runs["id"]]
    default_a, default_b = fmt.default_pair(all_runs)
    a, b = links.param_int(p, "a", default_a), links.param_int(p, "b", default_b)
    shown = [m for m in links.param_list(p.get("show")) if m in metric_names] or metric_names[:4]
    dataset = links.param_int(p, "dataset")
    trend_ds = links.param_int(p, "tds") or dataset or int(all_runs.iloc[0]["dataset_id"])
    trend_metric = links.param_str(p, "metric")
    links.sync_widgets(PAGE, {
        "runs_model": links.param_str(p, "model", ""),
        "runs_dataset": dataset if dataset in ds_ids else None,
        "runs_since": _date(p, "since"),
        "runs_until": _date(p, "until"),
        "runs_show": shown,
        "trend_dataset": trend_ds if trend_ds in ds_ids else (ds_ids[0] if ds_ids else None),
        "trend_metric": trend_metric if trend_metric in metric_names else (metric_names[0] if metric_names else None),
        "runs_a": a if a in run_ids else None,
        "runs_b": b if b in run_ids else None,
    })

    # 2. widgets
    st.title("Runs and trends")
    c1, c2, c3, c4 = st.columns([2, 2, 1, 1])
    model = c1.text_input("Model, run or adapter contains", key="runs_model")
    dataset = c2.selectbox("Dataset", [None, *ds_ids], key="runs_dataset", placeholder="All datasets",
                           format_func=lambda i: "All datasets" if i is None else ds_label.get(i, f"#{i}"))
    since = c3.date_input("From", key="runs_since", format="YYYY-MM-DD")
    until = c4.date_input("Until", key="runs_until", format="YYYY-MM-DD")
    show = st.multiselect("Headline metrics (value and 95% CI)", metric_names, key="runs_show")

    # 3. data (one cached load_runs for every filter: the list of runs is small, its counts are not)
    runs, aggs = all_runs, all_aggs
    needle = model.strip().lower()
    if needle:
        text = (runs["name"].str.lower() + "\n" + runs["model"].str.lower() + "\n"
                + runs["adapter"].fillna("").str.lower())
        runs = runs[text.str.contains(needle, regex=False)]
    if dataset is not None:
        runs = runs[runs["dataset_id"] == dataset]
    if since is not None:
        runs = runs[runs["created_at"] >= pd.Timestamp(since)]
    if until is not None:
        runs = runs[runs["created_at"] < pd.Timestamp(until) + pd.Timedelta(days=1)]

    # 4. render
    st.subheader(f"{len(runs)} runs")
    running = runs[runs["status"] == "running"]
    if not running.empty:
        st.info(f"{len(running)} run(s) still being written: their counts grow as results arrive "
                "and their metrics appear when they finish.", icon=":material/hourglass_top:")
    table = _runs_table(runs, aggs, show)
    st.session_state["_runs_table_ids"] = [int(i) for i in table["id"]]
    st.dataframe(
        table, hide_index=True, key="runs_table", on_select=_open_from_table, selection_mode="single-row",
        width="stretch",
        column_config={
            "id": st.column_config.NumberColumn("run", format="%d"),
            "created_at": st.column_config.DatetimeColumn("date", format="YYYY-MM-DD HH:mm"),
            "evaluated": st.column_config.NumberColumn("evaluated", help="results stored"),
            "rejected": st.column_config.NumberColumn("rejected", help="dataset rows that did not become examples"),
            "failed": st.column_config.NumberColumn("failed", help="examples whose generation raised an error"),
            "human_pass": st.column_config.ProgressColumn(
                "human pass rate", min_value=0.0, max_value=1.0, format="percent",
                help="share of reviewed examples whose reviewers' latest verdicts are mostly 'pass'"),
            "reviewed": st.column_config.NumberColumn("reviewed", help="examples with at least one verdict"),
            **{m: st.column_config.NumberColumn(m, format="%.4g") for m in show},
        },
    )
    open_ids = [int(i) for i in runs["id"]]
    label = fmt.run_label(all_runs)
    if st.session_state.get("runs_open") not in open_ids:
        st.session_state["runs_open"] = open_ids[0] if open_ids else None
    rejected_of = links.param_int(p, "rejected")
    if rejected_of in open_ids and st.session_state.get("_runs_rejected_link") != rejected_of:
        st.session_state["runs_open"] = rejected_of  # a link to a run's rejected rows opens that run
        st.session_state["_runs_rejected_link"] = rejected_of
    o1, o2, o3 = st.columns([3, 2, 2], vertical_alignment="bottom")
    chosen = o1.selectbox("Run (or select a row above)", open_ids, key="runs_open", format_func=label)
    if chosen is not None:
        o2.page_link(links.BROWSER_PAGE, label="Open in the example browser", icon=":material/open_in_new:",
                     query_params={"run": str(chosen)})
        n_rejected = int(all_runs.loc[all_runs["id"] == chosen, "rejected"].iloc[0])
        if n_rejected:
            o3.page_link(links.RUNS_PAGE, label=f"{n_rejected} rejected dataset rows", icon=":material/block:",
                         query_params={"rejected": str(chosen)})
    if rejected_of is not None and rejected_of == chosen:
        _rejected_rows(url, chosen, label(chosen))

    st.subheader("Model versions over time")
    t1, t2 = st.columns(2)
    trend_ds = t1.selectbox("Dataset", ds_ids, key="trend_dataset",
                            format_func=lambda i: ds_label.get(i, f"#{i}"))
    trend_metric = t2.selectbox("Metric", metric_names, key="trend_metric")
    on_ds = all_runs[(all_runs["dataset_id"] == trend_ds) & (all_runs["status"] == "finished")]
    head = fmt.headline(all_aggs)
    data = head[(head["metric"] == trend_metric) & head["run_id"].isin(on_ds["id"])].merge(
        on_ds[["id", "name", "family", "created_at"]], left_on="run_id", right_on="id")
    if data.empty:
        st.info("No finished run on this dataset has this metric yet.")  # failed/running runs are left out
    else:
        data = data.rename(columns={"name": "run"}).sort_values("created_at")
        data["ci"] = [fmt.fmt_ci(v, lo, hi) for v, lo, hi in zip(data["value"], data["ci_low"], data["ci_high"])]
        data["ci_low"] = data["ci_low"].fillna(data["value"])
        data["ci_high"] = data["ci_high"].fillna(data["value"])
        data = data[["run_id", "run", "family", "created_at", "value", "ci_low", "ci_high", "ci"]]
        st.caption("A line per model family, bands are 95% confidence intervals. Click a point to open that run.")
        event = st.altair_chart(_trend_chart(data, trend_metric), on_select="rerun", key="trend_chart",
                                selection_mode="pick", width="stretch")
        picked = links.selected_values(event, "pick", "run_id")
        if picked:
            st.switch_page(links.BROWSER_PAGE, query_params={"run": str(int(picked[0]))})

    st.subheader("Compare two runs")
    k1, k2, k3 = st.columns([3, 3, 2], vertical_alignment="bottom")
    a = k1.selectbox("Run A (candidate)", [None, *run_ids], key="runs_a", format_func=label,
                      placeholder="choose run A")
    b = k2.selectbox("Run B (baseline)", [None, *run_ids], key="runs_b", format_func=label,
                      placeholder="choose run B")
    if a is not None and b is not None and a != b:
        k3.page_link(links.COMPARE_PAGE, label="Compare A with B", icon=":material/compare_arrows:",
                     query_params={"a": str(a), "b": str(b)})
    else:
        k3.caption("Pick two different runs.")

    # widgets -> link
    links.write_params({
        "model": model.strip(), "dataset": dataset, "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "show": show if show != metric_names[:4] else None,
        "tds": trend_ds if trend_ds != (dataset or int(all_runs.iloc[0]["dataset_id"])) else None,
        "metric": trend_metric if trend_metric != (metric_names[0] if metric_names else None) else None,
        "a": a if a != default_a else None, "b": b if b != default_b else None,
        "rejected": rejected_of if rejected_of is not None and rejected_of == chosen else None,
    }, page=PAGE)


if __name__ == "__main__":  # st.navigation runs a page as __main__; tests import it for its helpers
    with store.guard():
        main()
