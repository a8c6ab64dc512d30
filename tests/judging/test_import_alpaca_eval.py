"""``import_judgments --format alpaca_eval``: a small annotations file reproduces AlpacaEval's own win rate and
standard error through ``compare --json``, a re-import adds nothing, and bad records are reported."""
from __future__ import annotations

import json

import pandas as pd
import pytest

import db
from evaluator.cli import main

# Ten instructions judged by one annotator, model "my-sft" (output_2) against "gpt4_turbo" (output_1):
# four wins, three losses, a draw written 1.5, a draw written 0 (older files), a weighted 1.25 (a loss by
# 0.25), one not judged.
PREFERENCES = [2, 2, 1, 2, 1, 1.5, 0, 1.25, 2, 1, None]


def _records(prefs, annotator="weighted_alpaca_eval_gpt4_turbo"):
    return [dict(instruction=f"Question {i}: what is {i} + {i}?", output_1=f"It is {2 * i}." + " Indeed." * (i % 3),
                 generator_1="gpt4_turbo", output_2=f"{2 * i}" + " because" * (i % 4), generator_2="my-sft",
                 annotator=annotator, preference=p, dataset="helpful_base") for i, p in enumerate(prefs)]


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _alpaca_eval_figures(prefs):
    """AlpacaEval's pairwise_to_winrate: 0 read as a draw (1.5), nulls dropped, mean and sem of preference - 1."""
    p = pd.Series([v for v in prefs if v is not None], dtype=float).replace({0.0: 1.5}) - 1
    return 100 * p.mean(), 100 * p.sem()


def test_an_annotations_file_gives_alpaca_evals_win_rate_and_standard_error(any_store_url, tmp_path, capsys):
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(_records(PREFERENCES)))
    code, out, err = _cli(capsys, "import_judgments", path, "--format", "alpaca_eval", "--db", any_store_url)
    assert code == 0, err
    assert "10 new judgments, 1 records not judged" in out and "created: gpt4_turbo, my-sft" in out
    code, out, err = _cli(capsys, "compare", "my-sft", "gpt4_turbo", "--json", "--db", any_store_url)
    assert code == 0, err
    [j] = json.loads(out)["judgments"]
    win_rate, standard_error = _alpaca_eval_figures(PREFERENCES)
    assert win_rate == pytest.approx(52.5)  # (1 + 1 + 0 + 1 + 0 + 0.5 + 0.5 + 0.25 + 1 + 0) / 10
    # multiples of 0.25, summed in float64 with no BLAS kernel: measured 0.0 apart; 1e-9 only allows another
    # summation order (numpy's pairwise sum against pandas')
    assert j["win_rate"] == pytest.approx(win_rate, abs=1e-9)
    assert j["standard_error"] == pytest.approx(standard_error, abs=1e-9)
    assert (j["judge"], j["mode"], j["n"], j["wins"], j["ties"], j["losses"], j["failures"]) == (
        "weighted_alpaca_eval_gpt4_turbo", "pairwise", 10, 4, 2, 4, 0)
    assert j["ci_low"] < j["win_rate"] < j["ci_high"] and j["position_consistency"] is None
    assert j["lc_win_rate"] is not None
    code, out, _ = _cli(capsys, "compare", "my-sft", "gpt4_turbo", "--db", any_store_url)
    assert code == 0 and "judge weighted_alpaca_eval_gpt4_turbo (pairwise): A wins 52.5%" in out


def test_a_second_import_matches_the_runs_and_adds_nothing(store_url, tmp_path, capsys):
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(_records(PREFERENCES)))
    assert _cli(capsys, "import_judgments", path, "--format", "alpaca_eval", "--db", store_url)[0] == 0
    code, out, _ = _cli(capsys, "import_judgments", path, "--format", "alpaca_eval", "--db", store_url)
    assert code == 0 and "(both runs matched): 0 new judgments" in out
    engine = db.open_store(store_url)
    with db.session_factory(engine)() as s:
        assert len(db.list_runs(session=s)) == 2
        cand = db.find_run(session=s, ref="my-sft")
        assert db.baselines_of(session=s, run_id=cand) == [db.find_run(session=s, ref="gpt4_turbo")]
        assert len(db.judgments_of_pair(session=s, candidate_id=cand,
                                        baseline_id=db.find_run(session=s, ref="gpt4_turbo"))) == 10
    engine.dispose()


def test_two_annotators_are_two_judges_and_bad_records_are_reported(store_url, tmp_path, capsys):
    records = _records([2, 1, 2]) + _records([1, 1, 2], annotator="alpaca_eval_llama3_70b")
    records += [{"instruction": "no outputs"}, dict(_records([3])[0], instruction="bad preference")]
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(records))
    code, out, _ = _cli(capsys, "import_judgments", path, "--format", "alpaca_eval", "--db", store_url)
    assert code == 0
    assert "record 6: no text in output_1, generator_1, output_2, generator_2" in out
    assert "record 7: preference 3" in out
    code, out, _ = _cli(capsys, "compare", "my-sft", "gpt4_turbo", "--json", "--db", store_url)
    by_judge = {j["judge"]: j for j in json.loads(out)["judgments"]}
    assert by_judge["weighted_alpaca_eval_gpt4_turbo"]["win_rate"] == pytest.approx(200 / 3)
    assert by_judge["alpaca_eval_llama3_70b"]["win_rate"] == pytest.approx(100 / 3)
    engine = db.open_store(store_url)
    with db.session_factory(engine)() as s:
        assert [r["row_index"] for r in db.rejected_rows(session=s, run_id=db.find_run(session=s, ref="my-sft"))] == [6, 7]
    engine.dispose()


def test_a_file_that_is_not_annotations_is_refused(store_url, tmp_path, capsys):
    path = tmp_path / "annotations.json"
    path.write_text('{"not": "a list"}')
    code, _, err = _cli(capsys, "import_judgments", path, "--format", "alpaca_eval", "--db", store_url)
    assert code == 2 and "a JSON list of records" in err
