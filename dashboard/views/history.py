"""Per-example history across model versions: one example's metrics and outputs in every run of its
dataset (oldest first), the examples two versions newly broke or fixed, and flaky examples.

Query parameters: dataset (id), key (example key) or example (example id, e.g. from the browser),
family (the model family whose runs are the versions; "*" for every run of the dataset), metric,
thr (pass threshold; default: the dataset's stored one), a, b (the two versions compared: before, after), axis
(date: the chart's x axis by run date instead of version order), view (what the page shows: "example", one
example across versions; "changes", what two versions newly broke or fixed; "flaky"; default: the example when
the link names one, else the changes).

One section at a time: each is computed only when shown, so a link to one example does not wait for a
dataset-wide pass over every version's results (on a 1M-result store the three together took a second of a
first load's two; docs/dashboard.md).

A result passes when its metric is on the good side of the threshold (>= for higher-is-better
metrics, <= otherwise); flaky means scored in at least 3 versions and flipping pass/fail at least twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

import altair as alt
import pandas as pd
import streamlit as st

import db
from dashboard import _format as fmt
from dashboard import _links as links
from dashboard import _review as review
from dashboard import _store as store
from dashboard import _threshold as threshold

PAGE = "history"
ALL = "*"
VIEWS = {"example": "One example across versions", "changes": "Newly broken and fixed", "flaky": "Flaky examples"}


@store.cached
def load_dataset_runs(url: str, dataset_id: int) -> pd.DataFrame:
    rows = store.read(url, db.dataset_runs, dataset_id=dataset_id)
    df = pd.DataFrame(rows, columns=["id", "name", "family", "model", "created_at", "status", "baseline_for_id"])
    df["family"] = [fmt.family_of(n, f) for n, f in zip(df["name"], df["family"])]
    return df


@store.cached
def load_example_ref(url: str, example_id: int) -> Optional[dict[str, Any]]:
    return store.read(url, db.example_ref, example_id=example_id)


@store.cached
def load_find(url: str, dataset_id: int, text: str) -> list[dict[str, Any]]:
    return store.read(url, db.find_examples, dataset_id=dataset_id, text=text, limit=100)


@store.cached
def load_example(url: str, dataset_id: int, key: str) -> Optional[dict[str, Any]]:
    return store.read(url, db.example_by_key, dataset_id=dataset_id, key=key)


@store.cached
def load_history(url: str, dataset_id: int, key: str) -> list[dict[str, Any]]:
    return store.read(url, db.example_history, dataset_id=dataset_id, key=key)


@store.cached
def load_broken_fixed(url: str, a: int, b: int, metric: str, thr: float, hib: bool) -> dict[str, Any]:
    return store.read(url, db.broken_and_fixed, before_run_id=a, after_run_id=b, metric=metric, threshold=thr,
              higher_is_better=hib, limit=500)


@store.cached
def load_flaky(url: str, run_ids: tuple[int, ...], metric: str, thr: float, hib: bool) -> dict[str, Any]:
    return store.read(url, db.flaky_examples, run_ids=list(run_ids), metric=metric, threshold=thr, higher_is_better=hib,
              limit=200)


def _history_links(dataset_id: int, keys: Iterable[str], base: dict[str, Any]) -> list[str]:
    return review.relative_links(review.HISTORY_PATH, {**base, "dataset": dataset_id}, "key", keys)


def history_frame(history: list[dict[str, Any]], metric: Optional[str], thr: float, hib: bool) -> pd.DataFrame:
    """One row per run: run, family, date, finish, failures, pass (for ``metric``), then every metric."""
    names = sorted({m for h in history for m in h["metrics"]})
    passes = db.pass_pattern(history, metric, thr, hib) if metric else [None] * len(history)
    rows = []
    for h, ok in zip(history, passes):
        row = dict(run_id=h["run_id"], run=h["run_name"], family=fmt.family_of(h["run_name"], h["family"]),
                   date=h["created_at"], result="–" if ok is None else ("pass" if ok else "fail"),
                   finish=h["finish_reason"], failures=", ".join(h["failures"]) or "none")
        row.update({m: h["metrics"].get(m) for m in names})
        rows.append(row)
    return pd.DataFrame(rows)


def _example_section(url: str, dataset_id: int, key: Optional[str], metric: str, thr: float, hib: bool,
                     versions: list[int]) -> Optional[str]:
    st.subheader("One example across versions")
    c1, c2 = st.columns([1, 2])
    search = c1.text_input("Find by key or prompt text", key="history_search")
    matches = load_find(url, dataset_id, search.strip())
    options = [m["key"] for m in matches]
    if key and key not in options:
        options.insert(0, key)
    label = {m["key"]: f"row {m['row_index']} · {m['category'] or '-'} · {m['prompt'][:90]}" for m in matches}
    if st.session_state.get("history_key") not in options:
        st.session_state["history_key"] = key if key in options else None
    key = c2.selectbox("Example", options, key="history_key", index=None, placeholder="choose an example",
                       format_func=lambda k: label.get(k, f"key {k}"))
    if key is None:
        st.caption("Pick an example to see its history.")
        return None
    ex = load_example(url, dataset_id, key)
    if ex is None:
        st.warning("No example with this key in this dataset.")
        return None
    st.text(f"key {ex['key']} · row {ex['row_index']} · category {ex['category'] or '-'}")
    with st.expander("Prompt and reference", expanded=True):
        for msg in ex["messages"] or []:
            st.text(f"{msg.get('role', '')}: {msg.get('content', '')}")
        st.text("reference:")
        st.code(ex["reference"] if ex["reference"] is not None else "(no reference)", language=None, wrap_lines=True)
    history = load_history(url, dataset_id, key)
    if not history:
        st.info("No run has evaluated this example yet.")
        return key
    frame = history_frame(history, metric, thr, hib)
    in_versions = db.pass_pattern([h for h in history if h["run_id"] in versions], metric, thr, hib)
    flips = db.count_flips(in_versions)
    scored = sum(1 for x in in_versions if x is not None)
    if scored >= 3 and flips >= 2:
        st.warning(f"Flaky: this example flipped between pass and fail {flips} times over {scored} versions.",
                   icon=":material/warning:")
    if metric in frame.columns:
        # The metric's column under a fixed name: Altair reads ":" in a field as its type (lm_eval:acc).
        chart_data = frame.dropna(subset=[metric])[["date", "family", "run", "result", metric]].rename(
            columns={metric: "value"})
        if not chart_data.empty:
            # Version order by default: runs minutes apart (or in the same minute) crowd a time axis.
            by_date = st.segmented_control("Axis", ["version order", "run date"], key="history_axis",
                                           required=True) == "run date"
            chart_data["version"] = [f"{i + 1}. {r}" for i, r in enumerate(chart_data["run"])]
            x = (alt.X("date:T", title="run date") if by_date else
                 alt.X("version:O", title="version (oldest first)", sort=list(chart_data["version"]),
                       axis=alt.Axis(labelAngle=-30, labelLimit=180)))
            rule = alt.Chart(pd.DataFrame({"thr": [thr]})).mark_rule(strokeDash=[4, 3], color="gray").encode(y="thr:Q")
            line = alt.Chart(chart_data).mark_line(point=True).encode(
                x=x, y=alt.Y("value:Q", title=metric),
                color=alt.Color("family:N", title="model family"),
                tooltip=["run:N", "date:T", alt.Tooltip("value:Q", title=metric, format=".4g"), "result:N"])
            st.altair_chart(alt.layer(line, rule).properties(height=260), width="stretch")
    frame["open"] = [review.relative_link(review.BROWSER_PATH, {"run": r, "ex": ex["id"]}) for r in frame["run_id"]]
    st.dataframe(frame, hide_index=True, width="stretch", key="history_table",
                 column_config={"run_id": st.column_config.NumberColumn("run id", format="%d"),
                                "date": st.column_config.DatetimeColumn("date", format="YYYY-MM-DD HH:mm"),
                                "open": st.column_config.LinkColumn("browser", display_text="open")})
    st.text("Outputs, oldest run first:")
    for h in history:
        with st.expander(f"Run #{h['run_id']} {h['run_name']} · {h['created_at']:%Y-%m-%d %H:%M}"):
            st.text(f"{h['run_name']} · finish {h['finish_reason']} · failures {', '.join(h['failures']) or 'none'}")
            st.code(h["output"] if h["output"].strip() else "(empty output)", language=None, wrap_lines=True)
    return key


def _rows_table(rows: list[dict[str, Any]], dataset_id: int, after_run: int, link_base: dict[str, Any],
                key: str) -> None:
    df = pd.DataFrame(rows, columns=["example_id", "key", "prompt", "before", "after", "category", "row_index"])
    df["prompt"] = df["prompt"].map(lambda t: t if t is None or len(t) <= 160 else t[:159] + "…")
    df["history"] = _history_links(dataset_id, df["key"], link_base)
    df["browser"] = review.relative_links(review.BROWSER_PATH, {"run": after_run}, "ex", df["example_id"])
    st.dataframe(df, hide_index=True, width="stretch", key=key, column_config={
        "prompt": st.column_config.TextColumn("prompt", width="large"),
        "before": st.column_config.NumberColumn(format="%.4g"), "after": st.column_config.NumberColumn(format="%.4g"),
        "history": st.column_config.LinkColumn("history", display_text="history"),
        "browser": st.column_config.LinkColumn("browser", display_text="open")})


def _families(runs: pd.DataFrame) -> list[str]:
    """The model families among a dataset's runs, the one with most runs first."""
    return [f for f, _ in runs["family"].value_counts().items()]


def _seed_widgets(url: str, p: dict[str, Any], ds_ids: list[int]) -> Optional[str]:
    """1. link -> widgets: a link names an example by id, or by dataset and key. Returns the linked key."""
    dataset_id, key = links.param_int(p, "dataset"), links.param_str(p, "key")
    linked_ex = links.param_int(p, "example")
    if linked_ex is not None:
        ref = load_example_ref(url, linked_ex)
        if ref is None:
            st.warning(f"Example {linked_ex} is not in this store.")
        else:
            dataset_id, key = ref["dataset_id"], ref["key"]
    if dataset_id not in ds_ids:
        dataset_id = ds_ids[0]
    families = _families(load_dataset_runs(url, dataset_id))
    family = links.param_str(p, "family")
    if family not in (*families, ALL):
        family = families[0] if families else ALL
    view = links.param_str(p, "view")
    if view not in VIEWS:
        view = "example" if key else "changes"
    links.sync_widgets(PAGE, {"history_dataset": dataset_id, "history_family": family, "history_key": key,
                              "history_axis": "run date" if links.param_str(p, "axis") == "date" else "version order",
                              "history_view": view})
    return key


@dataclass
class _Versions:
    """The versions the page follows: the chosen family's runs on the chosen dataset, oldest first."""
    dataset_id: int
    family: str
    runs: pd.DataFrame  # every run of the dataset
    versions: pd.DataFrame  # the family's runs (all of them for ALL)

    @property
    def ids(self) -> list[int]:
        return [int(i) for i in self.versions["id"]]

    @property
    def latest(self) -> int:
        return self.ids[-1] if self.ids else int(self.runs["id"].iloc[-1])


def _pick_versions(url: str, ds_ids: list[int], ds_label: dict[int, str]) -> _Versions:
    c1, c2 = st.columns(2)
    dataset_id = c1.selectbox("Dataset", ds_ids, key="history_dataset", format_func=lambda i: ds_label.get(i, f"#{i}"))
    runs = load_dataset_runs(url, dataset_id)
    families = _families(runs)
    if st.session_state.get("history_family") not in (*families, ALL):
        st.session_state["history_family"] = families[0] if families else ALL
    family = c2.selectbox("Versions: the runs of model family", [*families, ALL], key="history_family",
                          format_func=lambda f: "every run of the dataset" if f == ALL else f)
    return _Versions(dataset_id, family, runs, runs if family == ALL else runs[runs["family"] == family])


def _pass_rule(url: str, p: dict[str, Any], v: _Versions, metrics: list[str]) -> threshold.PassRule:
    """The metric and the threshold that decide pass or fail: the dataset's stored threshold."""
    metric = links.param_str(p, "metric")
    if st.session_state.get("history_metric") not in metrics:
        st.session_state["history_metric"] = metric if metric in metrics else metrics[0]
    c3, c4 = st.columns(2)
    metric = c3.selectbox("Metric", metrics, key="history_metric")
    hib = store.load_metric_info(url).get(metric) is not False
    bounds = store.load_bounds(url, v.latest, (metric,)).get(metric)
    return threshold.pass_rule(c4, url, p, dataset_id=v.dataset_id, metric=metric, higher_is_better=hib,
                               bounds=bounds, key="history")


def _broken_and_fixed(url: str, p: dict[str, Any], v: _Versions, rule: threshold.PassRule,
                      link_base: dict[str, Any]) -> tuple[Optional[int], Optional[int]]:
    """What passed in one version and fails in a later one, and the reverse. Returns (before, after)."""
    st.subheader("Newly broken and newly fixed")
    ids = v.ids
    if len(ids) < 2:
        st.info("Needs at least two versions.")
        return None, None
    index = store.load_run_index(url)  # names and dates only: counting results is the runs page's work
    label = fmt.run_label(index)
    names = {int(i): n for i, n in zip(index["id"], index["name"])}
    a_param, b_param = links.param_int(p, "a"), links.param_int(p, "b")
    if st.session_state.get("history_a") not in ids:
        st.session_state["history_a"] = a_param if a_param in ids else ids[-2]
    if st.session_state.get("history_b") not in ids:
        st.session_state["history_b"] = b_param if b_param in ids else ids[-1]
    k1, k2 = st.columns(2)
    a = k1.selectbox("Before", ids, key="history_a", format_func=label)
    b = k2.selectbox("After", ids, key="history_b", format_func=label)
    if a == b:
        st.info("Pick two different versions.")
        return a, b
    bf = load_broken_fixed(url, a, b, rule.metric, rule.threshold, rule.higher_is_better)
    m1, m2, m3 = st.columns(3)
    m1.metric("Examples both scored", bf["n_shared"])
    m2.metric("Newly broken", bf["n_broken"], help="passed before, fail now")
    m3.metric("Newly fixed", bf["n_fixed"], help="failed before, pass now")
    t1, t2 = st.tabs([f"Broken in {names.get(b, b)} ({bf['n_broken']})", f"Fixed in {names.get(b, b)} ({bf['n_fixed']})"])
    with t1:
        _rows_table(bf["broken"], v.dataset_id, b, link_base, "history_broken")
    with t2:
        _rows_table(bf["fixed"], v.dataset_id, b, link_base, "history_fixed")
    return a, b


def _flaky(url: str, v: _Versions, rule: threshold.PassRule, link_base: dict[str, Any]) -> None:
    st.subheader("Flaky examples")
    if len(v.ids) < 3:
        st.info("Needs at least three versions.")
        return
    fl = load_flaky(url, tuple(v.ids), rule.metric, rule.threshold, rule.higher_is_better)
    st.text(f"{fl['total']} {'example flips' if fl['total'] == 1 else 'examples flip'} between pass and fail at least twice over the versions "
            "(pattern: P pass, F fail, . not scored; oldest version first)")
    if fl["rows"]:
        df = pd.DataFrame(fl["rows"])
        df["history"] = _history_links(v.dataset_id, df["key"], link_base)
        st.dataframe(df[["example_id", "key", "row_index", "category", "pattern", "flips", "versions", "history"]],
                     hide_index=True, width="stretch", key="history_flaky",
                     column_config={"history": st.column_config.LinkColumn("history", display_text="history")})


def main() -> None:
    url = store.require_store()
    p = links.params()
    st.title("Example history")
    datasets = store.load_datasets(url)
    ds_ids = [d["id"] for d in datasets if d["n_runs"]]
    if not ds_ids:
        st.info("This store has no runs yet: evaluate a model first (`python -m evaluator run ...`).")
        st.stop()
    ds_label = fmt.dataset_labels(datasets)
    linked_key = _seed_widgets(url, p, ds_ids)

    # 2. widgets
    v = _pick_versions(url, ds_ids, ds_label)
    metrics = sorted({m for r in v.ids[-1:] or [int(i) for i in v.runs["id"]][-1:]
                      for m in store.load_run_metrics(url, r)})
    if not metrics:
        st.info("These runs have no metric values yet.")
        return
    rule = _pass_rule(url, p, v, metrics)
    st.text(f"{len(v.ids)} versions: " + ", ".join(f"#{r.id} {r.name}" for r in v.versions.itertuples()))
    link_base = {"family": v.family, "metric": rule.metric, "thr": rule.threshold}

    view = st.segmented_control("Show", list(VIEWS), key="history_view", required=True, format_func=VIEWS.get,
                                on_change=links.forget(("history_key", "history_a", "history_b", "history_axis")))

    # 3. + 4. data and render: the chosen section only (the others keep their state in the link)
    key = linked_key
    a, b = links.param_int(p, "a"), links.param_int(p, "b")
    if view == "example":
        key = _example_section(url, v.dataset_id, linked_key, rule.metric, rule.threshold,
                               rule.higher_is_better, v.ids)
    elif view == "changes":
        a, b = _broken_and_fixed(url, p, v, rule, link_base)
    else:
        _flaky(url, v, rule, link_base)

    # widgets -> link
    links.write_params({
        "dataset": v.dataset_id, "key": key, "family": v.family, "metric": rule.metric,
        "thr": rule.threshold if rule.threshold != rule.default else None, "a": a, "b": b,
        "axis": "date" if st.session_state.get("history_axis") == "run date" else None,
        "view": None if view == ("example" if key else "changes") else view,
    }, page=PAGE)


with store.guard():
    main()
