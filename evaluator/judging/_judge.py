"""Running a judge: a candidate run against a baseline run, every example in both orders, stored as it goes.

The judge is any model the evaluator can run (a local transformers or Unsloth model, or ``openai:MODEL``
with ``--base-url``), loaded with ``evaluator.models.load_backend`` and asked through its ``generate``: the
same batching, concurrency, retries and back-off as an evaluation. The prompt is a template (the built-in
one, or ``--template FILE``, YAML or JSON with ``system`` and ``user``) filled with the conversation, both
answers and, in ``reference`` mode, the reference answer. The judge ends its reply with ``[[A]]``, ``[[B]]``
or ``[[C]]`` (a tie); the last such mark counts.

Each order is one judgment: "ab" shows the candidate as assistant A, "ba" as assistant B. Judgments are
stored after every batch of the backend, keyed by (candidate, baseline, example, order, judge config), so a
killed run loses at most a batch and a re-run judges only what is missing. A reply with no verdict is stored as
a judge failure (``preference`` None, ``error`` saying so), and so is a verdict given on a prompt cut to fit the
judge's context (it did not see everything); a request that failed (``finish_reason`` "error") is not stored,
so the next run asks again.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

import db
from evaluator.errors import UserError
from evaluator.judging._summary import score_summary, summarize
from evaluator.types import Generation, GenerationSettings

MODES = ("pairwise", "reference", "single")
FIELD = re.compile(r"\{(conversation|answer_a|answer_b|reference)\}")
VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")
SCORE = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_PREFERENCE = {("ab", "A"): 1.0, ("ab", "B"): 0.0, ("ba", "A"): 0.0, ("ba", "B"): 1.0}

SYSTEM = (
    "Please act as an impartial judge and evaluate the responses of two AI assistants to the conversation "
    "below. Choose the assistant that answers the user's last message better: consider helpfulness, "
    "relevance, accuracy, depth and level of detail.{reference_rule} Do not let the order in which the "
    "responses appear, their length or the assistants' names influence you. Be as objective as possible. "
    "After a short explanation, give your final verdict strictly in this format: \"[[A]]\" if assistant A "
    "is better, \"[[B]]\" if assistant B is better, and \"[[C]]\" for a tie.")
REFERENCE_RULE = " Compare both responses with the reference answer, which is correct; identify their mistakes."
USER = ("[The Start of the Conversation]\n{conversation}\n[The End of the Conversation]\n\n{reference_block}"
        "[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n"
        "[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]")
REFERENCE_BLOCK = "[The Start of the Reference Answer]\n{reference}\n[The End of the Reference Answer]\n\n"
SINGLE_SYSTEM = (
    "Please act as an impartial judge and evaluate the response of an AI assistant to the conversation below. "
    "Consider helpfulness, relevance, accuracy, depth and level of detail. Be as objective as possible. After a "
    "short explanation, rate the response on a scale of 1 to 10 strictly in this format: \"Rating: [[5]]\".")
SINGLE_USER = ("[The Start of the Conversation]\n{conversation}\n[The End of the Conversation]\n\n"
               "[The Start of the Assistant's Answer]\n{answer_a}\n[The End of the Assistant's Answer]")


class JudgeError(UserError, ValueError):
    """The judging cannot start: the message says why (a bad template, nothing to judge)."""


@dataclass
class Template:
    system: str
    user: str

    @classmethod
    def load(cls, path: Optional[str | Path], mode: str) -> "Template":
        if mode not in MODES:
            raise JudgeError(f"mode is one of {', '.join(MODES)}, not {mode!r}")
        if path is None and mode == "single":
            return cls(SINGLE_SYSTEM, SINGLE_USER)
        if path is None:
            ref = mode == "reference"
            return cls(SYSTEM.replace("{reference_rule}", REFERENCE_RULE if ref else ""),
                       USER.replace("{reference_block}", REFERENCE_BLOCK if ref else ""))
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise JudgeError(f"cannot read the template {path}: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("system", "user")):
            raise JudgeError(f"{path}: a template has a 'system' and a 'user' text")
        needed = ("{answer_a}", "{conversation}") if mode == "single" else ("{answer_a}", "{answer_b}", "{conversation}")
        for field_ in needed + (("{reference}",) if mode == "reference" else ()):
            if field_ not in data["user"]:
                raise JudgeError(f"{path}: the user text has no {field_}")
        return cls(data["system"], data["user"])

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps([self.system, self.user]).encode()).hexdigest()

    def messages(self, item: dict[str, Any], order: str) -> list[dict[str, str]]:
        a, b = ((item["candidate_output"], item["baseline_output"]) if order == "ab"
                else (item["baseline_output"], item["candidate_output"]))
        conversation = "\n\n".join(f"### {m['role'].capitalize()}:\n{m['content']}" for m in item["messages"])
        values = {"conversation": conversation, "answer_a": a, "answer_b": b or "", "reference": item.get("reference") or ""}
        # one pass over the template: braces in a conversation or an answer are text, never fields
        user = FIELD.sub(lambda m: values[m.group(1)], self.user)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


def parse_verdict(reply: str, order: str) -> tuple[Optional[str], Optional[float]]:
    """(verdict letter, the candidate's preference) from the last [[A]]/[[B]]/[[C]] of the reply."""
    found = VERDICT.findall(reply or "")
    if not found:
        return None, None
    letter = found[-1]
    return letter, 0.5 if letter == "C" else _PREFERENCE[(order, letter)]


def parse_score(reply: str) -> Optional[float]:
    """The last [[N]] of the reply, when it is a rating from 1 to 10."""
    found = [float(x) for x in SCORE.findall(reply or "")]
    return found[-1] if found and 1 <= found[-1] <= 10 else None


def weighted_verdict(gen: Generation, order: str) -> Optional[tuple[float, dict[str, Optional[float]]]]:
    """(the candidate's preference, the log-probabilities of A, B and C) weighted by the judge's probabilities at
    its verdict, when the backend gave the most likely tokens there: at the last generated "A", "B" or "C" that
    follows "[[", P(A), P(B) and P(C) are summed over the alternatives that read as each letter and normalised;
    the preference is P(the candidate's letter) + P(C) / 2 (as AlpacaEval's weighted annotators do)."""
    if not gen.top_logprobs or len(gen.top_logprobs) != len(gen.tokens):
        return None
    for i in range(len(gen.tokens) - 1, -1, -1):
        if gen.tokens[i].strip() in ("A", "B", "C") and "".join(gen.tokens[:i]).rstrip().endswith("[["):
            alternatives = {**gen.top_logprobs[i], gen.tokens[i]: gen.logprobs[i]} if gen.logprobs else gen.top_logprobs[i]
            p = {x: sum(math.exp(lp) for t, lp in alternatives.items() if t.strip() == x) for x in "ABC"}
            total = sum(p.values())
            if total <= 0:
                return None
            share = {x: p[x] / total for x in "ABC"}
            preference = share["A" if order == "ab" else "B"] + share["C"] / 2
            return preference, {x: (math.log(p[x]) if p[x] > 0 else None) for x in "ABC"}
    return None


def _verdict_logprobs(gen: Generation, letter: Optional[str]) -> Optional[dict[str, Any]]:
    """The log-probability of the last generated token that carries the verdict letter, when the judge gave them."""
    if letter is None or not gen.logprobs or len(gen.tokens) != len(gen.logprobs):
        return None
    for token, lp in zip(reversed(gen.tokens), reversed(gen.logprobs)):
        if letter in token:
            return {"token": token, "logprob": lp}
    return None


@dataclass
class JudgeRun:
    candidate_id: int
    baseline_id: int
    judge_key: str
    todo: int
    stored: int = 0
    failures: int = 0
    request_errors: list[str] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)


def judge_pair(*, session_factory, backend, judge: str, candidate_id: int, baseline_id: Optional[int],
               mode: str = "pairwise",
               template: Optional[Template] = None, settings: Optional[GenerationSettings] = None,
               progress: bool = False) -> JudgeRun:
    """Judge ``candidate_id`` against ``baseline_id`` in both orders with ``backend``; see the module docstring."""
    template = template or Template.load(None, mode)
    settings = settings or GenerationSettings(max_new_tokens=512)
    config = {"judge": judge, "mode": mode, "template_sha256": template.sha256, "settings": settings.as_dict()}
    key = db.judge_key(config)
    with session_factory() as s:
        items = db.judging_inputs(session=s, candidate_id=candidate_id, baseline_id=baseline_id)
        done = db.judged_keys(session=s, candidate_id=candidate_id, baseline_id=baseline_id, judge_key=key)
    if mode == "reference" and items and not any(i.get("reference") for i in items):
        raise JudgeError("reference mode needs references: these examples have none")
    orders = ("ab",) if mode == "single" else ("ab", "ba")
    todo = [(item, order) for item in items for order in orders if (item["example_id"], order) not in done]
    run = JudgeRun(candidate_id, baseline_id, key, len(todo))
    stored_config = {**config, "template": {"system": template.system, "user": template.user}}

    def store(indices: list[int], gens: list[Generation]) -> None:
        rows = []
        for i, gen in zip(indices, gens):
            item, order = todo[i]
            if gen.finish_reason == "error":
                run.request_errors.append(gen.error or "request failed")
                continue
            score = parse_score(gen.text) if mode == "single" else None
            letter, preference = (None, None) if mode == "single" else parse_verdict(gen.text, order)
            error = None if (letter or score is not None) else (
                "no [[1]] to [[10]] rating in the reply" if mode == "single"
                else "no [[A]], [[B]] or [[C]] verdict in the reply")
            logprobs = _verdict_logprobs(gen, letter)
            weighted = weighted_verdict(gen, order) if letter else None
            if weighted is not None:  # the judge's probabilities at its verdict, not only the letter it wrote
                preference, by_letter = weighted
                logprobs = {**by_letter, "weighted": True}
            if gen.prompt_truncated:  # the judge did not see all of the instructions, the conversation or an answer
                preference = score = None
                error = (f"the judging prompt did not fit the judge's context ({gen.prompt_tokens} tokens kept): it was "
                         "cut" + ("" if error is None else "; " + error))
            run.failures += (score if mode == "single" else preference) is None
            rows.append(dict(candidate_id=candidate_id, baseline_id=baseline_id, example_id=item["example_id"],
                             order=order, judge=judge, mode=mode, judge_key=key, config=stored_config,
                             preference=preference, score=score, verdict=letter, verdict_logprobs=logprobs,
                             reply=gen.text, error=error))
        with session_factory.begin() as s:
            run.stored += db.add_judgments(session=s, judgments=rows)

    if todo:
        backend.generate([template.messages(item, order) for item, order in todo], settings, on_batch=store,
                         progress=progress)
    with session_factory() as s:
        rows = db.judgments_of_pair(session=s, candidate_id=candidate_id, baseline_id=baseline_id)
    summarized = score_summary(rows) if mode == "single" else summarize(rows)
    run.summary = [j for j in summarized if j["judge_key"] == key]
    return run


def judge_runs(*, session_factory, backend, judge: str, candidate_id: int, baseline_ids: Sequence[int],
               **options: Any) -> list[JudgeRun]:
    """``judge_pair`` against each baseline in turn."""
    return [judge_pair(session_factory=session_factory, backend=backend, judge=judge, candidate_id=candidate_id,
                       baseline_id=b, **options) for b in baseline_ids]
