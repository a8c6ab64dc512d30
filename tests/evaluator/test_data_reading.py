"""The details of reading a source that mutation testing showed no test pinned: which names are paths,
how a broken JSON list is split, CSV edge cases, and that every row's content reaches the dataset hash."""
from __future__ import annotations

import json

import pytest

from evaluator.data import DataError, load_examples
from evaluator.data._read import _first_line

ROW = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}


def row(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"a{i}"}]}


# ---------------------------------------------------------------- a name that is a path, not a Hub id


@pytest.mark.parametrize("source", ["data/missing.JSONL", "/missing-dataset", ".missing", "~missing",
                                    "data\\missing", "org/name/extra", "missing.csv"])
def test_a_missing_path_says_file_not_found_instead_of_asking_the_hub(source, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="^file not found: "):
        load_examples(source)


def test_an_owner_name_id_goes_to_the_hub(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as e:
        load_examples("some-owner/some-dataset-not-cached")
    assert "file not found" not in str(e.value) and "some-owner/some-dataset-not-cached" in str(e.value)


def test_first_line_of_an_error_message():
    assert _first_line(ValueError("first\nsecond")) == "first"
    assert _first_line(ValueError("\n  first\nsecond")) == "first"
    assert _first_line(ValueError("")) == "ValueError"


# ---------------------------------------------------------------- JSON


def test_a_json_object_without_a_list_of_rows_names_the_keys_it_looks_for(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"version": 1, "items": [ROW]}), encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_examples(str(path), split="dev")
    assert str(e.value) == (f"'{path}' holds one JSON object, not a list of rows; store the rows as a list, "
                            "under one of the keys ['dev', 'data', 'rows', 'examples', 'instances'], "
                            "or one per line as .jsonl")


def test_a_broken_list_is_split_on_top_level_commas_only(tmp_path):
    """Commas, brackets, braces and escaped quotes inside strings, nested lists and objects, and no
    space after a comma: the elements are still found, and only the broken one is rejected."""
    tricky = {"messages": [{"role": "user", "content": 'say "a, [b] {c}" \\ and ]} then'},
                           {"role": "assistant", "content": "[1, {2}]"}], "extra": [["x", "]"], {"k": [1, "}"]}]}
    elements = [json.dumps(tricky, separators=(",", ":")), json.dumps(row(1), separators=(",", ":")),
                '{"messages": [oops]}', json.dumps(row(3), separators=(",", ":"))]
    path = tmp_path / "d.json"
    path.write_text("\n[" + ",".join(elements) + "]", encoding="utf-8")  # a newline before the list
    res = load_examples(str(path))
    assert [e.row_index for e in res.examples] == [0, 1, 3]
    assert res.examples[0].messages[0]["content"] == 'say "a, [b] {c}" \\ and ]} then'
    assert [r.reason for r in res.rejected] == ["row 2 (line 2): invalid JSON: Expecting value"]


def test_an_empty_element_and_an_unterminated_list(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(f"[{json.dumps(row(0))},\n  ,\n{json.dumps(row(2))},\n{{\"messages\": [", encoding="utf-8")
    res = load_examples(str(path))
    assert [e.row_index for e in res.examples] == [0, 2]
    assert [r.reason for r in res.rejected] == ["row 1 (line 2): empty list element",
                                                "row 3 (line 4): invalid JSON: Expecting value"]


def test_one_character_after_the_closing_bracket_is_refused(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(f"[{json.dumps(row(0))}, {{broken}}]x", encoding="utf-8")
    with pytest.raises(DataError, match="has text after the closing"):
        load_examples(str(path))


def test_a_lone_surrogate_escape_in_a_json_list_is_read_and_hashed(tmp_path):
    """JSON may escape a lone UTF-16 surrogate; the row is read, and hashing its content must not fail."""
    path = tmp_path / "d.json"
    path.write_text('[{"messages": [{"role": "user", "content": "odd \\ud800 text"}, '
                    '{"role": "assistant", "content": "ok"}]}]', encoding="utf-8")
    res = load_examples(str(path))
    assert len(res.examples) + len(res.rejected) == 1 and len(res.content_hash) == 64


@pytest.mark.parametrize("suffix, write", [
    (".json", lambda rows: json.dumps(rows)),
    (".json", lambda rows: "[" + ",".join(json.dumps(r) for r in rows) + ",{broken}]"),
    (".jsonl", lambda rows: "".join(json.dumps(r) + "\n" for r in rows)),
    (".csv", lambda rows: "prompt,response\n" + "".join(f"{r['messages'][0]['content']},x\n" for r in rows)),
    (".csv", lambda rows: 'prompt,response\n"bad"x,y\n' + "".join(f"{r['messages'][0]['content']},x\n"
                                                                   for r in rows)),
])
def test_every_rows_content_reaches_the_dataset_hash(tmp_path, suffix, write):
    """Changing one row changes the content hash that a resume checks (JSON list, broken list, JSONL, CSV)."""
    a, b = [row(0), row(1), row(2)], [row(0), row(1), row(7)]
    hashes = []
    for name, rows in (("a", a), ("b", b)):
        path = tmp_path / f"{name}{suffix}"
        path.write_text(write(rows), encoding="utf-8")
        hashes.append(load_examples(str(path)).content_hash)
    assert hashes[0] != hashes[1]


def test_a_malformed_csv_record_counts_in_the_hash_and_is_reported_with_an_empty_raw(tmp_path):
    clean, dirty = tmp_path / "a.csv", tmp_path / "b.csv"
    clean.write_text("prompt,response\nhi,there\n", encoding="utf-8")
    dirty.write_text('prompt,response\nhi,there\n"bad"x,y\n', encoding="utf-8")
    res = load_examples(str(dirty))
    assert load_examples(str(clean)).content_hash != res.content_hash
    assert res.rejected[0].raw == ""


# ---------------------------------------------------------------- CSV


def test_csv_blank_lines_in_the_middle_are_skipped_not_the_end(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("prompt,response\nfirst,one\n\n\nsecond,two\n", encoding="utf-8")
    res = load_examples(str(path))
    assert [e.messages[-1]["content"] for e in res.examples] == ["first", "second"]
    assert [e.row_index for e in res.examples] == [0, 1]


def test_csv_quoted_field_keeps_its_crlf(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b'prompt,response\r\n"line one\r\nline two",answer\r\n')
    res = load_examples(str(path))
    assert res.examples[0].messages[-1]["content"] == "line one\r\nline two"


def test_csv_header_problems_name_the_file(tmp_path):
    bad_quote, bad_utf8, dupes = tmp_path / "q.csv", tmp_path / "u.csv", tmp_path / "d.csv"
    bad_quote.write_text('"prompt"x,response\na,b\n', encoding="utf-8")
    bad_utf8.write_bytes(b"pr\xffompt,response\na,b\n")
    dupes.write_text("prompt,prompt\na,b\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_examples(str(bad_quote))
    assert str(e.value).startswith(f"'{bad_quote}' has an unreadable CSV header (") and "fix the first line" in str(e.value)
    with pytest.raises(DataError) as e:
        load_examples(str(bad_utf8))
    assert str(e.value) == f"'{bad_utf8}' has invalid UTF-8 in its header; re-encode it as UTF-8"
    with pytest.raises(DataError) as e:
        load_examples(str(dupes))
    assert str(e.value) == f"'{dupes}' has duplicate column names ['prompt']; rename them"


def test_csv_fields_longer_than_the_default_limit_are_read(tmp_path):
    path = tmp_path / "d.csv"
    long = "word " * 40_000  # 200 KB, over csv's default 128 KiB field limit
    path.write_text(f"prompt,response\n{long},ok\n", encoding="utf-8")
    res = load_examples(str(path))
    assert res.examples[0].messages[0]["content"].strip() == long.strip()


# ---------------------------------------------------------------- Parquet


def test_parquet_rows_past_the_first_batch_keep_their_order_and_content(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [row(i) for i in range(2500)]  # three batches of 1,024
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=700)
    res = load_examples(str(path))
    assert [e.row_index for e in res.examples] == list(range(2500))
    assert res.examples[2499].messages[0]["content"] == "question 2499"
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert [e.key for e in res.examples] == [e.key for e in load_examples(str(jsonl)).examples]
    other = tmp_path / "e.parquet"
    pq.write_table(pa.Table.from_pylist(rows[:-1] + [row(9999)]), other)
    assert load_examples(str(other)).content_hash != res.content_hash


def test_a_corrupt_parquet_file_names_itself(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError) as e:
        load_examples(str(path))
    assert str(e.value).startswith(f"cannot read parquet file '{path}': ") and "\n" not in str(e.value)


def test_unsupported_extension_lists_what_is_supported(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_examples(str(path))
    assert str(e.value) == (f"'{path}' has an unsupported extension '.txt'; use one of .jsonl, .ndjson, .json, "
                            ".csv, .parquet or a save_to_disk directory")


# ---------------------------------------------------------------- JSON variants (second round)


def test_a_json_list_hashes_the_same_however_it_is_formatted(tmp_path):
    """A valid list is parsed whole and each row hashed in canonical form, so re-indenting the file does
    not look like a changed dataset to --resume."""
    rows = [row(0), row(1)]
    compact, pretty = tmp_path / "a.json", tmp_path / "b.json"
    compact.write_text(json.dumps(rows, separators=(",", ":")), encoding="utf-8")
    pretty.write_text(json.dumps(rows, indent=4), encoding="utf-8")
    assert load_examples(str(compact)).content_hash == load_examples(str(pretty)).content_hash


def test_a_broken_list_with_escaped_quotes_and_bare_letters_outside_strings(tmp_path):
    """Top-level elements that are strings with an escaped quote before a comma, and a broken element
    with a bare X between brackets: only real top-level commas split."""
    path = tmp_path / "d.json"
    path.write_text('["\\"", "a\\", b", ' + json.dumps(row(2)) + ', {broken X}, ' + json.dumps(row(4)) + "]",
                    encoding="utf-8")
    res = load_examples(str(path))
    assert [e.row_index for e in res.examples] == [2, 4]
    assert [r.reason for r in res.rejected] == [
        "row 0 (line 1): row is a str, expected an object",
        "row 1 (line 1): row is a str, expected an object",
        "row 3 (line 1): invalid JSON: Expecting property name enclosed in double quotes",
    ]


def test_an_empty_json_file_has_no_rows(tmp_path):
    path = tmp_path / "d.json"
    path.write_text("  \n", encoding="utf-8")
    with pytest.raises(DataError, match="has no rows"):
        load_examples(str(path))


def test_json_lines_in_a_json_file_with_a_broken_line_are_read_line_by_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(row(0)) + "\n{broken\n" + json.dumps(row(2)) + "\n", encoding="utf-8")
    res = load_examples(str(path))
    assert [e.row_index for e in res.examples] == [0, 2]
    assert res.rejected[0].reason.startswith("row 1 (line 2): invalid JSON")


def test_one_broken_json_object_says_where(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('{\n  "data": [1,\n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_examples(str(path))
    assert str(e.value) == (f"'{path}' is not valid JSON (Expecting value at line 3 column 1); fix it, or store one "
                            "row per line as .jsonl so that bad rows are reported one by one")


def test_json_object_and_scalar_files_name_their_problem(tmp_path):
    bad_utf8, scalar, after = tmp_path / "u.json", tmp_path / "s.json", tmp_path / "a.json"
    bad_utf8.write_bytes(b'{"data": [{"prompt": "caf\xe9", "response": "x"}]}')
    scalar.write_text("7", encoding="utf-8")
    after.write_text(f"[{json.dumps(row(0))}, {{broken}}] trailing", encoding="utf-8")
    for path, message in ((bad_utf8, f"'{bad_utf8}' is not valid UTF-8; re-encode it as UTF-8"),
                          (scalar, f"'{scalar}' does not hold a JSON list of rows (it starts with '7')"),
                          (after, f"'{after}' has text after the closing ']' of its list of rows; remove it")):
        with pytest.raises(DataError) as e:
            load_examples(str(path))
        assert str(e.value) == message


def test_malformed_csv_records_hash_their_error(tmp_path):
    """Two files that differ only in how a record is malformed have different contents."""
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_bytes(b'prompt,response\nhi,there\n"bad"x,y\n')
    b.write_bytes(b'prompt,response\nhi,there\n"unterminated,y\n')
    ra, rb = load_examples(str(a)), load_examples(str(b))
    assert ra.rejected[0].reason != rb.rejected[0].reason
    assert ra.content_hash != rb.content_hash


def test_a_parquet_error_quotes_pyarrow(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError) as e:
        load_examples(str(path))
    detail = str(e.value).split("': ", 1)[1]
    assert detail and detail != "None" and "NoneType" not in detail


# ---------------------------------------------------------------- save_to_disk directories


def test_save_to_disk_rows_have_their_index_name_and_content(tmp_path):
    datasets = pytest.importorskip("datasets")
    a, b = tmp_path / "a", tmp_path / "b"
    datasets.Dataset.from_list([row(0), row(1), row(2)]).save_to_disk(str(a))
    datasets.Dataset.from_list([row(0), row(1), row(5)]).save_to_disk(str(b))
    ra, rb = load_examples(str(a)), load_examples(str(b))
    assert [e.row_index for e in ra.examples] == [0, 1, 2]
    assert ra.name == str(a) and ra.content_hash != rb.content_hash


def test_directories_that_are_not_datasets_or_are_broken(tmp_path):
    plain, broken = tmp_path / "plain", tmp_path / "broken"
    plain.mkdir()
    broken.mkdir()
    (broken / "dataset_info.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_examples(str(plain))
    assert str(e.value) == (f"'{plain}' is a directory but not a datasets save_to_disk directory (no "
                            "dataset_dict.json or state.json or dataset_info.json); pass one of its data files instead")
    with pytest.raises(DataError) as e:
        load_examples(str(broken))
    message = str(e.value)
    assert message.startswith(f"cannot read save_to_disk directory '{broken}': ")
    assert message.split("': ", 1)[1] not in ("", "None", "NoneType")


# ---------------------------------------------------------------- Hub ids (datasets.load_dataset stands in)


def _hub(monkeypatch, outcome):
    """Replace datasets.load_dataset: the Hub cannot be reached from here, so each answer it can give
    (a dataset, or one of its errors) is played by this stand-in."""
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake(path, name=None, split=None):
        calls.append((path, name, split))
        if isinstance(outcome, BaseException):
            raise outcome
        return datasets.Dataset.from_list(outcome)

    monkeypatch.setattr(datasets, "load_dataset", fake)
    return calls


def test_a_hub_config_may_itself_contain_colons(monkeypatch):
    calls = _hub(monkeypatch, [row(0)])
    res = load_examples("owner/name:cfg:v2", split="validation")
    assert calls == [("owner/name", "cfg:v2", "validation")]
    assert (res.name, res.split, res.n_rows) == ("owner/name:cfg:v2", "validation", 1)


@pytest.mark.parametrize("error, message", [
    ("not found", "'owner/name' is neither a local file nor a dataset on the Hugging Face Hub; check the path or id"),
    (ConnectionError("no route to host\nretry later"),
     "cannot reach the Hugging Face Hub for 'owner/name' and it is not in the local cache (no route to host); "
     "run once where the Hub is reachable, or pass a local file"),
    (ValueError("Unknown split \"test\"\nmore"), "'owner/name' has no split 'test' (Unknown split \"test\"); "
                                                  "choose one with --split"),
    (ValueError("Bad config\nmore"), "could not load 'owner/name' from the Hugging Face Hub: Bad config"),
    (PermissionError("gated repo\nlog in"), "could not load 'owner/name' from the Hugging Face Hub: "
                                            "PermissionError: gated repo"),
])
def test_each_hub_failure_is_one_line_that_says_what_to_do(monkeypatch, error, message):
    if error == "not found":
        from datasets.exceptions import DatasetNotFoundError

        error = DatasetNotFoundError("owner/name does not exist")
    _hub(monkeypatch, error)
    with pytest.raises(DataError) as e:
        load_examples("owner/name", split="test")
    assert str(e.value) == message


def test_the_rouge_stemmer_cache_stems_like_porter():
    from nltk.stem import porter

    from evaluator.scoring._text import _MemoStemmer

    memo, plain = _MemoStemmer(), porter.PorterStemmer()
    words = ["running", "runs", "easily", "running", "caresses"]
    assert [memo.stem(w) for w in words] == [plain.stem(w) for w in words]


def test_ndjson_is_json_lines(tmp_path):
    path = tmp_path / "chats.NDJSON"
    path.write_text(json.dumps(row(0)) + "\n" + json.dumps(row(1)) + "\n", encoding="utf-8")
    assert [e.reference for e in load_examples(str(path)).examples] == ["a0", "a1"]


def test_a_rejected_json_line_is_reported_exactly_as_written(tmp_path):
    """Only the line ending goes; trailing spaces, tabs and letters are part of what the user wrote."""
    path = tmp_path / "d.jsonl"
    path.write_bytes(json.dumps(row(0)).encode() + b"\r\n" + b'{"messages": XX \t\r\n' + b'{"oops": 1}  X\n')
    res = load_examples(str(path))
    assert [r.raw for r in res.rejected] == ['{"messages": XX \t', '{"oops": 1}  X']


def test_concatenated_json_objects_in_a_json_file_are_read_as_lines(tmp_path):
    """A .json file whose first object is followed by more text is JSON Lines with the wrong extension,
    even when its objects span lines: each line is then a row, and a line that is not one is reported."""
    path = tmp_path / "d.json"
    path.write_text('{\n"messages": []\n}\n' + json.dumps(row(1)) + "\n", encoding="utf-8")
    res = load_examples(str(path))
    assert [e.row_index for e in res.examples] == [3]
    assert [r.raw for r in res.rejected] == ["{", '"messages": []', "}"]
