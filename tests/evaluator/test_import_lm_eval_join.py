"""An lm-eval run of the same data joins a native run: samples in lm-eval's --log_samples format whose
prompts lm-eval rendered with the model's chat template (--apply_chat_template), imported with --dataset and
--tokenizer, land on the dataset's own examples, so compare finds every example in common; with the tokenizer
the outputs are counted and those that reached max_gen_toks end with "length"."""
from __future__ import annotations

import json

import pytest

import db
from evaluator import cli
from tests.support.runner import chat_rows, make_varied_model, write_jsonl

pytest.importorskip("torch")

MAX = 8  # max_new_tokens of the native run, max_gen_toks of the lm-eval one


@pytest.fixture(scope="module")
def native(tiny_model_dir, tmp_path_factory):
    """A native run of a varied tiny model on six chats, and the samples file an lm-eval run of the same
    model and prompts writes (the outputs are the native ones: greedy decoding of the same weights)."""
    from transformers import AutoTokenizer

    tmp = tmp_path_factory.mktemp("lm-eval-join")
    model = make_varied_model(tiny_model_dir, tmp / "model")
    data = write_jsonl(tmp / "chat.jsonl", chat_rows(6))
    url = f"sqlite:///{tmp / 's.sqlite'}"
    assert cli.main(["run", "--model", str(model), "--dataset", str(data), "--db", url, "--name", "native",
                     "--max-new-tokens", str(MAX), "--metric", "exact_match", "--no-perplexity", "--no-progress",
                     "--backend", "transformers"]) == 0
    rows = _export(url, "native")
    tok = AutoTokenizer.from_pretrained(model)
    samples = tmp / "samples_chat_2026-01-05T10-00-00.000000.jsonl"
    with samples.open("w") as f:
        for i, r in enumerate(rows):
            prompt = tok.apply_chat_template(r["messages"], tokenize=False, add_generation_prompt=True)
            f.write(json.dumps({"doc_id": i, "doc": {"i": i}, "target": r["reference"],
                                "arguments": {"gen_args_0": {"arg_0": prompt, "arg_1": {
                                    "until": ["<|eot_id|>"], "max_gen_toks": MAX, "do_sample": False}}},
                                "resps": [[r["output"]]], "filtered_resps": [r["output"]], "filter": "none",
                                "metrics": ["exact_match"], "exact_match": 0.0}) + "\n")
        f.write(json.dumps({"doc_id": 99, "doc": {}, "target": "x", "arguments": {"gen_args_0": {
            "arg_0": "a prompt of another dataset", "arg_1": {"until": []}}}, "resps": [["y"]],
            "filtered_resps": ["y"], "filter": "none", "metrics": ["exact_match"], "exact_match": 0.0}) + "\n")
    return dict(url=url, data=data, model=model, samples=samples, rows=rows, tok=tok)


def _export(url: str, ref: str) -> list[dict]:
    engine = db.open_store_readonly(url)
    with db.session_factory(engine)() as s:
        rows = list(db.export_rows(session=s, run_id=db.find_run(session=s, ref=ref)))
    engine.dispose()
    return rows


def test_an_lm_eval_import_joins_the_native_runs_examples_and_compares(native, capsys):
    url = native["url"]
    assert cli.main(["import_run", str(native["samples"]), "--format", "lm-eval", "--model", "varied",
                     "--name", "via lm-eval", "--dataset", str(native["data"]), "--split", "test",
                     "--tokenizer", str(native["model"]), "--db", url]) == 0
    out = capsys.readouterr().out
    assert "no example of chat.jsonl renders" in out  # the sample of another dataset, rejected with why
    imported = {r["example_key"]: r for r in _export(url, "via lm-eval")}
    mine = {r["example_key"]: r for r in native["rows"]}
    assert imported.keys() == mine.keys()  # the dataset's own examples, every one
    assert all(imported[k]["output"] == mine[k]["output"] for k in mine)
    engine = db.open_store_readonly(url)
    with db.session_factory(engine)() as s:
        a, b = db.find_run(session=s, ref="via lm-eval"), db.find_run(session=s, ref="native")
        assert db.dataset_of_run(session=s, run_id=a) == db.dataset_of_run(session=s, run_id=b)
        (em,) = [d for d in db.delta_summary(session=s, run_a_id=a, run_b_id=b) if d["metric"] == "exact_match"]
    engine.dispose()
    assert em["n"] == 6 and em["mean_delta"] == 0.0
    tok = native["tok"]
    for k, r in imported.items():
        count = len(tok(r["output"], add_special_tokens=False)["input_ids"])
        assert r["output_tokens"] == count > 0
        assert r["finish_reason"] == ("length" if count >= MAX else "stop")
    # the outputs the native run cut at the limit are the ones the import says were cut
    assert {k for k, r in imported.items() if r["finish_reason"] == "length"} == \
        {k for k, r in mine.items() if r["finish_reason"] == "length"}


def test_without_a_tokenizer_counts_are_unknown_and_prompts_are_matched_as_plain_text(native, capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    plain = tmp_path / native["samples"].name
    lines = []
    for i, r in enumerate(native["rows"]):  # lm-eval without --apply_chat_template sends the bare question
        rec = {"doc_id": i, "doc": {}, "target": r["reference"], "arguments": {"gen_args_0": {
            "arg_0": r["messages"][-1]["content"], "arg_1": {"until": []}}}, "resps": [[r["output"]]],
            "filtered_resps": [r["output"]], "filter": "none", "metrics": ["exact_match"], "exact_match": 0.0}
        lines.append(json.dumps(rec))
    plain.write_text("\n".join(lines) + "\n")
    assert cli.main(["import_run", str(plain), "--format", "lm-eval", "--model", "m", "--dataset",
                     str(native["data"]), "--db", url]) == 0
    rows = _export(url, "m chat")
    assert sorted(r["example_key"] for r in rows) == sorted(r["example_key"] for r in native["rows"])
    assert {(r["finish_reason"], r["output_tokens"]) for r in rows} == {("stop", 0)}


def test_dataset_and_tokenizer_errors_are_one_line(native, capsys, tmp_path):
    base = ["import_run", str(native["samples"]), "--format", "lm-eval", "--model", "m",
            "--db", f"sqlite:///{tmp_path / 's.sqlite'}"]
    assert cli.main([*base, "--tokenizer", str(tmp_path / "nothing")]) == 2
    assert "--tokenizer" in capsys.readouterr().err
    assert cli.main([*base, "--dataset", str(tmp_path / "missing.jsonl")]) == 2
    assert "--dataset" in capsys.readouterr().err
    export = tmp_path / "e.jsonl"
    export.write_text("{}\n")
    assert cli.main(["import_run", str(export), "--format", "export", "--dataset", str(native["data"]),
                     "--db", f"sqlite:///{tmp_path / 's.sqlite'}"]) == 2
    assert "apply to --format lm-eval only" in capsys.readouterr().err
