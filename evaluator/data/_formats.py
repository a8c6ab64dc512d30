"""Dataset formats: which columns mean what (detected once per dataset), and one row -> one conversation.

A conversation is the full list of normalised messages of a row, ending with the gold assistant answer
(or with a user turn when the row has no reference). Splitting it into examples is ``_turns``' job.

Formats and the columns they look for (``fields`` overrides any of them):

- ``messages``: ``messages``, a list of ``{"role", "content"}`` (OpenAI chat).
- ``sharegpt``: ``conversations`` / ``conversation``, a list of ``{"from", "value"}`` (``role``/``content`` too).
- ``alpaca``: ``instruction``, optional ``input`` / ``context``, optional ``output`` / ``response``.
- ``prompt_response``: ``prompt`` / ``question`` / ``query`` (or ``input`` without ``instruction``), optional
  ``response`` / ``completion`` / ``answer`` / ``output``; the prompt may also be a list of messages and the
  completion a list of assistant messages (TRL's conversational prompt-completion).
- ``mt_bench``: MT-Bench's question file: ``turns`` (the user turns, a list of strings), optional ``reference``
  (the reference answers, one per turn), ``question_id`` and ``category``.

Every format also reads an optional ``system`` / ``system_prompt`` column.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from dataclasses import fields as dc_fields
from typing import Any, Optional

from evaluator.data._errors import DataError, RowError, describe_type, is_blank
from evaluator.types import Message

FORMATS = ("auto", "messages", "sharegpt", "alpaca", "prompt_response", "mt_bench")
# Roles a caller may name in ``fields``; each maps to one column.
FIELD_ROLES = ("messages", "prompt", "response", "instruction", "input", "system", "category", "source", "tags", "id")

MESSAGES_COLUMNS = ("messages",)
SHAREGPT_COLUMNS = ("conversations", "conversation")
PROMPT_COLUMNS = ("prompt", "question", "query")
RESPONSE_COLUMNS = ("response", "completion", "answer", "output")
ALPACA_INPUT_COLUMNS = ("input", "context")  # context: databricks-dolly
ALPACA_RESPONSE_COLUMNS = ("output", "response")
SYSTEM_COLUMNS = ("system", "system_prompt")
ID_COLUMNS = ("conversation_id", "id", "conv_id", "prompt_id", "question_id")
MT_BENCH_COLUMNS = ("turns",)

ROLE_ALIASES = {
    "system": "system",
    "user": "user", "human": "user", "prompter": "user",
    "assistant": "assistant", "gpt": "assistant", "chatgpt": "assistant", "bing": "assistant",
    "bard": "assistant", "model": "assistant", "bot": "assistant", "ai": "assistant",
}

FIELD_HINT = "pass --format and --field ROLE=COLUMN (fields={...}) to say which columns to use"


@dataclass(frozen=True)
class FieldSpec:
    """The columns one dataset uses, resolved once from its first rows."""

    format: str
    messages: Optional[str] = None
    prompt: Optional[str] = None
    response: Optional[str] = None
    instruction: Optional[str] = None
    input: Optional[str] = None
    system: Optional[str] = None
    category: Optional[str] = None
    source: Optional[str] = None
    tags: Optional[str] = None
    id: Optional[str] = None

    def columns(self) -> dict[str, str]:
        """Role -> column for every column this spec reads."""
        return {f.name: getattr(self, f.name) for f in dc_fields(self)
                if f.name != "format" and getattr(self, f.name) is not None}


# --- detection ----------------------------------------------------------------------------------------


def resolve_spec(format: str, fields: Optional[dict[str, str]], sample: list[dict]) -> FieldSpec:
    """Decide the format and its columns from ``sample`` (the first readable rows of the dataset)."""
    fields = dict(fields or {})
    unknown = sorted(set(fields) - set(FIELD_ROLES))
    if unknown:
        raise DataError(f"unknown field role(s) {unknown}; the roles are {', '.join(FIELD_ROLES)}")
    columns = _columns(sample)
    common = _common_columns(sample)
    absent = {role: col for role, col in fields.items() if col not in columns}
    if absent:
        raise DataError(f"column(s) named in fields are not in the dataset: {absent}; its columns are {columns}")

    fmt = format
    if fmt == "auto":
        if "messages" in fields:
            fmt = "sharegpt" if _uses_from_value(sample, fields["messages"]) else "messages"
        elif "instruction" in fields:
            fmt = "alpaca"
        elif "prompt" in fields:
            fmt = "prompt_response"
        else:
            fmt = _detect(common)

    def pick(role: str, candidates: tuple[str, ...], required: bool) -> Optional[str]:
        if role in fields:
            return fields[role]
        # A column that defines the rows is looked for in most rows first; others count wherever they appear.
        found = [c for c in candidates if c in common] if required else []
        found = found or [c for c in candidates if c in columns]
        if len(found) > 1:
            raise DataError(f"format '{fmt}': columns {found} could each be the {role}; "
                            f"name one with --field {role}=COLUMN")
        if not found and required:
            raise DataError(f"format '{fmt}' needs the {role} column ({' or '.join(candidates)}) but the columns "
                            f"are {columns}; name it with --field {role}=COLUMN")
        return found[0] if found else None

    spec: dict[str, Optional[str]] = {}
    if fmt == "messages":
        spec["messages"] = pick("messages", MESSAGES_COLUMNS, True)
    elif fmt == "sharegpt":
        spec["messages"] = pick("messages", SHAREGPT_COLUMNS, True)
    elif fmt == "alpaca":
        spec["instruction"] = pick("instruction", ("instruction",), True)
        spec["input"] = pick("input", ALPACA_INPUT_COLUMNS, False)
        spec["response"] = pick("response", ALPACA_RESPONSE_COLUMNS, False)
    elif fmt == "mt_bench":
        spec["prompt"] = pick("prompt", MT_BENCH_COLUMNS, True)
        spec["response"] = pick("response", ("reference",), False)
    elif fmt == "prompt_response":
        prompts = PROMPT_COLUMNS if any(c in columns for c in PROMPT_COLUMNS) else ("input",)
        spec["prompt"] = pick("prompt", prompts, True)
        spec["response"] = pick("response", RESPONSE_COLUMNS, False)
    else:
        raise DataError(f"unknown format '{format}'; choose one of {', '.join(FORMATS)}")
    spec["system"] = pick("system", SYSTEM_COLUMNS, False)
    spec["category"] = pick("category", ("category",), False)
    spec["source"] = pick("source", ("source",), False)
    spec["tags"] = pick("tags", ("tags",), False)
    spec["id"] = fields.get("id") or next((c for c in ID_COLUMNS if c in columns), None)
    taken = [c for c in spec.values() if c is not None]
    clash = sorted({c for c in taken if taken.count(c) > 1})
    if clash:
        raise DataError(f"column(s) {clash} are used for more than one role; {FIELD_HINT}")
    return FieldSpec(format=fmt, **spec)


def _columns(sample: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for row in sample:
        seen.update(dict.fromkeys(row))
    return list(seen)


def _common_columns(sample: list[dict]) -> list[str]:
    """Columns with a value in at least half of the sample: what the dataset's rows look like."""
    counts: dict[str, int] = {}
    for row in sample:
        for k, v in row.items():
            if v is not None:
                counts[k] = counts.get(k, 0) + 1
    return [k for k, n in counts.items() if 2 * n >= len(sample)]


def _detect(columns: list[str]) -> str:
    cands: list[str] = []
    if any(c in columns for c in MESSAGES_COLUMNS):
        cands.append("messages")
    if any(c in columns for c in SHAREGPT_COLUMNS):
        cands.append("sharegpt")
    if "instruction" in columns:
        cands.append("alpaca")
    if any(c in columns for c in MT_BENCH_COLUMNS):
        cands.append("mt_bench")
    has_prompt = any(c in columns for c in PROMPT_COLUMNS) or ("input" in columns and "instruction" not in columns)
    has_response = any(c in columns for c in RESPONSE_COLUMNS)
    # A conversation column already holds the prompt: a prompt column beside it (ultrachat's prompt + messages)
    # is a copy, not a second format, unless a response column says otherwise.
    if has_prompt and not ({"messages", "sharegpt"} & set(cands) and not has_response):
        cands.append("prompt_response")
    if len(cands) == 1:
        return cands[0]
    if not cands:
        raise DataError(
            f"cannot detect the dataset format: columns {columns} match none of messages ('messages'), "
            f"sharegpt ('conversations'), alpaca ('instruction'), prompt_response ('prompt'/'question'/...), "
            f"mt_bench ('turns'); "
            f"{FIELD_HINT}"
        )
    raise DataError(f"ambiguous dataset format: columns {columns} fit {' and '.join(cands)}; {FIELD_HINT}")


def _uses_from_value(sample: list[dict], column: str) -> bool:
    for row in sample:
        value = _maybe_json_list(row.get(column))
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return value[0].get("from") is not None
    return False


# --- one row -> one conversation ----------------------------------------------------------------------


def conversation(row: dict, spec: FieldSpec) -> list[Message]:
    """The row's full conversation, normalised; raises RowError with the reason when it has none."""
    if spec.messages is not None:
        msgs = parse_messages(_require(row, spec.messages), spec.messages)
    elif spec.format == "mt_bench":
        msgs = _mt_bench(row, spec)
    else:
        if spec.instruction is not None:
            prompt = _text(row, spec.instruction, required=True)
            extra = _text(row, spec.input, required=False) if spec.input else None
            msgs = [{"role": "user", "content": f"{prompt}\n\n{extra}" if extra and not is_blank(extra) else prompt}]
        else:
            value = _require(row, spec.prompt)
            if isinstance(value, list):
                msgs = parse_messages(value, spec.prompt)
            else:
                msgs = [{"role": "user", "content": _text(row, spec.prompt, required=True)}]
        if spec.response is not None:
            msgs += _response(row.get(spec.response), spec.response)
    if spec.system is not None:
        system = _text(row, spec.system, required=False)
        if system and not is_blank(system):
            if msgs and msgs[0]["role"] == "system":
                if msgs[0]["content"] != system:
                    raise RowError(f"field '{spec.system}' and message 0 (system) give different system prompts")
            else:
                msgs.insert(0, {"role": "system", "content": system})
    return msgs


def _mt_bench(row: dict, spec: FieldSpec) -> list[Message]:
    """The user turns, each followed by its reference answer when the row has references (one per turn)."""
    turns = _strings(_require(row, spec.prompt), spec.prompt)
    for i, t in enumerate(turns):
        if is_blank(t):
            raise RowError(f"turn {i} of field '{spec.prompt}' is empty")
    value = row.get(spec.response) if spec.response else None
    refs = _strings(value, spec.response) if value is not None else []
    if refs and len(refs) != len(turns):
        raise RowError(f"field '{spec.response}' has {len(refs)} reference answers for {len(turns)} turns")
    msgs: list[Message] = []
    for i, text in enumerate(turns):
        msgs.append({"role": "user", "content": text})
        if refs:
            if is_blank(refs[i]):
                raise RowError(f"reference {i} of field '{spec.response}' is empty")
            msgs.append({"role": "assistant", "content": refs[i]})
    return msgs


def _strings(value: Any, column: str) -> list[str]:
    value = _maybe_json_list(value)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise RowError(f"field '{column}' is {describe_type(value)}, expected a non-empty list of strings")
    return value


def parse_messages(value: Any, column: str) -> list[Message]:
    value = _maybe_json_list(value)
    if not isinstance(value, list):
        raise RowError(f"field '{column}' is {describe_type(value)}, expected a list of messages")
    if not value:
        raise RowError(f"empty conversation (field '{column}' is an empty list)")
    out: list[Message] = []
    for i, msg in enumerate(value):
        if not isinstance(msg, dict):
            raise RowError(f"message {i} is {describe_type(msg)}, expected an object with role and content")
        role_raw = msg.get("role") if msg.get("role") is not None else msg.get("from")
        if role_raw is None:
            raise RowError(f"message {i} has no role (expected a 'role' or 'from' key)")
        if not isinstance(role_raw, str):
            raise RowError(f"message {i} role is {describe_type(role_raw)}, expected a string")
        role = ROLE_ALIASES.get(role_raw.strip().lower())
        if role is None:
            raise RowError(f"message {i} has unknown role {_short(role_raw)}")
        content = msg.get("content") if msg.get("content") is not None else msg.get("value")
        out.append({"role": role, "content": _content(content, i, role)})
    return out


def _content(content: Any, i: int, role: str) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        raise RowError(f"message {i} ({role}) has no content")
    if isinstance(content, list) and content and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
    ):
        return "".join(p["text"] for p in content)  # OpenAI content parts, text only
    if isinstance(content, list):
        raise RowError(f"message {i} ({role}) content is a list that is not all text parts")
    raise RowError(f"message {i} ({role}) content is {describe_type(content)}, expected a string")


def _response(value: Any, column: str) -> list[Message]:
    if value is None:
        return []  # no reference for this row
    if isinstance(value, str):
        if is_blank(value):
            raise RowError(f"field '{column}' (the reference) is empty")
        return [{"role": "assistant", "content": value}]
    if isinstance(value, list):  # conversational prompt/completion: a list of assistant messages
        msgs = parse_messages(value, column)
        bad = [i for i, m in enumerate(msgs) if m["role"] != "assistant"]
        if bad:
            raise RowError(f"field '{column}' message {bad[0]} is not an assistant turn")
        return msgs
    raise RowError(f"field '{column}' is {describe_type(value)}, expected a string")


def _require(row: dict, column: str) -> Any:
    if column not in row:
        raise RowError(f"missing field '{column}'")
    if row[column] is None:
        raise RowError(f"field '{column}' is null")
    return row[column]


def _text(row: dict, column: str, required: bool) -> Optional[str]:
    value = _require(row, column) if required else row.get(column)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RowError(f"field '{column}' is {describe_type(value)}, expected a string")
    if required and is_blank(value):
        raise RowError(f"field '{column}' is empty")
    return value


def _maybe_json_list(value: Any) -> Any:
    """A conversation stored as JSON text (as CSV must) is parsed; anything else is returned as is."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
