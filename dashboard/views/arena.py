"""Arena: chat with two versions side by side through their OpenAI-compatible endpoints, blind; vote; keep a good
conversation as a test example. The page talks to endpoints only (``evaluator._arena``), never loads weights.

Query parameters: none (a match lives in the session).
"""
from __future__ import annotations

import os
import threading
import time
from typing import Optional

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

import db
from dashboard import _arena as arena
from dashboard import _auth
from dashboard import _format as fmt
from dashboard import _review as review
from dashboard import _store as store
from evaluator._arena import ChatSettings, EndpointError, list_models, stream_answer

URL_ENV = "EVAL_ARENA_URL"  # the endpoint both sides start with
DEFAULT_URL = "http://127.0.0.1:8000/v1"
MATCH = "arena_match"


@st.cache_data(ttl=15, show_spinner=False)
def _models(base_url: str) -> tuple[list[str], Optional[str]]:
    """(model ids, None) or ([], why the endpoint cannot list them)."""
    try:
        return list_models(base_url), None
    except EndpointError as exc:
        return [], str(exc)


def _contender(col, side: str, default_model: int) -> Optional[arena.Contender]:
    url = col.text_input(f"Endpoint {side}", value=os.environ.get(URL_ENV, DEFAULT_URL), key=f"arena_url_{side}",
                         help="the API root of any OpenAI-compatible server: `python -m evaluator serve`, vLLM, ...")
    models, problem = _models(url.strip())
    if problem:
        col.error(fmt.escape_markdown(problem), icon=":material/cloud_off:")
        return None
    if not models:
        col.warning("This endpoint lists no models.")
        return None
    model = col.selectbox(f"Model {side}", models, index=min(default_model, len(models) - 1), key=f"arena_model_{side}")
    return arena.Contender(url.strip(), model)


def _opening(url: str) -> Optional[list[dict[str, str]]]:
    """The conversation of a stored example to start from, when one is picked."""
    datasets = store.load_datasets(url)
    if not datasets:
        return None
    labels = fmt.dataset_labels(datasets)
    c1, c2, c3 = st.columns([2, 2, 3])
    ds = c1.selectbox("Start from a stored example (optional)", [None, *labels], format_func=lambda i: labels.get(i, "—"),
                      key="arena_dataset", placeholder="a dataset")
    if ds is None:
        return None
    text = c2.text_input("Search its prompts", key="arena_search")
    found = store.load_examples_found(url, ds, text)
    by_id = {r["id"]: r for r in found}
    example = c3.selectbox("Example", [None, *by_id], key="arena_example", placeholder="an example",
                           format_func=lambda i: "—" if i is None else f"{by_id[i]['key']}: {by_id[i]['prompt'][:80]}")
    return store.load_example_messages(url, example) if example is not None else None


def _setup(url: str) -> None:
    st.subheader("Choose the two contenders")
    c1, c2 = st.columns(2)
    a, b = _contender(c1, "1", 0), _contender(c2, "2", 1)
    s1, s2, s3 = st.columns(3)
    settings = ChatSettings(max_tokens=s1.number_input("Max new tokens", 1, 4096, 256, key="arena_max_tokens"),
                            temperature=s2.number_input("Temperature", 0.0, 2.0, 0.7, 0.1, key="arena_temperature"),
                            seed=s3.number_input("Seed (0: none)", 0, 2**31 - 1, 0, key="arena_seed") or None)
    opening = _opening(url)
    if opening and opening[-1]["role"] != "user":
        opening = None
    if st.button("Start a blind match", type="primary", icon=":material/swords:", disabled=a is None or b is None,
                 key="arena_start"):
        st.session_state[MATCH] = arena.Match.start(a, b, settings.as_dict(), opening=opening)
        st.rerun()


def _show(match: arena.Match, columns, hidden: bool) -> list:
    """Both histories, left and right; the placeholders where the next answers stream."""
    slots = []
    for col, position in zip(columns, ("left", "right")):
        key = match.side(position)
        name = "A" if position == "left" else "B"
        col.markdown(f"**{name}**" + ("" if hidden else f": {fmt.escape_markdown(match.contender(key).label())}"))
        for m in match.conversation(key):
            with col.chat_message(m["role"], avatar=":material/person:" if m["role"] == "user"
                                  else ":material/smart_toy:"):
                st.text(m["content"])
        slots.append(col.empty())
    return slots


def _answer_both(match: arena.Match, slots) -> Optional[str]:
    """Stream both answers at once into the placeholders; None, or why a side failed (its answer not added)."""
    keys = [match.side("left"), match.side("right")]
    texts, errors, done = {k: "" for k in keys}, {}, {k: False for k in keys}
    settings = ChatSettings(**match.settings)

    def work(key: str) -> None:
        c = match.contender(key)
        try:
            texts[key] = stream_answer(c.endpoint, c.model, match.conversation(key), settings,
                                       lambda t: texts.__setitem__(key, t))
        except EndpointError as exc:
            errors[key] = str(exc)
        finally:
            done[key] = True

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in keys]
    for t in threads:
        t.start()
    while not all(done.values()):
        for slot, k in zip(slots, keys):
            slot.text(texts[k] or "…")
        time.sleep(0.05)
    if errors:  # nothing is added to either side, so the histories stay in step
        return "; ".join(errors.values())
    for k in keys:
        match.add_answer(k, texts[k])
    return None


def _reviewer() -> str:
    user = _auth.current_user()
    if not user.local:
        return user.email or ""
    return st.text_input("Your name", key="arena_reviewer", max_chars=200, help="saved with the vote").strip()


def _vote(url: str, match: arena.Match) -> None:
    if not store.may_write():
        st.caption(store.writes_off_reason() or "Voting needs the reviewer role.")
        return
    st.subheader("Which answer is better?")
    reviewer = _reviewer()
    comment = st.text_input("Comment (optional)", key="arena_comment")
    for col, (choice, label) in zip(st.columns(len(arena.CHOICES)), arena.CHOICES.items()):
        if col.button(label, key=f"arena_vote_{choice}", width="stretch"):
            verdict = match.verdict_of(choice)
            try:
                with store.write_session(url) as session:
                    vote_id = db.add_arena_vote(
                        session=session, reviewer=reviewer, model_a=match.a.model, model_b=match.b.model,
                        endpoint_a=match.a.endpoint, endpoint_b=match.b.endpoint, left=match.left, verdict=verdict,
                        conversation_a=match.conversation_a, conversation_b=match.conversation_b,
                        settings=match.settings, comment=comment)
            except db.ArenaError as exc:
                st.error(str(exc))
                return
            except SQLAlchemyError as exc:
                st.error(f"vote not saved: {review.write_error(exc)}")
                return
            match.vote_id, match.verdict = vote_id, verdict
            store.clear_caches()
            st.rerun()


def _after_vote(url: str, match: arena.Match) -> None:
    said = {"a": match.a.model, "b": match.b.model}.get(match.verdict, match.verdict)
    st.success(f"Vote saved: {fmt.escape_markdown(said if match.verdict not in ('tie', 'both bad') else match.verdict)}"
               f"{' is better' if match.verdict in ('a', 'b') else ''}. A was "
               f"{fmt.escape_markdown(match.contender(match.side('left')).label())}, B was "
               f"{fmt.escape_markdown(match.contender(match.side('right')).label())}.", icon=":material/how_to_vote:")
    kept = match.kept()
    if kept is None or match.kept_id is not None:
        if match.kept_id is not None:
            st.info(f"Kept as test example {match.kept_id}.")
        return
    c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
    set_name = c1.text_input("Keep as a test example in the set", value="arena", key="arena_set")
    if c2.button("Keep as a test example", icon=":material/bookmark_add:", key="arena_keep"):
        messages, reference = kept
        try:
            with store.write_session(url) as session:
                match.kept_id = db.keep_example(session=session, set_name=set_name, messages=messages,
                                                reference=reference, vote_id=match.vote_id, kept_by=_reviewer())
        except (db.ArenaError, SQLAlchemyError) as exc:
            st.error(str(exc) if isinstance(exc, db.ArenaError) else f"not kept: {review.write_error(exc)}")
            return
        store.clear_caches()
        st.rerun()


def _kept(url: str) -> None:
    sets = store.load_kept_sets(url)
    if not sets:
        return
    st.subheader("Kept test examples")
    st.caption("Each set downloads as JSONL in the messages format (the preferred answer as the reference): "
               "`python -m evaluator run --dataset FILE` evaluates the next version on it. "
               "`python -m evaluator export_kept NAME` writes the same file.")
    for s in sets:
        c1, c2 = st.columns([3, 1], vertical_alignment="center")
        c1.text(f"{s['set_name']}: {fmt.count(s['examples'], 'example')}")
        c2.download_button("Download JSONL", store.load_kept_jsonl(url, s["set_name"]), key=f"arena_dl_{s['set_name']}",
                           file_name=f"{s['set_name']}.jsonl", mime="application/jsonl", icon=":material/download:")


def main() -> None:
    url = store.require_store()
    st.title("Arena")
    st.caption("Chat with two versions at once. Which side is which is drawn at random and hidden until you vote; "
               "votes feed the preference rating on the runs page.")
    match: Optional[arena.Match] = st.session_state.get(MATCH)
    if match is None:
        _setup(url)
        _kept(url)
        return
    slots = _show(match, st.columns(2), hidden=match.verdict is None)
    if match.verdict is None:
        prompt = st.chat_input("Message both", key="arena_prompt")
        if prompt:
            match.add_user(prompt)
            problem = _answer_both(match, slots)
            if problem:  # the message is taken back on both sides: type it again when the endpoint is back
                for k in ("a", "b"):
                    match.conversation(k).pop()
                st.error(fmt.escape_markdown(problem), icon=":material/cloud_off:")
            else:
                st.rerun()
        elif match.conversation_a and match.conversation_a[-1]["role"] == "user":  # opened from an example
            problem = _answer_both(match, slots)
            if problem:
                st.error(fmt.escape_markdown(problem), icon=":material/cloud_off:")
            else:
                st.rerun()
        if match.answered:
            _vote(url, match)
    else:
        _after_vote(url, match)
    if st.button("New match", icon=":material/restart_alt:", key="arena_new"):
        del st.session_state[MATCH]
        st.rerun()
    _kept(url)


with store.guard():
    main()
