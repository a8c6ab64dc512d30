"""Split one normalised conversation into (prompt messages, reference, turn_index) triples.

``turn_index`` is the index, among the conversation's assistant turns, of the turn the model must produce:
``n`` for a conversation that ends in a user turn after ``n`` assistant turns.

- ``last``: one triple. A conversation ending in an assistant turn gives the messages before it (system
  turns kept) and that turn as the reference; one ending in a user turn gives the whole conversation and
  ``None``.
- ``all``: one triple per assistant turn that follows a user turn, with the gold history before it, plus
  the ``last`` triple of a conversation ending in a user turn. Assistant turns before the first user turn
  (a greeting) are history only. The ``last`` triple is always the final ``all`` triple.
- ``rollout``: one triple per user turn, as MT-Bench's second turn: the model answers each user turn with its
  *own* earlier answers as the history. The prompt keeps the system turns, a greeting and the user turns up to
  that one (the dataset's later assistant turns are references, not history); the reference is the assistant
  turn that follows the user turn, if any. ``rolled_out`` puts a run's own answers back in, at generation and
  whenever the conversation is shown or judged.
"""
from __future__ import annotations

from typing import Optional

from evaluator.data._errors import RowError, is_blank
from evaluator.types import Message

TURNS = ("last", "all", "rollout")

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
    if turns == "rollout":
        return _rollout(msgs, first_user)
    if turns == "last":
        return [open_end] if open_end else [triple(last, len(assistant_at) - 1)]
    out = [triple(i, t) for t, i in enumerate(assistant_at) if i > first_user]
    if open_end:
        out.append(open_end)
    return out


def _rollout(msgs: list[Message], first_user: int) -> list[Triple]:
    kept = [dict(m) for i, m in enumerate(msgs) if m["role"] != "assistant" or i < first_user]
    out: list[Triple] = []
    users = [i for i, m in enumerate(kept) if m["role"] == "user"]
    gold = [i for i, m in enumerate(msgs) if m["role"] == "user"]
    for t, (k, g) in enumerate(zip(users, gold)):
        after = msgs[g + 1] if g + 1 < len(msgs) else None
        reference = after["content"] if after is not None and after["role"] == "assistant" else None
        if reference is not None and is_blank(reference):
            raise RowError(f"message {g + 1} (assistant) is the reference but is empty")
        out.append((kept[: k + 1], reference, t))
    return out


def rolled_out(messages: list[Message], answers: list[str]) -> list[Message]:
    """A ``rollout`` prompt with the model's own answers to its earlier user turns put back after each of them
    (``answers[j]`` after the j-th user turn); ``answers`` holds one answer per user turn but the last."""
    out: list[Message] = []
    users = sum(m["role"] == "user" for m in messages)
    if len(answers) != users - 1:
        raise ValueError(f"a prompt with {users} user turns needs {users - 1} earlier answers, got {len(answers)}")
    seen = 0
    for m in messages:
        out.append(dict(m))
        if m["role"] == "user" and seen < len(answers):
            out.append({"role": "assistant", "content": answers[seen]})
            seen += 1
    return out


FAILED_ANSWER = "(no answer: generation failed)"


def rollout_prompts(items: list[dict], answers: dict[tuple[str, int], Optional[str]]) -> list[list[Message]]:
    """What a ``rollout`` run was given for each item (``messages``, ``conversation_id``, ``turn_index``), from
    ``answers`` (``db.conversation_answers``: (conversation, turn) -> the run's output, None where it failed)."""
    out = []
    for it in items:
        history = [answers.get((it["conversation_id"], t)) for t in range(it["turn_index"] or 0)]
        out.append(rolled_out(it["messages"], [FAILED_ANSWER if a is None else a for a in history]))
    return out
