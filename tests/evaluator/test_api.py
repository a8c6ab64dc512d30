"""The Python API on real tiny Llama models: a model in memory gives, example by example, the outputs a CLI
run of the same weights saved to disk gives (plain transformers and PEFT), goes back to the mode it came in,
and is told apart from its base in the store; RunHandle reads what the store holds; generate_response
answers as the batch path does."""
from __future__ import annotations

from pathlib import Path

import pytest

import db
import evaluator
from evaluator import cli
from evaluator.errors import UserError
from tests.support.runner import chat_rows, make_lora_adapter, make_varied_model, write_jsonl

pytest.importorskip("torch")

SETTINGS = dict(max_new_tokens=8, metrics=["exact_match", "token_f1"], perplexity=False, backend="transformers")
FLAGS = ["--max-new-tokens", "8", "--metric", "exact_match", "--metric", "token_f1", "--no-perplexity",
         "--backend", "transformers", "--no-progress"]


@pytest.fixture(scope="module")
def varied(tiny_model_dir, tmp_path_factory) -> Path:
    """Weights whose greedy answers differ per prompt (the tiny model's, perturbed)."""
    return make_varied_model(tiny_model_dir, tmp_path_factory.mktemp("varied"))


@pytest.fixture()
def data(tmp_path) -> Path:
    return write_jsonl(tmp_path / "chat.jsonl", chat_rows(8))


def _outputs(url: str, run_id: int) -> dict[str, str]:
    return {r["example_key"]: r["output"] for r in _rows(url, run_id)}


def _rows(url: str, run_id: int) -> list[dict]:
    engine = db.open_store_readonly(url)
    with db.session_factory(engine)() as s:
        rows = list(db.export_rows(session=s, run_id=run_id))
    engine.dispose()
    return rows


def _cli_run(url: str, name: str, *argv: str) -> int:
    assert cli.main(["run", *argv, "--db", url, "--name", name, *FLAGS]) == 0
    engine = db.open_store_readonly(url)
    with db.session_factory(engine)() as s:
        run_id = db.find_run(session=s, ref=name)
    engine.dispose()
    return run_id


def _load(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_a_model_in_memory_gives_the_outputs_of_its_saved_weights(varied, data, store_url):
    model, tokenizer = _load(varied)
    model.train()  # as it is after a training loop
    run = evaluator.evaluate(model, tokenizer, dataset=str(data), db=store_url, name="in-memory", progress=False,
                             **SETTINGS)
    assert model.training  # handed back in the mode it came in
    cli_id = _cli_run(store_url, "on-disk", "--model", str(varied), "--dataset", str(data))
    mine, theirs = _outputs(store_url, run.id), _outputs(store_url, cli_id)
    assert len(mine) == 8 and mine == theirs
    assert len(set(mine.values())) > 1  # the outputs differ per prompt: the comparison means something
    repro = run.info["repro"]
    assert repro["in_memory"] is True and repro["base_model_fingerprint"].startswith("in-memory:")


def test_a_peft_model_in_memory_gives_the_outputs_of_its_saved_adapter(varied, data, store_url, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = make_lora_adapter(varied, tmp_path / "adapter")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(varied), adapter)
    run = evaluator.evaluate(model, dataset=str(data), db=store_url, name="lora in memory", progress=False,
                             baselines=[str(varied)], **SETTINGS)
    cli_id = _cli_run(store_url, "lora on disk", "--model", str(varied), "--adapter", str(adapter),
                      "--dataset", str(data))
    assert _outputs(store_url, run.id) == _outputs(store_url, cli_id)
    (base,) = run.baselines()
    assert _outputs(store_url, base.id) != _outputs(store_url, run.id)  # the adapter changes the answers
    info = run.info
    assert info["adapter"] == "(in memory)" and info["model"] == str(varied)
    assert len(info["repro"]["adapter_sha256"]) == 64
    # A later run of the base as a baseline reuses the base's run, never the fine-tuned one in memory.
    again = evaluator.evaluate(str(varied), dataset=str(data), db=store_url, name="v2", progress=False,
                               baselines=[str(varied)], **SETTINGS)
    assert [b.id for b in again.baselines()] == [base.id]


def test_a_run_handle_reads_what_the_store_holds(varied, data, store_url):
    run = evaluator.evaluate(str(varied), dataset=str(data), db=store_url, name="<b>v1</b>", family="fam",
                             baselines=[str(varied)], progress=False, **SETTINGS)
    summary = run.summary()
    assert list(summary.columns) == ["metric", "kind", "value", "ci_low", "ci_high", "n"]
    assert set(summary["metric"]) == {"exact_match", "token_f1"} and (summary["n"] == 8).all()
    results = run.results()
    assert len(results) == 8 and {"example_key", "prompt", "reference", "output", "failures", "token_f1"} <= set(
        results.columns)
    assert (run.results(category="math")["category"] == "math").all() and len(run.results(category="math")) == 2
    assert len(run.failures()) == (results["failures"] != "").sum()
    compared = run.compare()
    assert {"metric", "delta", "ci_low", "ci_high", "p_holm", "wins"} <= set(compared.columns)
    assert (compared["delta"] == 0).all()  # the same weights on both sides
    store = evaluator.open_store(store_url)
    assert store.run("<b>v1</b>").id == run.id
    assert sorted(store.runs()["id"]) == sorted([run.id, run.baselines()[0].id])
    page = run._repr_html_()
    assert "&lt;b&gt;v1&lt;/b&gt;" in page and "<b>v1</b>" not in page.replace("<b>run", "")
    assert run.dashboard_url("http://evals.example") == f"http://evals.example/browser?run={run.id}"


def test_generate_response_answers_as_the_batch_path_does(varied, data, store_url):
    model, tokenizer = _load(varied)
    run = evaluator.evaluate(model, tokenizer, dataset=str(data), db=store_url, progress=False, **SETTINGS)
    for row in _rows(store_url, run.id)[:3]:
        answer = evaluator.generate_response(model, tokenizer, row["messages"], max_new_tokens=8)
        assert answer == row["output"]


def test_the_charts_draw_what_the_store_holds(varied, data, store_url):
    import altair as alt

    settings = dict(SETTINGS, metrics=["token_f1", "confidence"])
    first = evaluator.evaluate(str(varied), dataset=str(data), db=store_url, name="v1", family="fam", progress=False,
                               **settings)
    second = evaluator.evaluate(str(varied), dataset=str(data), db=store_url, name="v2", family="fam",
                                progress=False, **dict(settings, max_new_tokens=4))
    hist = first.plot_distribution("token_f1")
    assert isinstance(hist, alt.TopLevelMixin)
    assert sum(hist.data["count"]) == 8  # every example, once
    conf = first.plot_confidence("token_f1")
    scatter, line = conf.layer
    assert len(scatter.data) == 8 and line.data["n"].sum() == 8
    trend = second.plot_trend("token_f1").data  # the layers' shared data
    assert list(trend["run"]) == [first.id, second.id]  # the family's versions, oldest first
    assert list(trend["value"]) == [r.summary().query("metric == 'token_f1' and kind == 'mean'")["value"].iloc[0]
                                          for r in (first, second)]
    with pytest.raises(ValueError, match="no value"):
        first.plot_distribution("bleu")


def test_a_bad_baseline_fails_before_the_model_in_memory_is_evaluated(varied, data, store_url):
    model, tokenizer = _load(varied)
    with pytest.raises(UserError, match="baseline /no/such/model: .* does not exist"):
        evaluator.evaluate(model, tokenizer, dataset=str(data), db=store_url, baselines=["/no/such/model"],
                           progress=False, **SETTINGS)
    assert evaluator.open_store(store_url).runs().empty  # nothing was evaluated or written
