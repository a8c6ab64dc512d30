"""Running a judge: a candidate run against a baseline run, every example in both orders, stored as it goes.

The judge is any model the evaluator can run (a local transformers or Unsloth model, or ``openai:MODEL``
with ``--base-url``), loaded with ``evaluator.models.load_backend`` and asked through its ``generate``: the
same batching, concurrency, retries and back-off as an evaluation. The prompt is a Jinja2 template (the
built-in one, or ``--template FILE``) filled with the conversation, both answers and, in ``reference`` mode,
the reference answer; after a rollout (``--turns rollout``) with each run's whole conversation, its own earlier
answers included. The judge ends its reply with ``[[A]]``, ``[[B]]`` or ``[[C]]`` (a tie); the last such mark
counts.

Each order is one judgment: "ab" shows the candidate as assistant A, "ba" as assistant B. Judgments are
stored after every batch of the backend, keyed by (candidate, baseline, example, order, judge config), so a
killed run loses at most a batch and a re-run judges only what is missing. A reply with no verdict is stored as
a judge failure (``preference`` None, ``error`` saying so), and so is a verdict given on a prompt cut to fit the
judge's context (it did not see everything); a request that failed (``finish_reason`` "error") is not stored,
so the next run asks again.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml
from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

import db
from evaluator.data import rollout_prompts
from evaluator.errors import UserError
from evaluator.judging._summary import score_summary, summarize
from evaluator.types import Generation, GenerationSettings

MODES = ("pairwise", "reference", "single")
VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")
SCORE = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_PREFERENCE = {("ab", "A"): 1.0, ("ab", "B"): 0.0, ("ba", "A"): 0.0, ("ba", "B"): 1.0}
# The fields a template may show; each mode needs one field of each of its tuples.
FIELDS = ("question", "answer_a", "answer_b", "reference", "answer", "conversation_a", "conversation_b", "turn")
_NEEDS = {"pairwise": [("answer_a", "conversation_a"), ("answer_b", "conversation_b")],
          "reference": [("answer_a", "conversation_a"), ("answer_b", "conversation_b"), ("reference",)],
          "single": [("answer", "answer_a", "conversation_a")]}

_VERDICT_RULE = ("After a short explanation, give your final verdict strictly in this format: \"[[A]]\" if assistant "
                 "A is better, \"[[B]]\" if assistant B is better, and \"[[C]]\" for a tie.")
_NO_BIAS = ("Do not let the order in which the {what} appear, their length or the assistants' names influence you. "
            "Be as objective as possible. ")
_REFERENCE_RULE = " Compare both with the reference answer, which is correct; identify their mistakes."
SYSTEM = ("Please act as an impartial judge and evaluate the responses of two AI assistants to the conversation "
          "below. Choose the assistant that answers the user's last message better: consider helpfulness, "
          "relevance, accuracy, depth and level of detail.{reference_rule} " + _NO_BIAS.format(what="responses")
          + _VERDICT_RULE)
USER = ("[The Start of the Conversation]\n{{ question }}\n[The End of the Conversation]\n\n{reference_block}"
        "[The Start of Assistant A's Answer]\n{{ answer_a }}\n[The End of Assistant A's Answer]\n\n"
        "[The Start of Assistant B's Answer]\n{{ answer_b }}\n[The End of Assistant B's Answer]")
REFERENCE_BLOCK = "[The Start of the Reference Answer]\n{{ reference }}\n[The End of the Reference Answer]\n\n"
# After a rollout each assistant answered after its own earlier answers: the judge reads both whole conversations
# (MT-Bench's multi-turn prompt).
MULTI_SYSTEM = ("Please act as an impartial judge and evaluate two AI assistants' conversations with a user, below. "
                "Each assistant answered the same user messages after its own earlier answers. Choose the assistant "
                "that answers the user's last message better: consider helpfulness, relevance, accuracy, depth and "
                "level of detail, and how well it builds on the earlier turns.{reference_rule} "
                + _NO_BIAS.format(what="conversations") + _VERDICT_RULE)
MULTI_USER = ("{reference_block}<|The Start of Assistant A's Conversation with the User|>\n{{ conversation_a }}\n"
              "<|The End of Assistant A's Conversation with the User|>\n\n"
              "<|The Start of Assistant B's Conversation with the User|>\n{{ conversation_b }}\n"
              "<|The End of Assistant B's Conversation with the User|>")
MULTI_REFERENCE_BLOCK = ("[The Start of the Reference Answer to the Last Message]\n{{ reference }}\n"
                         "[The End of the Reference Answer]\n\n")
_RATING_RULE = ("Be as objective as possible. After a short explanation, rate the {what} on a scale of 1 to 10 strictly "
                "in this format: \"Rating: [[5]]\".")
SINGLE_SYSTEM = ("Please act as an impartial judge and evaluate the response of an AI assistant to the conversation "
                 "below. Consider helpfulness, relevance, accuracy, depth and level of detail. "
                 + _RATING_RULE.format(what="response"))
SINGLE_USER = ("[The Start of the Conversation]\n{{ question }}\n[The End of the Conversation]\n\n"
               "[The Start of the Assistant's Answer]\n{{ answer }}\n[The End of the Assistant's Answer]")
SINGLE_MULTI_SYSTEM = ("Please act as an impartial judge and evaluate an AI assistant's conversation with a user, below, "
                       "in which it answered each message after its own earlier answers. Rate its answer to the user's "
                       "last message: consider helpfulness, relevance, accuracy, depth and level of detail, and how well "
                       "it builds on the earlier turns. " + _RATING_RULE.format(what="answer"))
SINGLE_MULTI_USER = ("<|The Start of the Assistant's Conversation with the User|>\n{{ conversation_a }}\n"
                     "<|The End of the Assistant's Conversation with the User|>")

# Templates are the user's own files, rendered in a sandbox; a value (a conversation, an answer) is text put in
# as it is, never read as template syntax.
_ENV = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


@functools.lru_cache(maxsize=64)
def _compiled(source: str):
    """A template source compiled once: every judgment of a run renders the same few."""
    return _ENV.from_string(source)


def _builtin(mode: str, multi: bool) -> tuple[str, str]:
    """(system, user) of the built-in prompt of ``mode``, in its multi-turn form after a rollout when ``multi``."""
    if mode == "single":
        return (SINGLE_MULTI_SYSTEM, SINGLE_MULTI_USER) if multi else (SINGLE_SYSTEM, SINGLE_USER)
    ref = mode == "reference"
    system, user, block = (MULTI_SYSTEM, MULTI_USER, MULTI_REFERENCE_BLOCK) if multi else (SYSTEM, USER, REFERENCE_BLOCK)
    return (system.replace("{reference_rule}", _REFERENCE_RULE if ref else ""),
            user.replace("{reference_block}", block if ref else ""))


def as_text(messages: list[dict[str, Any]]) -> str:
    """A conversation as the judge reads it: "### User:" / "### Assistant:" headings, then the text."""
    return "\n\n".join(f"### {m['role'].capitalize()}:\n{m['content']}" for m in messages)


class JudgeError(UserError, ValueError):
    """The judging cannot start: the message says why (a bad template, nothing to judge)."""


@dataclass
class Template:
    """A judging prompt: Jinja2 texts of the user message and an optional system message before it.

    A template file is either a Jinja2 text (the user message; ``{% set system %}...{% endset %}`` in it gives
    the system message) or YAML/JSON with a ``user`` text and an optional ``system`` text. The fields are
    ``FIELDS``; see docs/judging.md."""

    system: Optional[str]
    user: str
    mode: str = "pairwise"
    builtin: bool = False  # the built-in prompts switch to their multi-turn form for a rollout's later turns
    pattern: Optional[str] = None  # the template's own verdict pattern (a regex; group 1 the letter or rating)

    @classmethod
    def load(cls, path: Optional[str | Path], mode: str) -> "Template":
        if mode not in MODES:
            raise JudgeError(f"mode is one of {', '.join(MODES)}, not {mode!r}")
        if path is None:
            return cls(*_builtin(mode, multi=False), mode=mode, builtin=True)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise JudgeError(f"cannot read the template {path}: {exc}") from None
        if Path(path).suffix.lower() not in (".yaml", ".yml", ".json"):
            template = cls(None, text, mode=mode)
            template._check(str(path))
            template.pattern = template._declared("pattern")
        else:
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise JudgeError(f"cannot read the template {path}: {exc}") from None
            if not isinstance(data, dict) or not isinstance(data.get("user"), str) or not all(
                    isinstance(data.get(k, ""), (str, type(None))) for k in ("system", "pattern")):
                raise JudgeError(f"{path}: a YAML or JSON template has a 'user' text and may have 'system' and "
                                 "'pattern' texts")
            template = cls(data.get("system"), data["user"], mode=mode, pattern=data.get("pattern"))
            template._check(str(path))
        if template.pattern is not None:
            try:
                groups = re.compile(template.pattern).groups
            except re.error as exc:
                raise JudgeError(f"{path}: the pattern {template.pattern!r} is not a regular expression: {exc}") from None
            if groups < 1:
                raise JudgeError(f"{path}: the pattern {template.pattern!r} has no group: its first group is read as "
                                 + ("the rating" if mode == "single" else "the verdict (A, B, C or tie)"))
        return template

    def _declared(self, name: str) -> Optional[str]:
        """A value a plain template declares with ``{% set NAME = ... %}`` (or a set block), if any."""
        module = _compiled(self.user).make_module({**{f: "" for f in FIELDS}, "turn": 1})
        value = getattr(module, name, None)
        return None if value is None else str(value)

    def _check(self, where: str) -> None:
        used: set[str] = set()
        for source in (self.system, self.user):
            if source is None:
                continue
            try:
                used |= meta.find_undeclared_variables(_ENV.parse(source))
            except TemplateSyntaxError as exc:
                raise JudgeError(f"{where}: line {exc.lineno}: {exc.message}") from None
        unknown = sorted(used - set(FIELDS))
        if unknown:
            raise JudgeError(f"{where}: unknown field(s) {', '.join(unknown)}; a template may use {', '.join(FIELDS)}")
        for options in _NEEDS[self.mode]:
            if not used & set(options):
                shown = " or ".join("{{ %s }}" % o for o in options)
                raise JudgeError(f"{where}: a {self.mode} template shows {shown}")

    @property
    def record(self) -> dict[str, Any]:
        """The texts that make the judgments (the built-in multi-turn form included): stored with each judgment."""
        out: dict[str, Any] = {"system": self.system, "user": self.user}
        if self.pattern is not None:
            out["pattern"] = self.pattern
        if self.builtin:
            out["multi_turn"] = dict(zip(("system", "user"), _builtin(self.mode, multi=True)))
        return out

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.record, sort_keys=True).encode()).hexdigest()

    def messages(self, item: dict[str, Any], order: str) -> list[dict[str, str]]:
        """The judge's messages for ``item`` (``judging_inputs`` with each run's prompt) in ``order``."""
        cand, base = item["candidate_output"], item["baseline_output"] or ""
        cand_conv = as_text(list(item.get("candidate_prompt") or item["messages"]) + [_said(cand)])
        base_conv = as_text(list(item.get("baseline_prompt") or item["messages"]) + [_said(base)])
        a, b, conv_a, conv_b = (cand, base, cand_conv, base_conv) if order == "ab" else (base, cand, base_conv, cand_conv)
        values = {"question": as_text(item["messages"]), "answer_a": a, "answer_b": b, "answer": cand,
                  "reference": item.get("reference") or "", "conversation_a": conv_a, "conversation_b": conv_b,
                  "turn": (item.get("turn_index") or 0) + 1}
        system, user = self.system, self.user
        if self.builtin and item.get("rolled_out") and (item.get("turn_index") or 0) > 0:
            system, user = _builtin(self.mode, multi=True)
        module = _compiled(user).make_module(values)
        system_text = system if system is None else _compiled(system).render(values)
        if system_text is None and hasattr(module, "system"):
            system_text = str(getattr(module, "system"))
        out = [{"role": "system", "content": system_text.strip()}] if system_text and system_text.strip() else []
        return out + [{"role": "user", "content": str(module).strip()}]


def _said(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def parse_verdict(reply: str, order: str, pattern: Optional[str] = None) -> tuple[Optional[str], Optional[float]]:
    """(verdict letter, the candidate's preference) from the last [[A]]/[[B]]/[[C]] of the reply, or the last match of
    a template's own ``pattern``, whose first group reads A, B, C or tie (in any case)."""
    found = re.findall(pattern, reply or "") if pattern else VERDICT.findall(reply or "")
    if not found:
        return None, None
    last = found[-1][0] if isinstance(found[-1], tuple) else found[-1]
    letter = {"TIE": "C"}.get(last.strip().upper(), last.strip().upper())
    if letter not in ("A", "B", "C"):
        return None, None
    return letter, 0.5 if letter == "C" else _PREFERENCE[(order, letter)]


def parse_score(reply: str, pattern: Optional[str] = None) -> Optional[float]:
    """The last [[N]] of the reply (or the first group of the last match of a template's own ``pattern``), when it is a
    rating from 1 to 10."""
    found = re.findall(pattern, reply or "") if pattern else SCORE.findall(reply or "")
    last = (found[-1][0] if isinstance(found[-1], tuple) else found[-1]) if found else None
    try:
        value = float(last) if last is not None else None
    except ValueError:
        return None
    return value if value is not None and 1 <= value <= 10 else None


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
        _add_rollouts(s, items, candidate_id, baseline_id)
    if mode == "reference" and items and not any(i.get("reference") for i in items):
        raise JudgeError("reference mode needs references: these examples have none")
    orders = ("ab",) if mode == "single" else ("ab", "ba")
    todo = [(item, order) for item in items for order in orders if (item["example_id"], order) not in done]
    run = JudgeRun(candidate_id, baseline_id, key, len(todo))
    stored_config = {**config, "template": template.record}

    def store(indices: list[int], gens: list[Generation]) -> None:
        rows = []
        for i, gen in zip(indices, gens):
            item, order = todo[i]
            if gen.finish_reason == "error":
                run.request_errors.append(gen.error or "request failed")
                continue
            score = parse_score(gen.text, template.pattern) if mode == "single" else None
            letter, preference = (None, None) if mode == "single" else parse_verdict(gen.text, order, template.pattern)
            error = None if (letter or score is not None) else (
                "no [[1]] to [[10]] rating in the reply" if mode == "single"
                else "no [[A]], [[B]] or [[C]] verdict in the reply")
            logprobs = _verdict_logprobs(gen, letter)
            weighted = weighted_verdict(gen, order) if letter and not template.pattern else None
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


def _add_rollouts(session, items: list[dict[str, Any]], candidate_id: int, baseline_id: Optional[int]) -> None:
    """After a rollout each run answered after its own earlier answers: give each item both runs' prompts."""
    if (db.get_run(session=session, run_id=candidate_id) or {}).get("turns") != "rollout":
        return
    convs = {i["conversation_id"] for i in items}
    prompts = {}
    for role, rid in (("candidate", candidate_id), ("baseline", baseline_id)):
        if rid is not None:
            answers = db.conversation_answers(session=session, run_id=rid, conversation_ids=convs)
            prompts[role] = rollout_prompts(items, answers)
    for n, item in enumerate(items):
        item["rolled_out"] = True
        for role, p in prompts.items():
            item[f"{role}_prompt"] = p[n]


def judge_runs(*, session_factory, backend, judge: str, candidate_id: int, baseline_ids: Sequence[int],
               **options: Any) -> list[JudgeRun]:
    """``judge_pair`` against each baseline in turn."""
    return [judge_pair(session_factory=session_factory, backend=backend, judge=judge, candidate_id=candidate_id,
                       baseline_id=b, **options) for b in baseline_ids]
