"""Stable example keys and the content hash (evaluator.data)."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from evaluator.data import load_examples

FIXTURES = Path(__file__).resolve().parents[1] / "support" / "fixtures" / "data"


def U(text):
    return {"role": "user", "content": text}


def A(text):
    return {"role": "assistant", "content": text}


ROWS = [{"messages": [U(f"question {i}"), A(f"answer {i}"), U(f"follow-up {i}"), A(f"second answer {i}")]}
        for i in range(6)]


def write_jsonl(path: Path, rows: list) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def keyed(examples) -> dict:
    return {e.key: (json.dumps(e.messages), e.reference, e.turn_index) for e in examples}


def test_key_is_16_hex_chars():
    res = load_examples(str(FIXTURES / "sharegpt.json"))
    assert all(re.fullmatch(r"[0-9a-f]{16}", e.key) for e in res.examples)


def test_key_is_the_documented_hash_of_messages_reference_and_turn_index():
    ex = load_examples(str(FIXTURES / "qa.jsonl")).examples[0]
    text = json.dumps([ex.messages, ex.reference, ex.turn_index], sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))
    assert ex.key == hashlib.sha256(text.encode()).hexdigest()[:16]


def test_keys_are_the_same_in_two_loads():
    a = load_examples(str(FIXTURES / "sharegpt.json"), turns="all")
    b = load_examples(str(FIXTURES / "sharegpt.json"), turns="all")
    assert [e.key for e in a.examples] == [e.key for e in b.examples]


def test_keys_do_not_depend_on_limit(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    full = keyed(load_examples(path, turns="all").examples)
    part = keyed(load_examples(path, turns="all", limit=3).examples)
    assert len(part) == 6
    assert part.items() <= full.items()


def test_keys_do_not_depend_on_row_order(tmp_path):
    forward = keyed(load_examples(write_jsonl(tmp_path / "f.jsonl", ROWS), turns="all").examples)
    backward = keyed(load_examples(write_jsonl(tmp_path / "b.jsonl", ROWS[::-1]), turns="all").examples)
    assert forward == backward


def test_keys_are_unique_within_a_dataset():
    res = load_examples(str(FIXTURES / "sharegpt.json"), turns="all")
    assert len({e.key for e in res.examples}) == len(res.examples)


def test_duplicate_rows_get_numbered_suffixes_in_order_of_appearance(tmp_path):
    row = {"prompt": "same", "response": "same"}
    res = load_examples(write_jsonl(tmp_path / "d.jsonl", [row, {"prompt": "other"}, row, row]))
    base = res.examples[0].key
    assert [e.key for e in res.examples] == [base, res.examples[1].key, f"{base}-2", f"{base}-3"]


def test_sharegpt_and_messages_spellings_of_one_conversation_share_a_key(tmp_path):
    a = load_examples(write_jsonl(tmp_path / "a.jsonl", [{"messages": [U("q"), A("a")]}]))
    b = load_examples(write_jsonl(tmp_path / "b.jsonl", [{"conversations": [{"from": "human", "value": "q"},
                                                                          {"from": "gpt", "value": "a"}]}]))
    assert a.examples[0].key == b.examples[0].key


def test_content_hash_is_the_same_in_two_loads():
    a = load_examples(str(FIXTURES / "messages.jsonl"))
    b = load_examples(str(FIXTURES / "messages.jsonl"))
    assert re.fullmatch(r"[0-9a-f]{64}", a.content_hash)
    assert a.content_hash == b.content_hash


def test_content_hash_changes_when_a_row_changes(tmp_path):
    a = load_examples(write_jsonl(tmp_path / "a.jsonl", ROWS))
    changed = [dict(r) for r in ROWS]
    changed[4] = {"messages": [U("question 4"), A("a different answer")]}
    b = load_examples(write_jsonl(tmp_path / "b.jsonl", changed))
    assert a.content_hash != b.content_hash


def test_content_hash_covers_only_the_rows_read(tmp_path):
    limited = load_examples(write_jsonl(tmp_path / "all.jsonl", ROWS), limit=2)
    first_two = load_examples(write_jsonl(tmp_path / "two.jsonl", ROWS[:2]))
    assert limited.content_hash == first_two.content_hash
