"""One pass threshold per dataset and metric, stored in the store and used by every page that speaks of
pass and fail (error analysis, history, compare's flips).

A result passes when its value is on the metric's good side of the threshold: ``>=`` when higher is
better, ``<=`` when lower is. Until the team stores one, pages propose the middle of the metric's
usual scale (0.5 on 0-1 metrics, 50 on 0-100 ones), the same on every page and for every run of the
dataset; a link's ``thr`` overrides it for that view only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

import db
from dashboard import _auth
from dashboard import _format as fmt
from dashboard import _links as links
from dashboard import _review as review
from dashboard import _store as store


@dataclass(frozen=True)
class PassRule:
    metric: str
    higher_is_better: bool
    threshold: float  # what the page uses now
    default: float  # without a link: the stored threshold, else the proposal (left out of links)
    stored: Optional[float]  # None: nobody stored one for this dataset and metric


def proposed(bounds: Optional[tuple[float, float]]) -> float:
    """The threshold proposed before one is stored: 0.5 for a metric whose values lie in [0, 1], 50 for
    [0, 100] (BLEU, chrF), else the middle of the values seen, rounded to two significant digits."""
    if bounds is None:
        return 0.5
    lo, hi = bounds
    if lo >= 0.0 and hi <= 1.0:
        return 0.5
    if lo >= 0.0 and hi <= 100.0:
        return 50.0
    return float(f"{(lo + hi) / 2:.2g}")


def passes(value: Any, rule: PassRule) -> bool:
    return value is not None and (value >= rule.threshold if rule.higher_is_better else value <= rule.threshold)


def pass_rule(container: Any, url: str, p: dict[str, Any], *, dataset_id: int, metric: str, higher_is_better: bool,
              bounds: Optional[tuple[float, float]], key: str) -> PassRule:
    """The threshold input of a page (keyed by dataset and metric, so another run of the same dataset keeps
    it and another dataset does not), seeded from the link, else the stored threshold, else the proposal;
    with a button that stores what is typed as the dataset's threshold."""
    stored_row = store.load_thresholds(url, dataset_id).get(metric)
    stored = None if stored_row is None else stored_row["threshold"]
    default = stored if stored is not None else proposed(bounds)
    # The link's thr belongs to the dataset and metric it was written for: after switching to a run of
    # another dataset it is not carried over (the new dataset's threshold applies).
    owner_key, here = f"_{key}_thr_owner", (dataset_id, metric)
    owner = st.session_state.get(owner_key)
    linked = links.param_float(p, "thr") if links.param_str(p, "metric") == metric and owner in (None, here) else None
    st.session_state[owner_key] = here
    sign = "≥" if higher_is_better else "≤"
    threshold = float(container.number_input(
        f"Pass threshold (value {sign} threshold passes)", value=float(linked if linked is not None else default),
        key=f"{key}_thr_{dataset_id}_{metric}", format="%g",
        help=(f"Stored for this dataset by {stored_row['set_by'] or 'someone'}: {stored:g}." if stored_row else
              f"No threshold is stored for {metric} on this dataset yet: {default:g} is proposed.")))
    if threshold != stored and store.may_write() and container.button(f"Store {threshold:g} as {metric}'s pass threshold on this dataset",
                                               key=f"{key}_thr_save_{dataset_id}_{metric}",
                                               icon=":material/save:"):
        _store(url, dataset_id, metric, threshold)
    return PassRule(metric, higher_is_better, threshold, default, stored)


def _store(url: str, dataset_id: int, metric: str, threshold: float) -> None:
    user = _auth.current_user()  # signed in: the email; local mode: the name given on the review page, if any
    who = str(st.session_state.get("review_reviewer") or "") if user.local else user.email
    try:
        with store.write_session(url) as session:
            db.set_pass_threshold(session=session, dataset_id=dataset_id, metric=metric, threshold=threshold,
                                  set_by=who)
    except SQLAlchemyError as exc:
        st.error(f"The threshold was not stored: {fmt.escape_markdown(review.write_error(exc))}")
        return
    except (ValueError, db.StoreError) as exc:
        st.error(f"The threshold was not stored: {fmt.escape_markdown(str(exc).splitlines()[0])}")
        return
    store.clear_caches()
    st.toast(f"{metric}: pass threshold {fmt.fmt_num(threshold, 6)} stored for this dataset")
    st.rerun()
