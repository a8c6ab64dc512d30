"""Review meeting: step through a queue built from a saved example-browser filter, one example at a time,
and record each reviewer's verdict; see agreement between reviewers; export the decision log.

Query parameters: view (saved view name), pos (1-based position in the queue), reviewer (your name).
Opened with example-browser filter parameters instead (run, category, range, ...: the browser's link
format), the page offers to save that filter as a named view for a new queue.

Verdicts are the only thing the dashboard writes; they go through ``store.write_session``.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Optional
from urllib.parse import parse_qs, urlencode, urlsplit

import pandas as pd
import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

import db
from dashboard import _auth
from dashboard import _format as fmt
from dashboard import _links as links
from dashboard import _review as review
from dashboard import _store as store

PAGE = "review"
FILTER_KEYS = ("run", "text", "category", "tag", "failure", "verdict", "range", "sort", "desc", "ids")
VIEW_STATE_KEYS = ("page", "size", "ex")  # the browser's view state: not part of a selection
ROLE_AVATARS = {"user": ("user", ":material/person:"), "assistant": ("assistant", ":material/smart_toy:"),
                "system": ("system", ":material/settings:")}
# ---------------------------------------------------------------- cached loaders


@store.cached
def load_views(url: str) -> list[dict[str, Any]]:
    return store.read(url, db.saved_views)


@store.cached
def load_queue(url: str, query: db.ResultQuery) -> dict[str, Any]:
    ids = store.read(url, db.queue_example_ids, query=query, limit=db.QUEUE_LIMIT)
    total = store.read(url, db.count_results, query=query) if len(ids) >= db.QUEUE_LIMIT else len(ids)
    return {"ids": ids, "total": total}


@store.cached
def load_verdicts(url: str, run_id: int, example_ids: Optional[tuple[int, ...]]) -> list[dict[str, Any]]:
    return store.read(url, db.latest_verdicts, run_id=run_id, example_ids=example_ids)


@store.cached
def load_log(url: str, run_id: int, example_ids: Optional[tuple[int, ...]], since: Optional[dt.date],
             reviewer: Optional[str]) -> list[dict[str, Any]]:
    since_dt = dt.datetime.combine(since, dt.time.min) if since else None
    return store.read(url, db.decision_log, run_ids=[run_id], example_ids=example_ids, since=since_dt, reviewer=reviewer)


@store.cached
def load_pass_rate(url: str, run_id: int) -> dict[str, Any]:
    return store.read(url, db.human_pass_rates, run_ids=[run_id])[run_id]


# ---------------------------------------------------------------- helpers


def _browser_params(p: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in p.items() if k in FILTER_KEYS}


def parse_link(text: str) -> dict[str, Any]:
    """Query parameters of a pasted example-browser link (or bare query string), without view state."""
    text = (text or "").strip()
    query = urlsplit(text).query if "?" in text else text
    parsed = parse_qs(query, keep_blank_values=False)
    return {k: (v if len(v) > 1 else v[0]) for k, v in parsed.items() if k not in VIEW_STATE_KEYS and v}


def _set_pos(pos: int) -> None:
    st.query_params["pos"] = str(pos)


def _flash(kind: str, text: str) -> None:
    st.session_state["_review_flash"] = (kind, text)


def _show_flash() -> None:
    kind, text = st.session_state.pop("_review_flash", (None, None))
    if kind == "success":
        st.success(text, icon=":material/check_circle:")
    elif kind == "error":
        st.error(text, icon=":material/error:")


def _show_example(detail: dict[str, Any]) -> None:
    st.text(f"row {detail['row_index']} · key {detail['key']} · category {detail['category'] or '-'} · "
            f"finish {detail['finish_reason']} · failures {', '.join(detail['failures']) or 'none'}")
    for msg in detail["messages"]:
        role = str(msg.get("role", ""))
        name, avatar = ROLE_AVATARS.get(role, ("other", ":material/help:"))
        with st.chat_message(name, avatar=avatar):
            if name in ("other", "system"):
                st.text(f"[{role}]")
            st.text(str(msg.get("content", "")))
    left, right = st.columns(2)
    with left:
        st.subheader("Model output")
        st.code(detail["output"] if detail["output"].strip() else "(empty output)", language=None, wrap_lines=True)
        if detail["error"]:
            st.text("generation error:")
            st.code(detail["error"], language=None, wrap_lines=True)
    with right:
        st.subheader("Reference")
        st.code(detail["reference"] if detail["reference"] is not None else "(no reference)", language=None,
                wrap_lines=True)
    metrics = pd.DataFrame([dict(metric=k, value=v) for k, v in detail["metrics"].items()],
                           columns=["metric", "value"])
    st.dataframe(metrics, hide_index=True, width="content", height="content",
                 column_config={"value": st.column_config.NumberColumn(format="%.4g")})


def _not_allowed(action: str) -> str:
    return (store.writes_off_reason() or f"{action.capitalize()} needs the reviewer role; you are a "
            f"{_auth.current_user().role} (an admin can change roles on the Team page).")


def _new_queue_section(url: str, p: dict[str, Any], reviewer: str) -> None:
    linked = _browser_params(p)
    with st.expander("New queue from an example-browser filter", expanded=bool(linked) or not load_views(url)):
        st.caption("In the example browser, set the filters of the examples to review (run, metric ranges, "
                   "category, ...), copy the page's address and paste it here, then name the queue.")
        if linked and "review_new_link" not in st.session_state:
            st.session_state["review_new_link"] = "?" + urlencode(linked, doseq=True)
        link = st.text_input("Example-browser link", key="review_new_link",
                             placeholder="paste the example browser's address (…/browser?run=…)")
        name = st.text_input("Queue name", key="review_new_name", placeholder="required: a name for the queue")
        if not store.may_write():
            st.caption(_not_allowed("saving a review queue"))
            return
        if st.button("Save as a review queue", key="review_new_save", icon=":material/playlist_add:"):
            params = parse_link(link)
            try:
                query = links.filters_from_params(params)
            except ValueError as exc:
                st.error(f"not an example-browser filter: {exc}")
                return
            if store.load_run(url, query.run_id) is None:
                st.error(f"run #{query.run_id} is not in this store")
                return
            run_metrics = store.load_run_metrics(url, query.run_id)
            unknown = links.unknown_metrics(query, run_metrics, db.SORT_COLUMNS)
            if unknown:
                st.error(f"The filter names metrics run #{query.run_id} does not have: "
                         f"{fmt.unknown_metrics_text(unknown, run_metrics)}. The queue would hold no example: "
                         "correct the link first.")
                return
            if not name.strip():
                st.error("give the queue a name")
                return
            if store.read(url, db.saved_view, name=name.strip()) is not None:  # uncached: someone may have just saved it
                st.error("a saved view with this name exists already: choose another name")
                return
            try:
                with store.write_session(url) as session:
                    db.save_view(session=session, name=name.strip(), params=params, created_by=reviewer)
            except SQLAlchemyError as exc:
                st.error(f"queue not saved: {review.write_error(exc)}")
                return
            except (ValueError, db.StoreError) as exc:
                st.error(f"queue not saved: {str(exc).splitlines()[0]}")
                return
            store.clear_caches()
            st.query_params.from_dict({"view": name.strip(), "pos": "1",
                                       **({"reviewer": reviewer} if reviewer and _auth.current_user().local else {})})
            st.rerun()


def _agreement_section(url: str, run_id: int, queue: list[int], keys: dict[int, str]) -> None:
    verdicts = load_verdicts(url, run_id, tuple(queue))
    st.subheader("Agreement between reviewers")
    if not verdicts:
        st.caption("No verdicts on this queue yet.")
        return
    a = review.agreement(verdicts)
    c1, c2, c3 = st.columns(3)
    c1.metric("Examples judged", a["examples"])
    c2.metric("Unanimous (of those judged by 2+)",
              "–" if a["unanimous_share"] is None else f"{a['unanimous_share']:.0%}",
              help=f"{a['unanimous']} of {a['overlapping']} examples judged by two or more reviewers")
    if a["kappa_kind"]:
        c3.metric(a["kappa_kind"], "undefined" if a["kappa"] is None else f"{a['kappa']:.2f}",
                  help=f"on {a['kappa_n']} examples judged by two or more reviewers; Cohen's kappa for two "
                       "reviewers, Fleiss' kappa for three or more (1 = perfect agreement, 0 = chance)")
    else:
        c3.metric("Kappa", "–", help="needs two reviewers judging the same examples")
    table = pd.DataFrame(review.verdict_table(verdicts, keys))
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"example_id": st.column_config.NumberColumn("example", format="%d")})
    if len(a["pairwise"]) > 1:
        st.text("Cohen's kappa of each pair of reviewers:")
        st.dataframe(pd.DataFrame(a["pairwise"]), hide_index=True,
                     column_config={"kappa": st.column_config.NumberColumn(format="%.2f")})


def _log_section(url: str, run_id: int, queue: list[int], view_name: str, verdicts_agreement: dict) -> None:
    st.subheader("Decision log")
    c1, c2, c3 = st.columns([2, 1, 3])
    scope = c1.radio("Verdicts", ["this queue", "whole run"], key="review_log_scope", horizontal=True)
    since = c2.date_input("Given since", value=None, key="review_log_since", format="YYYY-MM-DD")
    base = c3.text_input("Dashboard address for links", value=review.base_url(page_url=st.context.url),
                         key="review_base_url",
                         help=f"default from ${review.BASE_URL_ENV}, else the address this page was opened at")
    log = load_log(url, run_id, tuple(queue) if scope == "this queue" else None, since, None)
    if not log:
        st.caption("No verdicts to export yet.")
        return
    frame = pd.DataFrame(log)[["created_at", "reviewer", "verdict", "comment", "key", "example_id", "category",
                               "latest"]]
    st.dataframe(frame, hide_index=True, width="stretch",
                 column_config={"created_at": st.column_config.DatetimeColumn("time", format="YYYY-MM-DD HH:mm"),
                                "example_id": st.column_config.NumberColumn("example", format="%d"),
                                "latest": st.column_config.CheckboxColumn("current")})
    stem = f"decision-log-run{run_id}-{dt.date.today().isoformat()}"
    d1, d2 = st.columns(2)
    d1.download_button("Download Markdown", data=review.decision_log_markdown(
        log, base, title=view_name, agreement_summary=verdicts_agreement), file_name=f"{stem}.md",
        mime="text/markdown", key="review_export_md", on_click="ignore", icon=":material/download:")
    d2.download_button("Download CSV", data=review.decision_log_csv(log, base), file_name=f"{stem}.csv",
                       mime="text/csv", key="review_export_csv", on_click="ignore", icon=":material/download:")


# ---------------------------------------------------------------- page


def _pick_queue(url: str, p: dict[str, Any], views: list[dict[str, Any]]) -> tuple[str, Optional[str]]:
    """1. link -> widgets, 2. the reviewer's name and the queue (a saved view). Returns (reviewer, view name)."""
    names = [v["name"] for v in views]
    linked_view = links.param_str(p, "view")
    remembered = st.session_state.get("_review_name", "")
    links.sync_widgets(PAGE, {
        "review_reviewer": links.param_str(p, "reviewer", remembered) or "",
        "review_view": linked_view if linked_view in names else (names[0] if names and not _browser_params(p)
                                                                 else None),
    })
    st.title("Review")
    if store.load_run_index(url).empty:
        st.info("This store has no runs yet: evaluate a model first (`python -m evaluator run ...`).")
        st.stop()
    _show_flash()
    c1, c2 = st.columns([1, 2])
    user = _auth.current_user()
    if user.local:
        reviewer = c1.text_input("Your name", key="review_reviewer", max_chars=200,
                                 help="saved with each verdict; kept in the link (reviewer=...)").strip()
        if reviewer:
            st.session_state["_review_name"] = reviewer
    else:  # signed in: verdicts are saved under the identity the provider gave, not a typed name
        reviewer = user.email or ""
        c1.text_input("Reviewer (signed in)", value=reviewer, disabled=True, key="review_identity")
    view_name = c2.selectbox("Review queue (a saved example-browser filter)", names, key="review_view",
                             index=None, placeholder="choose a saved view")
    if linked_view and linked_view not in names:
        st.warning("The link names a saved view that does not exist (any more); choose another.")
        st.text(f"view in the link: {linked_view}")
    return reviewer, view_name


def _view_query(url: str, view: dict[str, Any]) -> tuple[db.ResultQuery, dict[str, Any]]:
    """The saved view's selection and its run; a view that no longer applies stops the page with why."""
    st.text("filter: " + json.dumps(view["params"], ensure_ascii=False, sort_keys=True))
    try:
        query = links.filters_from_params(view["params"])
    except ValueError as exc:
        store.fail(f"This saved view is not a usable example-browser filter: {exc}")
    run = store.load_run(url, query.run_id)
    if run is None:
        store.fail(f"This saved view points at run #{query.run_id}, which is not in this store.")
    return query, run


def _queue(url: str, view: dict[str, Any], query: db.ResultQuery, run: dict[str, Any]) -> list[int]:
    """3. data: the queue is a snapshot per session, so verdicts given now do not reorder it mid-meeting."""
    signature = (view["name"], json.dumps(view["params"], sort_keys=True))
    snap = st.session_state.get("_review_queue")
    if snap is None or snap["signature"] != signature:
        snap = dict(signature=signature, **load_queue(url, query))
        st.session_state["_review_queue"] = snap
    queue, total = snap["ids"], snap["total"]
    if st.button("Rebuild the queue from the filter", key="review_refresh", icon=":material/refresh:",
                 help="re-run the saved filter (e.g. after new results or when it selects unreviewed examples)"):
        st.session_state.pop("_review_queue", None)
        load_queue.clear()
        st.rerun()
    st.text(f"run #{run['id']} {run['name']} · {run['dataset']}/{run['split'] or '-'} · "
            f"{total:,} {'example matches' if total == 1 else 'examples match'}" + (f" (the first {len(queue):,} are queued)" if total > len(queue) else ""))
    return queue


def _navigation(run_id: int, queue: list[int], pos: int, judged: set[int], mine: dict[int, Any],
                reviewer: str) -> None:
    """4. render: where the meeting is in the queue, and the buttons that move through it."""
    st.progress(len(judged) / len(queue), text=f"example {pos} of {len(queue)} · {len(judged)} judged by someone"
                + (f" · {len(mine)} by you" if reviewer else ""))
    n1, n2, n3, n4 = st.columns(4)
    n1.button("Previous", key="review_prev", on_click=_set_pos, args=(pos - 1,), disabled=pos <= 1,
              icon=":material/arrow_back:", shortcut="p", help="key: p")
    n2.button("Next", key="review_next", on_click=_set_pos, args=(pos + 1,), disabled=pos >= len(queue),
              icon=":material/arrow_forward:", shortcut="n", help="key: n")
    todo = [i for i, e in enumerate(queue, 1) if e not in mine and i != pos] if reviewer else []
    after = [i for i in todo if i > pos] or todo
    n3.button("Next I have not judged", key="review_next_todo", on_click=_set_pos,
              args=(after[0] if after else pos,), disabled=not after, icon=":material/skip_next:")
    n4.page_link(links.BROWSER_PAGE, label="Open in the example browser", icon=":material/open_in_new:",
                 query_params={"run": str(run_id), "ex": str(queue[pos - 1])})


def _verdict_form(url: str, run_id: int, example_id: int, mine: dict[int, Any], reviewer: str,
                  next_pos: Optional[int]) -> None:
    """The verdicts already given on this example, and this reviewer's own (saved through ``_review``)."""
    st.subheader("Verdicts on this example")
    ann = store.load_annotations(url, run_id, example_id)
    if ann.empty:
        st.caption("Not reviewed yet.")
    else:
        st.dataframe(ann, hide_index=True, width="stretch")

    st.subheader("Your verdict")
    if not store.may_write():
        st.caption(_not_allowed("recording a verdict"))
        return
    vkey, ckey = f"review_verdict_{run_id}_{example_id}", f"review_comment_{run_id}_{example_id}"
    if vkey not in st.session_state:
        st.session_state[vkey] = mine.get(example_id, {}).get("verdict")
    if ckey not in st.session_state:
        st.session_state[ckey] = mine.get(example_id, {}).get("comment", "")
    comment = st.text_area("Comment", key=ckey, height=100, placeholder="why? what should change? (optional)")
    # One key per verdict saves it at once (with the comment) and moves on: 1 pass, 2 fail: model error, ...
    # (keys typed in the comment box stay text: press Esc or click outside it first).
    quick = None
    for i, (col, v) in enumerate(zip(st.columns(len(db.VERDICTS)), db.VERDICTS), 1):
        if col.button(f"{i} · {v}", key=f"review_key_{i}", shortcut=str(i), width="stretch",
                      type="primary" if st.session_state.get(vkey) == v else "secondary",
                      help=f"press {i}: save '{v}' with the comment"):
            quick = v
    verdict = st.radio("Verdict", db.VERDICTS, key=vkey, horizontal=True, index=None,
                       label_visibility="collapsed")
    s1, s2 = st.columns([1, 3], vertical_alignment="center")
    advance = s2.checkbox("Go to the next example after saving (keys: p previous, n next)", value=True,
                          key="review_advance")
    if s1.button("Save verdict", key="review_save", type="primary", icon=":material/save:", shortcut="Ctrl+Enter",
                 help="Ctrl+Enter") or quick is not None:
        verdict = quick or verdict
        error = review.record_verdict(lambda: store.write_session(url), run_id=run_id,
                                      example_id=example_id, reviewer=reviewer, verdict=verdict, comment=comment)
        if error:
            st.error(error, icon=":material/error:")
        else:
            store.clear_caches()
            _flash("success", f"Verdict saved on example {example_id}: {verdict}.")
            if advance and next_pos is not None:
                st.query_params["pos"] = str(next_pos)
            st.rerun()


def _run_summary(url: str, run_id: int, queue: list[int], keys: dict[int, str], view_name: str,
                 verdicts: list[dict[str, Any]]) -> None:
    """The run's human pass rate, reviewer agreement and the decision log."""
    st.divider()
    rate = load_pass_rate(url, run_id)
    m1, m2 = st.columns(2)
    m1.metric("Human pass rate on this run", "–" if rate["pass_rate"] is None else f"{rate['pass_rate']:.0%}",
              help="examples whose reviewers (each one's latest verdict) mostly said pass, "
                   f"of {rate['reviewed']} reviewed")
    m2.metric("Examples reviewed in this run", rate["reviewed"])
    keys = dict(keys)
    keys.update({r["example_id"]: r["key"] for r in load_log(url, run_id, tuple(queue), None, None)})
    _agreement_section(url, run_id, queue, keys)
    _log_section(url, run_id, queue, view_name, review.agreement(verdicts))


def main() -> None:
    url = store.require_store()
    p = links.params()
    views = load_views(url)
    reviewer, view_name = _pick_queue(url, p, views)
    named = reviewer if _auth.current_user().local else None  # a typed name goes in the link; an identity does not
    _new_queue_section(url, p, reviewer)
    if view_name is None:
        st.info("Choose a saved view to build the review queue, or save a new one above.")
        links.write_params({"reviewer": named, **_browser_params(p)}, page=PAGE)
        return
    view = next(v for v in views if v["name"] == view_name)
    query, run = _view_query(url, view)
    queue = _queue(url, view, query, run)
    if not queue:
        st.info("No example matches this saved filter.")
        links.write_params({"view": view_name, "reviewer": named}, page=PAGE)
        return
    pos = min(max(1, links.param_int(p, "pos", 1) or 1), len(queue))
    example_id = queue[pos - 1]
    verdicts = load_verdicts(url, query.run_id, tuple(queue))
    mine = {v["example_id"]: v for v in verdicts if reviewer and v["reviewer"] == reviewer}
    _navigation(query.run_id, queue, pos, {v["example_id"] for v in verdicts}, mine, reviewer)
    detail = store.load_detail(url, query.run_id, example_id)
    if detail is None:
        st.warning(f"Example {example_id} is no longer in run #{query.run_id} (it may have been deleted); "
                   "skip it with Next.")
    else:
        _show_example(detail)
    _verdict_form(url, query.run_id, example_id, mine, reviewer, pos + 1 if pos < len(queue) else None)
    _run_summary(url, query.run_id, queue, {} if detail is None else {example_id: detail["key"]}, view_name,
                 verdicts)

    # widgets -> link
    links.write_params({"view": view_name, "pos": pos, "reviewer": named}, page=PAGE)


with store.guard():
    main()
