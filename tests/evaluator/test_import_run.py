"""``python -m evaluator import_run``: an export round trip (same store and another store, on SQLite and
PostgreSQL), lm-evaluation-harness samples files written by hand in lm-eval's format, and rejections."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

import db
from evaluator.cli import main
from evaluator.scoring import finalize_run
from tests.support.runner import CHAT_JSONL

LM_EVAL = Path(__file__).resolve().parents[1] / "support" / "fixtures" / "lm_eval"
GSM8K = LM_EVAL / "samples_gsm8k_2024-05-13T12-34-56.789012.jsonl"
ARC = LM_EVAL / "samples_arc_easy_2024-05-13T12-34-56.789012.jsonl"
MESSAGES_JSONL = Path(__file__).resolve().parents[1] / "support" / "fixtures" / "data" / "messages.jsonl"  # multi-turn, tags
STORE_IDS = ("run_id", "example_id")  # ids belong to a store, not to the evaluation


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _export(url, run_id) -> list[dict]:
    engine = db.open_store_readonly(url)
    try:
        with db.session_factory(engine)() as s:
            return json.loads(json.dumps(list(db.export_rows(session=s, run_id=run_id))))  # as the file has it
    finally:
        engine.dispose()


def _strip(rows, *extra) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in STORE_IDS + extra} for r in rows]


def _aggregates(url, run_id) -> dict:
    engine = db.make_engine(url)
    try:
        with db.session_factory(engine)() as s:
            return {(a["metric"], a["slice"], a["kind"]): (a["n"], a["value"])
                    for a in db.run_aggregates(session=s, run_id=run_id)}
    finally:
        engine.dispose()


def _seed(url, source: Path) -> dict:
    """One finished run as the evaluator writes it: examples keyed by evaluator.data (multi-turn with
    turns="all", tags, metadata, no-reference rows), outputs with failures, log-probabilities and reference
    NLLs, real metric values with one failed value, aggregates and metric columns from finalize_run."""
    from evaluator.data import load_examples
    from evaluator.scoring import failure_mask, get_metrics, reference_nll, score_samples
    from evaluator.types import Sample

    data = load_examples(str(source), turns="all")
    engine = db.open_store(url)
    sf = db.session_factory(engine)
    metrics = get_metrics(["exact_match", "token_f1", "bleu", "perplexity", "confidence"])
    with sf.begin() as s:
        ds = db.get_or_create_dataset(session=s, name=data.name, split=data.split, turns="all", format=data.format)
        ids = db.upsert_examples(session=s, dataset_id=ds, examples=[dataclasses.asdict(e) for e in data.examples])
        run = db.create_run(session=s, name="support-v1", model="org/model", backend="transformers", dataset_id=ds,
                            family="support")
        samples = []
        for i, e in enumerate(data.examples):
            out = (e.reference or "I can help.") if i % 3 else "Sorry, I do not know that."
            samples.append(Sample(output=out if i != 4 else "", reference=e.reference,
                                  output_logprobs=[-0.25 * (k + 1) for k in range(len(out.split()))],
                                  output_tokens=len(out.split()), finish_reason="length" if i == 5 else "stop",
                                  reference_logprobs=[-0.5, -1.0] if e.reference else None, category=e.category))
        values = score_samples(samples, metrics=metrics)
        values[1]["bleu"] = (None, "tokenizer failed")
        rows = []
        for e, smp, v in zip(data.examples, samples, values):
            nll = reference_nll(smp)
            rows.append(dict(example_id=ids[e.key], output=smp.output, output_tokens=smp.output_tokens,
                             prompt_tokens=17, finish_reason=smp.finish_reason, failures=failure_mask(smp),
                             latency_ms=12.5, logprobs=smp.output_logprobs, metrics=v,
                             ref_nll=nll[0] if nll else None, ref_tokens=nll[1] if nll else None))
        db.insert_results(session=s, run_id=run, results=rows, higher_is_better={m.name: m.higher_is_better
                                                                                for m in metrics})
        db.update_run(session=s, run_id=run, status="finished", created_at=dt.datetime(2025, 1, 2, 3, 4, 5))
    finalize_run(session_factory=sf, run_id=run)
    engine.dispose()
    return dict(run=run, dataset_id=ds, n=len(data.examples))


@pytest.fixture()
def exported(any_store_url, tmp_path, capsys):
    """A store holding one evaluated run, and that run's export file."""
    source = tmp_path / "support.jsonl"
    source.write_text(CHAT_JSONL.read_text() + MESSAGES_JSONL.read_text())
    ids = _seed(any_store_url, source)
    path = tmp_path / "run.jsonl"
    code, _, err = _cli(capsys, "export", ids["run"], "-o", path, "--db", any_store_url)
    assert code == 0, err
    return any_store_url, ids, path


def test_export_reimported_into_its_store_joins_the_original_examples(exported, capsys):
    url, ids, path = exported
    code, out, err = _cli(capsys, "import_run", path, "--format", "export", "--name", "again", "--db", url)
    assert code == 0, err
    assert "0 rejected" in out and f"{ids['n']} joined existing examples, 0 new" in out
    new_run = int(out.split()[1])
    original, imported = _export(url, ids["run"]), _export(url, new_run)
    assert [r["example_id"] for r in imported] == [r["example_id"] for r in original]  # the same examples
    assert _strip(imported, "run_name") == _strip(original, "run_name")  # outputs, metrics, failures, log-probs
    assert _aggregates(url, new_run) == _aggregates(url, ids["run"])
    engine = db.make_engine(url)
    with db.session_factory(engine)() as s:
        run = db.get_run(session=s, run_id=new_run)
        assert s.scalar(select(func.count()).select_from(db.ExampleRow)) == ids["n"]  # nothing duplicated
        history = db.example_history(session=s, dataset_id=ids["dataset_id"], key=original[0]["example_key"])
        failed = db.result_detail(session=s, run_id=new_run, example_id=original[1]["example_id"])
    engine.dispose()
    assert run["status"] == "finished" and run["dataset_id"] == ids["dataset_id"] and run["backend"] == "import:export"
    assert run["created_at"] == dt.datetime(2025, 1, 2, 3, 4, 5)  # dated when it was evaluated
    assert [h["run_id"] for h in history] == [ids["run"], new_run]
    assert failed["metrics"]["bleu"] is None and "failed" in failed["metric_errors"]["bleu"]


def test_export_imported_into_another_store_rebuilds_the_run(exported, tmp_path, capsys):
    url, ids, path = exported
    other = f"sqlite:///{tmp_path / 'other.sqlite'}"
    code, out, err = _cli(capsys, "import_run", path, "--format", "export", "--db", other)
    assert code == 0, err
    assert f"0 joined existing examples, {ids['n']} new" in out
    rebuilt = _export(other, int(out.split()[1]))
    assert _strip(rebuilt) == _strip(_export(url, ids["run"]))  # the examples' content too: tags, turn, metadata
    assert _aggregates(other, int(out.split()[1])) == _aggregates(url, ids["run"])


def test_an_older_export_joins_the_one_dataset_holding_its_keys(exported, tmp_path, capsys):
    url, ids, path = exported
    old = tmp_path / "old.jsonl"
    newer = ("run_name", "model", "run_created_at", "dataset", "split", "turns", "turn_index", "conversation_id",
             "source", "tags", "metadata")
    old.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k not in newer}) + "\n"
                           for line in path.read_text().splitlines()))
    code, _, err = _cli(capsys, "import_run", old, "--format", "export", "--db", url)
    assert code == 2 and "pass --model NAME" in err
    code, out, err = _cli(capsys, "import_run", old, "--format", "export", "--model", "m", "--db", url)
    assert code == 0 and f"{ids['n']} joined existing examples" in out, err
    code, _, err = _cli(capsys, "import_run", old, "--format", "export", "--model", "m",
                        "--db", f"sqlite:///{tmp_path / 'empty.sqlite'}")
    assert code == 2 and "pass --dataset-name" in err


def test_invalid_export_rows_are_rejected_with_reasons_and_edited_ones_are_other_examples(exported, tmp_path, capsys):
    url, ids, path = exported
    lines = path.read_text().splitlines()
    edited = json.loads(lines[1])
    edited["reference"] = "changed after export"
    bad_metric = json.loads(lines[2])
    bad_metric["metrics"]["token_f1"] = "high"
    bad_finish = dict(json.loads(lines[3]), finish_reason="timeout")
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([lines[0], json.dumps(edited), json.dumps(bad_metric), json.dumps(bad_finish),
                                 "{not json", json.dumps({"messages": []}), "[1, 2]"]) + "\n")
    code, out, err = _cli(capsys, "import_run", broken, "--format", "export", "--db", url)
    assert code == 0, err
    assert "2 results imported, 5 rejected; 1 joined existing examples, 1 new" in out  # the edit is another example
    assert "1 records' example_key is not the evaluator's key" in out
    for reason in ("metric token_f1 is 'high', not a number", "finish_reason 'timeout'", "invalid JSON",
                   "messages is not a non-empty list", "record is list"):
        assert reason in out


# ---------------------------------------------------------------- lm-evaluation-harness


def _runs(url) -> dict[str, dict]:
    engine = db.make_engine(url)
    try:
        with db.session_factory(engine)() as s:
            return {r["name"]: r for r in db.list_runs(session=s)}
    finally:
        engine.dispose()


def _details(url, run_id) -> list[dict]:
    engine = db.make_engine(url)
    try:
        with db.session_factory(engine)() as s:
            rows = db.page_results(session=s, query=db.ResultQuery(run_id=run_id)).rows
            return [db.result_detail(session=s, run_id=run_id, example_id=r["example_id"]) for r in rows]
    finally:
        engine.dispose()


def test_lm_eval_generation_task_with_two_filters(store_url, capsys):
    code, out, err = _cli(capsys, "import_run", GSM8K, "--format", "lm-eval", "--db", store_url)
    assert code == 0, err
    run = _runs(store_url)["my-org/llama-3-8b-sft gsm8k"]  # the model from results_<date>.json beside it
    assert (run["model"], run["dataset"], run["n_rows"], run["n_examples"], run["n_rejected"]) == (
        "my-org/llama-3-8b-sft", "lm-eval:gsm8k", 9, 3, 3)
    assert run["created_at"] == dt.datetime(2024, 5, 13, 12, 34, 56, 789012)  # from the file name
    assert run["config"]["lm_eval"]["n_shot"] == 1 and run["config"]["lm_eval"]["task"] == "gsm8k"
    details = _details(store_url, run["id"])
    first = details[0]
    assert first["messages"] == [{"role": "user", "content": json.loads(GSM8K.read_text().splitlines()[0])
                                  ["arguments"]["gen_args_0"]["arg_0"]}]
    assert first["output"] == "Janet has 3 + 2 = 5 apples. #### 5" and first["reference"] == "3 + 2 = 5\n#### 5"
    strict, flex = "lm_eval:exact_match,strict-match", "lm_eval:exact_match,flexible-extract"
    assert [(d["metrics"][strict], d["metrics"][flex]) for d in details] == [(1.0, 1.0), (0.0, 0.0), (0.0, 1.0)]
    assert {"exact_match", "token_f1", "rougeL", "bleu"} <= set(first["metrics"])  # recomputed on the output
    assert run["aggregates"][strict]["mean"][0] == pytest.approx(1 / 3)
    engine = db.make_engine(store_url)
    with db.session_factory(engine)() as s:
        reasons = [r["reason"] for r in db.rejected_rows(session=s, run_id=run["id"])]
        assert db.metric_info(session=s)[strict] is True  # direction from the results file
    engine.dispose()
    assert len(reasons) == 3
    assert "appears twice for filter 'strict-match'" in reasons[0]
    assert "loglikelihood_rolling" in reasons[1] and "invalid JSON" in reasons[2]
    assert "rejected row 6 (line 7)" in out


def test_lm_eval_multiple_choice_output_is_the_most_likely_choice(store_url, capsys):
    code, out, err = _cli(capsys, "import_run", ARC, "--format", "lm-eval", "--db", store_url)
    assert code == 0, err
    run = _runs(store_url)["my-org/llama-3-8b-sft arc_easy"]
    details = _details(store_url, run["id"])
    assert [(d["output"], d["reference"]) for d in details] == [("Mercury", "Mercury"), ("sand", "sunlight")]
    assert [(d["metrics"]["lm_eval:acc"], d["metrics"]["exact_match"]) for d in details] == [(1.0, 1.0), (0.0, 0.0)]
    assert "highest log-likelihood" in out


def test_a_second_model_on_the_same_prompts_joins_the_same_examples(store_url, tmp_path, capsys):
    other = tmp_path / GSM8K.name  # another model's file: same prompts, other answers, no results file
    lines = [json.loads(line) for line in GSM8K.read_text().splitlines()[:6]]
    for rec in lines:
        rec["resps"] = [["I do not know."]]
        rec["exact_match"] = 0.0
    other.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert _cli(capsys, "import_run", GSM8K, "--format", "lm-eval", "--db", store_url)[0] == 0
    code, _, err = _cli(capsys, "import_run", other, "--format", "lm-eval", "--db", store_url)
    assert code == 2 and "pass --model NAME" in err
    code, out, err = _cli(capsys, "import_run", other, "--format", "lm-eval", "--model", "base-model",
                          "--family", "base", "--db", store_url)
    assert code == 0 and "3 joined existing examples, 0 new" in out, err
    runs = _runs(store_url)
    engine = db.make_engine(store_url)
    with db.session_factory(engine)() as s:
        bf = db.broken_and_fixed(session=s, before_run_id=runs["my-org/llama-3-8b-sft gsm8k"]["id"],
                                 after_run_id=runs["base-model gsm8k"]["id"],
                                 metric="lm_eval:exact_match,strict-match", threshold=0.5)
    engine.dispose()
    assert bf["n_shared"] == 3 and bf["n_broken"] == 1


def test_a_file_that_is_not_lm_eval_output_is_one_line_error(store_url, tmp_path, capsys):
    path = tmp_path / "notes.jsonl"
    path.write_text('{"text": "hello"}\n')
    code, _, err = _cli(capsys, "import_run", path, "--format", "lm-eval", "--model", "m", "--db", store_url)
    assert code == 2 and "nothing to import" in err and "no 'doc_id' field" in err and err.count("\n") == 1
    code, _, err = _cli(capsys, "import_run", tmp_path / "missing.jsonl", "--format", "export", "--db", store_url)
    assert code == 2 and "no file" in err


def test_imported_lm_eval_metrics_work_on_the_dashboard_pages(store_url, capsys, monkeypatch):
    """Metric names with ":" and "," (lm_eval:exact_match,strict-match) in links, filters and charts."""
    from streamlit.testing.v1 import AppTest

    from tests.support.review_data import APP

    assert _cli(capsys, "import_run", GSM8K, "--format", "lm-eval", "--db", store_url)[0] == 0
    assert _cli(capsys, "import_run", GSM8K, "--format", "lm-eval", "--model", "other", "--db", store_url)[0] == 0
    metric = "lm_eval:exact_match,strict-match"
    monkeypatch.setenv(db.ENV_VAR, store_url)
    for page, params in (("browser", {"run": "1", "sort": metric, "range": f"{metric}:0.5:"}),
                         ("compare", {"a": "2", "b": "1", "metric": metric}),
                         ("errors", {"run": "1", "metric": metric}),
                         ("history", {"example": "1", "metric": metric})):
        at = AppTest.from_file(APP, default_timeout=60)
        at.switch_page(f"views/{page}.py")
        for k, v in params.items():
            at.query_params[k] = v
        at.run()
        assert not at.exception and not at.error, (page, at.exception, [e.value for e in at.error])
