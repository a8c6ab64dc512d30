"""The compare page shows every judge's verdict on A against B beside the metric deltas, either way round."""
from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

import db
from evaluator.cli import main
from tests.judging.test_import_alpaca_eval import PREFERENCES, _records
from tests.support.store_seed import seed_minimal, seed_rollout

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def _compare(url, monkeypatch, a, b) -> AppTest:
    monkeypatch.setenv("EVAL_DB_URL", url)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/compare.py")
    at.query_params = {"a": str(a), "b": str(b)}
    at.run()
    assert not at.exception, at.exception
    return at


def _judgment_rows(at) -> list[dict]:
    tables = [d.value for d in at.dataframe if "A wins (95% CI)" in d.value.columns]
    assert len(tables) == 1
    return tables[0].to_dict("records")


def test_the_judges_win_rate_shows_for_a_against_b_and_turned_around(store_url, tmp_path, monkeypatch, capsys):
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(_records(PREFERENCES)))
    assert main(["import_judgments", str(path), "--format", "alpaca_eval", "--db", store_url]) == 0
    capsys.readouterr()
    # runs: 1 gpt4_turbo (the baseline), 2 my-sft (the candidate)
    [row] = _judgment_rows(_compare(store_url, monkeypatch, 2, 1))
    assert row["A wins (95% CI)"].startswith("52.5% [")
    assert (row["judge"], row["n"], row["W / T / L"]) == ("weighted_alpaca_eval_gpt4_turbo", 10, "4 / 2 / 4")
    assert row["consistent"] == "–" and row["failures"] == 0
    [turned] = _judgment_rows(_compare(store_url, monkeypatch, 1, 2))
    assert turned["A wins (95% CI)"].startswith("47.5% [") and turned["W / T / L"] == "4 / 2 / 4"


def test_without_judgments_the_page_says_how_to_ask_a_judge(store_url, monkeypatch, capsys, tmp_path):
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(_records([None, None, None])))  # the runs, and no judged record
    assert main(["import_judgments", str(path), "--format", "alpaca_eval", "--db", store_url]) == 0
    at = _compare(store_url, monkeypatch, 2, 1)
    assert not [d for d in at.dataframe if "A wins (95% CI)" in d.value.columns]
    assert any("python -m evaluator judge 2 --against 1 --judge SPEC" in c.value for c in at.caption)


def test_an_opened_example_shows_each_judges_verdict_and_reply(store_url, monkeypatch):
    engine = db.open_store(store_url)
    seed = seed_minimal(engine)  # one judgment: candidate shown first ("ab"), preferred, reply "[[A]] é"
    engine.dispose()
    cand, base, ex = seed["candidate"], seed["baseline"], seed["example_ids"]["k1"]
    monkeypatch.setenv("EVAL_DB_URL", store_url)
    for (a, b), words in {(cand, base): "A shown first · prefers A", (base, cand): "B shown first · prefers B"}.items():
        at = AppTest.from_file(APP, default_timeout=60).run()
        at.switch_page("views/compare.py")
        at.query_params = {"a": str(a), "b": str(b), "ex": str(ex)}
        at.run()
        assert not at.exception, at.exception
        assert [e.label for e in at.expander] == [f"tiny-judge (pairwise): {words}"]
        assert "[[A]] é" in [c.value for c in at.expander[0].code]


def test_the_errors_page_shows_how_far_each_judge_agrees_with_the_reviewers(store_url, monkeypatch):
    engine = db.open_store(store_url)
    seed = seed_minimal(engine)  # tiny-judge prefers the candidate on k1; ann passes k1
    cand, base, ids = seed["candidate"], seed["baseline"], seed["example_ids"]
    judged = {"k0": (1.0, 1.0), "k2": (0.0, 0.0), "k3": (0.5, 0.5)}  # passes, fails, ties (a tie is no pass)
    with db.session_factory(engine).begin() as s:
        db.add_judgments(session=s, judgments=[
            dict(candidate_id=cand, baseline_id=base, example_id=ids[k], order=order, judge="tiny-judge",
                 mode="pairwise", judge_key="f" * 64, preference=p)
            for k, prefs in judged.items() for order, p in zip(("ab", "ba"), prefs)])
        for k, verdict in {"k0": "fail: model error", "k2": "fail: model error", "k3": "pass",
                           "k4": "fail: model error"}.items():  # k4: no judgment, left out
            db.add_annotation(session=s, run_id=cand, example_id=ids[k], reviewer="bo", verdict=verdict)
    engine.dispose()
    monkeypatch.setenv("EVAL_DB_URL", store_url)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/errors.py")
    at.query_params = {"run": str(cand), "tab": "dis"}
    at.run()
    assert not at.exception, at.exception
    [table] = [d.value for d in at.dataframe if "kappa" in d.value.columns]
    # reviewers pass k1 (judge passes) and k3 (judge: a tie, no pass); fail k0 (judge passes) and k2 (judge fails):
    # p_o = 2/4, p_e = 0.5 * 0.5 + 0.5 * 0.5 = 0.5, kappa 0; the judge passes 1 of the reviewers' 2 fails
    assert table.to_dict("records") == [{
        "judge": "tiny-judge", "vs run": f"#{base}", "examples": 4, "kappa": "0.00", "reviewers' fails it passes": "50%",
        "both pass": 1, "both fail": 1, "only the judge passes": 1, "only reviewers pass": 1}]


def test_the_runs_page_rates_the_versions_a_judge_compared(store_url, monkeypatch):
    engine = db.open_store(store_url)
    seed = seed_minimal(engine)  # tiny-judge: the candidate beats the baseline on k1 (one order)
    cand, base, ids = seed["candidate"], seed["baseline"], seed["example_ids"]
    with db.session_factory(engine).begin() as s:  # three more examples: 3 wins, 1 loss in all
        db.add_judgments(session=s, judgments=[
            dict(candidate_id=cand, baseline_id=base, example_id=ids[k], order="ab", judge="tiny-judge",
                 mode="pairwise", judge_key="f" * 64, preference=p) for k, p in (("k2", 1.0), ("k3", 1.0), ("k4", 0.0))])
    engine.dispose()
    monkeypatch.setenv("EVAL_DB_URL", store_url)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    [table] = [d.value for d in at.dataframe if "interval" in d.value.columns and "run" in d.value.columns]
    # 3 of 4: 400 log10(3) = 190.85 points above the reference (run 1 = the candidate, sorted first: 1000)
    assert table[["run", "rating"]].to_dict("records") == [{"run": f"#{cand} cand", "rating": "1000"},
                                                          {"run": f"#{base} base", "rating": "809"}]
    assert "tiny-judge" in [t.value for t in at.text]
    # one rating per version pools the judge's 4 examples with the seeded arena vote for "cand": 4 of 5, so
    # 400 log10(4) = 240.8 above "base" (the first name in order, the reference at 1000)
    [versions] = [d.value for d in at.dataframe if "version" in d.value.columns]
    assert versions[["version", "rating", "arena", "judges"]].to_dict("records") == [
        {"version": "cand", "rating": "1241", "arena": 1, "judges": 4},
        {"version": "base", "rating": "1000", "arena": 1, "judges": 4}]


def test_the_errors_page_lists_where_a_judge_and_the_metric_disagree(store_url, monkeypatch):
    engine = db.open_store(store_url)
    seed = seed_minimal(engine)  # bleu of the candidate: 25 + i on k_i; stored pass threshold 40: all fail
    cand, base, ids = seed["candidate"], seed["baseline"], seed["example_ids"]
    with db.session_factory(engine).begin() as s:  # k1: the judge prefers the candidate (seeded); k2 worse; k3 a tie
        db.add_judgments(session=s, judgments=[
            dict(candidate_id=cand, baseline_id=base, example_id=ids[k], order="ab", judge="tiny-judge",
                 mode="pairwise", judge_key="f" * 64, preference=p) for k, p in (("k2", 0.0), ("k3", 0.5))])
    engine.dispose()
    monkeypatch.setenv("EVAL_DB_URL", store_url)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/errors.py")
    at.query_params = {"run": str(cand), "tab": "dis", "metric": "bleu"}
    at.run()
    assert not at.exception, at.exception
    [table] = [d.value for d in at.dataframe if "judge_says" in d.value.columns]
    assert table[["judge", "baseline", "example_id", "judge_says", "preference", "value"]].to_dict("records") == [
        {"judge": "tiny-judge", "baseline": f"#{base}", "example_id": ids["k1"], "judge_says": "better",
         "preference": 1.0, "value": 26.0}]
    assert "1 answer the judge prefers to the baseline's fail on bleu; 0 it finds worse pass (strongest preference "\
           "first)" in [t.value for t in at.text]


def test_the_compare_page_shows_single_answer_ratings_of_a_and_b(store_url, monkeypatch):
    engine = db.open_store(store_url)
    seed = seed_minimal(engine)
    cand, base, ids = seed["candidate"], seed["baseline"], seed["example_ids"]
    with db.session_factory(engine).begin() as s:
        db.add_judgments(session=s, judgments=[
            dict(candidate_id=run, baseline_id=None, example_id=ids[k], order="ab", judge="rater", mode="single",
                 judge_key="r" * 64, score=score) for run, k, score in ((cand, "k0", 8.0), (cand, "k1", 6.0),
                                                                        (base, "k0", 3.0))])
    engine.dispose()
    at = _compare(store_url, monkeypatch, cand, base)
    [table] = [d.value for d in at.dataframe if "A: mean rating (95% CI)" in d.value.columns]
    [row] = table.to_dict("records")
    assert row["judge"] == "rater" and row["A: mean rating (95% CI)"].startswith("7.00 [")
    assert row["A: mean rating (95% CI)"].endswith("(n 2)") and row["B: mean rating (95% CI)"] == "3.00 (n 1)"


def test_the_browsers_example_detail_lists_the_judges_verdicts_on_it(store_url, monkeypatch):
    engine = db.open_store(store_url)
    seed = seed_minimal(engine)  # tiny-judge: the candidate shown first and preferred on k1, reply "[[A]] é"
    cand, base, ex = seed["candidate"], seed["baseline"], seed["example_ids"]["k1"]
    with db.session_factory(engine).begin() as s:
        db.add_judgments(session=s, judgments=[dict(candidate_id=cand, baseline_id=None, example_id=ex, order="ab",
                                                    judge="rater", mode="single", judge_key="r" * 64, score=7.0,
                                                    reply="Rating: [[7]]")])
    engine.dispose()
    monkeypatch.setenv("EVAL_DB_URL", store_url)
    for run, expected in {cand: ["rater (single): rated 7 of 10",
                                 f"tiny-judge (pairwise) against run #{base}: this run shown first · prefers this run"],
                          base: [f"tiny-judge (pairwise) against run #{cand}: run #{cand} shown first · prefers run "
                                 f"#{cand}"]}.items():
        at = AppTest.from_file(APP, default_timeout=60).run()
        at.switch_page("views/browser.py")
        at.query_params = {"run": str(run), "ex": str(ex)}
        at.run()
        assert not at.exception, at.exception
        assert [e.label for e in at.expander if "(" in e.label and "Metadata" not in e.label] == expected


def test_after_a_rollout_an_example_shows_the_conversation_the_run_had(store_url, monkeypatch):
    engine = db.open_store(store_url)
    seeded = seed_rollout(engine)
    engine.dispose()
    monkeypatch.setenv("EVAL_DB_URL", store_url)
    for run, first in (("cand", "Apple."), ("base", "Banana.")):
        at = AppTest.from_file(APP, default_timeout=60).run()
        at.switch_page("views/browser.py")
        at.query_params = {"run": str(seeded["runs"][run]), "ex": str(seeded["example_ids"]["t1"])}
        at.run()
        assert not at.exception, at.exception
        said = [t.value for m in at.chat_message for t in m.text]
        assert said[:3] == ["Name a fruit.", first, "Why that one?"]  # its own first answer, then the second turn
