"""The Arena page's state, without Streamlit: one blind match between two endpoints' models, each side with
its own history, the side order drawn at random, and what a vote and a kept example are made of."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Optional

# what the reviewer clicks -> which side it favours
CHOICES = {"left": "A is better", "right": "B is better", "tie": "Tie", "both bad": "Both are bad"}


@dataclass
class Contender:
    endpoint: str
    model: str

    def label(self) -> str:
        return f"{self.model} at {self.endpoint}"


@dataclass
class Match:
    """``a`` and ``b`` as chosen (stored as model_a and model_b); ``left`` says which is shown on the left."""

    a: Contender
    b: Contender
    left: str  # "a" or "b"
    settings: dict[str, Any]
    conversation_a: list[dict[str, str]] = field(default_factory=list)
    conversation_b: list[dict[str, str]] = field(default_factory=list)
    vote_id: Optional[int] = None
    verdict: Optional[str] = None  # "a", "b", "tie", "both bad" once voted
    kept_id: Optional[int] = None

    @classmethod
    def start(cls, a: Contender, b: Contender, settings: dict[str, Any], rng: Optional[random.Random] = None,
              opening: Optional[list[dict[str, str]]] = None) -> "Match":
        rng = rng or random.SystemRandom()
        history = [dict(m) for m in (opening or [])]
        return cls(a=a, b=b, left=rng.choice("ab"), settings=dict(settings), conversation_a=list(history),
                   conversation_b=[dict(m) for m in history])

    def side(self, position: str) -> str:
        """"a" or "b": the contender shown at ``position`` ("left" or "right")."""
        return self.left if position == "left" else ("b" if self.left == "a" else "a")

    def contender(self, key: str) -> Contender:
        return self.a if key == "a" else self.b

    def conversation(self, key: str) -> list[dict[str, str]]:
        return self.conversation_a if key == "a" else self.conversation_b

    def add_user(self, text: str) -> None:
        for conv in (self.conversation_a, self.conversation_b):
            conv.append({"role": "user", "content": text})

    def add_answer(self, key: str, text: str) -> None:
        self.conversation(key).append({"role": "assistant", "content": text})

    @property
    def answered(self) -> bool:
        """Both sides answered the last user turn (a vote is about the answers on screen)."""
        return all(c and c[-1]["role"] == "assistant" for c in (self.conversation_a, self.conversation_b))

    def verdict_of(self, choice: str) -> str:
        """The stored verdict ("a", "b", "tie", "both bad") of a click on ``CHOICES``' key."""
        if choice in ("left", "right"):
            return self.side(choice)
        if choice in ("tie", "both bad"):
            return choice
        raise ValueError(f"unknown choice {choice!r}")

    def kept(self) -> Optional[tuple[list[dict[str, str]], str]]:
        """(the preferred side's conversation up to its last user turn, its last answer) after a vote for one
        side; None after a tie or both bad (no answer to keep as the reference)."""
        if self.verdict not in ("a", "b"):
            return None
        conv = self.conversation(self.verdict)
        return [dict(m) for m in conv[:-1]], conv[-1]["content"]
