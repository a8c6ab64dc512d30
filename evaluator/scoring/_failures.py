"""Failure kinds of one result, as a ``db.FailureKind`` bit set.

================  ==============================================================================
EMPTY             the output is empty or only white space
TRUNCATED         generation stopped at max_new_tokens (``finish_reason == "length"``)
REPETITION        the output ends in a loop (see ``repetition_period``)
PROMPT_TRUNCATED  the prompt was cut from the left to fit the context
ERROR             generation raised for this example (``finish_reason == "error"`` or an error text)
================  ==============================================================================

The repetition detector works on characters with all white space removed, so it treats "no no no",
"no\\nno\\nno" and CJK text without spaces alike. The output is flagged when its tail is periodic:
some unit of p characters (1 ≤ p ≤ ``MAX_PERIOD``) repeats back-to-back at least ``MIN_COPIES``
times at the very end, and the repeating tail is at least ``MIN_CHARS`` characters long. The last
copy may be cut short (a loop that hit max_new_tokens). The length floor keeps short legitimate
repeats ("Thanks!!!", "ha ha ha") from counting; a loop whose copies differ (a counter that
increments, "step 1 … step 2 …") is not detected.
"""
from __future__ import annotations

from typing import Optional

from db import FailureKind
from evaluator.types import Sample

MIN_COPIES = 3
MIN_CHARS = 30
MAX_PERIOD = 100
_TAIL_CHARS = 4 * MIN_COPIES * MAX_PERIOD  # enough raw text to hold the longest tail we test


def repetition_period(text: str) -> Optional[int]:
    """Length in characters (white space removed) of the repeating unit the text ends in, or None.

    The smallest p with: the last max(MIN_COPIES·p, MIN_CHARS) characters satisfy t[i] == t[i+p].
    """
    s = "".join(text[-_TAIL_CHARS:].split())
    n = len(s)
    for p in range(1, MAX_PERIOD + 1):
        span = max(MIN_COPIES * p, MIN_CHARS)
        if span > n:
            break
        tail = s[n - span:]
        if tail[p:] == tail[:-p]:
            return p
    return None


def failure_mask(sample: Sample) -> int:
    """The ``db.FailureKind`` bits that apply to this sample (0 for a clean answer)."""
    mask = 0
    output = sample.output or ""
    if not output.strip():
        mask |= FailureKind.EMPTY
    if sample.finish_reason == "length":
        mask |= FailureKind.TRUNCATED
    if output.strip() and repetition_period(output) is not None:
        mask |= FailureKind.REPETITION
    if sample.prompt_truncated:
        mask |= FailureKind.PROMPT_TRUNCATED
    if sample.error or sample.finish_reason == "error":
        mask |= FailureKind.ERROR
    return int(mask)
