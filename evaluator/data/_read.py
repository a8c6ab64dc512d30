"""Read a dataset source into raw rows, one at a time, without ever failing on a single bad row.

Every source becomes an iterator of :class:`RawRow`. A row that cannot be read (malformed JSON, invalid
UTF-8, a CSV record with the wrong number of fields) is still a row: it carries ``error`` instead of a
value, so the loader can report it. Only whole-source problems raise :class:`DataError`.

``datasets`` and ``pyarrow`` are imported only for the sources that need them.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from evaluator.data._errors import DataError
from evaluator.data._keys import canonical_json

FILE_READERS = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")
# Files written by Dataset.save_to_disk / DatasetDict.save_to_disk.
DISK_MARKERS = ("dataset_dict.json", "state.json", "dataset_info.json")
# Top-level keys under which a .json object may hold its rows ({"data": [...]}); the split name also counts.
JSON_ROW_KEYS = ("data", "rows", "examples", "instances")

_SURROGATE = re.compile("[\udc80-\udcff]")  # what invalid UTF-8 bytes decode to with errors="surrogateescape"


@dataclass
class RawRow:
    index: int  # 0-based row number in the source (blank lines are not rows)
    value: Any = None  # the parsed row; a dict when the row is usable
    content: bytes = b""  # what this row contributes to the content hash
    error: Optional[str] = None  # why the row could not be read at all
    raw: Optional[str] = None  # text for reports when ``content`` (decoded) is not a fair picture of the row
    line: Optional[int] = None  # 1-based line in a text file, for reports


@dataclass
class Source:
    name: str  # the source as given (a path normalised)
    split: str
    rows: Iterator[RawRow]
    fingerprint: str = ""  # its content's identity, wherever it lies (``db.Dataset.fingerprint``)
    display: str = ""  # what people call it: the file or directory name, or the Hub id


def file_fingerprint(path: Path) -> str:
    """"sha256:HEX" of a file's bytes: the same file has the same identity in every clone."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def open_source(source: str, split: str) -> Source:
    """Resolve ``source`` (local file, save_to_disk directory, or Hub id ``owner/name[:config]``)."""
    path = Path(os.path.expanduser(source))
    if path.is_dir():
        return _open_disk(path, source, split)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            rows = _iter_jsonl(path)
        elif suffix == ".json":
            rows = _iter_json(path, split)
        elif suffix == ".csv":
            rows = _iter_csv(path)
        elif suffix == ".parquet":
            rows = _iter_parquet(path)
        else:
            raise DataError(
                f"'{source}' has an unsupported extension '{suffix}'; "
                f"use one of {', '.join(FILE_READERS)} or a save_to_disk directory"
            )
        return Source(os.path.normpath(source), split, rows, fingerprint=file_fingerprint(path), display=path.name)
    if _looks_like_path(source):
        raise DataError(f"file not found: '{source}'; check the path (a Hugging Face Hub id looks like 'owner/name')")
    return _open_hub(source, split)


def _looks_like_path(source: str) -> bool:
    if Path(source).suffix.lower() in FILE_READERS or source.startswith(("/", ".", "~")) or "\\" in source:
        return True
    return source.count("/") > 1  # Hub ids have at most one slash


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- JSON Lines ---------------------------------------------------------------------------------------


def _iter_jsonl(path: Path) -> Iterator[RawRow]:
    """One row per non-blank line; each line is decoded and parsed on its own."""
    index = 0
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            body = line.rstrip(b"\r\n")
            if lineno == 1 and body.startswith(b"\xef\xbb\xbf"):
                body = body[3:]
            if not body.strip():
                continue
            row = RawRow(index, content=body, line=lineno)
            index += 1
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                row.error = f"invalid UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start})"
                yield row
                continue
            try:
                row.value = json.loads(text)
            except json.JSONDecodeError as exc:
                row.error = f"invalid JSON: {exc.msg} at column {exc.colno}"
            yield row


# --- JSON (a list of rows) ----------------------------------------------------------------------------


def _iter_json(path: Path, split: str) -> Iterator[RawRow]:
    text = path.read_bytes().decode("utf-8-sig", "surrogateescape")
    stripped = text.lstrip()
    if not stripped:
        return iter(())
    start = len(text) - len(stripped)
    if stripped[0] == "[":
        if not _SURROGATE.search(text):
            try:
                return _iter_values(json.loads(text))
            except json.JSONDecodeError:
                pass
        # Some element is broken: split the list into elements and parse each one alone.
        return _iter_array_elements(path, text, start)
    if stripped[0] == "{":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data":  # a whole object, then more: JSON Lines saved with a .json extension
                return _iter_jsonl(path)
            raise DataError(
                f"'{path}' is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); fix it, "
                "or store one row per line as .jsonl so that bad rows are reported one by one"
            ) from None
        if _SURROGATE.search(text):
            raise DataError(f"'{path}' is not valid UTF-8; re-encode it as UTF-8")
        return _iter_values(_rows_in_object(obj, path, split))
    raise DataError(f"'{path}' does not hold a JSON list of rows (it starts with {stripped[0]!r})")


def _rows_in_object(obj: dict, path: Path, split: str) -> list:
    for key in (split, *JSON_ROW_KEYS):
        if isinstance(obj.get(key), list):
            return obj[key]
    raise DataError(
        f"'{path}' holds one JSON object, not a list of rows; store the rows as a list, "
        f"under one of the keys {[split, *JSON_ROW_KEYS]}, or one per line as .jsonl"
    )


def _iter_values(values: list) -> Iterator[RawRow]:
    for index, value in enumerate(values):
        yield RawRow(index, value, content=canonical_json(value).encode("utf-8", "surrogatepass"))


def _iter_array_elements(path: Path, text: str, start: int) -> Iterator[RawRow]:
    """Parse a top-level JSON list element by element (used only when the whole list does not parse)."""
    spans = _split_array(text, start)
    if spans is None:
        raise DataError(f"'{path}' has text after the closing ']' of its list of rows; remove it")
    for index, (lo, hi) in enumerate(spans):
        piece = text[lo:hi]
        line = text.count("\n", 0, lo + len(piece) - len(piece.lstrip())) + 1
        row = RawRow(index, content=piece.strip().encode("utf-8", "surrogateescape"), line=line)
        if _SURROGATE.search(piece):
            row.error = "invalid UTF-8"
        elif not piece.strip():
            row.error = "empty list element"
        else:
            try:
                row.value = json.loads(piece)
            except json.JSONDecodeError as exc:
                row.error = f"invalid JSON: {exc.msg}"
        yield row


def _split_array(text: str, start: int) -> Optional[list[tuple[int, int]]]:
    """Spans of the top-level elements of the list opening at ``text[start]``, by bracket and string scanning.

    An unterminated string or bracket makes the rest of the text one (bad) element. Returns None when
    something other than whitespace follows the closing bracket.
    """
    spans: list[tuple[int, int]] = []
    depth, in_str, escaped = 0, False, False
    lo = start + 1
    end = None
    for i in range(start + 1, len(text)):
        c = text[i]
        if in_str:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth += 1
        elif c in "]}":
            if depth == 0:
                end = i
                break
            depth -= 1
        elif c == "," and depth == 0:
            spans.append((lo, i))
            lo = i + 1
    hi = end if end is not None else len(text)
    if text[lo:hi].strip():  # a trailing comma leaves a blank last element: not a row
        spans.append((lo, hi))
    if end is not None and text[end + 1 :].strip():
        return None
    return spans


# --- CSV ----------------------------------------------------------------------------------------------


def _iter_csv(path: Path) -> Iterator[RawRow]:
    """The first record is the header. Empty cells are null (CSV cannot tell them apart).

    Read eagerly, so that the process-wide CSV field size limit is raised only for the duration.
    """
    text = path.read_bytes().decode("utf-8-sig", "surrogateescape")
    old_limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # long conversations exceed the default 128 KiB per field
    try:
        return iter(list(_csv_rows(path, text)))
    finally:
        csv.field_size_limit(old_limit)


def _csv_rows(path: Path, text: str) -> Iterator[RawRow]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise DataError(f"'{path}' has an unreadable CSV header ({exc}); fix the first line") from None
    if _SURROGATE.search("".join(header)):
        raise DataError(f"'{path}' has invalid UTF-8 in its header; re-encode it as UTF-8")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DataError(f"'{path}' has duplicate column names {dupes}; rename them")
    index = 0
    while True:
        first_line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RawRow(index, error=f"malformed CSV: {exc}", line=first_line, raw="",
                         content=f"csv-error:{exc}".encode())
            index += 1
            continue
        if not cells:  # blank line
            continue
        row = RawRow(index, line=first_line,
                     content=canonical_json([header, cells]).encode("utf-8", "surrogateescape"))
        index += 1
        if len(cells) != len(header):
            row.error = f"has {len(cells)} field(s), the header has {len(header)}"
        elif _SURROGATE.search("".join(cells)):
            row.error = "invalid UTF-8"
        if row.error is None:
            row.value = {h: (c if c != "" else None) for h, c in zip(header, cells)}
        yield row


# --- Parquet, save_to_disk, Hub -----------------------------------------------------------------------


def _iter_parquet(path: Path) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
        raise DataError(f"cannot read parquet file '{path}': {_first_line(exc)}") from None

    def rows() -> Iterator[RawRow]:
        index = 0
        for batch in pf.iter_batches(batch_size=1024):
            for value in batch.to_pylist():
                yield RawRow(index, value, content=canonical_json(value).encode("utf-8", "surrogatepass"))
                index += 1

    return rows()


def _iter_dataset(ds: Any) -> Iterator[RawRow]:
    for index, value in enumerate(ds):
        yield RawRow(index, value, content=canonical_json(value).encode("utf-8", "surrogatepass"))


def _open_disk(path: Path, source: str, split: str) -> Source:
    if not any((path / marker).exists() for marker in DISK_MARKERS):
        raise DataError(
            f"'{source}' is a directory but not a datasets save_to_disk directory (no {' or '.join(DISK_MARKERS)}); "
            "pass one of its data files instead"
        )
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise DataError(f"cannot read save_to_disk directory '{source}': {_first_line(exc)}") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(f"split '{split}' is not in '{source}' (splits: {', '.join(ds)}); choose one with --split")
        ds = ds[split]
    return Source(os.path.normpath(source), split, _iter_dataset(ds), fingerprint=f"datasets:{ds._fingerprint}",
                  display=path.resolve().name)


def _open_hub(source: str, split: str) -> Source:
    repo, _, config = source.partition(":")
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    try:
        ds = datasets.load_dataset(repo, config or None, split=split)
    except DatasetNotFoundError:
        raise DataError(
            f"'{source}' is neither a local file nor a dataset on the Hugging Face Hub; check the path or id"
        ) from None
    except ConnectionError as exc:
        raise DataError(
            f"cannot reach the Hugging Face Hub for '{source}' and it is not in the local cache "
            f"({_first_line(exc)}); run once where the Hub is reachable, or pass a local file"
        ) from None
    except ValueError as exc:
        if "split" in str(exc).lower():
            raise DataError(f"'{source}' has no split '{split}' ({_first_line(exc)}); choose one with --split") from None
        raise DataError(f"could not load '{source}' from the Hugging Face Hub: {_first_line(exc)}") from None
    except Exception as exc:  # network, auth, config errors: all whole-dataset problems
        raise DataError(f"could not load '{source}' from the Hugging Face Hub: "
                        f"{type(exc).__name__}: {_first_line(exc)}") from None
    return Source(source, split, _iter_dataset(ds), fingerprint=f"datasets:{ds._fingerprint}", display=source)
