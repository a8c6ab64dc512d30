"""Split one normalised conversation into (prompt messages, reference, turn_index) triples.

``turn_index`` is the index, among the conversation's assistant turns, of the turn the model must produce:
``n`` for a conversation that ends in a user turn after ``n`` assistant turns.

- ``last``: one triple. A conversation ending in an assistant turn gives the messages before it (system
  turns kept) and that turn as the reference; one ending in a user turn gives the whole conversation and
  ``None``.
- ``all``: one triple per assistant turn that follows a user turn, with the gold history before it, plus
  the ``last`` triple of a conversation ending in a user turn. Assistant turns before the first user turn
  (a greeting) are history only. The ``last`` triple is always the final ``all`` triple.
"""
from __future__ import annotations

from typing import Optional

from evaluator.data._errors import RowError, is_blank
from evaluator.types import Message

TURNS = ("last", "all")

Triple = tuple[list[Message], Optional[str], int]


def split_turns(msgs: list[Message], turns: str) -> list[Triple]:
    if not msgs:
        raise RowError("empty conversation")
    roles = [m["role"] for m in msgs]
    if "user" not in roles:
        raise RowError("conversation has no user turn")
    for i, m in enumerate(msgs):
        if m["role"] == "user" and is_blank(m["content"]):
            raise RowError(f"message {i} (user) is empty")
    last = len(msgs) - 1
    if roles[last] == "system":
        raise RowError(f"conversation ends with a system turn (message {last})")
    assistant_at = [i for i, r in enumerate(roles) if r == "assistant"]
    first_user = roles.index("user")

    def triple(i: int, t: int) -> Triple:
        if is_blank(msgs[i]["content"]):
            hint = "" if turns == "last" else "; with turns=all every assistant turn after a user turn is a reference"
            raise RowError(f"message {i} (assistant) is the reference but is empty{hint}")
        return [dict(m) for m in msgs[:i]], msgs[i]["content"], t

    open_end: Optional[Triple] = None
    if roles[last] == "user":
        open_end = ([dict(m) for m in msgs], None, len(assistant_at))
    if turns == "last":
        return [open_end] if open_end else [triple(last, len(assistant_at) - 1)]
    out = [triple(i, t) for t, i in enumerate(assistant_at) if i > first_user]
    if open_end:
        out.append(open_end)
    return out
