"""``python -m evaluator score RUN`` after a metric was added computes that metric only: the stored values
of the others are neither recomputed nor rewritten (the general "only missing values" rule is also
covered by test_scoring_store.test_score_command_only_computes_missing_metrics)."""
from __future__ import annotations

import dataclasses

import db
from evaluator.cli import main
from evaluator.scoring import _registry, get_metrics, score_samples
from evaluator.types import Sample
from tests.support import custom_metric

OUTPUTS = ["Sure, please click the link.", "The answer is 7.", "Sorry, I cannot help.", "Paris.", "Thank you!"]
REFERENCES = ["Click the reset link.", "The answer is 7.", "I can help.", "Paris is the capital.", None]


def _seed(url) -> int:
    engine = db.open_store(url)
    sf = db.session_factory(engine)
    specs = get_metrics(["exact_match", "token_f1"])
    samples = [Sample(output=o, reference=r) for o, r in zip(OUTPUTS, REFERENCES)]
    with sf.begin() as s:
        ds = db.get_or_create_dataset(session=s, name="polite.jsonl", split="test")
        ids = db.upsert_examples(session=s, dataset_id=ds, examples=[
            dict(key=f"k{i}", row_index=i, messages=[{"role": "user", "content": f"q{i}"}], reference=r)
            for i, r in enumerate(REFERENCES)])
        run = db.create_run(session=s, name="polite-v1", model="m", backend="transformers", dataset_id=ds)
        db.insert_results(session=s, run_id=run, higher_is_better={m.name: m.higher_is_better for m in specs}, results=[
            dict(example_id=ids[f"k{i}"], output=o, output_tokens=len(o.split()), finish_reason="stop", metrics=v)
            for i, (o, v) in enumerate(zip(OUTPUTS, score_samples(samples, metrics=specs)))])
        db.update_run(session=s, run_id=run, status="finished")
    engine.dispose()
    return run


def _values(url, run):
    engine = db.make_engine(url)
    try:
        with db.session_factory(engine)() as s:
            return db.run_metric_values(session=s, run_id=run), {
                (a["metric"], a["slice"], a["kind"]) for a in db.run_aggregates(session=s, run_id=run)}
    finally:
        engine.dispose()


def test_score_after_adding_a_metric_computes_only_that_metric(store_url, capsys, monkeypatch):
    run = _seed(store_url)
    before, _ = _values(store_url, run)

    def must_not_run(sample):
        raise AssertionError("a stored metric was computed again")

    for name in ("exact_match", "token_f1"):  # computing a stored metric again would store an error value
        monkeypatch.setitem(_registry._REGISTRY, name, dataclasses.replace(_registry._REGISTRY[name], fn=must_not_run))
    custom_metric.CALLS.clear()
    argv = ["score", str(run), "--metric", "exact_match", "--metric", "token_f1", "--metric", "tests.support.custom_metric:politeness",
            "--db", store_url]
    assert main(argv) == 0
    assert f"{len(OUTPUTS)} metric values written" in capsys.readouterr().out
    assert sorted(custom_metric.CALLS) == sorted(OUTPUTS)  # once per result, the reference-free one too
    after, aggregates = _values(store_url, run)
    others = {r: {k: v for k, v in m.items() if k != "politeness"} for r, m in after.items()}
    assert {r: m for r, m in others.items() if m} == before  # the stored values, untouched
    assert [after[r]["politeness"][0] for r in sorted(after)] == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert ("politeness", "", "mean") in aggregates

    custom_metric.CALLS.clear()
    assert main(argv) == 0  # nothing is missing any more
    assert "0 metric values written" in capsys.readouterr().out and custom_metric.CALLS == []
