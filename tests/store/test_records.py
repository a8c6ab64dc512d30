"""The typed records of the write API match both sides of the boundary: the evaluator's dataclasses that
fill them and the store's columns that hold them."""
from __future__ import annotations

import dataclasses

from sqlalchemy import inspect

import db
from evaluator.types import Example, Rejected


def _columns(model) -> set[str]:
    return {c.key for c in inspect(model).column_attrs}


def test_example_and_rejected_records_have_the_fields_of_the_evaluators_dataclasses():
    assert set(db.ExampleRecord.__annotations__) == {f.name for f in dataclasses.fields(Example)}
    assert set(db.RejectedRecord.__annotations__) == {f.name for f in dataclasses.fields(Rejected)}
    required = {f.name for f in dataclasses.fields(Example)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    assert db.ExampleRecord.__required_keys__ <= required  # what the store needs, the evaluator always sets


def test_every_record_key_has_a_column_to_land_in():
    written_apart = {"logprobs": "token_logprobs", "metrics": "metric_values rows"}
    assert set(db.ResultRecord.__annotations__) - set(written_apart) <= _columns(db.Result)
    assert "token_logprobs" in _columns(db.Result)
    assert set(db.AggregateRecord.__annotations__) <= _columns(db.Aggregate)
    assert set(db.ComparisonRecord.__annotations__) <= _columns(db.Comparison)
    assert set(db.RejectedRecord.__annotations__) <= _columns(db.RejectedRow)
    assert set(db.ExampleRecord.__annotations__) - {"metadata"} <= _columns(db.ExampleRow)  # stored as meta


def test_a_result_record_with_every_key_lands_whole(any_engine):
    sf = db.session_factory(any_engine)
    record = db.ResultRecord(example_id=0, output="o", output_tokens=2, finish_reason="length", prompt_tokens=5,
                             failures=int(db.FailureKind.TRUNCATED), latency_ms=3.5, tokens=["a", "b"],
                             ref_nll=1.25, ref_tokens=2, error="e", logprobs=[-0.5, -1.0], metrics={"m": 1.0})
    assert set(record) == set(db.ResultRecord.__annotations__)
    with sf.begin() as s:
        ds = db.get_or_create_dataset(session=s, name="d", split="")
        ids = db.upsert_examples(session=s, dataset_id=ds, examples=[
            db.ExampleRecord(key="k", messages=[{"role": "user", "content": "q"}])])
        run = db.create_run(session=s, name="r", model="m", backend="transformers", dataset_id=ds)
        db.insert_results(session=s, run_id=run, results=[dict(record, example_id=ids["k"])])
    with sf() as s:
        d = db.result_detail(session=s, run_id=run, example_id=ids["k"])
    got = {k: d[k] for k in ("output", "output_tokens", "finish_reason", "prompt_tokens", "latency_ms", "tokens",
                             "ref_nll", "ref_tokens", "error", "metrics")}
    assert got == {k: record[k] for k in got}
    assert d["failures"] == ["truncated"] and d["logprobs"] == [-0.5, -1.0]
