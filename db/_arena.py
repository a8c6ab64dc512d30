"""The Arena's store: blind votes between served versions, conversations kept as test examples, and the
pairwise preferences of every source (arena votes, judges, reviewers) that feed one rating per version."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from db._errors import UserError
from db._models import Annotation, ArenaVote, ExampleRow, Judgment, KeptExample, Run, utcnow

# verdict -> the probability that A is better; "both bad" counts as a tie between the two, as in Chatbot Arena
ARENA_VERDICTS = {"a": 1.0, "b": 0.0, "tie": 0.5, "both bad": 0.5}
ROLES = ("system", "user", "assistant")


class ArenaError(UserError, ValueError):
    """A vote or kept example that cannot be stored as given (nothing was written)."""


def _check_conversation(messages: Sequence[Any], what: str) -> list[dict[str, str]]:
    out = []
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ArenaError(f"{what}: every message needs a role ({', '.join(ROLES)}) and text content")
        out.append({"role": m["role"], "content": m["content"]})
    if not out:
        raise ArenaError(f"{what} is empty")
    return out


def add_arena_vote(*, session: Session, reviewer: str, model_a: str, model_b: str, endpoint_a: str,
                   endpoint_b: str, left: str, verdict: str, conversation_a: Sequence[Any],
                   conversation_b: Sequence[Any], settings: Optional[dict[str, Any]] = None,
                   comment: str = "") -> int:
    """Store one vote; its id. ``verdict`` is one of ``ARENA_VERDICTS`` ("a", "b", "tie", "both bad")."""
    reviewer = (reviewer or "").strip()
    if not reviewer:
        raise ArenaError("enter your name before voting")
    if verdict not in ARENA_VERDICTS:
        raise ArenaError(f"unknown verdict {verdict!r}; one of {', '.join(ARENA_VERDICTS)}")
    if left not in ("a", "b"):
        raise ArenaError(f"left is 'a' or 'b', not {left!r}")
    vote = ArenaVote(reviewer=reviewer[:200], model_a=model_a, model_b=model_b, endpoint_a=endpoint_a,
                     endpoint_b=endpoint_b, left=left, verdict=verdict, preference=ARENA_VERDICTS[verdict],
                     comment=comment or "", conversation_a=_check_conversation(conversation_a, "conversation A"),
                     conversation_b=_check_conversation(conversation_b, "conversation B"),
                     settings=dict(settings or {}), created_at=utcnow())
    session.add(vote)
    session.flush()
    return vote.id


def arena_votes(*, session: Session, limit: Optional[int] = None) -> list[dict[str, Any]]:
    """Votes, newest first: id, reviewer, model_a, model_b, endpoint_a, endpoint_b, left, verdict, preference,
    comment, conversation_a, conversation_b, settings, created_at."""
    t = ArenaVote.__table__
    stmt = select(t).order_by(t.c.id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    return [dict(r._mapping) for r in session.execute(stmt)]


def keep_example(*, session: Session, set_name: str, messages: Sequence[Any], reference: str,
                 vote_id: Optional[int] = None, kept_by: str = "") -> int:
    """Keep a conversation (up to and including its last user turn) with ``reference`` as the answer expected
    after it, in the named set; its id."""
    set_name = (set_name or "").strip()
    if not set_name:
        raise ArenaError("name the set the example is kept in")
    messages = _check_conversation(messages, "the conversation")
    if messages[-1]["role"] != "user":
        raise ArenaError("a kept conversation ends with the user turn the reference answers")
    if not (reference or "").strip():
        raise ArenaError("the reference answer is empty")
    row = KeptExample(set_name=set_name[:300], messages=messages, reference=reference, vote_id=vote_id,
                      kept_by=(kept_by or "")[:200], created_at=utcnow())
    session.add(row)
    session.flush()
    return row.id


def kept_sets(*, session: Session) -> list[dict[str, Any]]:
    """The named sets of kept examples: set_name, examples, last (newest created_at); by name."""
    stmt = (select(KeptExample.set_name, func.count().label("examples"), func.max(KeptExample.created_at).label("last"))
            .group_by(KeptExample.set_name).order_by(KeptExample.set_name))
    return [dict(r._mapping) for r in session.execute(stmt)]


def kept_examples(*, session: Session, set_name: str) -> list[dict[str, Any]]:
    """The examples of one set in the order they were kept: id, messages, reference, vote_id, kept_by,
    created_at."""
    t = KeptExample.__table__
    stmt = (select(t.c.id, t.c.messages, t.c.reference, t.c.vote_id, t.c.kept_by, t.c.created_at)
            .where(t.c.set_name == set_name).order_by(t.c.id))
    return [dict(r._mapping) for r in session.execute(stmt)]


def judge_preferences(*, session: Session) -> list[dict[str, Any]]:
    """Every pairwise judgment with a preference between two runs, with the runs' names: candidate, baseline,
    candidate_id, baseline_id, judge_key, example_id, order, preference."""
    cand, base = aliased(Run), aliased(Run)
    stmt = (select(cand.name.label("candidate"), base.name.label("baseline"), Judgment.candidate_id,
                   Judgment.baseline_id, Judgment.judge_key, Judgment.example_id, Judgment.order, Judgment.preference)
            .join(cand, cand.id == Judgment.candidate_id).join(base, base.id == Judgment.baseline_id)
            .where(Judgment.preference.is_not(None))
            .order_by(Judgment.judge_key, Judgment.candidate_id, Judgment.baseline_id, Judgment.example_id))
    return [dict(r._mapping) for r in session.execute(stmt)]


def reviewer_verdicts(*, session: Session) -> list[dict[str, Any]]:
    """Every reviewer's latest verdict per (run, example), with the run's name: run, run_id, example_id,
    reviewer, verdict; for preferences between two runs one reviewer judged on the same example."""
    latest = (select(func.max(Annotation.id).label("id"))
              .group_by(Annotation.reviewer, Annotation.run_id, Annotation.example_id).subquery())
    stmt = (select(Run.name.label("run"), Annotation.run_id, Annotation.example_id, Annotation.reviewer,
                   Annotation.verdict)
            .join(latest, latest.c.id == Annotation.id).join(Run, Run.id == Annotation.run_id)
            .order_by(Annotation.reviewer, Annotation.example_id, Annotation.run_id))
    return [dict(r._mapping) for r in session.execute(stmt)]


def example_messages(*, session: Session, example_id: int) -> Optional[list[dict[str, str]]]:
    """The conversation a stored example gives the model (up to its last user turn), to start an Arena chat
    from; None when there is no such example."""
    return session.scalar(select(ExampleRow.messages).where(ExampleRow.id == example_id))
