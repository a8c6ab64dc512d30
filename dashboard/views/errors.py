"""Error analysis of one run (optionally against a second): metric distributions, confidence vs quality,
failure kinds per run and category, length effects, and where metrics disagree with each other or with
human verdicts.

Query parameters: run (run id), vs (a second run to overlay), metric (quality metric), thr (its pass
threshold), tab (section: dist | conf | fail | len | dis), conf (confidence: a metric name, or
"1/perplexity"), by (length measure: output_tokens | output_chars | reference_chars), m2 (second metric
for disagreement). Only the chosen section is computed.

Every number is aggregated in SQL or computed on a bounded sample (``db._query_errors``); the page never
loads a run's text, only the page of examples a table shows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import altair as alt
import pandas as pd
import streamlit as st

import db
from dashboard import _format as fmt
from dashboard import _links as links
from dashboard import _review as review
from dashboard import _store as store
from dashboard import _threshold as threshold

PAGE = "errors"
INVERSE_PPL = "1/perplexity"
SECTIONS = {"dist": "Distributions", "conf": "Confidence vs quality", "fail": "Failure kinds", "len": "Length",
            "dis": "Disagreement"}
SAMPLE = 2000
@store.cached
def load_histograms(url: str, run_ids: tuple[int, ...], metric: str) -> dict[str, Any]:
    return store.read(url, db.metric_histograms, run_ids=list(run_ids), metric=metric, bins=30)


@store.cached
def load_pair_sample(url: str, run_id: int, x: str, y: str, invert_x: bool) -> dict[str, Any]:
    return store.read(url, db.metric_pair_sample, run_id=run_id, metric_x=x, metric_y=y, invert_x=invert_x, limit=SAMPLE)


@store.cached
def load_reliability(url: str, run_id: int, conf: str, metric: str, invert: bool, thr: Optional[float],
                     hib: bool) -> dict[str, Any]:
    return store.read(url, db.reliability_bins, run_id=run_id, confidence=conf, metric=metric, bins=10,
              invert_confidence=invert, threshold=thr, higher_is_better=hib)


@store.cached
def load_failures(url: str, run_ids: tuple[int, ...]) -> list[dict[str, Any]]:
    return store.read(url, db.failure_summary, run_ids=list(run_ids))


@store.cached
def load_length_sample(url: str, run_id: int, metric: str) -> dict[str, Any]:
    return store.read(url, db.length_sample, run_id=run_id, metric=metric, limit=SAMPLE)


@store.cached
def load_by_length(url: str, run_id: int, metric: str, measure: str) -> list[dict[str, Any]]:
    return store.read(url, db.metric_by_length, run_id=run_id, metric=metric, measure=measure)


@store.cached
def load_disagreements(url: str, run_id: int, x: str, y: str, x_min: float, y_max: float) -> dict[str, Any]:
    return store.read(url, db.metric_disagreements, run_id=run_id, metric_x=x, metric_y=y, x_at_least=x_min,
              y_at_most=y_max, page_size=50)


@store.cached
def load_verdict_summary(url: str, run_id: int, metric: str) -> list[dict[str, Any]]:
    return store.read(url, db.verdict_metric_summary, run_id=run_id, metric=metric)


@store.cached
def load_verdict_disagreements(url: str, run_id: int, metric: str, good: float, bad: float,
                               hib: bool) -> dict[str, Any]:
    return store.read(url, db.verdict_disagreements, run_id=run_id, metric=metric, good=good, bad=bad,
              higher_is_better=hib, page_size=50)


@store.cached
def load_pass_rates(url: str, run_ids: tuple[int, ...]) -> dict[int, dict[str, Any]]:
    return store.read(url, db.human_pass_rates, run_ids=list(run_ids))


# ---------------------------------------------------------------- small pure helpers


def browser_link(params: dict[str, Any]) -> str:
    """Relative link to the example browser with a filter (opens from a table's link column)."""
    return review.relative_link(review.BROWSER_PATH, params)


def failure_rows(summary: list[dict[str, Any]], names: dict[int, str]) -> pd.DataFrame:
    """Long table: one row per (run, scope, kind) with a count, its share, and a link to those examples."""
    rows = []
    for s in summary:
        cat = s["category"]
        for kind, count in [("any failure", s["any"]), *s["counts"].items()]:
            params: dict[str, Any] = {"run": s["run_id"], "failure": "any" if kind == "any failure" else kind}
            if s["scope"] == "category":
                if cat is None:
                    continue  # the browser cannot filter on "no category"
                params["category"] = cat
            rows.append(dict(run=names.get(s["run_id"], f"#{s['run_id']}"), run_id=s["run_id"],
                             category="(all)" if s["scope"] == "all" else cat, kind=kind, count=count, n=s["n"],
                             share=count / s["n"] if s["n"] else 0.0, examples=browser_link(params)))
    return pd.DataFrame(rows, columns=["run", "run_id", "category", "kind", "count", "n", "share", "examples"])


def _hist_chart(h: dict[str, Any], names: dict[int, str], metric: str) -> alt.Chart:
    df = pd.DataFrame(h["rows"])
    df["run"] = df["run_id"].map(lambda r: names.get(r, f"#{r}"))
    df["share"] = df.apply(lambda r: r["count"] / h["n"][r["run_id"]], axis=1)
    tooltip = ["run:N", alt.Tooltip("bin_lo:Q", format=".4g", title="from"),
               alt.Tooltip("bin_hi:Q", format=".4g", title="to"), "count:Q", alt.Tooltip("share:Q", format=".1%")]
    if h["exact"]:
        return alt.Chart(df).mark_bar().encode(
            x=alt.X("bin_lo:O", title=metric), xOffset="run:N", y=alt.Y("share:Q", title="share of examples"),
            color=alt.Color("run:N"), tooltip=tooltip).properties(height=220)
    return alt.Chart(df).mark_bar(opacity=0.55, binSpacing=0).encode(
        x=alt.X("bin_lo:Q", bin="binned", title=metric), x2="bin_hi:Q",
        y=alt.Y("share:Q", stack=None, title="share of examples"), color=alt.Color("run:N"),
        tooltip=tooltip).properties(height=220)


# ---------------------------------------------------------------- sections


def _distributions(url: str, run_ids: list[int], names: dict[int, str], metrics: list[str], chosen: str) -> None:
    """The chosen metric's distribution first and full width; the others, when asked, three to a row."""
    st.caption("Share of examples per value bucket (30 equal buckets over both runs' range; one bar per value "
               "for metrics with at most 12 distinct values). Failed or missing values are left out.")

    def draw(metric: str, height: int) -> None:
        h = load_histograms(url, tuple(run_ids), metric)
        if not h["rows"]:
            st.caption(f"{metric}: no values")
            return
        st.text(f"{metric} · " + " · ".join(f"{names.get(r, r)}: n={h['n'].get(r, 0)}" for r in run_ids))
        st.altair_chart(_hist_chart(h, names, metric).properties(height=height), width="stretch")

    draw(chosen, 260)
    others = [m for m in metrics if m != chosen]
    if others and st.toggle(f"Show the other {fmt.count(len(others), 'metric')}", key="errors_dist_all"):
        for start in range(0, len(others), 3):
            for col, metric in zip(st.columns(3), others[start:start + 3]):
                with col:
                    draw(metric, 150)


def _confidence(url: str, run_id: int, conf: str, metric: str, thr: float, hib: bool) -> None:
    invert = conf == INVERSE_PPL
    source = "perplexity" if invert else conf
    if invert:
        st.caption("Confidence = 1 / perplexity of the output, i.e. the geometric-mean probability the model "
                   "gave its own tokens (store a `confidence` metric to use your own).")
    sample = load_pair_sample(url, run_id, source, metric, invert)
    if not sample["rows"]:
        st.info("No example has both the confidence and the quality metric.")
        return
    df = pd.DataFrame(sample["rows"])
    left, right = st.columns(2)
    with left:
        st.text(f"{len(df):,} of {fmt.count(sample['n'], 'example')} (a fixed sample)")
        st.altair_chart(alt.Chart(df).mark_circle(size=30, opacity=0.5).encode(
            x=alt.X("x:Q", title="confidence"), y=alt.Y("y:Q", title=metric),
            tooltip=[alt.Tooltip("example_id:Q", title="example"), alt.Tooltip("x:Q", format=".3f"),
                     alt.Tooltip("y:Q", format=".3f")]).properties(height=320), width="stretch")
    rel = load_reliability(url, run_id, source, metric, invert, thr, hib)
    bins = pd.DataFrame(rel["rows"])
    with right:
        st.text(f"reliability: mean {metric} and pass share (≥ {thr:g}) per confidence bin"
                if hib else f"reliability: mean {metric} and pass share (≤ {thr:g}) per confidence bin")
        base = alt.Chart(bins).encode(x=alt.X("mean_confidence:Q", title="mean confidence in bin",
                                              scale=alt.Scale(domain=[rel["lo"], rel["hi"]])))
        layers = [base.mark_line(point=True).encode(y=alt.Y("pass_share:Q", title="pass share / mean quality"),
                                                    tooltip=["bin_lo:Q", "bin_hi:Q", "n:Q", "pass_share:Q"]),
                  base.mark_line(point=True, strokeDash=[4, 3], color="gray").encode(y="mean_quality:Q")]
        diag = pd.DataFrame({"mean_confidence": [rel["lo"], rel["hi"]], "pass_share": [rel["lo"], rel["hi"]]})
        layers.append(alt.Chart(diag).mark_line(color="lightgray").encode(x="mean_confidence:Q", y="pass_share:Q"))
        st.altair_chart(alt.layer(*layers).properties(height=320), width="stretch")
        st.caption("Solid: share passing the threshold; dashed: mean quality; gray: perfect calibration.")
    st.dataframe(bins, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in ("bin_lo", "bin_hi", "mean_confidence", "mean_quality", "pass_share")})
    sure = bins[bins["bin_lo"] >= rel["lo"] + 0.7 * (rel["hi"] - rel["lo"]) - 1e-12] if not bins.empty else bins
    if not sure.empty:
        n = int(sure["n"].sum())
        failing = int(round(float((sure["n"] * (1 - sure["pass_share"])).sum())))
        st.text(f"In the top 30% of the confidence range: {fmt.count(n, 'example')}, {failing} of them fail the threshold.")
        lo_conf = float(sure["bin_lo"].min())
        rng = (f"perplexity::{1 / lo_conf:.6g}" if invert and lo_conf > 0 else f"{source}:{lo_conf:.6g}:")
        fail_rng = f"{metric}::{thr:.6g}" if hib else f"{metric}:{thr:.6g}:"
        if not invert or lo_conf > 0:
            st.page_link(links.BROWSER_PAGE, label="Open the confident examples that fail in the browser",
                         icon=":material/open_in_new:",
                         query_params={"run": str(run_id), "range": [rng, fail_rng]})


def _failures(url: str, run_ids: list[int], names: dict[int, str]) -> None:
    table = failure_rows(load_failures(url, tuple(run_ids)), names)
    if table.empty:
        st.info("No results.")
        return
    overall = table[table["category"] == "(all)"]
    st.altair_chart(alt.Chart(overall).mark_bar().encode(
        x=alt.X("share:Q", axis=alt.Axis(format="%"), title="share of examples"), y=alt.Y("kind:N", title=None),
        yOffset="run:N", color="run:N", tooltip=["run:N", "kind:N", "count:Q", "n:Q",
                                                 alt.Tooltip("share:Q", format=".1%")]).properties(height=240),
        width="stretch")
    for rid in run_ids:
        cols = st.columns([1, 3, 2, 3, 3, 4, 2])
        cols[0].text(f"#{rid}")
        for col, row in zip(cols[1:], overall[overall["run_id"] == rid].itertuples()):
            col.page_link(links.BROWSER_PAGE, label=f"{row.kind}: {row.count}", icon=":material/filter_alt:",
                          query_params={"run": str(rid), "failure": "any" if row.kind == "any failure" else row.kind},
                          disabled=row.count == 0)
    st.text("Per category (rows with at least one failure); 'examples' opens them in the example browser:")
    per_cat = table[(table["category"] != "(all)") & (table["count"] > 0)]
    st.dataframe(per_cat.drop(columns=["run_id"]), hide_index=True, width="stretch", key="errors_failures",
                 column_config={"share": st.column_config.NumberColumn(format="percent"),
                                "examples": st.column_config.LinkColumn("examples", display_text="open")})


def _length(url: str, run_id: int, metric: str, measure: str) -> None:
    sample = load_length_sample(url, run_id, metric)
    df = pd.DataFrame(sample["rows"])
    left, right = st.columns(2)
    with left:
        with_ref = df[df["reference_chars"].notna()] if not df.empty else df
        st.text(f"output vs reference length (characters), {len(with_ref):,} of {sample['n']:,} examples")
        if not with_ref.empty:
            top = float(max(with_ref["reference_chars"].max(), with_ref["output_chars"].max()))
            diag = pd.DataFrame({"reference_chars": [0, top], "output_chars": [0, top]})
            points = alt.Chart(with_ref).mark_circle(size=30, opacity=0.5).encode(
                x=alt.X("reference_chars:Q", title="reference length (chars)"),
                y=alt.Y("output_chars:Q", title="output length (chars)"),
                color=alt.Color("value:Q", title=metric, scale=alt.Scale(scheme="redyellowgreen")),
                tooltip=[alt.Tooltip("example_id:Q", title="example"), "output_chars:Q", "reference_chars:Q",
                         alt.Tooltip("value:Q", format=".3f", title=metric)])
            line = alt.Chart(diag).mark_line(color="gray").encode(x="reference_chars:Q", y="output_chars:Q")
            st.altair_chart(alt.layer(points, line).properties(height=320), width="stretch")
    with right:
        buckets = pd.DataFrame(load_by_length(url, run_id, metric, measure))
        st.text(f"mean {metric} by {measure.replace('_', ' ')} bucket")
        if buckets.empty:
            st.info("No values.")
            return
        buckets["bucket"] = [f"{lo}–{hi - 1}" if hi is not None else f"≥{lo}" for lo, hi in
                             zip(buckets["lo"], buckets["hi"])]
        st.altair_chart(alt.Chart(buckets).mark_bar().encode(
            x=alt.X("bucket:N", sort=None, title=measure.replace("_", " ")), y=alt.Y("mean:Q", title=f"mean {metric}"),
            tooltip=["bucket:N", "n:Q", alt.Tooltip("mean:Q", format=".3f")]).properties(height=320), width="stretch")
        st.dataframe(buckets[["bucket", "n", "mean", "min", "max"]], hide_index=True,
                     column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("mean", "min", "max")})


def _judges_against_reviewers(url: str, run_id: int) -> None:
    st.markdown("##### Judges against human verdicts")
    agreement = store.load_judge_agreement(url, run_id)
    if not agreement:
        st.caption("No judge's verdict on this run shares an example with a reviewer's \"pass\" or \"fail: model "
                   "error\" yet (python -m evaluator judge; the Review page).")
        return
    st.caption("A judge passes an answer when it prefers it to the baseline's; reviewers pass it with \"pass\" and fail "
               "it with \"fail: model error\" (the majority of their latest verdicts). Kappa (Cohen's): agreement "
               "beyond chance, 1 perfect, 0 chance. Trust a judge on this data only as far as these go.")
    rows = [{"judge": a["judge"], "vs run": f"#{a['baseline_id']}", "examples": a["n"],
             "kappa": "–" if a["kappa"] is None else f"{a['kappa']:.2f}",
             "reviewers' fails it passes": "–" if a["judge_passes_human_fails"] is None
             else f"{100 * a['judge_passes_human_fails']:.0f}%",
             "both pass": int(a["confusion"].loc["pass", "pass"]), "both fail": int(a["confusion"].loc["fail", "fail"]),
             "only the judge passes": int(a["confusion"].loc["fail", "pass"]),
             "only reviewers pass": int(a["confusion"].loc["pass", "fail"])} for a in agreement]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def _judges_against_metric(url: str, run_id: int, rule) -> None:
    st.markdown("##### Judges against the metric")
    d = store.load_judge_metric_disagreements(url, run_id, rule.metric, rule.threshold, rule.higher_is_better)
    if d.empty:
        st.caption(f"No example where a judge of this run and {rule.metric}'s pass threshold ({rule.threshold:g}) "
                   "disagree (or no judge has judged this run).")
        return
    better = int((d["judge_says"] == "better").sum())
    st.text(f"{better} {'answer' if better == 1 else 'answers'} the judge prefers to the baseline's fail on "
            f"{rule.metric}; {len(d) - better} it finds worse pass (strongest preference first)")
    d["open"] = [browser_link({"run": run_id, "ex": e}) for e in d["example_id"]]
    d["baseline"] = [f"#{b}" for b in d["baseline_id"]]
    st.dataframe(d[["judge", "baseline", "example_id", "judge_says", "preference", "value", "open"]], hide_index=True,
                 width="stretch", column_config={
                     "preference": st.column_config.NumberColumn("judge's preference for this run", format="%.2f"),
                     "value": st.column_config.NumberColumn(rule.metric, format="%.3f"),
                     "open": st.column_config.LinkColumn("open", display_text="open")})


def _disagreement(url: str, run_id: int, metric: str, m2: str, bounds: dict, info: dict) -> None:
    _judges_against_reviewers(url, run_id)
    st.markdown("##### Metric against metric")
    bx, by = bounds.get(metric), bounds.get(m2)
    if bx is None or by is None or metric == m2:
        st.info("Choose two different metrics that this run has.")
    else:
        st.text(f"high {metric}, low {m2}:")
        c1, c2 = st.columns(2)
        x_min = c1.number_input("Quality metric at least", value=float(round(bx[0] + 0.75 * (bx[1] - bx[0]), 4)),
                                key=f"errors_xmin_{metric}")
        y_max = c2.number_input("Other metric at most", value=float(round(by[0] + 0.25 * (by[1] - by[0]), 4)),
                                key=f"errors_ymax_{m2}")
        d = load_disagreements(url, run_id, metric, m2, float(x_min), float(y_max))
        st.text(f"{d['total']:,} {'example scores' if d['total'] == 1 else 'examples score'} high on {metric} but low on {m2} (largest gap first)")
        if d["rows"]:
            df = pd.DataFrame(d["rows"])
            df["open"] = [browser_link({"run": run_id, "ex": e}) for e in df["example_id"]]
            st.dataframe(df[["example_id", "category", "x", "y", "output", "reference", "open"]], hide_index=True,
                         width="stretch", column_config={
                             "x": st.column_config.NumberColumn(metric, format="%.3f"),
                             "y": st.column_config.NumberColumn(m2, format="%.3f"),
                             "open": st.column_config.LinkColumn("open", display_text="open")})
    st.markdown("##### Metric against human verdicts")
    summary = pd.DataFrame(load_verdict_summary(url, run_id, metric))
    if summary.empty:
        st.caption("No human verdict on this run yet (give some on the Review page).")
        return
    st.text(f"{metric} by verdict (each reviewer's latest):")
    st.dataframe(summary, hide_index=True, column_config={c: st.column_config.NumberColumn(format="%.3f")
                                                          for c in ("mean", "min", "max")})
    b = bounds.get(metric)
    if b is None:
        return
    hib = info.get(metric) is not False
    c1, c2 = st.columns(2)
    good_default = b[0] + (0.75 if hib else 0.25) * (b[1] - b[0])
    bad_default = b[0] + (0.25 if hib else 0.75) * (b[1] - b[0])
    good = c1.number_input("Metric says good when " + ("≥" if hib else "≤"), value=float(round(good_default, 4)),
                           key=f"errors_good_{metric}")
    bad = c2.number_input("Metric says bad when " + ("≤" if hib else "≥"), value=float(round(bad_default, 4)),
                          key=f"errors_bad_{metric}")
    d = load_verdict_disagreements(url, run_id, metric, float(good), float(bad), hib)
    st.text(f"{fmt.count(d['total'], 'verdict')} where {metric} misleads (good metric but failed, bad metric but passed, "
            "or a reviewer's 'fail: metric misleading')")
    if d["rows"]:
        df = pd.DataFrame(d["rows"])
        df["open"] = [browser_link({"run": run_id, "ex": e}) for e in df["example_id"]]
        st.dataframe(df[["kind", "example_id", "category", "value", "verdict", "reviewer", "comment", "open"]],
                     hide_index=True, width="stretch", column_config={
                         "value": st.column_config.NumberColumn(metric, format="%.3f"),
                         "open": st.column_config.LinkColumn("open", display_text="open")})


# ---------------------------------------------------------------- page


@dataclass
class _Linked:
    """What the link asks for, resolved against the linked run's metrics (defaults where it asks for none)."""
    run_id: int
    conf_options: list[str]
    default_conf: Optional[str]
    quality: list[str]  # metrics that measure quality (not confidence or perplexity)
    others: list[str]  # metrics other than the linked quality metric
    conf: Optional[str]


def _seed_widgets(url: str, p: dict[str, Any], runs: pd.DataFrame) -> _Linked:
    """1. link -> widgets."""
    run_ids = [int(i) for i in runs["id"]]
    run_id = links.param_int(p, "run")
    if run_id not in run_ids:
        if run_id is not None:
            st.warning(f"Run #{run_id} is not in this store; showing the newest candidate run.")
        run_id = fmt.default_run(runs)
    metrics = store.load_run_metrics(url, run_id)
    conf_options = [*metrics, *([INVERSE_PPL] if "perplexity" in metrics else [])]
    default_conf = "confidence" if "confidence" in metrics else (INVERSE_PPL if "perplexity" in metrics else None)
    quality = [m for m in metrics if m not in ("confidence", "perplexity")] or metrics
    metric = links.param_str(p, "metric")
    metric = metric if metric in metrics else (quality[0] if quality else None)
    m2 = links.param_str(p, "m2")
    others = [m for m in metrics if m != metric]
    m2 = m2 if m2 in metrics else (others[0] if others else metric)
    conf = links.param_str(p, "conf")
    vs = links.param_int(p, "vs")
    links.sync_widgets(PAGE, {
        "errors_run": run_id,
        "errors_vs": vs if vs in run_ids and vs != run_id else None,
        "errors_metric": metric,
        "errors_conf": conf if conf in conf_options else default_conf,
        "errors_m2": m2,
        "errors_by": links.param_str(p, "by") if links.param_str(p, "by") in db.LENGTH_MEASURES else
        "output_tokens",
        "errors_section": links.param_str(p, "tab") if links.param_str(p, "tab") in SECTIONS else "dist",
    })
    return _Linked(run_id, conf_options, default_conf, quality, others, conf)


@dataclass
class _PassRule:
    metric: str
    higher_is_better: bool
    threshold: float
    default: float  # the threshold the page proposes (left out of the link when unchanged)
    info: dict[str, Optional[bool]]  # every metric's direction
    bounds: dict[str, tuple[float, float]]  # the run's range of each metric


def _pass_rule(url: str, p: dict[str, Any], runs: pd.DataFrame, run_id: int, metrics: list[str],
               linked: _Linked) -> _PassRule:
    if st.session_state.get("errors_metric") not in metrics:
        quality = linked.quality
        st.session_state["errors_metric"] = quality[0] if quality and quality[0] in metrics else metrics[0]
    info = store.load_metric_info(url)
    bounds = store.load_bounds(url, run_id, tuple(metrics))
    c3, c4 = st.columns(2)
    metric = c3.selectbox("Quality metric", metrics, key="errors_metric")
    dataset_id = int(runs.loc[runs["id"] == run_id, "dataset_id"].iloc[0])
    rule = threshold.pass_rule(c4, url, p, dataset_id=dataset_id, metric=metric,
                               higher_is_better=info.get(metric) is not False, bounds=bounds.get(metric), key="errors")
    return _PassRule(metric, rule.higher_is_better, rule.threshold, rule.default, info, bounds)


def _pass_rate_cards(url: str, shown: list[int]) -> None:
    rates = load_pass_rates(url, tuple(shown))
    for col, rid in zip(st.columns(len(shown)), shown):
        r = rates[rid]
        col.metric(f"Human pass rate, run #{rid}", "–" if r["pass_rate"] is None else f"{r['pass_rate']:.0%}",
                   help=f"{r['passed']} of {r['reviewed']} reviewed examples passed (majority of reviewers)")


def _section(url: str, p: dict[str, Any], shown: list[int], names: dict[int, str], metrics: list[str],
             rule: _PassRule, linked: _Linked) -> tuple[str, dict[str, Any]]:
    """3. + 4. the chosen section, computed and drawn. Returns it and the settings the link carries: only
    the chosen section is computed; the others' settings stay in the link until they are shown."""
    run_id = shown[0]
    section = st.segmented_control("Section", list(SECTIONS), format_func=SECTIONS.get, key="errors_section",
                                   required=True)
    carried = {"conf": linked.conf if linked.conf in linked.conf_options else None, "m2": links.param_str(p, "m2"),
               "by": links.param_str(p, "by")}
    if section == "dist":
        _distributions(url, shown, names, metrics, rule.metric)
    elif section == "conf":
        opts = [o for o in linked.conf_options if o in metrics or o == INVERSE_PPL]
        if st.session_state.get("errors_conf") not in opts:
            st.session_state["errors_conf"] = opts[0] if opts else None
        conf = st.selectbox("Confidence", opts, key="errors_conf",
                            help="a per-example confidence metric; 1/perplexity derives one from token probabilities")
        carried["conf"] = conf
        if conf is not None:
            for rid in shown:  # the overlay run too, each under its name
                if len(shown) > 1:
                    st.text(f"run {names.get(rid, rid)}")
                _confidence(url, rid, conf, rule.metric, rule.threshold, rule.higher_is_better)
    elif section == "fail":
        _failures(url, shown, names)
    elif section == "len":
        carried["by"] = st.selectbox("Length measure", list(db.LENGTH_MEASURES), key="errors_by")
        for rid in shown:
            if len(shown) > 1:
                st.text(f"run {names.get(rid, rid)}")
            _length(url, rid, rule.metric, carried["by"])
    else:
        if st.session_state.get("errors_m2") not in metrics:
            st.session_state["errors_m2"] = linked.others[0] if linked.others else rule.metric
        carried["m2"] = st.selectbox("Compare with metric", metrics, key="errors_m2")
        _disagreement(url, run_id, rule.metric, carried["m2"], rule.bounds, rule.info)
        _judges_against_metric(url, run_id, rule)
    return section, carried


def main() -> None:
    url = store.require_store()
    p = links.params()
    runs = store.load_run_index(url)  # the list of runs only: counting their results is the runs page's work
    st.title("Error analysis")
    if runs.empty:
        st.info("This store has no runs yet: evaluate a model first (`python -m evaluator run ...`).")
        st.stop()
    run_ids = [int(i) for i in runs["id"]]
    linked = _seed_widgets(url, p, runs)

    # 2. widgets
    label = fmt.run_label(runs)
    c1, c2 = st.columns(2)
    run_id = c1.selectbox("Run", run_ids, key="errors_run", format_func=label)
    vs = c2.selectbox("Overlay a second run (optional)", [None, *[r for r in run_ids if r != run_id]],
                      key="errors_vs", format_func=label)
    metrics = store.load_run_metrics(url, run_id)
    if not metrics:
        st.info("This run has no metric values yet.")
        links.write_params({"run": run_id}, page=PAGE)
        return
    rule = _pass_rule(url, p, runs, run_id, metrics, linked)
    shown = [run_id] + ([vs] if vs is not None else [])
    _pass_rate_cards(url, shown)
    names = {int(r.id): f"#{r.id} {r.name}" for r in runs.itertuples()}
    section, carried = _section(url, p, shown, names, metrics, rule, linked)

    # widgets -> link
    links.write_params({
        "run": run_id, "vs": vs, "metric": rule.metric,
        "thr": rule.threshold if rule.threshold != rule.default else None,
        "tab": section if section != "dist" else None,
        "conf": carried["conf"] if carried["conf"] != linked.default_conf else None,
        "by": carried["by"] if carried["by"] != "output_tokens" else None, "m2": carried["m2"],
    }, page=PAGE)


with store.guard():
    main()
