"""turns="last" / "all" / "rollout": which turns become examples, and the MT-Bench question format (evaluator.data)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluator.data import load_examples, rolled_out, rollout_prompts

FIXTURES = Path(__file__).resolve().parents[1] / "support" / "fixtures" / "data"
SHAREGPT = str(FIXTURES / "sharegpt.json")
SYSTEM = {"role": "system", "content": "You are a travel assistant."}


def U(text):
    return {"role": "user", "content": text}


def A(text):
    return {"role": "assistant", "content": text}


def write_jsonl(path: Path, rows: list) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_last_gives_one_example_per_conversation():
    res = load_examples(SHAREGPT, turns="last")
    assert [e.row_index for e in res.examples] == [0, 1, 2]


def test_last_uses_the_history_before_the_last_assistant_turn():
    ex = load_examples(SHAREGPT, turns="last").examples[0]
    assert ex.messages == [SYSTEM, U("My parcel is late."), A("I am sorry about the delay."),
                           U("Can you track it?"), A("Sure, here is how."), U("Thanks a lot!")]
    assert ex.reference == "You are welcome."
    assert ex.turn_index == 2


def test_conversation_ending_in_a_user_turn_is_all_prompt_without_reference():
    ex = load_examples(str(FIXTURES / "messages.jsonl"), turns="last").examples[2]
    assert ex.messages[-1] == U("And Berlin?")
    assert len(ex.messages) == 4
    assert ex.reference is None
    assert ex.turn_index == 1  # the assistant turn to produce comes after 1 assistant turn


def test_all_gives_one_example_per_assistant_turn_with_gold_history():
    conv_a = [e for e in load_examples(SHAREGPT, turns="all").examples if e.row_index == 0]
    assert [e.turn_index for e in conv_a] == [0, 1, 2]
    assert [e.reference for e in conv_a] == ["I am sorry about the delay.", "Sure, here is how.", "You are welcome."]
    assert conv_a[1].messages == [SYSTEM, U("My parcel is late."), A("I am sorry about the delay."),
                                  U("Can you track it?")]


def test_all_keeps_the_conversation_id_on_every_turn():
    conv_a = [e for e in load_examples(SHAREGPT, turns="all").examples if e.row_index == 0]
    assert {e.conversation_id for e in conv_a} == {"conv-a"}


def test_all_adds_the_open_user_turn_of_a_conversation_ending_in_user():
    m3 = [e for e in load_examples(str(FIXTURES / "messages.jsonl"), turns="all").examples if e.row_index == 2]
    assert [(e.turn_index, e.reference) for e in m3] == [(0, "Paris is the capital of France."), (1, None)]


def test_last_example_is_the_final_example_of_all():
    last = load_examples(SHAREGPT, turns="last").examples
    every = load_examples(SHAREGPT, turns="all").examples
    final_of_each_row = {e.row_index: e for e in every}  # later turns overwrite earlier ones
    assert [final_of_each_row[e.row_index].key for e in last] == [e.key for e in last]


def test_derived_conversation_id_is_the_same_for_every_turn(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": [U("a"), A("b"), U("c"), A("d")]}])
    examples = load_examples(path, turns="all").examples
    assert len(examples) == 2
    assert examples[0].conversation_id == examples[1].conversation_id
    assert len(examples[0].conversation_id) == 16


def test_assistant_greeting_before_any_user_turn_is_history_not_a_reference(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": [A("Hi, how can I help?"), U("q"), A("a")]}])
    examples = load_examples(path, turns="all").examples
    assert [(e.turn_index, e.reference) for e in examples] == [(1, "a")]
    assert examples[0].messages == [A("Hi, how can I help?"), U("q")]


def test_empty_earlier_assistant_turn_is_fine_for_last(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": [U("a"), A(""), U("c"), A("d")]}])
    res = load_examples(path, turns="last")
    assert (len(res.examples), res.rejected) == (1, [])


def test_empty_earlier_assistant_turn_rejects_the_row_for_all(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": [U("a"), A(""), U("c"), A("d")]}])
    res = load_examples(path, turns="all")
    assert res.examples == []
    assert res.rejected[0].reason.startswith("row 0 (line 1): message 1 (assistant) is the reference but is empty")


@pytest.mark.parametrize("turns", ["last", "all"])
def test_single_turn_formats_have_turn_index_zero(turns):
    examples = load_examples(str(FIXTURES / "qa.jsonl"), turns=turns).examples
    assert [e.turn_index for e in examples] == [0, 0]


def test_unknown_turns_value_raises_data_error():
    from evaluator.data import DataError

    with pytest.raises(DataError, match="unknown turns 'first'"):
        load_examples(SHAREGPT, turns="first")


# --- rollout: every user turn, answered after the model's own earlier answers ------------------------------


def test_rollout_gives_one_example_per_user_turn_without_the_datasets_answers_as_history():
    conv_a = [e for e in load_examples(SHAREGPT, turns="rollout").examples if e.row_index == 0]
    assert [e.turn_index for e in conv_a] == [0, 1, 2]
    assert [e.reference for e in conv_a] == ["I am sorry about the delay.", "Sure, here is how.", "You are welcome."]
    assert conv_a[2].messages == [SYSTEM, U("My parcel is late."), U("Can you track it?"), U("Thanks a lot!")]
    assert {e.conversation_id for e in conv_a} == {"conv-a"}


def test_rolled_out_puts_the_models_answers_back_after_each_earlier_user_turn():
    prompt = [SYSTEM, A("Hello, how can I help?"), U("q1"), U("q2"), U("q3")]
    assert rolled_out(prompt, ["own 1", "own 2"]) == [SYSTEM, A("Hello, how can I help?"), U("q1"), A("own 1"),
                                                      U("q2"), A("own 2"), U("q3")]
    with pytest.raises(ValueError, match="needs 2 earlier answers, got 1"):
        rolled_out(prompt, ["own 1"])


def test_rollout_keeps_a_greeting_and_answers_a_final_open_user_turn(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"messages": [A("Hi! Ask me anything."), U("q1"), A("a1"), U("q2")]}])
    exs = load_examples(path, turns="rollout").examples
    assert [(e.messages, e.reference, e.turn_index) for e in exs] == [
        ([A("Hi! Ask me anything."), U("q1")], "a1", 0),
        ([A("Hi! Ask me anything."), U("q1"), U("q2")], None, 1)]


def test_rollout_prompts_show_a_failed_earlier_answer_as_failed():
    items = [{"messages": [U("q1")], "conversation_id": "c", "turn_index": 0},
             {"messages": [U("q1"), U("q2"), U("q3")], "conversation_id": "c", "turn_index": 2}]
    prompts = rollout_prompts(items, {("c", 0): "first", ("c", 1): None, ("d", 0): "other conversation"})
    assert prompts[0] == [U("q1")]
    assert prompts[1] == [U("q1"), A("first"), U("q2"), A("(no answer: generation failed)"), U("q3")]


# --- MT-Bench's question file --------------------------------------------------------------------------------

MT_BENCH = [
    {"question_id": 81, "category": "writing", "turns": ["Write a travel post.", "Rewrite it, every sentence with A."]},
    {"question_id": 111, "category": "math", "turns": ["Area of (0,0), (-1,1), (3,3)?", "And the circumscribed circle?"],
     "reference": ["3", "5 pi"]},
]


def test_mt_bench_questions_are_detected_and_rolled_out_turn_by_turn(tmp_path):
    res = load_examples(write_jsonl(tmp_path / "question.jsonl", MT_BENCH), turns="rollout")
    assert res.format == "mt_bench" and res.rejected == []
    assert [(e.conversation_id, e.turn_index, e.category, e.reference) for e in res.examples] == [
        ("81", 0, "writing", None), ("81", 1, "writing", None), ("111", 0, "math", "3"), ("111", 1, "math", "5 pi")]
    assert res.examples[1].messages == [U("Write a travel post."), U("Rewrite it, every sentence with A.")]


def test_mt_bench_references_are_the_gold_history_of_turns_all(tmp_path):
    res = load_examples(write_jsonl(tmp_path / "question.jsonl", MT_BENCH), turns="all")
    ex = [e for e in res.examples if e.conversation_id == "111"]
    assert ex[1].messages == [U("Area of (0,0), (-1,1), (3,3)?"), A("3"), U("And the circumscribed circle?")]
    assert [r.row_index for r in res.rejected] == [0]
    assert "--turns rollout" in res.rejected[0].reason  # no reference to stand for the model's first answer


@pytest.mark.parametrize("row, reason", [
    ({"question_id": 1, "turns": []}, "expected a non-empty list of strings"),
    ({"question_id": 1, "turns": ["q", 3]}, "expected a non-empty list of strings"),
    ({"question_id": 1, "turns": ["q", " "]}, "turn 1 of field 'turns' is empty"),
    ({"question_id": 1, "turns": ["q1", "q2"], "reference": ["only one"]}, "has 1 reference answers for 2 turns"),
    ({"question_id": 1, "turns": ["q1"], "reference": [""]}, "reference 0 of field 'reference' is empty"),
])
def test_a_bad_mt_bench_row_is_rejected_with_its_reason(tmp_path, row, reason):
    res = load_examples(write_jsonl(tmp_path / "q.jsonl", [MT_BENCH[0], row]), turns="rollout")
    assert [r.row_index for r in res.rejected] == [1]
    assert reason in res.rejected[0].reason
