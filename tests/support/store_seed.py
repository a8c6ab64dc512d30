"""Rows in every table, written through the db write API (for store and migration tests)."""
from __future__ import annotations

import db


def seed_minimal(engine, *, n_examples: int = 5) -> dict:
    """Two runs (candidate + baseline) over ``n_examples`` examples with metrics, aggregates,
    a comparison, an annotation, a judgment, a saved view, a rejected row, an arena vote and a kept example."""
    Session = db.session_factory(engine)
    with Session.begin() as s:
        ds = db.get_or_create_dataset(session=s, name="fixture.jsonl", split="test")
        keys = db.upsert_examples(session=s, dataset_id=ds, examples=[
            dict(key=f"k{i}", row_index=i, messages=[{"role": "user", "content": f"question {i} é"}],
                 reference=f"answer {i}", category="math" if i % 2 else "chat", tags=["t"])
            for i in range(n_examples)
        ])
        cand = db.create_run(session=s, name="cand", model="m", backend="transformers", dataset_id=ds)
        base = db.create_run(session=s, name="base", model="b", backend="transformers", dataset_id=ds,
                             baseline_for_id=cand)
        for run, shift in ((cand, 0.5), (base, 0.0)):
            db.insert_results(session=s, run_id=run, results=[
                dict(example_id=keys[f"k{i}"], output=f"answer {i}" if shift else "", output_tokens=3,
                     finish_reason="stop", logprobs=[-0.1, -0.2, -0.3], tokens=["a", "n", "s"],
                     failures=0 if shift else int(db.FailureKind.EMPTY),
                     metrics={"bleu": 50.0 * shift + i, "rougeL": (None, "boom") if i == 0 else 0.1 * i + shift})
                for i in range(n_examples)
            ], higher_is_better={"bleu": True, "rougeL": True})
            db.replace_aggregates(session=s, run_id=run, rows=[
                dict(metric="bleu", kind="mean", n=n_examples, value=1.0 + shift, ci_low=0.5, ci_high=1.5)])
            db.update_run(session=s, run_id=run, status="finished", n_rows=n_examples + 1, n_examples=n_examples,
                          n_rejected=1)
            db.add_rejected(session=s, run_id=run, rows=[dict(row_index=n_examples, reason="bad json", raw="{")])
        db.replace_comparisons(session=s, run_a_id=cand, run_b_id=base, rows=[
            dict(metric="bleu", n=n_examples, value_a=1.5, value_b=1.0, delta=0.5, ci_low=0.1, ci_high=0.9,
                 p_value=0.01, p_holm=0.02, wins=4, ties=1, losses=0, method="paired bootstrap")])
        db.add_annotation(session=s, run_id=cand, example_id=keys["k1"], reviewer="ann", verdict="pass", comment="ok")
        db.add_judgments(session=s, judgments=[
            dict(candidate_id=cand, baseline_id=base, example_id=keys["k1"], order="ab", judge="tiny-judge",
                 mode="pairwise", judge_key="f" * 64, config={"template": "which is better?"}, preference=1.0,
                 verdict="A", verdict_logprobs={"A": -0.1, "B": -2.4}, reply="[[A]] é")])
        db.save_view(session=s, name="math fails", params={"run": cand, "category": "math"})
        db.set_pass_threshold(session=s, dataset_id=ds, metric="bleu", threshold=40.0, set_by="ann")
        turn = [{"role": "user", "content": "Hi é"}]
        vote = db.add_arena_vote(session=s, reviewer="ann", model_a="cand", model_b="base", endpoint_a="http://a/v1",
                                 endpoint_b="http://b/v1", left="b", verdict="a", settings={"temperature": 0.7},
                                 conversation_a=turn + [{"role": "assistant", "content": "Hello"}],
                                 conversation_b=turn + [{"role": "assistant", "content": "?"}])
        db.keep_example(session=s, set_name="arena", messages=turn, reference="Hello", vote_id=vote, kept_by="ann")
        db.update_run(session=s, run_id=cand, status="finished")
        db.refresh_metric_columns(session=s, run_id=cand)
        db.refresh_metric_columns(session=s, run_id=base)
    return dict(dataset_id=ds, candidate=cand, baseline=base, example_ids=keys)


def seed_rollout(engine) -> dict:
    """Two runs rolled out on one conversation of two user turns (``--turns rollout``): "cand" answered "Apple." then
    "It is crisp.", "base" "Banana." then "It is yellow."; base is cand's baseline. Returns run ids and example ids."""
    with db.session_factory(engine).begin() as s:
        ds = db.get_or_create_dataset(session=s, name="question.jsonl", split="test", turns="rollout")
        user = [{"role": "user", "content": "Name a fruit."}, {"role": "user", "content": "Why that one?"}]
        keys = db.upsert_examples(session=s, dataset_id=ds, examples=[
            dict(key="t0", row_index=0, messages=user[:1], reference=None, conversation_id="q1", turn_index=0),
            dict(key="t1", row_index=0, messages=user, reference="Any reason.", conversation_id="q1", turn_index=1)])
        runs = {}
        for name, answers in (("cand", ["Apple.", "It is crisp."]), ("base", ["Banana.", "It is yellow."])):
            runs[name] = db.create_run(session=s, name=name, model=name, backend="transformers", dataset_id=ds)
            db.insert_results(session=s, run_id=runs[name], results=[
                dict(example_id=keys[k], output=a, output_tokens=2, finish_reason="stop", metrics={})
                for k, a in zip(("t0", "t1"), answers)], higher_is_better={})
            db.update_run(session=s, run_id=runs[name], status="finished")
        db.link_baseline(session=s, candidate_id=runs["cand"], baseline_id=runs["base"])
    return dict(runs=runs, example_ids=keys)


def seed_judged(engine) -> dict:
    """``seed_minimal`` with tiny-judge's verdicts on the candidate's answers: k1 better (one order), k2 worse (both
    orders), k3 a tie (1 and 0), k4 a judge failure, k0 not judged."""
    seed = seed_minimal(engine)
    cand, base, ids = seed["candidate"], seed["baseline"], seed["example_ids"]
    with db.session_factory(engine).begin() as s:
        db.add_judgments(session=s, judgments=[
            dict(candidate_id=cand, baseline_id=base, example_id=ids[k], order=o, judge="tiny-judge",
                 mode="pairwise", judge_key="f" * 64, preference=p)
            for k, prefs in {"k2": (0.0, 0.0), "k3": (1.0, 0.0)}.items() for o, p in zip(("ab", "ba"), prefs)]
            + [dict(candidate_id=cand, baseline_id=base, example_id=ids["k4"], order="ab", judge="tiny-judge",
                    mode="pairwise", judge_key="f" * 64, preference=None, error="no verdict")])
    return seed
