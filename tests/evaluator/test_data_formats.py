"""Format detection, explicit overrides, and row -> messages normalisation (evaluator.data)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluator.data import FORMATS, DataError, load_examples

FIXTURES = Path(__file__).resolve().parents[1] / "support" / "fixtures" / "data"


def write_jsonl(path: Path, rows: list) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def U(text):
    return {"role": "user", "content": text}


def A(text):
    return {"role": "assistant", "content": text}


# --- every format is detected ---------------------------------------------------------------------------


@pytest.mark.parametrize("fixture, expected", [
    ("messages.jsonl", "messages"),
    ("sharegpt.json", "sharegpt"),
    ("alpaca.json", "alpaca"),
    ("prompt_response.csv", "prompt_response"),
    ("qa.jsonl", "prompt_response"),
    ("prompt_only.jsonl", "prompt_response"),
])
def test_auto_detects_the_format_of_each_fixture(fixture, expected):
    res = load_examples(str(FIXTURES / fixture))
    assert res.format == expected
    assert res.rejected == []
    assert len(res.examples) == res.n_rows > 0


def test_formats_lists_auto_and_the_five_formats():
    assert FORMATS == ("auto", "messages", "sharegpt", "alpaca", "prompt_response", "mt_bench")


def test_messages_keep_system_turns_before_the_reference():
    ex = load_examples(str(FIXTURES / "messages.jsonl")).examples[0]
    assert ex.messages == [
        {"role": "system", "content": "You are a helpful support agent."},
        U("How do I reset my password?"),
    ]
    assert ex.reference == "Click the reset link in the email."


def test_sharegpt_roles_and_aliases_are_normalised():
    res = load_examples(str(FIXTURES / "sharegpt.json"))
    conv_b = res.examples[1]  # from: user / chatgpt / human / bing
    assert conv_b.messages == [U("Hello there."), A("Hello! How can I help?"), U("Tell me a joke.")]
    assert conv_b.reference == "Why did the chicken cross the road?"


def test_sharegpt_accepts_role_content_keys(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"conversations": [{"role": "human", "content": "q"},
                                                                  {"role": "gpt", "content": "a"}]}])
    res = load_examples(path)
    assert res.format == "sharegpt"
    assert (res.examples[0].messages, res.examples[0].reference) == ([U("q")], "a")


def test_role_names_are_case_insensitive(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": [{"role": "Human", "content": "q"},
                                                            {"role": "GPT", "content": "a"}]}])
    assert load_examples(path).examples[0].messages == [U("q")]


def test_alpaca_joins_instruction_and_input_with_a_blank_line():
    ex = load_examples(str(FIXTURES / "alpaca.json")).examples[0]
    assert ex.messages == [U("Translate to French.\n\nGood morning")]
    assert ex.reference == "Bonjour"


@pytest.mark.parametrize("row", [0, 1], ids=["empty_input", "missing_input"])
def test_alpaca_without_input_is_just_the_instruction(row):
    examples = load_examples(str(FIXTURES / "alpaca.json")).examples
    ex = examples[row + 1]
    assert ex.messages == [U(["Name a primary colour.", "Write a haiku about autumn."][row])]


def test_alpaca_context_column_is_the_input(tmp_path):
    path = write_jsonl(tmp_path / "dolly.jsonl", [{"instruction": "Summarise.", "context": "Long text.",
                                                   "response": "Short.", "category": "summarization"}])
    res = load_examples(path)
    assert res.format == "alpaca"
    assert res.examples[0].messages == [U("Summarise.\n\nLong text.")]
    assert res.examples[0].reference == "Short."


def test_question_answer_columns_are_prompt_and_reference():
    ex = load_examples(str(FIXTURES / "qa.jsonl")).examples[0]
    assert (ex.messages, ex.reference) == ([U("Who wrote Hamlet?")], "William Shakespeare.")


@pytest.mark.parametrize("prompt_col, response_col", [
    ("prompt", "completion"), ("query", "response"), ("input", "output"),
])
def test_prompt_response_column_variants_are_detected(tmp_path, prompt_col, response_col):
    path = write_jsonl(tmp_path / "d.jsonl", [{prompt_col: "p", response_col: "r"}])
    res = load_examples(path)
    assert res.format == "prompt_response"
    assert (res.examples[0].messages, res.examples[0].reference) == ([U("p")], "r")


def test_prompt_without_reference_column_gives_reference_none():
    res = load_examples(str(FIXTURES / "prompt_only.jsonl"))
    assert [e.reference for e in res.examples] == [None, None]
    assert res.examples[0].messages == [U("Write a limerick about a cat.")]


def test_null_reference_in_a_row_gives_reference_none(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "response": "r"}, {"prompt": "q", "response": None}])
    assert [e.reference for e in load_examples(path).examples] == ["r", None]


def test_empty_csv_cell_is_a_missing_reference():
    ex = load_examples(str(FIXTURES / "prompt_response.csv")).examples[2]
    assert ex.messages == [U("Summarise: the cat sat on the mat.")]
    assert ex.reference is None


def test_csv_quoting_is_honoured():
    ex = load_examples(str(FIXTURES / "prompt_response.csv")).examples[1]
    assert ex.messages == [U('Say "hi" politely.')]
    assert ex.reference == "Hello, nice to meet you!"


def test_conversational_prompt_completion_lists_are_supported(tmp_path):
    path = write_jsonl(tmp_path / "trl.jsonl", [{"prompt": [{"role": "system", "content": "s"}, U("q")],
                                                 "completion": [A("a")]}])
    ex = load_examples(path).examples[0]
    assert (ex.messages, ex.reference) == ([{"role": "system", "content": "s"}, U("q")], "a")


def test_system_column_becomes_a_system_message(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"system": "Be brief.", "prompt": "p", "response": "r"}])
    ex = load_examples(path).examples[0]
    assert ex.messages == [{"role": "system", "content": "Be brief."}, U("p")]


def test_openai_text_content_parts_are_joined(tmp_path):
    parts = [{"type": "text", "text": "Hello "}, {"type": "text", "text": "world"}]
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "content": parts}, A("hi")]}])
    assert load_examples(path).examples[0].messages == [U("Hello world")]


def test_conversation_stored_as_json_text_in_csv_is_parsed(tmp_path):
    path = tmp_path / "d.csv"
    conv = json.dumps([U("q"), A("a")]).replace('"', '""')
    path.write_text(f'messages,category\n"{conv}",misc\n', encoding="utf-8")
    ex = load_examples(str(path)).examples[0]
    assert (ex.messages, ex.reference, ex.category) == ([U("q")], "a", "misc")


# --- detection is per dataset, and ambiguity is an error -------------------------------------------------


def test_ambiguous_columns_raise_data_error_naming_the_candidates(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": [U("q"), A("a")], "instruction": "i", "output": "o"}])
    with pytest.raises(DataError, match=r"ambiguous.*messages and alpaca.*--format"):
        load_examples(path)


def test_two_prompt_columns_raise_data_error_asking_for_field(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "question": "q", "answer": "a"}])
    with pytest.raises(DataError, match=r"could each be the prompt.*--field prompt=COLUMN"):
        load_examples(path)


def test_unrecognised_columns_raise_data_error(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "hello", "label": 1}])
    with pytest.raises(DataError, match=r"cannot detect the dataset format.*'text'.*--format"):
        load_examples(path)


def test_detection_uses_the_dataset_not_each_row(tmp_path):
    # Row 1 looks like prompt/response on its own, but most rows are messages rows: row 1 is rejected.
    conv = {"messages": [U("q"), A("a")]}
    path = write_jsonl(tmp_path / "d.jsonl", [conv, {"prompt": "p", "response": "r"}, conv])
    res = load_examples(path)
    assert res.format == "messages"
    assert [r.reason for r in res.rejected] == ["row 1 (line 2): missing field 'messages'"]


def test_rows_split_evenly_between_two_formats_are_ambiguous(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": [U("q"), A("a")]}, {"prompt": "p", "response": "r"}])
    with pytest.raises(DataError, match=r"ambiguous.*messages and prompt_response"):
        load_examples(path)


def test_conversation_column_wins_over_a_copied_prompt_column(tmp_path):
    # ultrachat_200k: prompt, prompt_id, messages
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "q", "prompt_id": "abc", "messages": [U("q"), A("a")]}])
    res = load_examples(path)
    assert res.format == "messages"
    assert res.examples[0].conversation_id == "abc"


# --- explicit format and field names ------------------------------------------------------------------


def test_explicit_format_resolves_an_ambiguous_dataset(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": [U("q"), A("a")], "instruction": "i", "output": "o"}])
    res = load_examples(path, format="alpaca")
    assert res.format == "alpaca"
    assert (res.examples[0].messages, res.examples[0].reference) == ([U("i")], "o")


def test_fields_name_the_prompt_and_response_columns(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"q": "What?", "a": "That."}])
    res = load_examples(path, fields={"prompt": "q", "response": "a"})
    assert res.format == "prompt_response"
    assert res.fields == {"prompt": "q", "response": "a"}
    assert (res.examples[0].messages, res.examples[0].reference) == ([U("What?")], "That.")


def test_fields_name_the_conversation_column(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"dialog": [{"from": "human", "value": "q"},
                                                          {"from": "gpt", "value": "a"}]}])
    res = load_examples(path, fields={"messages": "dialog"})
    assert res.format == "sharegpt"
    assert res.examples[0].messages == [U("q")]


def test_fields_pick_one_of_two_prompt_columns(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "question": "q", "answer": "a"}])
    assert load_examples(path, fields={"prompt": "question"}).examples[0].messages == [U("q")]


def test_explicit_format_without_its_column_raises_data_error(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"input": "p", "output": "r"}])
    with pytest.raises(DataError, match=r"format 'alpaca' needs the instruction column"):
        load_examples(path, format="alpaca")


def test_field_naming_a_missing_column_raises_data_error(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p"}])
    with pytest.raises(DataError, match=r"not in the dataset.*'nope'"):
        load_examples(path, fields={"response": "nope"})


def test_unknown_field_role_raises_data_error(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p"}])
    with pytest.raises(DataError, match=r"unknown field role"):
        load_examples(path, fields={"answer_col": "prompt"})


def test_unknown_format_raises_data_error():
    with pytest.raises(DataError, match=r"unknown format 'chatml'"):
        load_examples(str(FIXTURES / "qa.jsonl"), format="chatml")


# --- category, source, tags, metadata -------------------------------------------------------------------


def test_category_source_tags_and_metadata_are_taken_from_the_row():
    ex = load_examples(str(FIXTURES / "messages.jsonl")).examples[0]
    assert ex.category == "account"
    assert ex.source == "helpdesk"
    assert ex.tags == ["support", "password", "account"]
    assert ex.metadata == {"difficulty": 2}


def test_comma_separated_tags_are_split_and_include_the_category():
    ex = load_examples(str(FIXTURES / "messages.jsonl")).examples[1]
    assert ex.tags == ["arithmetic", "followup", "math"]


def test_category_column_can_be_named_in_fields(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "response": "r", "topic": "science", "lang": "en"}])
    ex = load_examples(path, fields={"category": "topic"}).examples[0]
    assert (ex.category, ex.tags, ex.metadata) == ("science", ["science"], {"lang": "en"})


def test_metadata_keeps_scalars_and_leaves_out_lists_and_nulls(tmp_path):
    row = {"prompt": "p", "response": "r", "n": 3, "score": 0.5, "ok": True, "nested": {"a": 1},
           "many": [1, 2], "nothing": None}
    ex = load_examples(write_jsonl(tmp_path / "d.jsonl", [row])).examples[0]
    assert ex.metadata == {"n": 3, "score": 0.5, "ok": True}
