"""finalize_run / compare_runs / the score and compare commands against a seeded store."""
from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

import db
from evaluator.scoring import compare_runs, failure_mask, finalize_run, get_metrics, reference_nll, score_samples
from evaluator.types import Sample

N = 40
CATEGORIES = ["billing", "shipping", "tech"]


def _examples():
    rng = random.Random(3)
    words = "the parcel ships today refund your order click reset link email password sorry delay thanks".split()
    out = []
    for i in range(N):
        ref = " ".join(rng.choice(words) for _ in range(rng.randint(4, 14))).capitalize() + "."
        out.append(dict(key=f"k{i}", row_index=i, messages=[{"role": "user", "content": f"Question {i}?"}],
                        reference=None if i % 13 == 12 else ref, category=CATEGORIES[i % 3],
                        tags=["hard"] if i % 4 == 0 else []))
    return out


def _answers(examples, quality: float, seed: int):
    rng = random.Random(seed)
    answers = []
    for e in examples:
        ref = e["reference"] or "No reference here."
        words = [w if rng.random() < quality else "umm" for w in ref.split()]
        ref_lps = [math.log(rng.uniform(quality * 0.5, quality)) for _ in range(len(words) + 1)]
        answers.append(dict(output=" ".join(words), ref_lps=ref_lps, out_lps=[math.log(rng.uniform(0.3, 0.9))] * 3))
    answers[5] = dict(output="", ref_lps=answers[5]["ref_lps"], out_lps=[], error="CUDA out of memory")
    return answers


def _seed_run(sf, dataset_id, ids, examples, *, name, quality, seed, baseline_for=None, model="m"):
    answers = _answers(examples, quality, seed)
    samples = [Sample(output=a["output"], reference=e["reference"], output_logprobs=a["out_lps"], output_tokens=3,
                      reference_logprobs=a["ref_lps"] if e["reference"] else None, error=a.get("error"),
                      finish_reason="error" if a.get("error") else "stop", category=e["category"])
               for e, a in zip(examples, answers)]
    metrics = get_metrics()
    values = score_samples(samples, metrics)
    with sf.begin() as s:
        run_id = db.create_run(session=s, name=name, model=model, backend="transformers", dataset_id=dataset_id,
                               baseline_for_id=baseline_for)
        rows = []
        for e, smp, v in zip(examples, samples, values):
            nll = reference_nll(smp)
            rows.append(dict(example_id=ids[e["key"]], output=smp.output, output_tokens=3,
                             finish_reason=smp.finish_reason, failures=failure_mask(smp), logprobs=smp.output_logprobs,
                             error=smp.error, metrics=v, ref_nll=nll[0] if nll else None,
                             ref_tokens=nll[1] if nll else None))
        db.insert_results(session=s, run_id=run_id, results=rows,
                          higher_is_better={m.name: m.higher_is_better for m in metrics})
        db.update_run(session=s, run_id=run_id, status="finished")
    return run_id, samples, values


@pytest.fixture()
def seeded(engine):
    sf = db.session_factory(engine)
    examples = _examples()
    with sf.begin() as s:
        dataset_id = db.get_or_create_dataset(session=s, name="support.jsonl", split="test")
        ids = db.upsert_examples(session=s, dataset_id=dataset_id, examples=examples)
    a = _seed_run(sf, dataset_id, ids, examples, name="candidate", quality=0.9, seed=1)
    b = _seed_run(sf, dataset_id, ids, examples, name="baseline", quality=0.6, seed=2, baseline_for=a[0])
    return sf, examples, a, b


def _aggs(sf, run_id):
    with sf() as s:
        return {(r["metric"], r["slice"], r["kind"]): r for r in db.run_aggregates(session=s, run_id=run_id)}


def test_finalize_run_stores_means_corpus_values_and_slices(seeded):
    import sacrebleu

    sf, examples, (run_a, samples, values), _ = seeded
    finalize_run(session_factory=sf, run_id=run_a)
    aggs = _aggs(sf, run_a)

    bleu = [v["bleu"] for v in values if isinstance(v["bleu"], float)]
    row = aggs[("bleu", "", "mean")]
    assert row["n"] == len(bleu) and row["value"] == pytest.approx(np.mean(bleu))
    assert row["ci_low"] < row["value"] < row["ci_high"] and row["extra"]["errors"] == 1  # the OOM example

    ok = [s for s in samples if s.reference is not None and not s.error]
    corpus = aggs[("bleu", "", "corpus")]
    assert corpus["n"] == len(ok)
    assert corpus["value"] == pytest.approx(sacrebleu.corpus_bleu([s.output for s in ok], [[s.reference for s in ok]]).score)
    assert aggs[("chrf", "", "corpus")]["value"] == pytest.approx(
        sacrebleu.corpus_chrf([s.output for s in ok], [[s.reference for s in ok]]).score)

    nll = sum(-math.fsum(s.reference_logprobs) for s in ok)
    tokens = sum(len(s.reference_logprobs) for s in ok)
    ppl = aggs[("perplexity", "", "corpus")]
    assert ppl["value"] == pytest.approx(math.exp(nll / tokens)) and ppl["extra"]["tokens"] == tokens
    assert ("perplexity", "", "mean") in aggs  # beside the token-weighted one

    billing = [v["exact_match"] for v, e in zip(values, examples)
               if e["category"] == "billing" and isinstance(v["exact_match"], float)]
    assert aggs[("exact_match", "category=billing", "mean")]["n"] == len(billing)
    hard = [v["token_f1"] for v, e in zip(values, examples) if "hard" in e["tags"] and isinstance(v["token_f1"], float)]
    assert aggs[("token_f1", "tag=hard", "mean")]["value"] == pytest.approx(np.mean(hard))
    assert ("bleu", "category=tech", "corpus") in aggs


def test_compare_runs_pairs_examples_and_respects_direction(seeded):
    sf, _, (run_a, _, va), (run_b, _, vb) = seeded
    rows = compare_runs(session_factory=sf, run_a_id=run_a, run_b_id=run_b)
    by = {(r["metric"], r["slice"], r["kind"]): r for r in rows}
    with sf() as s:
        assert len(db.stored_comparisons(session=s, run_a_id=run_a, run_b_id=run_b)) == len(rows)

    pairs = [(x["token_f1"], y["token_f1"]) for x, y in zip(va, vb)
             if isinstance(x["token_f1"], float) and isinstance(y["token_f1"], float)]
    f1 = by[("token_f1", "", "mean")]
    assert f1["n"] == len(pairs)
    assert f1["delta"] == pytest.approx(np.mean([a - b for a, b in pairs]))
    assert f1["wins"] == sum(a > b for a, b in pairs) and f1["losses"] == sum(a < b for a, b in pairs)

    ppl = [(x["perplexity"], y["perplexity"]) for x, y in zip(va, vb)
           if isinstance(x["perplexity"], float) and isinstance(y["perplexity"], float)]
    row = by[("perplexity", "", "mean")]
    assert row["wins"] == sum(a < b for a, b in ppl)  # lower perplexity is the win
    assert row["delta"] < 0 and row["ci_high"] < 0 and row["p_value"] < 0.05

    assert by[("bleu", "", "corpus")]["delta"] > 0 and by[("bleu", "", "corpus")]["method"].startswith("sacrebleu")
    assert by[("output_tokens", "", "mean")]["wins"] == 0  # no better direction
    overall = [r for r in rows if r["slice"] == ""]
    assert all(r["p_holm"] >= r["p_value"] for r in overall if r["p_value"] is not None)
    assert ("chrf", "category=shipping", "corpus") in by and ("bleu", "tag=hard", "mean") in by


def _two_runs_with(sf, values_a, values_b, higher_is_better):
    """Two runs over len(values_a) examples, each result carrying the given {metric: value} maps."""
    with sf.begin() as s:
        ds = db.get_or_create_dataset(session=s, name="plugin.jsonl", split="")
        ids = db.upsert_examples(session=s, dataset_id=ds, examples=[
            dict(key=f"k{i}", row_index=i, messages=[{"role": "user", "content": f"q{i}"}], reference=f"r{i}")
            for i in range(len(values_a))])
        runs = []
        for name, values in (("a", values_a), ("b", values_b)):
            run = db.create_run(session=s, name=name, model="m", backend="transformers", dataset_id=ds)
            db.insert_results(session=s, run_id=run, higher_is_better=higher_is_better, results=[
                dict(example_id=ids[f"k{i}"], output="o", output_tokens=1, finish_reason="stop", metrics=v)
                for i, v in enumerate(values)])
            runs.append(run)
    return runs


def test_compare_runs_takes_a_metrics_direction_from_the_store_and_names_both_runs(engine):
    """A metric no code registers (an imported or plug-in score) keeps the direction the store recorded:
    here lower is better, so A's smaller values are its wins."""
    sf = db.session_factory(engine)
    a_vals = [{"house_loss": 1.0 + i % 3} for i in range(12)]
    b_vals = [{"house_loss": 2.0 + i % 3 + (i % 4 == 0) * -2.5} for i in range(12)]
    run_a, run_b = _two_runs_with(sf, a_vals, b_vals, {"house_loss": False})
    rows = compare_runs(session_factory=sf, run_a_id=run_a, run_b_id=run_b)
    row = next(r for r in rows if (r["metric"], r["slice"], r["kind"]) == ("house_loss", "", "mean"))
    pairs = [(x["house_loss"], y["house_loss"]) for x, y in zip(a_vals, b_vals)]
    assert (row["wins"], row["losses"]) == (sum(x < y for x, y in pairs), sum(x > y for x, y in pairs)) == (9, 3)
    assert all((r["run_a_id"], r["run_b_id"]) == (run_a, run_b) for r in rows)


def test_comparing_runs_with_no_values_in_common_warns_and_stores_nothing(engine, caplog):
    sf = db.session_factory(engine)
    run_a, run_b = _two_runs_with(sf, [{"m1": 1.0}] * 3, [{"m2": 1.0}] * 3, {"m1": True, "m2": True})
    with caplog.at_level("WARNING", logger="evaluator.scoring._compare"):
        assert compare_runs(session_factory=sf, run_a_id=run_a, run_b_id=run_b) == []
    assert [r.getMessage() for r in caplog.records if r.name == "evaluator.scoring._compare"] == [
        f"runs {run_a} and {run_b} have no examples with metric values in common"]
    with sf() as s:
        assert db.stored_comparisons(session=s, run_a_id=run_a, run_b_id=run_b) == []


def test_stored_p_holm_is_holms_adjustment_of_each_slices_p_values(seeded):
    """Within a slice, every (metric, kind) row is one hypothesis of the family Holm adjusts over."""
    from evaluator.scoring import holm

    sf, _, (run_a, _, _), (run_b, _, _) = seeded
    compare_runs(session_factory=sf, run_a_id=run_a, run_b_id=run_b)
    with sf() as s:
        rows = db.stored_comparisons(session=s, run_a_id=run_a, run_b_id=run_b)
    slices = sorted({r["slice"] for r in rows})
    assert len(slices) >= 4  # overall, three categories, a tag
    adjusted_somewhere = False
    for name in slices:
        family = [r for r in rows if r["slice"] == name]
        expected = holm([r["p_value"] for r in family])
        assert [r["p_holm"] for r in family] == pytest.approx(expected, abs=0), name
        adjusted_somewhere |= any(r["p_holm"] is not None and r["p_holm"] > r["p_value"] for r in family)
    assert adjusted_somewhere  # the fixture has p-values that Holm must raise


def test_a_category_slice_compares_exactly_its_own_paired_examples(seeded):
    """Every number of the category=shipping rows, recomputed independently from the per-example values."""
    import sacrebleu

    sf, examples, (run_a, samples_a, va), (run_b, samples_b, vb) = seeded
    rows = compare_runs(session_factory=sf, run_a_id=run_a, run_b_id=run_b)
    by = {(r["metric"], r["kind"]): r for r in rows if r["slice"] == "category=shipping"}
    shipping = [i for i, e in enumerate(examples) if e["category"] == "shipping"]
    pairs = [(va[i]["token_f1"], vb[i]["token_f1"]) for i in shipping
             if isinstance(va[i]["token_f1"], float) and isinstance(vb[i]["token_f1"], float)]
    f1 = by[("token_f1", "mean")]
    assert f1["n"] == len(pairs) < len(shipping)  # the OOM example of each run has no value
    assert f1["value_a"] == pytest.approx(np.mean([a for a, _ in pairs]))
    assert f1["value_b"] == pytest.approx(np.mean([b for _, b in pairs]))
    assert f1["delta"] == pytest.approx(np.mean([a - b for a, b in pairs]))
    assert (f1["wins"], f1["ties"], f1["losses"]) == (sum(a > b for a, b in pairs), sum(a == b for a, b in pairs),
                                                      sum(a < b for a, b in pairs))
    assert f1["ci_low"] <= f1["delta"] <= f1["ci_high"] and 0 < f1["p_value"] <= 1
    ok = [i for i in shipping if samples_a[i].reference is not None and not samples_a[i].error
          and not samples_b[i].error]
    corpus = by[("bleu", "corpus")]
    assert corpus["n"] == len(ok)
    assert corpus["value_a"] == pytest.approx(
        sacrebleu.corpus_bleu([samples_a[i].output for i in ok], [[samples_a[i].reference for i in ok]]).score)
    assert corpus["value_b"] == pytest.approx(
        sacrebleu.corpus_bleu([samples_b[i].output for i in ok], [[samples_b[i].reference for i in ok]]).score)
    assert corpus["delta"] == pytest.approx(corpus["value_a"] - corpus["value_b"])
    assert (corpus["wins"], corpus["ties"], corpus["losses"]) == (0, 0, 0) and corpus["method"].startswith("sacrebleu")
    assert by[("output_tokens", "mean")]["method"].endswith("no better direction: wins/ties/losses not counted")


def test_only_examples_both_runs_have_are_compared(seeded):
    sf, examples, (run_a, _, va), (run_b, _, vb) = seeded
    with sf() as s:
        keep = [r["result_id"] for r in db.scoring_inputs(session=s, run_id=run_b)][:10]
        b_only = db.create_run(session=s, name="partial", model="p", backend="transformers",
                               dataset_id=db.get_run(session=s, run_id=run_b)["dataset_id"])
        s.commit()
    with sf.begin() as s:  # a baseline that evaluated only the first ten examples
        inputs = {r["result_id"]: r for r in db.scoring_inputs(session=s, run_id=run_b)}
        db.insert_results(session=s, run_id=b_only, results=[
            dict(example_id=inputs[r]["example_id"], output=inputs[r]["output"], output_tokens=3, finish_reason="stop",
                 metrics={"token_f1": 0.5}) for r in keep], higher_is_better={"token_f1": True})
    rows = compare_runs(session_factory=sf, run_a_id=run_a, run_b_id=b_only)
    overall = {(r["metric"], r["kind"]): r for r in rows if r["slice"] == ""}
    assert set(overall) == {("token_f1", "mean")}  # the only metric both runs have
    a_vals = [va[i]["token_f1"] for i in range(10) if isinstance(va[i]["token_f1"], float)]
    assert overall[("token_f1", "mean")]["n"] == len(a_vals)
    assert overall[("token_f1", "mean")]["value_b"] == pytest.approx(0.5)


def _cli(*argv):
    from evaluator.cli import main

    return main([str(a) for a in argv])


def test_score_command_only_computes_missing_metrics(seeded, store_url, capsys, monkeypatch):
    import evaluator.commands.score as score_cmd

    sf, _, (run_a, _, _), (run_b, _, _) = seeded
    monkeypatch.setattr(score_cmd, "_load_backend", lambda run: pytest.fail("the model must not be loaded"))
    with sf() as s:
        result_ids = [r["result_id"] for r in db.scoring_inputs(session=s, run_id=run_a)]
    with sf.begin() as s:  # forget bleu of three results
        db.replace_metric_values(session=s, run_id=run_a, values={rid: {} for rid in result_ids[:3]}, only=["bleu"])

    assert _cli("score", run_a, "--db", store_url) == 0
    assert "3 metric values written" in capsys.readouterr().out
    assert _cli("score", "candidate", "--db", store_url) == 0
    assert "0 metric values written" in capsys.readouterr().out
    with sf() as s:
        assert len(db.stored_comparisons(session=s, run_a_id=run_a, run_b_id=run_b)) > 0  # via the baseline link
        assert db.run_aggregates(session=s, run_id=run_a)

    assert _cli("score", run_a, "--metric", "bleu", "--force", "--db", store_url) == 0
    n_refs = sum(1 for i in range(N) if i % 13 != 12)
    assert f"{n_refs} metric values written" in capsys.readouterr().out

    assert _cli("score", run_a, "--metric", "nonsense", "--db", store_url) == 2
    assert "unknown metric 'nonsense'" in capsys.readouterr().err


def test_score_command_teacher_forces_missing_perplexity_with_the_model(engine, store_url, tiny_model_dir, capsys):
    pytest.importorskip("torch")
    sf = db.session_factory(engine)
    examples = _examples()[:6]
    with sf.begin() as s:
        dataset_id = db.get_or_create_dataset(session=s, name="tiny.jsonl")
        ids = db.upsert_examples(session=s, dataset_id=dataset_id, examples=examples)
        run_id = db.create_run(session=s, name="tiny", model=str(tiny_model_dir), backend="transformers",
                               dataset_id=dataset_id, config={"model": str(tiny_model_dir), "backend": "transformers",
                                                              "device": "cpu", "batch_size": 4})
        db.insert_results(session=s, run_id=run_id, results=[
            dict(example_id=ids[e["key"]], output="Sure.", output_tokens=2, finish_reason="stop") for e in examples])

    assert _cli("score", run_id, "--db", store_url) == 0  # without --metric perplexity: no model
    assert "reference log-probabilities computed" not in capsys.readouterr().out
    assert _cli("score", run_id, "--metric", "perplexity", "--db", store_url) == 0
    assert "reference log-probabilities computed for 6 results" in capsys.readouterr().out

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evaluator.models._teacher_forcing import reference_logprobs

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lps = reference_logprobs(model, tok, [e["messages"] for e in examples], [e["reference"] for e in examples])
    with sf() as s:
        rows = db.scoring_inputs(session=s, run_id=run_id)
        stored = db.run_metric_values(session=s, run_id=run_id, names=["perplexity"])
    for r, lp in zip(rows, lps):
        assert r["ref_tokens"] == len(lp)
        assert stored[r["result_id"]]["perplexity"][0] == pytest.approx(math.exp(-math.fsum(lp) / len(lp)), rel=1e-5)


def test_compare_command_prints_and_stores(seeded, store_url, capsys):
    sf, _, (run_a, _, _), (run_b, _, _) = seeded
    assert _cli("compare", "candidate", "baseline", "--db", store_url) == 0
    out = capsys.readouterr().out
    assert "perplexity (lower better)" in out and "corpus" in out and "W/T/L" in out
    with sf() as s:
        stored = db.stored_comparisons(session=s, run_a_id=run_a, run_b_id=run_b)
    assert stored
    assert _cli("compare", run_a, run_b, "--json", "--db", store_url) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["run_a"]["id"] == run_a and len(data["rows"]) == len(stored)
    assert {r["slice"] for r in data["rows"]} >= {"", "category=billing", "tag=hard"}
