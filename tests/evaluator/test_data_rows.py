"""Bad rows: each kind is rejected with its reason, none is dropped, and the row accounting holds."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluator.data import DataError, load_examples

FIXTURES = Path(__file__).resolve().parents[1] / "support" / "fixtures" / "data"
BAD_ROWS = str(FIXTURES / "bad_rows.jsonl")

# Row index in bad_rows.jsonl -> the reason it must be rejected with (after "row N (line L): ").
BAD_ROW_REASONS = {
    "malformed_json": (1, "invalid JSON: Expecting ',' delimiter"),
    "invalid_utf8": (2, "invalid UTF-8 (byte 0xe9"),
    "not_an_object": (3, "row is a list, expected an object"),
    "missing_field": (4, "missing field 'messages'"),
    "null_field": (5, "field 'messages' is null"),
    "wrong_typed_field": (6, "field 'messages' is an int, expected a list of messages"),
    "empty_conversation": (7, "empty conversation"),
    "unknown_role": (8, "message 2 has unknown role 'bot2'"),
    "no_user_turn": (9, "conversation has no user turn"),
    "non_string_content": (10, "message 1 (assistant) content is an int, expected a string"),
    "empty_reference": (11, "message 1 (assistant) is the reference but is empty"),
    "message_not_an_object": (12, "message 0 is a str, expected an object with role and content"),
    "message_without_role": (13, "message 0 has no role"),
    "message_without_content": (14, "message 0 (user) has no content"),
    "empty_user_turn": (15, "message 0 (user) is empty"),
    "ends_with_system_turn": (16, "conversation ends with a system turn (message 2)"),
    "role_not_a_string": (17, "message 0 role is an int, expected a string"),
    "tags_wrong_type": (18, "field 'tags' is a dict, expected a list or a comma-separated string"),
}
GOOD_ROWS = {0, 19, 20}


def write_jsonl(path: Path, rows: list) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def reasons(res) -> dict[int, str]:
    return {r.row_index: r.reason for r in res.rejected}


@pytest.mark.parametrize("kind", list(BAD_ROW_REASONS))
def test_bad_row_is_rejected_with_its_reason(kind):
    index, reason = BAD_ROW_REASONS[kind]
    got = reasons(load_examples(BAD_ROWS))[index]
    assert got.split(": ", 1)[1].startswith(reason), got


def test_reason_names_the_row_and_the_file_line():
    # The blank line 12 of the file is not a row, so row 11 is on line 13.
    got = reasons(load_examples(BAD_ROWS))
    assert got[8] == "row 8 (line 9): message 2 has unknown role 'bot2'"
    assert got[11].startswith("row 11 (line 13): ")


def test_good_rows_among_bad_rows_become_examples():
    res = load_examples(BAD_ROWS)
    assert {e.row_index for e in res.examples} == GOOD_ROWS


def test_every_row_is_either_an_example_or_rejected_exactly_once():
    res = load_examples(BAD_ROWS)
    example_rows = {e.row_index for e in res.examples}
    rejected_rows = [r.row_index for r in res.rejected]
    assert len(rejected_rows) == len(set(rejected_rows))
    assert example_rows.isdisjoint(rejected_rows)
    assert example_rows | set(rejected_rows) == set(range(res.n_rows))


def test_blank_lines_are_not_rows():
    assert load_examples(BAD_ROWS).n_rows == 21  # 22 lines, one blank


@pytest.mark.parametrize("turns", ["last", "all"])
def test_n_rows_is_rows_with_examples_plus_rejected(turns):
    res = load_examples(str(FIXTURES / "sharegpt.json"), turns=turns)
    assert res.n_rows == len({e.row_index for e in res.examples}) + len(res.rejected)
    bad = load_examples(BAD_ROWS, turns=turns)
    assert bad.n_rows == len({e.row_index for e in bad.examples}) + len(bad.rejected)


def test_turns_all_gives_more_examples_than_rows_without_changing_n_rows():
    res = load_examples(str(FIXTURES / "sharegpt.json"), turns="all")
    assert (res.n_rows, len(res.examples)) == (3, 6)


def test_limit_counts_rejected_rows_too():
    res = load_examples(BAD_ROWS, limit=5)
    assert res.n_rows == 5
    assert len({e.row_index for e in res.examples}) + len(res.rejected) == 5
    assert max(r.row_index for r in res.rejected) == 4


def test_rejected_raw_is_the_row_text():
    got = {r.row_index: r.raw for r in load_examples(BAD_ROWS).rejected}
    assert got[1] == '{"messages": [{"role": "user", "content": "unterminated"'


def test_rejected_raw_is_truncated(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"prompt": "p"}) + "\n" + '{"prompt": "' + "x" * 5000 + "\n", encoding="utf-8")
    raw = load_examples(str(path)).rejected[0].raw
    assert len(raw) == 500 and raw.endswith("...")


@pytest.mark.parametrize("row, reason", [
    ({"prompt": 3, "response": "r"}, "field 'prompt' is an int, expected a string"),
    ({"prompt": "  ", "response": "r"}, "field 'prompt' is empty"),
    ({"prompt": "p", "response": ""}, "field 'response' (the reference) is empty"),
    ({"prompt": "p", "response": ["r"]}, "message 0 is a str, expected an object with role and content"),
    ({"prompt": "p", "response": [{"role": "user", "content": "x"}]}, "field 'response' message 0 is not an assistant"),
    ({"prompt": "p", "response": "r", "category": ["a"]}, "field 'category' is a list, expected a string"),
    ({"prompt": "p", "response": "r", "system": 5}, "field 'system' is an int, expected a string"),
    ({"prompt": [{"role": "tool", "content": "x"}], "response": "r"}, "message 0 has unknown role 'tool'"),
], ids=["prompt_int", "prompt_empty", "reference_empty", "response_list_of_str", "response_user_turn",
        "category_list", "system_int", "prompt_list_tool_role"])
def test_bad_prompt_response_row_is_rejected_with_its_reason(tmp_path, row, reason):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "ok", "response": "fine", "category": "c", "system": "s"}, row])
    res = load_examples(path)
    assert len(res.rejected) == 1
    assert res.rejected[0].reason.startswith(f"row 1 (line 2): {reason}")


def test_conflicting_system_column_and_system_message_is_rejected(tmp_path):
    row = {"system": "A", "messages": [{"role": "system", "content": "B"}, {"role": "user", "content": "q"}]}
    res = load_examples(write_jsonl(tmp_path / "d.jsonl", [row]))
    assert res.rejected[0].reason == "row 0 (line 1): field 'system' and message 0 (system) give different system prompts"


def test_file_with_no_readable_row_raises_data_error_with_the_first_reason(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"not json\n[1]\n")
    with pytest.raises(DataError, match=r"no readable row.*row 0 \(line 1\): invalid JSON"):
        load_examples(str(path))


# --- fuzzed corpus of good rows mixed with bad rows -------------------------------------------------------

text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12).filter(lambda s: s.strip())
good_conversation = st.lists(st.tuples(text, text), min_size=1, max_size=3).map(
    lambda pairs: {"messages": [m for q, a in pairs for m in ({"role": "user", "content": q},
                                                              {"role": "assistant", "content": a})]})
json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                      max_size=3), max_leaves=8)
bad_message = st.one_of(
    json_value,
    st.fixed_dictionaries({"role": st.text(max_size=6), "content": json_value}),
    st.fixed_dictionaries({"from": st.sampled_from(["human", "gpt", "bot2", ""]), "value": json_value}),
)
bad_conversation = st.one_of(
    st.fixed_dictionaries({"messages": st.lists(bad_message, max_size=4)}),
    st.fixed_dictionaries({"messages": json_value}),
    json_value,
)
line = st.one_of(
    good_conversation.map(lambda r: ("good", json.dumps(r).encode())),
    bad_conversation.map(lambda r: ("any", json.dumps(r).encode())),
    st.binary(min_size=1, max_size=30).filter(lambda b: b.strip() and b"\n" not in b and b"\r" not in b)
    .map(lambda b: ("any", b)),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line, min_size=1, max_size=25), st.sampled_from(["last", "all"]))
def test_fuzzed_rows_are_each_an_example_or_rejected_and_never_crash(lines, turns):
    lines = [("good", json.dumps({"messages": [{"role": "user", "content": "anchor"}]}).encode())] + lines
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.jsonl"
        path.write_bytes(b"\n".join(body for _, body in lines) + b"\n")
        res = load_examples(str(path), format="messages", turns=turns)
    rows_with_examples = {e.row_index for e in res.examples}
    rejected = [r.row_index for r in res.rejected]
    assert res.n_rows == len(lines) == len(rows_with_examples) + len(rejected)
    assert rows_with_examples.isdisjoint(rejected)
    assert all(r.reason.startswith(f"row {r.row_index} (line {r.row_index + 1}): ") for r in res.rejected)
    assert len({e.key for e in res.examples}) == len(res.examples)
    good = {i for i, (kind, _) in enumerate(lines) if kind == "good"}
    assert good <= rows_with_examples
