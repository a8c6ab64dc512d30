"""The ``outputs:FILE`` backend: answers produced elsewhere, read from a file instead of generated.

Accepted files (``.json``: a list of objects; ``.jsonl``: one object per line):

- AlpacaEval's ``model_outputs.json``: ``{"instruction", "output", "generator", ...}``;
- an earlier ``python -m evaluator export`` in JSONL: ``{"example_key", "messages", "output",
  "finish_reason", "output_tokens", "error", ...}`` (other keys are ignored).

Each example of the run is matched, in this order, on the first rule its file rows allow:

1. ``example_key`` equal to the example's key (keys are content hashes: same dataset row, same key);
2. ``messages`` equal to the example's conversation (the prompt, without the answer);
3. ``instruction`` (or ``prompt``) equal to the example's only user message, white space collapsed —
   only for examples whose conversation has one user turn and no assistant turn (a system prompt is
   ignored: AlpacaEval instructions carry none).

Nothing is guessed: an example without a matching row, or with rows of different outputs, gets an
``error`` result saying so (it is then left out of means and comparisons); file rows that match no
example are counted and logged with their reasons, and the counts are stored with the run
(``runs.repro.backend``). The run's model is the file's ``generator`` (the file name when it has
none); a file holding outputs of several generators is refused.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from evaluator.errors import UserError
from evaluator.types import Generation, GenerationSettings, Message

log = logging.getLogger(__name__)

PREFIX = "outputs:"
_FINISH = ("stop", "length", "error")
_SHOWN_REASONS = 20  # unmatched-row reasons kept with the run


class OutputsFileError(UserError, ValueError):
    """The outputs file cannot be used; the message says why."""


def _norm(text: Any) -> str:
    return " ".join(str(text).split())


def _messages_key(messages: Sequence[Message]) -> str:
    return json.dumps([{"role": m.get("role"), "content": m.get("content")} for m in messages],
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def single_prompt(messages: Sequence[Message]) -> Optional[str]:
    """The conversation's user message when it is the only turn besides system prompts, else None."""
    users = [m for m in messages if m.get("role") == "user"]
    others = [m for m in messages if m.get("role") not in ("user", "system")]
    if len(users) != 1 or others:
        return None
    return _norm(users[0].get("content", ""))


@dataclass
class OutputsFile:
    path: str
    rows: list[dict[str, Any]]
    generator: str
    sha256: str
    by_key: dict[str, list[int]] = field(default_factory=dict)
    by_messages: dict[str, list[int]] = field(default_factory=dict)
    by_prompt: dict[str, list[int]] = field(default_factory=dict)


def read_outputs(path: str) -> OutputsFile:
    """Parse and index an outputs file (see the module docstring for the formats)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise OutputsFileError(f"outputs file {path} does not exist")
    raw = p.read_bytes()
    text = raw.decode("utf-8-sig")
    try:
        if p.suffix.lower() == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = json.loads(text)
    except ValueError as exc:
        raise OutputsFileError(f"outputs file {path} is not valid JSON{'L' if p.suffix == '.jsonl' else ''}: "
                               f"{exc}") from None
    if isinstance(rows, dict):  # {"outputs": [...]} or similar single-key wrappers
        lists = [v for v in rows.values() if isinstance(v, list)]
        rows = lists[0] if len(lists) == 1 else rows
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise OutputsFileError(f"outputs file {path}: expected a list of objects (AlpacaEval model_outputs.json) "
                               "or JSON lines of objects (evaluator export)")
    generators = sorted({str(r["generator"]) for r in rows if r.get("generator")})
    if len(generators) > 1:
        shown = ", ".join(generators[:5])
        raise OutputsFileError(f"outputs file {path} holds outputs of {len(generators)} generators ({shown}): "
                               "split it into one file per generator")
    out = OutputsFile(path=str(p), rows=rows, generator=generators[0] if generators else p.stem,
                      sha256=hashlib.sha256(raw).hexdigest())
    for i, r in enumerate(rows):
        if r.get("example_key"):
            out.by_key.setdefault(str(r["example_key"]), []).append(i)
        if isinstance(r.get("messages"), list):
            out.by_messages.setdefault(_messages_key(r["messages"]), []).append(i)
        prompt = r.get("instruction", r.get("prompt"))
        if isinstance(prompt, str):
            out.by_prompt.setdefault(_norm(prompt), []).append(i)
    return out


def _output_of(row: dict[str, Any]) -> Optional[str]:
    value = row.get("output", row.get("response"))
    return value if isinstance(value, str) else None


class OutputsBackend:
    """Looks answers up instead of generating them. ``generate`` needs the examples' keys."""

    name = "outputs"
    uses_example_keys = True  # the runner passes ``keys=`` to ``generate``

    def __init__(self, source: OutputsFile):
        self.source = source
        self.matched = 0
        self.missing = 0
        self.unused_rows = 0
        self.unused_reasons: list[str] = []

    def _match(self, key: Optional[str], messages: Sequence[Message]) -> tuple[list[int], Optional[int], str]:
        """(rows that match, the row to use or None, how it matched or why none is used)."""
        src = self.source
        rule, found = "", []
        if key is not None and key in src.by_key:
            rule, found = "example_key", src.by_key[key]
        elif _messages_key(messages) in src.by_messages:
            rule, found = "messages", src.by_messages[_messages_key(messages)]
        else:
            prompt = single_prompt(messages)
            if prompt is not None and prompt in src.by_prompt:
                rule, found = "prompt", src.by_prompt[prompt]
        if not found:
            return [], None, (f"no output for this example in {src.path} (matched on example_key, messages, or "
                              "an instruction equal to the example's only user message)")
        outputs = {_output_of(src.rows[i]) for i in found}
        if None in outputs:
            return found, None, (f"rows {[i + 1 for i in found]} of {src.path} match this example but have no "
                                 "'output' text")
        if len(outputs) > 1:
            return found, None, (f"{len(found)} rows of {src.path} match this example on {rule} with "
                                 f"{len(outputs)} different outputs; not choosing one")
        return found, found[0], rule

    def generate(self, conversations: Sequence[Sequence[Message]], settings: GenerationSettings, *,
                 on_batch=None, progress: bool = True, keys: Optional[Sequence[str]] = None) -> list[Generation]:
        src = self.source
        keys = list(keys) if keys is not None else [None] * len(conversations)
        gens: list[Generation] = []
        used: set[int] = set()
        how: Counter[str] = Counter()
        for key, messages in zip(keys, conversations):
            found, idx, why = self._match(key, messages)
            used.update(found)
            if idx is None:
                self.missing += 1
                gens.append(Generation(text="", token_ids=[], tokens=[], logprobs=[], finish_reason="error",
                                       error=why, count_known=False))
                continue
            row = src.rows[idx]
            how[why] += 1
            self.matched += 1
            finish = row.get("finish_reason") if row.get("finish_reason") in _FINISH else "stop"
            count = row.get("output_tokens")
            gens.append(Generation(
                text=_output_of(row) or "", token_ids=[], tokens=[], logprobs=[], finish_reason=finish,
                prompt_tokens=int(row.get("prompt_tokens") or 0), error=row.get("error") or None,
                token_count=int(count) if isinstance(count, int) else None, count_known=isinstance(count, int),
            ))
        self._report_unused(used, keys)
        log.info("outputs %s: %d of %d examples matched (%s), %d without an output", src.path, self.matched,
                 len(conversations), ", ".join(f"{k} {v}" for k, v in sorted(how.items())) or "none", self.missing)
        if on_batch is not None and gens:
            on_batch(list(range(len(gens))), gens)
        return gens

    def _report_unused(self, used: set[int], keys: Sequence[Optional[str]]) -> None:
        src = self.source
        wanted_keys = {k for k in keys if k is not None}
        reasons = []
        for i, row in enumerate(src.rows):
            if i in used:
                continue
            if row.get("example_key") and str(row["example_key"]) not in wanted_keys:
                reasons.append(f"row {i + 1}: example_key {row['example_key']} is not an example of this run")
            elif isinstance(row.get("instruction", row.get("prompt")), str):
                text = _norm(row.get("instruction", row.get("prompt")))
                reasons.append(f"row {i + 1}: instruction matches no example: {text[:80]!r}")
            elif isinstance(row.get("messages"), list):
                reasons.append(f"row {i + 1}: messages match no example")
            else:
                reasons.append(f"row {i + 1}: no example_key, messages or instruction to match on")
        self.unused_rows = len(reasons)
        self.unused_reasons = reasons[:_SHOWN_REASONS]
        if reasons:
            log.warning("outputs %s: %d of %d rows match no example of this run (not used), e.g. %s",
                        src.path, len(reasons), len(src.rows), "; ".join(reasons[:3]))

    def reference_logprobs(self, conversations, references) -> list[list[float]]:
        raise NotImplementedError("stored outputs carry no model to teacher-force the references with")

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.name, "outputs_file": self.source.path, "outputs_sha256": self.source.sha256,
            "generator": self.source.generator, "rows": len(self.source.rows), "matched_examples": self.matched,
            "examples_without_output": self.missing, "unmatched_rows": self.unused_rows,
            "unmatched_reasons": list(self.unused_reasons),
        }

    def close(self) -> None:
        pass


def load_outputs(path: str) -> OutputsBackend:
    return OutputsBackend(read_outputs(path))
