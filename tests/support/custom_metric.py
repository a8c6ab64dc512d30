"""A user's own metric, loaded with ``--metric tests.support.custom_metric:politeness`` (tests/scoring/test_score_added_metric.py)."""
from __future__ import annotations

CALLS: list[str] = []  # the outputs it was computed on, in this process


def politeness(sample) -> float:
    """1 when the output says please, sorry or thank, else 0."""
    CALLS.append(sample.output)
    text = sample.output.lower()
    return float(any(w in text for w in ("please", "sorry", "thank")))


politeness.higher_is_better = True
