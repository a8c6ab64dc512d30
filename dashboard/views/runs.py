"""Runs and trends: every run with counts and headline metrics (95% CIs), model versions over time,
and the pair of runs to compare.

Query parameters: model (substring of model/name/adapter), dataset (id), since, until (YYYY-MM-DD),
show (metric columns, repeated), tds (trend dataset id), metric (trend metric), a, b (runs to compare),
rejected (a run whose rejected dataset rows are listed).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Optional

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
    """Run, name and the headline metrics first (value and 95% CI in one cell), then what was evaluated
    (models, adapters and datasets as short labels: the full paths are in the run's detail) and counts."""
    table = runs[["id", "name"]].copy()
    head = fmt.headline(aggs)
    for m in metrics:
        sub = head[head["metric"] == m].set_index("run_id")
        table[m] = [fmt.fmt_ci(sub["value"].get(i), sub["ci_low"].get(i), sub["ci_high"].get(i))
                    if i in sub.index else "–" for i in table["id"]]
    table["dataset"] = runs["dataset"].map(fmt.source_label) + "/" + runs["split"].fillna("").replace("", "-")
    table["model"] = runs["model"].map(fmt.source_label)
    table["adapter"] = runs["adapter"].map(fmt.source_label)
    for c in ("created_at", "status", "evaluated", "rejected", "failed", "human_pass", "reviewed", "error"):
        table[c] = runs[c]
    return table


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
    st.caption(f"{fmt.count(len(rows), 'row')} did not become examples; each reason gives the row and, for JSONL, the line. "
               f"The same list: `python -m evaluator rejected {run_id}`.")
    st.dataframe(rows, hide_index=True, width="stretch", key="runs_rejected", column_config={
        "row_index": st.column_config.NumberColumn("row", format="%d"),
        "reason": st.column_config.TextColumn("reason", width="large"),
        "raw": st.column_config.TextColumn("the row as written", width="large"),
    })


@dataclass
class _Store:
    """What the page reads before drawing anything: datasets, every run with counts, aggregates."""
    datasets: list[dict[str, Any]]
    runs: pd.DataFrame
    aggs: pd.DataFrame

    @property
    def ds_ids(self) -> list[int]:
        return [d["id"] for d in self.datasets]

    def ds_label(self, ds_id: Optional[int]) -> str:
        labels = fmt.dataset_labels(self.datasets)
        if ds_id not in labels:
            return "All datasets" if ds_id is None else f"#{ds_id}"
        return labels[ds_id]

    @property
    def metrics(self) -> list[str]:
        return sorted(self.aggs["metric"].unique()) if not self.aggs.empty else []

    @property
    def run_ids(self) -> list[int]:
        return [int(i) for i in self.runs["id"]]

    @property
    def latest_dataset(self) -> int:
        return int(self.runs.iloc[0]["dataset_id"])


@dataclass
class _Filters:
    model: str
    dataset: Optional[int]
    since: Optional[dt.date]
    until: Optional[dt.date]
    show: list[str]


def _load(url: str) -> _Store:
    everything = store.load_runs(url)
    data = _Store(store.load_datasets(url), everything["runs"], everything["aggregates"])
    if data.runs.empty:
        st.title("Runs and trends")
        st.info("This store has no runs yet. Evaluate a model with `python -m evaluator run ...` "
                "or fill a demo store with `python -m evaluator demo`.")
        st.stop()
    return data


def _seed_widgets(p: dict[str, Any], data: _Store) -> None:
    """1. link -> widgets."""
    metrics, run_ids, ds_ids = data.metrics, data.run_ids, data.ds_ids
    default_a, default_b = fmt.default_pair(data.runs)
    a = links.param_int(p, "a", default_a)
    b = links.param_int(p, "b", fmt.own_baseline(data.runs, a) if "a" in p else default_b)
    dataset = links.param_int(p, "dataset")
    trend_ds = links.param_int(p, "tds") or dataset or data.latest_dataset
    trend_metric = links.param_str(p, "metric")
    links.sync_widgets(PAGE, {
        "runs_model": links.param_str(p, "model", ""),
        "runs_dataset": dataset if dataset in ds_ids else None,
        "runs_since": _date(p, "since"),
        "runs_until": _date(p, "until"),
        "runs_show": [m for m in links.param_list(p.get("show")) if m in metrics] or metrics[:4],
        "trend_dataset": trend_ds if trend_ds in ds_ids else (ds_ids[0] if ds_ids else None),
        "trend_metric": trend_metric if trend_metric in metrics else (metrics[0] if metrics else None),
        "runs_a": a if a in run_ids else None,
        "runs_b": b if b in run_ids else None,
    })


def _filter_widgets(data: _Store) -> _Filters:
    """2. widgets."""
    c1, c2, c3, c4 = st.columns([2, 2, 1, 1])
    return _Filters(
        model=c1.text_input("Model, run or adapter contains", key="runs_model"),
        dataset=c2.selectbox("Dataset", [None, *data.ds_ids], key="runs_dataset", placeholder="All datasets",
                             format_func=data.ds_label),
        since=c3.date_input("From", key="runs_since", format="YYYY-MM-DD"),
        until=c4.date_input("Until", key="runs_until", format="YYYY-MM-DD"),
        show=st.multiselect("Headline metrics (value and 95% CI)", data.metrics, key="runs_show"),
    )


def _filtered(runs: pd.DataFrame, f: _Filters) -> pd.DataFrame:
    """3. data: one cached ``load_runs`` serves every filter (the list of runs is small, its counts are not)."""
    needle = f.model.strip().lower()
    if needle:
        text = (runs["name"].str.lower() + "\n" + runs["model"].str.lower() + "\n"
                + runs["adapter"].fillna("").str.lower())
        runs = runs[text.str.contains(needle, regex=False)]
    if f.dataset is not None:
        runs = runs[runs["dataset_id"] == f.dataset]
    if f.since is not None:
        runs = runs[runs["created_at"] >= pd.Timestamp(f.since)]
    if f.until is not None:
        runs = runs[runs["created_at"] < pd.Timestamp(f.until) + pd.Timedelta(days=1)]
    return runs


def _runs_list(runs: pd.DataFrame, aggs: pd.DataFrame, show: list[str]) -> None:
    """4. render: the runs that match, one row each, a row click opens the run below."""
    st.subheader(fmt.count(len(runs), "run"))
    running = runs[runs["status"] == "running"]
    if not running.empty:
        st.info(f"{len(running)} run(s) still being written: their counts grow as results arrive "
                "and their metrics appear when they finish.", icon=":material/hourglass_top:")
    table = _runs_table(runs, aggs, show)
    st.session_state["_runs_table_ids"] = [int(i) for i in table["id"]]
    st.dataframe(
        table, hide_index=True, key="runs_table", selection_mode="single-row", width="stretch",
        on_select=links.row_picker("runs_table", "_runs_table_ids", "runs_open"),
        column_config={
            "id": st.column_config.NumberColumn("run", format="%d", pinned=True),
            "name": st.column_config.TextColumn("name", pinned=True),
            **{m: st.column_config.TextColumn(m, help=f"{m}: value [95% confidence interval]") for m in show},
            "model": st.column_config.TextColumn("model", help="Hub id, or the last part of a local path "
                                                                "(the full path is in the run's detail below)"),
            "created_at": st.column_config.DatetimeColumn("date", format="YYYY-MM-DD HH:mm"),
            "evaluated": st.column_config.NumberColumn("evaluated", help="results stored"),
            "rejected": st.column_config.NumberColumn("rejected", help="dataset rows that did not become examples"),
            "failed": st.column_config.NumberColumn("failed", help="examples whose generation raised an error"),
            "human_pass": st.column_config.ProgressColumn(
                "human pass rate", min_value=0.0, max_value=1.0, format="percent",
                help="share of reviewed examples whose reviewers' latest verdicts are mostly 'pass'"),
            "reviewed": st.column_config.NumberColumn("reviewed", help="examples with at least one verdict"),
        },
    )


def _open_run(url: str, p: dict[str, Any], runs: pd.DataFrame, data: _Store) -> Optional[int]:
    """The run opened below the list, with links to its examples and rejected rows. Returns the run whose
    rejected rows are listed (it goes into the link), or None."""
    open_ids = [int(i) for i in runs["id"]]
    label = fmt.run_label(data.runs)
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
        run = data.runs.loc[data.runs["id"] == chosen].iloc[0]
        st.text(f"model {run['model']} · adapter {run['adapter'] or '-'} · dataset {run['dataset']}/"
                f"{run['split'] or '-'} ({run['dataset_source'] or '-'})")  # the full paths the table shortens
        n_rejected = int(run["rejected"])
        if n_rejected:
            o3.page_link(links.RUNS_PAGE, label=f"{n_rejected} rejected dataset rows", icon=":material/block:",
                         query_params={"rejected": str(chosen)})
    if rejected_of is None or rejected_of != chosen:
        return None
    _rejected_rows(url, chosen, label(chosen))
    return rejected_of


def _trend(data: _Store) -> tuple[int, str]:
    """Model versions over time: one metric on one dataset, a line per family. Returns (dataset, metric)."""
    st.subheader("Model versions over time")
    t1, t2 = st.columns(2)
    trend_ds = t1.selectbox("Dataset", data.ds_ids, key="trend_dataset", format_func=data.ds_label)
    trend_metric = t2.selectbox("Metric", data.metrics, key="trend_metric")
    on_ds = data.runs[(data.runs["dataset_id"] == trend_ds) & (data.runs["status"] == "finished")]
    head = fmt.headline(data.aggs)
    points = head[(head["metric"] == trend_metric) & head["run_id"].isin(on_ds["id"])].merge(
        on_ds[["id", "name", "family", "created_at"]], left_on="run_id", right_on="id")
    if points.empty:
        st.info("No finished run on this dataset has this metric yet.")  # failed/running runs are left out
        return trend_ds, trend_metric
    points = points.rename(columns={"name": "run"}).sort_values("created_at")
    points["ci"] = [fmt.fmt_ci(v, lo, hi) for v, lo, hi in zip(points["value"], points["ci_low"], points["ci_high"])]
    points["ci_low"] = points["ci_low"].fillna(points["value"])
    points["ci_high"] = points["ci_high"].fillna(points["value"])
    points = points[["run_id", "run", "family", "created_at", "value", "ci_low", "ci_high", "ci"]]
    st.caption("A line per model family, bands are 95% confidence intervals. Click a point to open that run.")
    event = st.altair_chart(_trend_chart(points, trend_metric), on_select="rerun", key="trend_chart",
                            selection_mode="pick", width="stretch")
    picked = links.selected_values(event, "pick", "run_id")
    if picked:
        st.switch_page(links.BROWSER_PAGE, query_params={"run": str(int(picked[0]))})
    return trend_ds, trend_metric


def _ratings(url: str, dataset_id: int) -> None:
    """Bradley–Terry ratings of the versions a judge compared on this dataset (one table per judge)."""
    tables = store.load_ratings(url, dataset_id)
    if not tables:
        return
    st.subheader("Preference ratings")
    st.caption("Bradley–Terry ratings from every pairwise judgment between runs of this dataset, on the Elo scale "
               "(the first run in order is fixed at 1000; 95% intervals). 400 points apart: the higher one wins 10 "
               "to 1. One table per judge.")
    for judge, table in tables.items():
        shown = table.assign(
            rating=[f"{r:.0f}" for r in table["rating"]],
            interval=["–" if pd.isna(lo) else f"[{lo:.0f}, {hi:.0f}]" for lo, hi in zip(table["ci_low"], table["ci_high"])])
        st.text(judge)
        st.dataframe(shown[["run", "rating", "interval", "n"]], hide_index=True,
                     column_config={"n": st.column_config.NumberColumn("examples judged")})


def _version_ratings(url: str) -> None:
    """One Bradley–Terry rating per version from every pairwise preference: Arena votes, judges, reviewers."""
    table = store.load_version_ratings(url)
    if table.empty:
        return
    st.subheader("Preference rating per version")
    st.caption("Bradley–Terry ratings (Elo scale, the first version in order fixed at 1000, 95% intervals) from "
               "every pairwise preference in the store: blind votes in the Arena, judges' pairwise judgments, and "
               "reviewers' verdicts on the same example of two runs (pass beats fail: model error). A version is "
               "a run's name, or the model id an Arena endpoint served (serve each version under its run's name).")
    shown = table.assign(
        rating=[f"{r:.0f}" for r in table["rating"]],
        interval=["–" if pd.isna(lo) else f"[{lo:.0f}, {hi:.0f}]" for lo, hi in zip(table["ci_low"], table["ci_high"])])
    st.dataframe(shown[["version", "rating", "interval", "arena", "judges", "reviewers"]], hide_index=True,
                 column_config={"arena": st.column_config.NumberColumn("arena votes"),
                                "judges": st.column_config.NumberColumn("judged examples"),
                                "reviewers": st.column_config.NumberColumn("reviewed pairs")})
    if bool(table["smoothed"].iloc[0]):
        st.caption("One version won every meeting with another: one tie per pair was added to keep the ratings "
                   "finite.")


def _compare_pick(data: _Store) -> tuple[Optional[int], Optional[int]]:
    st.subheader("Compare two runs")
    label = fmt.run_label(data.runs)
    k1, k2, k3 = st.columns([3, 3, 2], vertical_alignment="bottom")
    a = k1.selectbox("Run A (candidate)", [None, *data.run_ids], key="runs_a", format_func=label,
                     placeholder="choose run A", on_change=links.baseline_follower(data.runs, "runs_a", "runs_b"))
    b = k2.selectbox("Run B (baseline)", [None, *data.run_ids], key="runs_b", format_func=label,
                     placeholder="choose run B")
    if a is not None and b is not None and a != b:
        k3.page_link(links.COMPARE_PAGE, label="Compare A with B", icon=":material/compare_arrows:",
                     query_params={"a": str(a), "b": str(b)})
    else:
        k3.caption("Pick two different runs.")
    return a, b


def main() -> None:
    url = store.require_store()
    p = links.params()
    data = _load(url)
    _seed_widgets(p, data)
    st.title("Runs and trends")
    f = _filter_widgets(data)
    runs = _filtered(data.runs, f)
    _runs_list(runs, data.aggs, f.show)
    rejected_of = _open_run(url, p, runs, data)
    trend_ds, trend_metric = _trend(data)
    _ratings(url, trend_ds)
    _version_ratings(url)
    a, b = _compare_pick(data)

    # widgets -> link (values equal to the defaults are left out, so a plain link stays plain)
    metrics = data.metrics
    default_a, default_b = fmt.default_pair(data.runs)
    links.write_params({
        "model": f.model.strip(), "dataset": f.dataset, "since": f.since.isoformat() if f.since else None,
        "until": f.until.isoformat() if f.until else None,
        "show": f.show if f.show != metrics[:4] else None,
        "tds": trend_ds if trend_ds != (f.dataset or data.latest_dataset) else None,
        "metric": trend_metric if trend_metric != (metrics[0] if metrics else None) else None,
        # b goes with a: a link naming only a opens b on a's own baseline
        "a": a if a != default_a else None, "b": b if (a, b) != (default_a, default_b) else None,
        "rejected": rejected_of,
    }, page=PAGE)


if __name__ == "__main__":  # st.navigation runs a page as __main__; tests import it for its helpers
    with store.guard():
        main()
