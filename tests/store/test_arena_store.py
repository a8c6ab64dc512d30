"""The Arena's tables on SQLite and PostgreSQL: votes as given, refused votes write nothing, kept examples per
named set, and the preferences of every source read back with the runs' names."""
from __future__ import annotations

import pytest

import db

CONV_A = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! =1+1"}]
CONV_B = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}]


def _vote(s, **overrides):
    fields = dict(reviewer="ana", model_a="v2", model_b="v3", endpoint_a="http://127.0.0.1:8000/v1",
                  endpoint_b="http://127.0.0.1:8001/v1", left="b", verdict="b", conversation_a=CONV_A,
                  conversation_b=CONV_B, settings={"temperature": 0.7, "max_tokens": 64}, comment="crisper")
    fields.update(overrides)
    return db.add_arena_vote(session=s, **fields)


def test_a_vote_is_stored_as_given_with_its_preference(any_engine):
    Session = db.session_factory(any_engine)
    with Session.begin() as s:
        first = _vote(s)
        second = _vote(s, verdict="both bad", left="a", reviewer="  bo  ")
    with Session() as s:
        votes = db.arena_votes(session=s)
    assert [v["id"] for v in votes] == [second, first]  # newest first
    old = votes[1]
    assert (old["model_a"], old["model_b"], old["left"], old["verdict"], old["preference"]) == ("v2", "v3", "b", "b", 0.0)
    assert old["conversation_a"] == CONV_A and old["conversation_b"] == CONV_B
    assert old["settings"] == {"temperature": 0.7, "max_tokens": 64} and old["comment"] == "crisper"
    assert (votes[0]["reviewer"], votes[0]["preference"]) == ("bo", 0.5)


@pytest.mark.parametrize("change, message", [
    ({"reviewer": " "}, "enter your name"),
    ({"verdict": "A"}, "unknown verdict"),
    ({"left": "x"}, "left is"),
    ({"conversation_b": []}, "conversation B is empty"),
    ({"conversation_a": [{"role": "wizard", "content": "x"}]}, "every message needs a role"),
])
def test_a_refused_vote_says_why_and_writes_nothing(any_engine, change, message):
    Session = db.session_factory(any_engine)
    with pytest.raises(db.ArenaError, match=message):
        with Session.begin() as s:
            _vote(s, **change)
    with Session() as s:
        assert db.arena_votes(session=s) == []


def test_kept_examples_are_listed_per_set_in_order(any_engine):
    Session = db.session_factory(any_engine)
    with Session.begin() as s:
        vote = _vote(s)
        first = db.keep_example(session=s, set_name="arena", messages=CONV_B[:1], reference="Hey", vote_id=vote,
                                kept_by="ana")
        db.keep_example(session=s, set_name="billing", messages=[{"role": "user", "content": "refund?"}],
                        reference="Yes, within 30 days.")
        second = db.keep_example(session=s, set_name="arena", messages=CONV_A + [{"role": "user", "content": "More"}],
                                 reference="Sure")
    with Session() as s:
        sets = db.kept_sets(session=s)
        rows = db.kept_examples(session=s, set_name="arena")
    assert [(x["set_name"], x["examples"]) for x in sets] == [("arena", 2), ("billing", 1)]
    assert [r["id"] for r in rows] == [first, second]
    assert rows[0]["vote_id"] == vote and rows[0]["kept_by"] == "ana" and rows[1]["messages"][-1]["content"] == "More"


@pytest.mark.parametrize("messages, reference, set_name, message", [
    (CONV_A, "x", "arena", "ends with the user turn"),
    (CONV_B[:1], "  ", "arena", "reference answer is empty"),
    (CONV_B[:1], "x", " ", "name the set"),
])
def test_a_refused_kept_example_says_why(any_engine, messages, reference, set_name, message):
    Session = db.session_factory(any_engine)
    with pytest.raises(db.ArenaError, match=message):
        with Session.begin() as s:
            db.keep_example(session=s, set_name=set_name, messages=messages, reference=reference)
    with Session() as s:
        assert db.kept_sets(session=s) == []
