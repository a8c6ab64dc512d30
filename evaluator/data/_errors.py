"""Errors raised by the data package."""
from __future__ import annotations

from evaluator.errors import UserError


class DataError(UserError, ValueError):
    """A problem with the whole dataset (not found, unreadable, format undecidable).

    The message is one line that says what to do. Problems with single rows are never raised:
    they become :class:`evaluator.types.Rejected` records.
    """


class RowError(Exception):
    """Internal: one row cannot become an example; ``str(exc)`` is the reason (without the row prefix)."""


def describe_type(value: object) -> str:
    """'null', 'a list', 'an int', ... for reasons such as "field 'prompt' is an int, expected a string"."""
    if value is None:
        return "null"
    name = type(value).__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def is_blank(text: str) -> bool:
    """Empty or whitespace only (without copying long texts as ``strip`` would)."""
    return not text or text.isspace()
