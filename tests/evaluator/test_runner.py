"""The runner in process: store rows, batches, baselines, failure and resume (tiny Llama, temp SQLite)."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

import db
from evaluator._runner import RunError, resume_config, run_evaluation
from evaluator.config import ConfigError, build_config
from tests.support.runner import chat_rows, make_varied_model, write_jsonl

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def varied_dir(tiny_model_dir, tmp_path_factory):
    return make_varied_model(tiny_model_dir, tmp_path_factory.mktemp("varied"))


@pytest.fixture()
def dataset(tmp_path):
    rows = chat_rows(7) + [{"messages": "not a conversation"}]
    return write_jsonl(tmp_path / "chat.jsonl", rows)


def config(model, dataset, store_url, **kw):
    base = dict(model=str(model), dataset=str(dataset), db=store_url, max_new_tokens=6, batch_size=3,
                backend="transformers", metrics=["exact_match", "token_f1", "perplexity"])
    base.update(kw)
    return build_config(overrides=base)


def crash_after(batches: int):
    """A loader whose backend raises after committing ``batches`` batches (a crash mid-run)."""
    from evaluator.models import load_backend

    def loader(model, adapter, **kw):
        backend = load_backend(model, adapter, **kw)
        real = backend.generate

        def generate(convs, settings, *, on_batch=None, progress=True):
            done = 0

            def commit(idx, gens):
                nonlocal done
                if done == batches:
                    raise RuntimeError("simulated crash")
                on_batch(idx, gens)
                done += 1

            return real(convs, settings, on_batch=commit, progress=progress)

        backend.generate = generate
        return backend

    return loader


def outputs(engine, run_id):
    with db.session_factory(engine)() as s:
        return {r["example_key"]: (r["output"], r["output_tokens"], r["finish_reason"])
                for r in db.export_rows(session=s, run_id=run_id)}


def result_count(engine, run_id):
    with engine.connect() as c:
        return c.scalar(select(func.count()).select_from(db.Result).where(db.Result.run_id == run_id))


def test_run_stores_rows_results_metrics_and_finishes(varied_dir, dataset, store_url, engine):
    summary = run_evaluation(config(varied_dir, dataset, store_url, family="tiny"), progress=False)
    assert summary.status == "finished"
    assert (summary.n_rows, summary.n_examples, summary.n_rejected, summary.n_generated) == (8, 7, 1, 7)
    with db.session_factory(engine)() as s:
        run = db.get_run(session=s, run_id=summary.run_id)
        assert run["status"] == "finished" and run["finished_at"] is not None and run["error"] is None
        assert (run["n_rows"], run["n_examples"], run["n_rejected"]) == (8, 7, 1)
        assert run["config"]["max_new_tokens"] == 6 and "db" not in run["config"]
        assert run["generation"]["do_sample"] is False and run["family"] == "tiny"
        repro = run["repro"]
        for key in ("git_sha", "packages", "seed", "dataset_sha256", "chat_template_sha256", "backend"):
            assert key in repro
        assert repro["packages"]["torch"] and len(repro["chat_template_sha256"]) == 64
        assert db.rejected_rows(session=s, run_id=summary.run_id)[0]["row_index"] == 7
        rows = list(db.export_rows(session=s, run_id=summary.run_id))
        assert len(rows) == 7
        assert all(set(r["metrics"]) >= {"exact_match", "token_f1", "perplexity"} for r in rows)
        assert all(r["ref_nll"] > 0 and r["ref_tokens"] > 0 for r in rows)
        assert all(len(r["token_logprobs"]) == r["output_tokens"] for r in rows)
        assert db.run_aggregates(session=s, run_id=summary.run_id)


def test_baselines_run_on_the_same_examples_and_are_compared(varied_dir, tiny_model_dir, dataset, store_url, engine):
    cfg = config(varied_dir, dataset, store_url, baselines=[str(tiny_model_dir)]).model_copy(
        update={"family": "acme"})
    summary = run_evaluation(cfg, progress=False)
    assert len(summary.baselines) == 1
    base = summary.baselines[0]
    with db.session_factory(engine)() as s:
        b = db.get_run(session=s, run_id=base.run_id)
        assert b["baseline_for_id"] == summary.run_id and b["model"] == str(tiny_model_dir)
        # the baseline is its own line in the trends, not a point of the candidate's family
        assert db.get_run(session=s, run_id=summary.run_id)["family"] == "acme"
        assert b["family"] == b["name"] != "acme"
        assert b["generation"] == db.get_run(session=s, run_id=summary.run_id)["generation"]
        assert db.baselines_of(session=s, run_id=summary.run_id) == [base.run_id]
        assert db.stored_comparisons(session=s, run_a_id=summary.run_id, run_b_id=base.run_id)
    assert outputs(engine, summary.run_id).keys() == outputs(engine, base.run_id).keys()
    assert outputs(engine, summary.run_id) != outputs(engine, base.run_id)  # different models, different answers


def test_a_crash_marks_the_run_failed_and_keeps_committed_batches(varied_dir, dataset, store_url, engine):
    with pytest.raises(RunError, match=r"simulated crash.*--resume 1"):
        run_evaluation(config(varied_dir, dataset, store_url), loader=crash_after(1), progress=False)
    with db.session_factory(engine)() as s:
        run = db.get_run(session=s, run_id=1)
    assert run["status"] == "failed" and "simulated crash" in run["error"]
    assert result_count(engine, 1) == 3  # one batch of 3 committed


def test_resume_finishes_with_one_result_per_example_equal_to_an_uninterrupted_run(varied_dir, dataset, store_url,
                                                                                   engine, tmp_path):
    with pytest.raises(RunError):
        run_evaluation(config(varied_dir, dataset, store_url), loader=crash_after(2), progress=False)
    assert result_count(engine, 1) == 6
    cfg = resume_config("1", db_url=store_url, overrides={"batch_size": 2})  # batch size may change
    summary = run_evaluation(cfg, progress=False)
    assert summary.run_id == 1 and summary.status == "finished"
    assert (summary.n_skipped, summary.n_generated) == (6, 1)
    assert result_count(engine, 1) == 7
    other = f"sqlite:///{tmp_path / 'other.sqlite'}"
    clean = run_evaluation(config(varied_dir, dataset, other), progress=False)
    other_engine = db.make_engine(other)
    try:
        assert outputs(engine, 1) == outputs(other_engine, clean.run_id)
    finally:
        other_engine.dispose()
    with db.session_factory(engine)() as s:
        run = db.get_run(session=s, run_id=1)
    assert run["status"] == "finished" and run["error"] is None and len(run["repro"]["resumes"]) == 1


def test_resume_by_name_of_a_finished_run_generates_nothing(varied_dir, dataset, store_url):
    run_evaluation(config(varied_dir, dataset, store_url, name="v1"), progress=False)
    summary = run_evaluation(resume_config("v1", db_url=store_url), progress=False)
    assert (summary.n_skipped, summary.n_generated, summary.status) == (7, 0, "finished")


def test_resume_refuses_settings_that_change_outputs(varied_dir, dataset, store_url):
    run_evaluation(config(varied_dir, dataset, store_url), progress=False)
    with pytest.raises(ConfigError, match="max_new_tokens differ"):
        resume_config("1", db_url=store_url, overrides={"max_new_tokens": 9})
    with pytest.raises(db.StoreError, match="no run 'nope'"):
        resume_config("nope", db_url=store_url)


def test_resume_refuses_a_changed_dataset(varied_dir, dataset, store_url):
    with pytest.raises(RunError):
        run_evaluation(config(varied_dir, dataset, store_url), loader=crash_after(1), progress=False)
    write_jsonl(dataset, chat_rows(7, start=1))
    with pytest.raises(ConfigError, match="dataset changed"):
        run_evaluation(resume_config("1", db_url=store_url), progress=False)


def test_no_examples_is_an_error_before_any_run_is_created(varied_dir, tmp_path, store_url, engine):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"messages": "x"}, {"messages": 3}])
    with pytest.raises(Exception, match="no"):
        run_evaluation(config(varied_dir, bad, store_url), progress=False)
    with engine.connect() as c:
        assert c.scalar(select(func.count()).select_from(db.Run)) == 0


def test_an_identical_baseline_is_reused_not_generated_again_and_the_reuse_is_recorded(
        varied_dir, tiny_model_dir, dataset, store_url, engine, tmp_path):
    base = str(tiny_model_dir)
    v1 = run_evaluation(config(varied_dir, dataset, store_url, name="v1", baselines=[base]), progress=False)
    # the same file from another directory (a colleague's clone) is the same dataset
    elsewhere = tmp_path / "clone" / "chat.jsonl"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(dataset.read_bytes())
    v2 = run_evaluation(config(varied_dir, elsewhere, store_url, name="v2", baselines=[base]), progress=False)
    first = v1.baselines[0]
    assert not first.reused and first.n_generated == 7
    assert v2.baselines[0].reused and v2.baselines[0].run_id == first.run_id and v2.baselines[0].n_generated == 0
    assert "reused" in "\n".join(v2.lines())
    with db.session_factory(engine)() as s:
        assert len(db.list_runs(session=s)) == 3  # v1, v2 and one base
        assert db.baseline_links(session=s, run_ids=[first.run_id]) == [
            dict(candidate_id=v1.run_id, baseline_id=first.run_id, reused=False),
            dict(candidate_id=v2.run_id, baseline_id=first.run_id, reused=True)]
        assert db.baselines_of(session=s, run_id=v2.run_id) == [first.run_id]
        assert db.stored_comparisons(session=s, run_a_id=v2.run_id, run_b_id=first.run_id)
        runs = {r["id"]: r for r in db.list_runs(session=s)}
        assert runs[v2.run_id]["baselines"] == [first.run_id] and runs[first.run_id]["is_baseline"]
        assert runs[v1.run_id]["dataset_id"] == runs[v2.run_id]["dataset_id"]
        assert runs[v2.run_id]["dataset"] == "chat.jsonl" and runs[v2.run_id]["dataset_source"] == str(elsewhere)
    # resuming v2 keeps the reused baseline as it is
    again = run_evaluation(resume_config("v2", db_url=store_url), progress=False)
    assert again.baselines[0].reused and again.baselines[0].run_id == first.run_id
    # --no-reuse evaluates afresh; so does anything that changes the outputs
    fresh = run_evaluation(config(varied_dir, dataset, store_url, name="v3", baselines=[base], reuse=False),
                           progress=False)
    shorter = run_evaluation(config(varied_dir, dataset, store_url, name="v4", baselines=[base], max_new_tokens=5),
                             progress=False)
    assert not fresh.baselines[0].reused and fresh.baselines[0].run_id not in (first.run_id,)
    assert not shorter.baselines[0].reused and shorter.baselines[0].run_id not in (first.run_id,
                                                                                   fresh.baselines[0].run_id)
    assert outputs(engine, fresh.baselines[0].run_id) == outputs(engine, first.run_id)  # what reuse relied on


def test_a_baseline_whose_model_files_changed_is_evaluated_again(varied_dir, tiny_model_dir, dataset, store_url,
                                                                 tmp_path):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    v1 = run_evaluation(config(varied_dir, dataset, store_url, baselines=[str(base)]), progress=False)
    retrained = make_varied_model(tiny_model_dir, tmp_path / "other", seed=5)  # same shape and sizes, other weights
    for f in retrained.iterdir():
        if f.suffix == ".safetensors":
            shutil.copy(f, base / f.name)
    v2 = run_evaluation(config(varied_dir, dataset, store_url, baselines=[str(base)]), progress=False)
    assert not v2.baselines[0].reused and v2.baselines[0].run_id != v1.baselines[0].run_id


def test_a_changed_file_is_a_new_dataset_under_the_same_name(varied_dir, dataset, store_url, engine):
    first = run_evaluation(config(varied_dir, dataset, store_url), progress=False)
    write_jsonl(dataset, chat_rows(7, start=1))
    second = run_evaluation(config(varied_dir, dataset, store_url), progress=False)
    with db.session_factory(engine)() as s:
        runs = {r["id"]: r for r in db.list_runs(session=s)}
        datasets = db.list_datasets(session=s)
    assert runs[first.run_id]["dataset_id"] != runs[second.run_id]["dataset_id"]
    assert [d["name"] for d in datasets] == ["chat.jsonl", "chat.jsonl"]
    assert all(d["fingerprint"].startswith("sha256:") for d in datasets)
