"""``load_examples``: a dataset source -> examples and rejected rows, with the accounting that ties them.

Invariant (tested): ``n_rows == len({e.row_index for e in examples}) + len(rejected)``; every row read
either gives one or more examples (several with ``turns="all"``) or exactly one ``Rejected``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Optional

from evaluator.data._errors import DataError, RowError, describe_type
from evaluator.data._formats import FORMATS, FieldSpec, conversation, resolve_spec
from evaluator.data._keys import ContentHasher, KeyAllocator, example_key
from evaluator.data._read import RawRow, open_source
from evaluator.data._turns import TURNS, split_turns
from evaluator.types import Example, Rejected

logger = logging.getLogger(__name__)

SAMPLE_ROWS = 100  # format detection looks at this many readable rows from the start of the dataset ...
PEEK_ROWS = 1000  # ... reading at most this many rows past --limit to find them
RAW_CHARS = 500  # Rejected.raw is truncated to this


@dataclass
class LoadResult:
    examples: list[Example]
    rejected: list[Rejected]
    n_rows: int  # rows read (after limit) = distinct row_index among examples + len(rejected)
    format: str  # the format used (detected when format="auto")
    content_hash: str  # sha256 (hex) over the rows read, for reproducibility
    name: str  # the source as given (path normalised)
    split: str
    fields: dict[str, str] = field(default_factory=dict)  # role -> column actually used
    fingerprint: str = ""  # the whole source's content identity (not only the rows read): the store's dataset
    display_name: str = ""  # the file or directory name, or the Hub id


def load_examples(
    source: str,
    split: str = "test",
    format: str = "auto",
    turns: str = "last",
    limit: Optional[int] = None,
    fields: Optional[dict[str, str]] = None,
) -> LoadResult:
    """Read ``source`` and turn each row into examples, or into a ``Rejected`` with the reason.

    Raises DataError for whole-dataset problems only (missing file, unknown format, undecidable detection,
    Hub unreachable). ``limit`` keeps the first N rows, good or bad.
    """
    if format not in FORMATS:
        raise DataError(f"unknown format '{format}'; choose one of {', '.join(FORMATS)}")
    if turns not in TURNS:
        raise DataError(f"unknown turns '{turns}'; choose one of {', '.join(TURNS)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise DataError(f"limit must be a whole number >= 0, got {limit!r}")
    if fields is not None and not all(isinstance(k, str) and isinstance(v, str) and v for k, v in fields.items()):
        raise DataError(f"fields must map role names to column names, got {fields!r}")

    src = open_source(source, split)
    rows = list(src.rows if limit is None else islice(src.rows, limit))
    sample = [r.value for r in rows if isinstance(r.value, dict)][:SAMPLE_ROWS]
    if limit is not None and len(rows) == limit:  # detection must not depend on --limit
        for r in islice(src.rows, PEEK_ROWS):
            if len(sample) >= SAMPLE_ROWS:
                break
            if isinstance(r.value, dict):
                sample.append(r.value)
    close = getattr(src.rows, "close", None)
    if close:
        close()

    if not sample:
        if not rows and limit == 0:
            return LoadResult([], [], 0, format, ContentHasher().hexdigest(), src.name, src.split, dict(fields or {}),
                              src.fingerprint, src.display or src.name)
        if not rows:
            raise DataError(f"'{source}' has no rows")
        first = _rejection(rows[0], rows[0].error or f"row is {describe_type(rows[0].value)}, expected an object")
        raise DataError(f"no readable row in '{source}' (first: {first.reason}); check that it is the right file")
    spec = resolve_spec(format, fields, sample)
    result = _build(rows, spec, turns)
    result.name, result.split = src.name, src.split
    result.fingerprint, result.display_name = src.fingerprint, src.display or src.name
    logger.info(
        "%s: %d rows -> %d examples, %d rejected (format %s, turns %s)",
        result.name, result.n_rows, len(result.examples), len(result.rejected), spec.format, turns,
    )
    return result


def _build(rows: list[RawRow], spec: FieldSpec, turns: str) -> LoadResult:
    hasher = ContentHasher()
    keys, conv_ids = KeyAllocator(), KeyAllocator()
    used = set(spec.columns().values())
    examples: list[Example] = []
    rejected: list[Rejected] = []
    for r in rows:
        hasher.add(r.content)
        if r.error is not None:
            rejected.append(_rejection(r, r.error))
            continue
        if not isinstance(r.value, dict):
            rejected.append(_rejection(r, f"row is {describe_type(r.value)}, expected an object"))
            continue
        try:
            msgs = conversation(r.value, spec)
            if spec.format == "mt_bench" and turns != "rollout" and _unanswered(msgs):
                raise RowError(f"a question of {len(msgs)} turns without reference answers has no history for its "
                               "later turns; evaluate it with --turns rollout (each turn answered after the "
                               "model's own earlier answers, as MT-Bench does)")
            triples = split_turns(msgs, turns)
            category, source, tags, conv_id = _attributes(r.value, spec)
        except RowError as exc:
            rejected.append(_rejection(r, str(exc)))
            continue
        if conv_id is None:
            conv_id = conv_ids.unique(example_key(msgs, None, None))
        metadata = _metadata(r.value, used)
        for prompt, reference, turn_index in triples:
            examples.append(Example(
                key=keys.unique(example_key(prompt, reference, turn_index)),
                messages=prompt,
                reference=reference,
                row_index=r.index,
                conversation_id=conv_id,
                turn_index=turn_index,
                category=category,
                source=source,
                tags=list(tags),
                metadata=dict(metadata),
            ))
    return LoadResult(examples, rejected, len(rows), spec.format, hasher.hexdigest(), "", "", spec.columns())


def _unanswered(msgs: list) -> bool:
    """Two user turns in a row: the first has no answer to stand as the second's history."""
    return any(a["role"] == b["role"] == "user" for a, b in zip(msgs, msgs[1:]))


def _rejection(r: RawRow, reason: str) -> Rejected:
    where = f"row {r.index}" + (f" (line {r.line})" if r.line is not None else "")
    raw = r.raw if r.raw is not None else r.content.decode("utf-8", "replace")  # JSONL: the line as written
    if len(raw) > RAW_CHARS:
        raw = raw[: RAW_CHARS - 3] + "..."
    return Rejected(row_index=r.index, reason=f"{where}: {reason}", raw=raw)


def _attributes(row: dict, spec: FieldSpec) -> tuple[Optional[str], Optional[str], list[str], Optional[str]]:
    category = _label(row, spec.category)
    source = _label(row, spec.source)
    conv_id = _label(row, spec.id)
    tags: list[str] = []
    value = row.get(spec.tags) if spec.tags else None
    if isinstance(value, str):
        value = value.split(",")
    if isinstance(value, (list, tuple)):
        for t in value:
            if not isinstance(t, (str, int)) or isinstance(t, bool):
                raise RowError(f"field '{spec.tags}' holds {describe_type(t)}, expected strings")
            t = str(t).strip()
            if t and t not in tags:
                tags.append(t)
    elif value is not None:
        raise RowError(f"field '{spec.tags}' is {describe_type(value)}, expected a list or a comma-separated string")
    if category and category not in tags:
        tags.append(category)
    return category, source, tags, conv_id


def _label(row: dict, column: Optional[str]) -> Optional[str]:
    """A short text attribute (category, source, id): strings and numbers accepted, empty is None."""
    if column is None or row.get(column) is None:
        return None
    value = row[column]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RowError(f"field '{column}' is {describe_type(value)}, expected a string")
    text = str(value).strip()
    return text or None


def _metadata(row: dict, used: set[str]) -> dict[str, Any]:
    """Every column not in ``used`` with a scalar value (str, int, float, bool); lists, dicts, nulls are left out."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if k in used or v is None or not isinstance(v, (str, int, float, bool)):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            continue  # NaN/inf are not JSON
        out[k] = v
    return out
