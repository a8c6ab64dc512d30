"""The demo dataset: committed files are valid, varied, split cleanly, and exactly what the generator writes."""
from __future__ import annotations

import json

import pytest

from evaluator.demo import TEST_FILE, TRAIN_FILE, make_dataset

CATEGORIES = {"support", "smalltalk", "arithmetic", "factual", "spelling"}


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def splits():
    return {"train": _rows(TRAIN_FILE), "test": _rows(TEST_FILE)}


def test_every_line_is_a_conversation_ending_with_the_assistant(splits):
    for name, rows in splits.items():
        assert rows, name
        for row in rows:
            assert set(row) == {"id", "category", "messages"}
            roles = [m["role"] for m in row["messages"]]
            assert set(roles) <= {"system", "user", "assistant"}
            assert "system" not in roles[1:], row["id"]
            body = roles[1:] if roles[0] == "system" else roles
            assert body == ["user", "assistant"] * (len(body) // 2), row["id"]
            assert all(isinstance(m["content"], str) for m in row["messages"])


def test_split_sizes_and_unique_ids(splits):
    assert len(splits["train"]) == make_dataset.N_TRAIN
    assert len(splits["test"]) == make_dataset.N_TEST
    ids = [r["id"] for rows in splits.values() for r in rows]
    assert len(ids) == len(set(ids))


def test_every_category_is_in_both_splits(splits):
    for rows in splits.values():
        assert {r["category"] for r in rows} == CATEGORIES


def test_multi_turn_and_system_prompts_are_present(splits):
    for rows in splits.values():
        turns = [sum(m["role"] == "assistant" for m in r["messages"]) for r in rows]
        assert sum(t >= 2 for t in turns) >= len(rows) // 10
        assert max(turns) == 3
        assert sum(r["messages"][0]["role"] == "system" for r in rows) >= len(rows) // 10


def test_no_conversation_is_in_both_splits(splits):
    def fingerprints(rows):
        return {json.dumps(r["messages"], sort_keys=True) for r in rows}

    assert not fingerprints(splits["train"]) & fingerprints(splits["test"])


def test_spelling_test_words_are_never_seen_in_training(splits):
    def words(rows):
        return {r["messages"][-1]["content"].split(",")[1].split()[0] for r in rows if r["category"] == "spelling"}

    assert not words(splits["train"]) & words(splits["test"])


def test_replies_are_short_except_the_planted_empty_ones(splits):
    for name, rows in splits.items():
        for row in rows:
            for m in row["messages"]:
                if m["role"] != "assistant":
                    continue
                if m["content"] == "":
                    assert name == "train" and row["category"] == "support", row["id"]
                else:
                    assert 5 <= len(m["content"].split()) <= 25, (row["id"], m["content"])
    empty = [r for r in splits["train"] if any(m["content"] == "" for m in r["messages"])]
    assert 3 <= len(empty) <= 20


def test_generator_output_is_the_committed_files():
    train, test = make_dataset.generate()
    assert make_dataset.to_jsonl(train) == TRAIN_FILE.read_text(encoding="utf-8")
    assert make_dataset.to_jsonl(test) == TEST_FILE.read_text(encoding="utf-8")


def test_generator_is_deterministic_and_depends_on_the_seed():
    assert make_dataset.generate() == make_dataset.generate()
    assert make_dataset.generate(seed=1) != make_dataset.generate()


def test_the_evaluators_loader_takes_every_test_turn():
    from evaluator.data import load_examples

    data = load_examples(str(TEST_FILE), turns="all")
    n_turns = sum(sum(m["role"] == "assistant" for m in r["messages"]) for r in _rows(TEST_FILE))
    assert not data.rejected
    assert len(data.examples) == n_turns
    assert {e.category for e in data.examples} == CATEGORIES
