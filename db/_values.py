"""Small value vocabularies shared by the writer (evaluator) and the reader (dashboard)."""
from __future__ import annotations

import datetime as dt
import enum
from array import array
from typing import Any, Iterable, Optional, Sequence


def utcnow() -> dt.datetime:
    """The store's clock: naive UTC (every timestamp column holds UTC without a zone)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class FailureKind(enum.IntFlag):
    """Bits of ``results.failures``; a result may have several."""

    EMPTY = 1  # the output is empty or white space
    TRUNCATED = 2  # generation hit max_new_tokens
    REPETITION = 4  # the output loops on a repeated n-gram
    PROMPT_TRUNCATED = 8  # the prompt was cut from the left to fit the context
    ERROR = 16  # generation raised an error for this example

    @classmethod
    def names(cls, mask: int) -> list[str]:
        return [k.name.lower() for k in cls if mask & k.value]

    @classmethod
    def parse(cls, name: str) -> "FailureKind":
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown failure kind {name!r}; one of {[k.name.lower() for k in cls]}") from None


FAILURE_KINDS = [k.name.lower() for k in FailureKind]

# Human verdicts of the review mode, in the order the dashboard shows them.
VERDICTS = [
    "pass",
    "fail: model error",
    "fail: reference wrong",
    "fail: metric misleading",
    "needs discussion",
]


def pack_logprobs(values: Optional[Iterable[float]]) -> Optional[bytes]:
    """Per-token log-probabilities as little-endian float32 bytes (4 bytes a token)."""
    if values is None:
        return None
    arr = array("f", values)
    if array("I", [1]).tobytes()[0] != 1:  # big-endian host
        arr.byteswap()
    return arr.tobytes()


def unpack_logprobs(blob: Optional[bytes]) -> list[float]:
    if not blob:
        return []
    arr = array("f")
    arr.frombytes(blob)
    if array("I", [1]).tobytes()[0] != 1:
        arr.byteswap()
    return arr.tolist()


def prompt_text(messages: Sequence[dict]) -> str:
    """Plain text of a conversation, one "role: content" block per message (for search and display)."""
    return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in messages)


# ---------------------------------------------------------------- spreadsheets

# A cell starting with one of these is run as a formula by Excel, LibreOffice and Google Sheets
# (OWASP "CSV injection"); tab and carriage return start one after the delimiter in some of them.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text: a string that would start a formula gets a leading
    apostrophe. Numbers pass unchanged (a negative metric value is a number, not a formula)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value
