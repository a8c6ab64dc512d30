"""Hand-made stores for the error-analysis, history and review tests: every number is chosen by the test.

``make_store(url, runs=[RunSpec(...), ...], n_examples=..., categories=...)`` writes one dataset and one
run per spec, a day apart, through the db write API only, and returns the ids it made.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import db

START = dt.datetime(2026, 1, 5, 10, 0)


@dataclass
class RunSpec:
    name: str
    metrics: dict[str, Sequence[Optional[float]]] = field(default_factory=dict)  # metric -> value per example
    failures: Sequence[int] = ()  # db.FailureKind bits per example (default 0)
    outputs: Sequence[str] = ()  # output per example (default "out <i>")
    family: Optional[str] = "fam"
    only: Optional[Sequence[int]] = None  # example indexes this run has (default all)
    columns: bool = True  # write the whole-run metric columns (db.refresh_metric_columns) like a finished run


def make_store(url: str, runs: Sequence[RunSpec], *, n_examples: int, categories: Sequence[Optional[str]] = (),
               references: Sequence[Optional[str]] = (), higher_is_better: Optional[dict[str, bool]] = None
               ) -> dict[str, Any]:
    engine = db.open_store(url)
    try:
        Session = db.session_factory(engine)
        with Session.begin() as s:
            ds = db.get_or_create_dataset(session=s, name="hand.jsonl", split="test")
            examples = [dict(key=f"key{i:03d}", row_index=i, messages=[{"role": "user", "content": f"question {i}"}],
                             reference=references[i] if i < len(references) else f"reference {i}",
                             category=categories[i] if i < len(categories) else None)
                        for i in range(n_examples)]
            keys = db.upsert_examples(session=s, dataset_id=ds, examples=examples)
            ex_ids = [keys[f"key{i:03d}"] for i in range(n_examples)]
            run_ids = {}
            for k, spec in enumerate(runs):
                rid = db.create_run(session=s, name=spec.name, model="m", backend="transformers", dataset_id=ds,
                                    family=spec.family)
                idx = list(spec.only) if spec.only is not None else list(range(n_examples))
                results = []
                for i in idx:
                    metrics = {m: vals[i] for m, vals in spec.metrics.items() if vals[i] is not None}
                    out = spec.outputs[i] if i < len(spec.outputs) else f"out {i}"
                    results.append(dict(example_id=ex_ids[i], output=out, output_tokens=len(out.split()),
                                        finish_reason="stop", metrics=metrics,
                                        failures=spec.failures[i] if i < len(spec.failures) else 0))
                db.insert_results(session=s, run_id=rid, results=results, higher_is_better=higher_is_better)
                when = START + dt.timedelta(days=k)
                db.update_run(session=s, run_id=rid, status="finished", n_examples=len(idx), created_at=when)
                if spec.columns:
                    db.refresh_metric_columns(session=s, run_id=rid)
                run_ids[spec.name] = rid
        return dict(dataset_id=ds, example_ids=ex_ids, runs=run_ids)
    finally:
        engine.dispose()


APP = str(__import__("pathlib").Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def open_page(monkeypatch, store_url: str, page: str, **params: Any):
    """Run one dashboard page (``views/<page>.py``) under AppTest against ``store_url`` with query params."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv(db.ENV_VAR, store_url)
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page(f"views/{page}.py")
    for k, v in params.items():
        at.query_params[k] = v if isinstance(v, list) else str(v)
    return at.run()


def markdown_texts(at) -> list[str]:
    """Every element that renders its text as Markdown (where data must never go)."""
    out = [m.value for m in at.markdown] + [c.value for c in at.caption]
    out += [e.value for e in at.error] + [w.value for w in at.warning] + [i.value for i in at.info]
    out += [s.value for s in at.success] + [h.value for h in at.subheader] + [t.value for t in at.title]
    return out


def shown_texts(at) -> list[str]:
    """Text shown literally (st.text, st.code)."""
    return [t.value for t in at.text] + [c.value for c in at.code]
