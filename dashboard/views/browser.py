"""Example browser: one run, filtered, sorted and paged in SQL; the detail of one example.

Query parameters: the filter state of ``links.filters_from_params`` (run, text, category, tag,
failure, verdict, range (repeated), sort, desc, ids), plus page (1-based), size and ex (example id).
"""
from __future__ import annotations

import difflib
import math
from typing import Any, Optional

import altair as alt
import pandas as pd
import streamlit as st

import db
from dashboard import _format as fmt
from dashboard import _links as links
from dashboard import _store as store

PAGE = "browser"
SORT_EXTRA = {"latency_ms": "latency (ms)", "finish_reason": "finish reason", "row": "dataset row"}  # = db.SORT_COLUMNS
SNIPPET = 160  # characters of prompt/output/reference shown in the table
MAX_TOKENS_SHOWN = 600
TOKENS_PER_LINE = 12
ROLE_AVATARS = {"user": ("user", None), "assistant": ("assistant", None),
                "system": ("system", ":material/settings:")}


# ---------------------------------------------------------------- detail helpers (pure)


def word_diff(reference: str, output: str) -> pd.DataFrame:
    """Word-level differences, one row per run of words: op (same/changed/missing/extra), reference, output."""
    ref, out = reference.split(), output.split()
    rows = []
    names = {"equal": "same", "replace": "changed", "delete": "missing", "insert": "extra"}
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=ref, b=out, autojunk=False).get_opcodes():
        rows.append(dict(op=names[op], reference=" ".join(ref[i1:i2]), output=" ".join(out[j1:j2])))
    return pd.DataFrame(rows, columns=["op", "reference", "output"])


def inline_diff(diff: pd.DataFrame) -> str:
    """git --word-diff style text: [-removed-]{+added+}; shown with st.code, so nothing is interpreted."""
    parts = []
    for op, ref, out in diff.itertuples(index=False):
        if op == "same":
            parts.append(ref)
        else:
            if ref:
                parts.append(f"[-{ref}-]")
            if out:
                parts.append(f"{{+{out}+}}")
    return " ".join(parts)


def token_frame(tokens: list[str], logprobs: list[float]) -> pd.DataFrame:
    """One row per output token: its text made visible (spaces as ·, newlines as ⏎), probability, position."""
    n = min(len(tokens), len(logprobs), MAX_TOKENS_SHOWN)
    rows = []
    for i in range(n):
        tok = tokens[i]
        shown = tok.replace(" ", "·").replace("\n", "⏎").replace("\t", "→") or "∅"
        lp = float(logprobs[i])
        rows.append(dict(i=i, token=shown, logprob=lp, prob=math.exp(lp) if lp <= 0 else 1.0,
                         line=i // TOKENS_PER_LINE, col=i % TOKENS_PER_LINE))
    return pd.DataFrame(rows, columns=["i", "token", "logprob", "prob", "line", "col"])


def _token_chart(frame: pd.DataFrame) -> alt.LayerChart:
    base = alt.Chart(frame).encode(
        x=alt.X("col:O", axis=None), y=alt.Y("line:O", axis=None),
        tooltip=[alt.Tooltip("i:Q", title="position"), alt.Tooltip("token:N"),
                 alt.Tooltip("prob:Q", format=".3f"), alt.Tooltip("logprob:Q", format=".3f")])
    cells = base.mark_rect(stroke="white").encode(
        # a horizontal legend above the strip: a vertical one is as tall as its default length (200 px) and
        # was cut to the height of a one-line strip
        color=alt.Color("prob:Q", scale=alt.Scale(domain=[0, 1], scheme="redyellowgreen"), title="p(token)",
                        legend=alt.Legend(orient="top", direction="horizontal", gradientLength=240)))
    text = base.mark_text(fontSize=11, limit=70).encode(text="token:N")
    lines = int(frame["line"].max()) + 1 if not frame.empty else 1
    return alt.layer(cells, text).properties(height=max(40, 26 * lines))


def _snippet(s: Any) -> str:
    s = "" if s is None else str(s)
    s = " ".join(s.split())
    return s if len(s) <= SNIPPET else s[: SNIPPET - 1] + "…"


# ---------------------------------------------------------------- page


JUDGE_WORDS = {None: "(all)", "better": "judge prefers this run's answer", "worse": "judge prefers the baseline's",
               "tie": "judge calls it a tie", "judged": "judged", "unjudged": "not judged",
               "disagrees": "judge and a reviewer disagree"}


def _sidebar_filters(url: str, run_id: int, query: db.ResultQuery, metrics: list[str]) -> db.ResultQuery:
    """Draw the filter widgets (seeded from the link) and return the selection they describe."""
    sb = st.sidebar
    sb.header("Filters")
    text = sb.text_input("Search prompt, output and reference", key="br_text")
    categories = store.load_categories(url, run_id)
    category = sb.selectbox("Category", [None, *categories], key="br_category", placeholder="(any)",
                            format_func=lambda c: "(any)" if c is None else c)
    tag = sb.text_input("Tag", key="br_tag")
    failure = sb.selectbox("Failure", [None, *links.FAILURE_FILTERS], key="br_failure", placeholder="(all)",
                           format_func=lambda f: {None: "(all)", "any": "any failure", "none": "no failure"}.get(f, f))
    verdict = sb.selectbox("Verdict", [None, *links.VERDICT_FILTERS], key="br_verdict", placeholder="(all)",
                           format_func=lambda v: {None: "(all)", "any": "any verdict (reviewed)"}.get(v, v))
    judge = sb.selectbox("Judge", [None, *links.JUDGE_FILTERS], key="br_judge", placeholder="(all)",
                         format_func=lambda j: JUDGE_WORDS.get(j, j),
                         help="A judge's verdict on this run's answer against a baseline's (python -m evaluator judge)")
    range_metrics = sb.multiselect("Metric ranges", metrics, key="br_ranges")
    bounds = store.load_bounds(url, run_id, tuple(range_metrics)) if range_metrics else {}
    ranges = []
    for m in range_metrics:
        lo_b, hi_b = bounds.get(m, (None, None))
        hint = f"range in this run: {fmt.fmt_num(lo_b)} to {fmt.fmt_num(hi_b)}" if lo_b is not None else None
        sb.text(m)  # a metric name is data: plain text, never a (markdown) widget label
        for key in (f"br_lo_{m}", f"br_hi_{m}"):
            st.session_state.setdefault(key, None)  # a metric just added starts unbounded
        c1, c2 = sb.columns(2)
        lo = c1.number_input("min", key=f"br_lo_{m}", format="%g", help=hint)
        hi = c2.number_input("max", key=f"br_hi_{m}", format="%g", help=hint)
        ranges.append(db.MetricRange(m, lo, hi))
    sb.header("Sort")
    sort = sb.selectbox("Sort by", [None, *metrics, *SORT_EXTRA], key="br_sort", placeholder="dataset order",
                        format_func=lambda s: "dataset order" if s is None else SORT_EXTRA.get(s, s))
    desc = sb.toggle("Descending", key="br_desc")
    return query.replace(ranges=tuple(ranges), text=text or None, category=category, tag=tag.strip() or None,
                         failure=failure, verdict=verdict, judge=judge, sort=sort, descending=bool(desc))


def _verdicts(url: str, run_id: int, example_id: int) -> None:
    """The reviewers' verdicts on this example of this run, then the judges'."""
    ann = store.load_annotations(url, run_id, example_id)
    st.markdown("#### Verdicts")
    if ann.empty:
        st.caption("Not reviewed yet.")
    else:
        st.dataframe(ann, hide_index=True, width="stretch")
    _judges(url, run_id, example_id)


def _judges(url: str, run_id: int, example_id: int) -> None:
    """Every judge's verdict on this example that involved this run (this run is A), each reply as text."""
    judged = store.load_run_example_judgments(url, run_id, example_id)
    if judged.empty:
        return
    st.markdown("#### Judges")
    for _, j in judged.iterrows():
        if j["mode"] == "single":
            rating = "no rating" if pd.isna(j["score"]) else f"rated {j['score']:g} of 10"
            title = f"{j['judge']} (single): {rating}"
        else:
            other = j["baseline_id"] if int(j["candidate_id"]) == run_id else j["candidate_id"]
            words = fmt.verdict_words(j, run_id, ("this run", f"run #{int(other)}"))
            title = f"{j['judge']} ({j['mode']}) against run #{int(other)}: {words}"
        with st.expander(title):
            st.code(j["reply"] or "(empty reply)", language=None, wrap_lines=True)


def _detail(url: str, run_id: int, example_id: int) -> None:
    d = store.load_detail(url, run_id, example_id)
    if d is None:
        st.warning(f"Example {example_id} is not in run #{run_id}.")
        return
    st.subheader(f"Example {example_id}")
    st.text(f"row {d['row_index']} · key {d['key']} · category {d['category'] or '-'} · "
            f"tags {', '.join(map(str, d['tags'])) or '-'}")
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Output tokens", d["output_tokens"])
    m2.metric("Prompt tokens", d["prompt_tokens"])
    per_request = str((store.load_run(url, run_id) or {}).get("backend") or "").startswith("openai")
    m3.metric("Latency (ms)" if per_request else "Latency, batch average (ms)",
              "–" if d["latency_ms"] is None else f"{d['latency_ms']:.0f}",
              help="The request's own time." if per_request else
              "A local model generates a batch at once: this is the batch's time divided by its examples, "
              "the same for every example of the batch.")
    ppl = math.exp(d["ref_nll"] / d["ref_tokens"]) if d.get("ref_nll") is not None and d.get("ref_tokens") else None
    m4.metric("Reference perplexity", "–" if ppl is None else f"{ppl:.3g}")
    facts = pd.DataFrame([dict(finish_reason=d["finish_reason"], failures=", ".join(d["failures"]) or "none",
                               conversation=d["conversation_id"], turn=d["turn_index"])])
    st.dataframe(facts, hide_index=True, width="stretch")
    if d["error"]:
        st.text("Generation error:")
        st.code(d["error"], language=None, wrap_lines=True)

    st.markdown("#### Conversation")
    for msg in d["messages"]:
        role = str(msg.get("role", ""))
        name, avatar = ROLE_AVATARS.get(role, ("other", ":material/help:"))
        with st.chat_message(name, avatar=avatar):
            if name == "other":
                st.text(f"[{role}]")
            st.text(str(msg.get("content", "")))
    with st.chat_message("assistant", avatar=":material/smart_toy:"):
        st.text("model output:")
        st.text(d["output"] if d["output"].strip() else "(empty output)")

    st.markdown("#### Reference and output")
    left, right = st.columns(2)
    left.text("reference")
    left.code(d["reference"] if d["reference"] is not None else "(no reference)", language=None, wrap_lines=True)
    right.text("output")
    right.code(d["output"], language=None, wrap_lines=True)
    if d["reference"] is not None:
        diff = word_diff(d["reference"], d["output"])
        st.text("word differences: [-only in reference-] {+only in output+}")
        st.code(inline_diff(diff), language=None, wrap_lines=True)
        changed = diff[diff["op"] != "same"]
        if not changed.empty:
            colors = {"changed": "background-color: #fff3cd", "missing": "background-color: #f8d7da",
                      "extra": "background-color: #d1e7dd"}
            st.dataframe(changed.style.apply(lambda r: [colors.get(r["op"], "")] * len(r), axis=1),
                         hide_index=True, width="stretch")

    st.markdown("#### Metrics")
    mrows = [dict(metric=k, value=v, error=d["metric_errors"].get(k)) for k, v in d["metrics"].items()]
    st.dataframe(pd.DataFrame(mrows, columns=["metric", "value", "error"]), hide_index=True, width="stretch",
                 height="content", column_config={"value": st.column_config.NumberColumn(format="%.4g")})

    st.markdown("#### Token confidence")
    tf = token_frame(d["tokens"], d["logprobs"])
    if tf.empty:
        st.caption("No per-token log-probabilities were stored for this output.")
    else:
        if len(d["tokens"]) > MAX_TOKENS_SHOWN:
            st.caption(f"First {MAX_TOKENS_SHOWN} of {len(d['tokens'])} tokens.")
        st.caption("Each cell is one generated token, shaded by its probability under the model "
                   "(red: unsure, green: confident). · is a space, ⏎ a newline.")
        st.altair_chart(_token_chart(tf), width="stretch")

    _verdicts(url, run_id, example_id)
    if d["metadata"]:
        with st.expander("Metadata"):
            st.json(d["metadata"])


def _linked_query(p: dict[str, Any], all_runs: pd.DataFrame) -> tuple[db.ResultQuery, Optional[int]]:
    """The selection of the link, and the run it named when that run is not in the store (the newest
    candidate is shown instead)."""
    run_ids = [int(i) for i in all_runs["id"]]
    default_run = fmt.default_run(all_runs)
    try:
        linked = links.filters_from_params(p)
    except ValueError:
        linked = db.ResultQuery(run_id=default_run)
    if linked.run_id not in run_ids:
        return db.ResultQuery(run_id=default_run), linked.run_id
    return linked, None


def _seed_widgets(url: str, p: dict[str, Any], linked: db.ResultQuery) -> None:
    """1. link -> widgets."""
    metrics = store.load_run_metrics(url, linked.run_id)
    categories = store.load_categories(url, linked.run_id)
    ranges = [r for r in linked.ranges if r.metric in metrics]
    seeds: dict[str, Any] = {
        "br_run": linked.run_id, "br_text": linked.text or "",
        "br_category": linked.category if linked.category in categories else None,
        "br_tag": linked.tag or "", "br_failure": linked.failure, "br_verdict": linked.verdict, "br_judge": linked.judge,
        "br_ranges": [r.metric for r in ranges],
        "br_sort": linked.sort if linked.sort in metrics or linked.sort in SORT_EXTRA else None,
        "br_desc": linked.descending,
        "br_size": links.param_int(p, "size", 50) if links.param_int(p, "size") in links.PAGE_SIZES else 50,
        "br_page": max(1, links.param_int(p, "page", 1) or 1),
        "br_ex": links.param_int(p, "ex"),
    }
    for r in ranges:
        seeds[f"br_lo_{r.metric}"], seeds[f"br_hi_{r.metric}"] = r.lo, r.hi
    links.sync_widgets(PAGE, seeds)


def _pick_run(url: str, all_runs: pd.DataFrame, linked: db.ResultQuery) -> tuple[int, list[str]]:
    """2. the run, a line about it, and its metrics. Switching runs keeps the filters that still apply."""
    run_id = st.selectbox("Run", [int(i) for i in all_runs["id"]], key="br_run", format_func=fmt.run_label(all_runs))
    metrics = store.load_run_metrics(url, run_id)
    if run_id != linked.run_id:
        st.session_state["br_ranges"] = [m for m in st.session_state.get("br_ranges", []) if m in metrics]
        if st.session_state.get("br_sort") not in (None, *metrics, *SORT_EXTRA):
            st.session_state["br_sort"] = None
        if st.session_state.get("br_category") not in (None, *store.load_categories(url, run_id)):
            st.session_state["br_category"] = None
    run = store.load_run(url, run_id) or {}
    st.text(f"model {run.get('model')} · adapter {run.get('adapter') or '-'} · "
            f"dataset {run.get('dataset')}/{run.get('split') or '-'} · status {run.get('status')}")
    if run.get("status") == "running":
        st.info("This run is still being written: examples appear as they are evaluated.",
                icon=":material/hourglass_top:")
    return run_id, metrics


def _selection(url: str, run_id: int, linked: db.ResultQuery, metrics: list[str]) -> db.ResultQuery:
    """The filters (sidebar) and the link's example ids; a changed selection starts again at page 1."""
    query = _sidebar_filters(url, run_id, db.ResultQuery(run_id=run_id, example_ids=linked.example_ids), metrics)
    if query.example_ids:
        i1, i2 = st.columns([4, 1], vertical_alignment="center")
        i1.info(f"Showing only the {fmt.count(len(query.example_ids), 'example')} chosen by the link (ids=...).")
        if i2.button("Show all examples", key="br_clear_ids"):
            query = query.replace(example_ids=None)
    if query != linked:  # the selection changed: back to the first page, no example open
        st.session_state["br_page"] = 1
        st.session_state["br_ex"] = None
    return query


def _page_of_examples(url: str, run_id: int, query: db.ResultQuery) -> tuple[int, int]:
    """3. data and 4. render: one page of the selection, its pager and exports. Returns (page, size)."""
    size = st.session_state.get("br_size") or 50  # the pager is drawn below; its state is known already
    page = max(1, int(st.session_state.get("br_page") or 1))
    data = store.load_page(url, query, page - 1, size)
    total = data["total"]
    pages = max(1, math.ceil(total / size))
    if page > pages:  # a link or a narrower filter points past the end
        page = st.session_state["br_page"] = pages
        data = store.load_page(url, query, page - 1, size)
    rows: pd.DataFrame = data["rows"]
    c1, c2, c3, c4 = st.columns([2, 1, 1, 2], vertical_alignment="bottom")
    c1.markdown(f"**{total:,}** {'example matches' if total == 1 else 'examples match'} · page {page} of {pages}")
    page = c2.number_input("Page", min_value=1, step=1, key="br_page")
    size = c3.selectbox("Per page", links.PAGE_SIZES, key="br_size")
    c4.download_button("Export the selection to CSV", data=store.export_csv(url, query),
                       file_name=f"run{run_id}_examples.csv", mime="text/csv", key="br_export",
                       on_click="ignore", icon=":material/download:")
    c4.page_link(links.REVIEW_PAGE, label="Review these examples in a meeting", icon=":material/rate_review:",
                 query_params=links.filters_to_params(query))
    st.session_state["_br_page_ids"] = [int(i) for i in rows["example_id"]] if not rows.empty else []
    if rows.empty:
        st.info("No example matches these filters.")
        return page, size
    table = rows.assign(prompt=rows["prompt_text"].map(_snippet), output=rows["output"].map(_snippet),
                        reference=rows["reference"].map(_snippet))
    metric_cols = [c for c in table.columns if c.startswith("metric:")]
    # the metrics the selection sorts or filters on sit beside the key columns; the others follow the text
    focus = [c for c in dict.fromkeys(f"metric:{m}" for m in [query.sort, *(r.metric for r in query.ranges)])
             if c in metric_cols]
    show = ["example_id", "row_index", *focus, "category", "prompt", "output", "reference", "failures",
            "finish_reason", *[c for c in metric_cols if c not in focus], "output_tokens", "latency_ms"]
    st.dataframe(
        table[show], hide_index=True, key="br_table", selection_mode="single-row", width="stretch",
        on_select=links.row_picker("br_table", "_br_page_ids", "br_ex"),
        column_config={"example_id": st.column_config.NumberColumn("example", format="%d", pinned=True),
                       "row_index": st.column_config.NumberColumn("row", format="%d"),
                       **{c: st.column_config.NumberColumn(c.split(":", 1)[1], format="%.4g")
                          for c in metric_cols}},
    )
    return page, size


def _open_example(url: str, run_id: int) -> Optional[int]:
    ex_options = [None, *st.session_state.get("_br_page_ids", [])]
    current = st.session_state.get("br_ex")
    if current is not None and current not in ex_options:
        ex_options.append(current)  # an example from the link that is not on this page
    ex = st.selectbox("Open example (or select a row above)", ex_options, key="br_ex", placeholder="(none)",
                      format_func=lambda i: "(none)" if i is None else f"example {i}")
    if ex is not None:
        _detail(url, run_id, int(ex))
    return ex


def main() -> None:
    url = store.require_store()
    p = links.params()
    all_runs = store.load_run_index(url)
    if all_runs.empty:
        st.title("Example browser")
        st.info("This store has no runs yet: evaluate a model first (`python -m evaluator run ...`).")
        st.stop()
    linked, missing_run = _linked_query(p, all_runs)
    _seed_widgets(url, p, linked)
    st.title("Example browser")
    if missing_run is not None:
        st.warning(f"Run #{missing_run} is not in this store; showing the newest candidate run instead.")
    run_id, metrics = _pick_run(url, all_runs, linked)
    unknown = links.unknown_metrics(linked, metrics, SORT_EXTRA) if run_id == linked.run_id else []
    if unknown:
        st.warning(f"This link names metrics run #{run_id} does not have: {fmt.unknown_metrics_text(unknown, metrics)}. "
                   "They are left out of the filters and the sort.", icon=":material/warning:")
    query = _selection(url, run_id, linked, metrics)
    page, size = _page_of_examples(url, run_id, query)
    ex = _open_example(url, run_id)

    # widgets -> link
    out = links.filters_to_params(query)
    out.update(page=page if page > 1 else None, size=size if size != 50 else None, ex=ex)
    links.write_params(out, page=PAGE)


if __name__ == "__main__":  # st.navigation runs a page as __main__; tests import it for its helpers
    with store.guard():
        main()
