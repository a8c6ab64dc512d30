"""Where rows come from: local files, save_to_disk directories, Hub ids (evaluator.data)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evaluator.data import DataError, load_examples
from evaluator.data._read import file_fingerprint

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "support" / "fixtures" / "data"
ROWS = [
    {"messages": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}], "category": "x"},
    {"messages": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}], "category": "y"},
]


def write_jsonl(path: Path, rows: list) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def summary(res):
    return [(e.messages, e.reference, e.category) for e in res.examples]


# --- local files ----------------------------------------------------------------------------------------


def test_jsonl_with_bom_and_crlf_line_ends_is_read(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"".join(json.dumps(r).encode() + b"\r\n" for r in ROWS))
    res = load_examples(str(path))
    assert (res.n_rows, res.rejected) == (2, [])
    assert summary(res)[1] == ([{"role": "user", "content": "q2"}], "a2", "y")


def test_json_list_of_objects_is_read(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(ROWS, indent=2), encoding="utf-8")
    assert summary(load_examples(str(path))) == summary(load_examples(write_jsonl(tmp_path / "d.jsonl", ROWS)))


def test_json_object_with_a_data_list_is_read(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"version": 1, "data": ROWS}), encoding="utf-8")
    assert load_examples(str(path)).n_rows == 2


def test_json_lines_saved_as_dot_json_is_read_line_by_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(ROWS[0]) + "\n{broken\n" + json.dumps(ROWS[1]) + "\n", encoding="utf-8")
    res = load_examples(str(path))
    assert [e.row_index for e in res.examples] == [0, 2]
    assert res.rejected[0].reason.startswith("row 1 (line 2): invalid JSON")


def test_json_list_with_broken_elements_rejects_only_those(tmp_path):
    path = tmp_path / "d.json"
    good = json.dumps(ROWS[0])
    path.write_bytes(f'[\n{good},\n{{"messages": }},\n'.encode() + b'{"prompt": "caf\xe9"},\n7,\n'
                     + f"{json.dumps(ROWS[1])},\n]\n".encode())
    res = load_examples(str(path))
    assert [e.row_index for e in res.examples] == [0, 4]
    assert [r.reason for r in res.rejected] == [
        "row 1 (line 3): invalid JSON: Expecting value",
        "row 2 (line 4): invalid UTF-8",
        "row 3 (line 5): row is an int, expected an object",
    ]


def test_a_broken_last_element_of_a_json_list_is_rejected_not_dropped(tmp_path):
    """No trailing comma: the last element is the text up to the closing bracket, and it is a row."""
    path = tmp_path / "d.json"
    path.write_text(f'[{json.dumps(ROWS[0])},\n{json.dumps(ROWS[1])},\n{{"messages": [oops]}}]', encoding="utf-8")
    res = load_examples(str(path))
    assert [e.row_index for e in res.examples] == [0, 1]
    assert [r.reason for r in res.rejected] == ["row 2 (line 3): invalid JSON: Expecting value"]
    assert res.n_rows == 3


def test_json_with_text_after_the_list_raises_data_error(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(ROWS) + " trailing", encoding="utf-8")
    with pytest.raises(DataError, match="after the closing"):
        load_examples(str(path))


def test_csv_bad_records_are_rejected_one_by_one(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b'prompt,response\nhi,there\n"bad"x,y\na,b,c\n\xff,z\nlast,one\n')
    res = load_examples(str(path))
    assert [e.row_index for e in res.examples] == [0, 4]
    assert [r.reason for r in res.rejected] == [
        "row 1 (line 3): malformed CSV: ',' expected after '\"'",
        "row 2 (line 4): has 3 field(s), the header has 2",
        "row 3 (line 5): invalid UTF-8",
    ]


def test_csv_with_duplicate_column_names_raises_data_error(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("prompt,prompt\na,b\n", encoding="utf-8")
    with pytest.raises(DataError, match="duplicate column names"):
        load_examples(str(path))


def test_parquet_file_is_read(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    res = load_examples(str(path))
    assert res.format == "messages"
    assert summary(res) == summary(load_examples(write_jsonl(tmp_path / "d.jsonl", ROWS)))


def test_corrupt_parquet_raises_data_error(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="cannot read parquet file"):
        load_examples(str(path))


def test_empty_file_raises_data_error(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="has no rows"):
        load_examples(str(path))


def test_missing_file_raises_data_error():
    with pytest.raises(DataError, match="file not found: 'no/such/file.jsonl'"):
        load_examples("no/such/file.jsonl")


def test_unsupported_extension_raises_data_error(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(DataError, match="unsupported extension '.txt'"):
        load_examples(str(path))


def test_plain_directory_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="not a datasets save_to_disk directory"):
        load_examples(str(tmp_path))


def test_limit_keeps_the_first_rows(tmp_path):
    res = load_examples(write_jsonl(tmp_path / "d.jsonl", ROWS), limit=1)
    assert (res.n_rows, [e.reference for e in res.examples]) == (1, ["a1"])


def test_limit_zero_reads_nothing_but_still_detects_the_format(tmp_path):
    res = load_examples(write_jsonl(tmp_path / "d.jsonl", ROWS), limit=0)
    assert (res.n_rows, res.examples, res.rejected, res.format) == (0, [], [], "messages")


def test_negative_limit_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="limit must be"):
        load_examples(write_jsonl(tmp_path / "d.jsonl", ROWS), limit=-1)


def test_result_records_name_and_split(tmp_path):
    res = load_examples(write_jsonl(tmp_path / "d.jsonl", ROWS), split="validation")
    assert (res.name, res.split) == (str(tmp_path / "d.jsonl"), "validation")


# --- save_to_disk directories ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def disk_dataset(tmp_path_factory) -> Path:
    datasets = pytest.importorskip("datasets")
    path = tmp_path_factory.mktemp("disk") / "dd"
    dd = datasets.DatasetDict({"test": datasets.Dataset.from_list(ROWS),
                               "train": datasets.Dataset.from_list(ROWS[:1])})
    dd.save_to_disk(str(path))
    return path


def test_save_to_disk_dataset_dict_split_is_read(disk_dataset):
    assert load_examples(str(disk_dataset), split="train").n_rows == 1
    res = load_examples(str(disk_dataset), split="test")
    assert (res.n_rows, res.split, res.format) == (2, "test", "messages")


def test_save_to_disk_rows_match_the_same_rows_from_jsonl(disk_dataset, tmp_path):
    from_disk = load_examples(str(disk_dataset), split="test")
    from_jsonl = load_examples(write_jsonl(tmp_path / "d.jsonl", ROWS))
    assert [e.key for e in from_disk.examples] == [e.key for e in from_jsonl.examples]


def test_a_save_to_disk_directory_is_known_by_its_content_and_its_name(disk_dataset, tmp_path):
    test, train = (load_examples(str(disk_dataset), split=split) for split in ("test", "train"))
    assert test.display_name == "dd"  # the directory's name, not its path
    assert test.fingerprint.startswith("datasets:") and len(test.fingerprint) > len("datasets:")
    assert train.fingerprint.startswith("datasets:") and train.fingerprint != test.fingerprint
    copy = shutil.copytree(disk_dataset, tmp_path / "elsewhere" / "copy")  # a clone in another directory
    moved = load_examples(str(copy), split="test")
    assert (moved.fingerprint, moved.display_name) == (test.fingerprint, "copy")


def test_a_files_fingerprint_is_its_content_wherever_it_lies(tmp_path):
    for folder in "abc":
        (tmp_path / folder).mkdir()
    first = write_jsonl(tmp_path / "a" / "d.jsonl", ROWS)
    same = write_jsonl(tmp_path / "b" / "other-name.jsonl", ROWS)
    other = write_jsonl(tmp_path / "c" / "d.jsonl", ROWS[:1])
    fingerprint = load_examples(first).fingerprint
    assert fingerprint == "sha256:" + hashlib.sha256(Path(first).read_bytes()).hexdigest()
    assert (load_examples(same).fingerprint, load_examples(same).display_name) == (fingerprint, "other-name.jsonl")
    assert load_examples(other).fingerprint != fingerprint
    big = tmp_path / "big.jsonl"  # more than one read of 1 MiB: every byte counts
    big.write_bytes(Path(first).read_bytes() * 40_000)
    assert file_fingerprint(big) == "sha256:" + hashlib.sha256(big.read_bytes()).hexdigest()


def test_save_to_disk_missing_split_raises_data_error(disk_dataset):
    with pytest.raises(DataError, match=r"split 'validation' is not in .*splits: test, train.*--split"):
        load_examples(str(disk_dataset), split="validation")


def test_save_to_disk_single_dataset_is_read(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "single"))
    assert load_examples(str(tmp_path / "single")).n_rows == 2


# --- Hugging Face Hub ids -------------------------------------------------------------------------------


def test_hub_id_offline_raises_data_error_without_hanging():
    code = ("from evaluator.data import load_examples, DataError\n"
            "try:\n    load_examples('someone/not-cached-dataset')\n"
            "except DataError as e:\n    print('DataError:', e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)  # a hang fails the test instead of the suite
    assert out.stdout.startswith("DataError: cannot reach the Hugging Face Hub for 'someone/not-cached-dataset'")


def test_hub_id_with_config_is_loaded_through_datasets(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        made.append(datasets.Dataset.from_list(ROWS))
        return made[-1]

    made = []
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    res = load_examples("owner/name:main", split="test", limit=1)
    assert calls == [("owner/name", "main", "test")]
    assert (res.name, res.n_rows, res.examples[0].reference) == ("owner/name:main", 1, "a1")
    assert res.display_name == "owner/name:main"
    assert res.fingerprint == f"datasets:{made[0]._fingerprint}"


def test_hub_unknown_split_raises_data_error(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def fake_load_dataset(path, name=None, split=None):
        raise ValueError("Unknown split \"test\". Should be one of ['train'].")

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    with pytest.raises(DataError, match=r"has no split 'test'.*--split"):
        load_examples("owner/name")


def test_importing_the_package_does_not_import_torch_or_datasets():
    code = "import sys, evaluator.data; print(sorted({'torch', 'datasets', 'pyarrow'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]"
