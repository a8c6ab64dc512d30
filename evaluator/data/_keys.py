"""Stable example keys and content hashes.

A key is the first 16 hex digits of the SHA-256 of the canonical JSON of
``[messages, reference, turn_index]`` (normalised messages, keys sorted, no whitespace, UTF-8).
It depends only on what the example *is*, so it survives ``--limit``, row reordering and reloading.
Exact duplicates within one dataset get ``-2``, ``-3``, ... in order of appearance.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

from evaluator.types import Message

KEY_HEX_CHARS = 16


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text: sorted keys, no whitespace, non-JSON values (dates, bytes) as ``str``."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def example_key(messages: list[Message], reference: Optional[str], turn_index: Optional[int]) -> str:
    text = canonical_json([messages, reference, turn_index])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:KEY_HEX_CHARS]


class KeyAllocator:
    """Hands out unique keys: the base key the first time, then ``base-2``, ``base-3``, ..."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def unique(self, base: str) -> str:
        n = self._seen.get(base, 0) + 1
        self._seen[base] = n
        return base if n == 1 else f"{base}-{n}"


class ContentHasher:
    """SHA-256 over the rows actually read, each row length-prefixed so boundaries count."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def add(self, row_bytes: bytes) -> None:
        self._h.update(len(row_bytes).to_bytes(8, "big"))
        self._h.update(row_bytes)

    def hexdigest(self) -> str:
        return self._h.hexdigest()
