"""``import_judgments FILE --format mt_bench``: FastChat's MT-Bench single and pair judgment files, in FastChat's
folder layout, reproduce FastChat's own figures (``show_result.py``'s formulas, transcribed below with pandas)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import db
from evaluator._import_mt_bench import import_mt_bench
from evaluator.cli import main
from evaluator.data import load_examples

QUESTIONS = [
    {"question_id": 81, "category": "writing", "turns": ["Write a travel post.", "Rewrite it with every sentence on A."]},
    {"question_id": 82, "category": "roleplay", "turns": ["Be a pirate.", "Now a poet."]},
    {"question_id": 111, "category": "math", "turns": ["Area of (0,0), (-1,1), (3,3)?", "Circumscribed circle?"],
     "reference": ["3", "5 pi"]},
]
ANSWERS = {"vicuna-13b": {81: ["Hawaii is great.", "A Hawaiian trip awaits."], 82: ["Arr!", "O sea."],
                          111: ["It is 3.", "5 pi."]},
           "gpt-3.5-turbo": {81: ["Hawaii!", "Amazing Hawaii."], 82: ["Ahoy.", "Waves."], 111: ["2.", "4 pi."]}}
# (question, turn, vicuna's score, gpt-3.5's score); -1: the judge gave no rating
SCORES = [(81, 1, 8, 9), (81, 2, 6, 7), (82, 1, -1, 8), (82, 2, 5, 10), (111, 1, 9, 3), (111, 2, 7, 2)]
# (question, turn, g1_winner, g2_winner) of vicuna (model_1) against gpt-3.5-turbo (model_2)
WINNERS = [(81, 1, "model_2", "model_2"), (81, 2, "model_1", "tie"), (82, 1, "model_1", "model_2"),
           (82, 2, "error", "model_1"), (111, 1, "model_1", "model_1"), (111, 2, "tie", "tie")]


def _jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def mt_bench(tmp_path) -> Path:
    """FastChat's data/mt_bench folder: question.jsonl, model_answer/, model_judgment/."""
    root = tmp_path / "mt_bench"
    _jsonl(root / "question.jsonl", QUESTIONS)
    for model, answers in ANSWERS.items():
        _jsonl(root / "model_answer" / f"{model}.jsonl", [
            {"question_id": q, "answer_id": f"{model}-{q}", "model_id": model, "choices": [{"index": 0, "turns": t}]}
            for q, t in answers.items()])
    _jsonl(root / "model_judgment" / "gpt-4_single.jsonl", [
        {"question_id": q, "model": m, "judge": ["gpt-4", "single-v1" if turn == 1 else "single-v1-multi-turn"],
         "user_prompt": "...", "judgment": f"Rating: [[{s}]]" if s != -1 else "I cannot rate this.", "score": s,
         "turn": turn, "tstamp": 1687221890.5}
        for q, turn, sv, sg in SCORES for m, s in (("vicuna-13b", sv), ("gpt-3.5-turbo", sg))])
    _jsonl(root / "model_judgment" / "gpt-4_pair.jsonl", [
        {"question_id": q, "model_1": "vicuna-13b", "model_2": "gpt-3.5-turbo", "g1_winner": g1, "g2_winner": g2,
         "judge": ["gpt-4", "pair-v2" if turn == 1 else "pair-v2-multi-turn"], "g1_user_prompt": "...",
         "g1_judgment": f"first {q}", "g2_user_prompt": "...", "g2_judgment": f"second {q}", "turn": turn,
         "tstamp": 1687221890.5} for q, turn, g1, g2 in WINNERS])
    return root


def fastchat_single(path: Path) -> dict[str, float]:
    """FastChat's show_result.py, display_result_single: the mean score of each model, -1 left out."""
    df = pd.read_json(path, lines=True)[["model", "score", "turn"]]
    df = df[df["score"] != -1]
    return df[["model", "score"]].groupby(["model"]).mean()["score"].to_dict()


def fastchat_pairwise(path: Path) -> dict[str, float]:
    """FastChat's show_result.py, display_result_pairwise: win_rate_adjusted of each model."""
    df_all = pd.read_json(path, lines=True)
    df_all = df_all[(df_all["g1_winner"] != "error") & (df_all["g2_winner"] != "error")]
    list_res = []
    for _, row in df_all.iterrows():
        if row["g1_winner"] == "tie" or row["g1_winner"] != row["g2_winner"]:
            list_res.append({"model": row["model_1"], "win": 0, "loss": 0, "tie": 1})
            list_res.append({"model": row["model_2"], "win": 0, "loss": 0, "tie": 1})
        else:
            winner, loser = ((row["model_1"], row["model_2"]) if row["g1_winner"] == "model_1"
                             else (row["model_2"], row["model_1"]))
            list_res.append({"model": winner, "win": 1, "loss": 0, "tie": 0})
            list_res.append({"model": loser, "win": 0, "loss": 1, "tie": 0})
    df = pd.DataFrame(list_res).groupby(["model"]).sum()
    df["win_rate_adjusted"] = (df["win"] + 0.5 * df["tie"]) / (df["win"] + df["loss"] + df["tie"])
    return df["win_rate_adjusted"].to_dict()


def test_a_single_file_reproduces_fastchats_mt_bench_score(mt_bench, store_url):
    imported, rejected = import_mt_bench(mt_bench / "model_judgment" / "gpt-4_single.jsonl", db_url=store_url)
    assert rejected == []
    published = fastchat_single(mt_bench / "model_judgment" / "gpt-4_single.jsonl")
    assert published == {"vicuna-13b": 7.0, "gpt-3.5-turbo": 6.5}
    by_model = {i.candidate: i for i in imported}
    for model, score in published.items():
        [summary] = by_model[model].judgments
        # a mean of a few small whole numbers: exact in binary, the same sum and division as pandas'
        assert summary["mean_score"] == score and summary["judge"] == "gpt-4"
        assert by_model[model].baseline_id is None and by_model[model].created == [model]
    [vicuna] = by_model["vicuna-13b"].judgments
    assert (vicuna["n"], vicuna["failures"]) == (5, 1)  # the -1 is a judge failure, not a rating


def test_a_pair_file_stores_both_orders_and_reports_fastchats_win_rate(mt_bench, store_url, capsys):
    path = mt_bench / "model_judgment" / "gpt-4_pair.jsonl"
    assert main(["import_judgments", str(path), "--format", "mt_bench", "--db", store_url]) == 0
    out = capsys.readouterr()[0]
    published = fastchat_pairwise(path)["vicuna-13b"]
    assert published == 0.5  # 1 win, 3 ties, 1 loss of 5 (the error record left out): (1 + 1.5) / 5, exact
    assert "1 / 3 / 1 of 5, win rate 50.00%" in out
    assert "scored the imported answers of run(s) 1, 2 with the text metrics (bleu, chrf" in out
    assert main(["compare", "vicuna-13b", "gpt-3.5-turbo", "--json", "--db", store_url]) == 0
    compared = json.loads(capsys.readouterr()[0])
    # the reference-guided question's two turns are scored; an imported answer has no token count to score
    assert {(r["metric"], r["n"]) for r in compared["rows"] if not r["slice"]} >= {("token_f1", 2), ("rougeL", 2)}
    assert not {"output_tokens", "perplexity", "confidence"} & {r["metric"] for r in compared["rows"]}
    [j] = compared["judgments"]
    # the stored figures average the orders: 0, 0.75, 0.5, 1 (the error order left out), 1, 0.5
    assert (j["judge"], j["n"], j["wins"], j["ties"], j["losses"], j["failures"]) == ("gpt-4", 6, 3, 2, 1, 1)
    assert j["win_rate"] == pytest.approx(100 * 3.75 / 6, abs=1e-12)  # dyadic preferences: exact sums
    # judged both ways without an error: 5 pairs; (81,1), (111,1) agree, (111,2) is a tie both ways
    assert j["position_consistency"] == 3 / 5  # one division of whole numbers, as the code does


def test_the_imported_runs_share_the_dataset_of_a_rollout_run_on_the_questions(mt_bench, store_url):
    imported, _ = import_mt_bench(mt_bench / "model_judgment" / "gpt-4_pair.jsonl", db_url=store_url)
    engine = db.open_store(store_url)
    with db.session_factory(engine)() as s:
        run = db.get_run(session=s, run_id=imported[0].candidate_id)
        stored = {r["example_key"]: (r["conversation_id"], r["turn_index"], r["output"])
                  for r in db.export_rows(session=s, run_id=imported[0].candidate_id)}
    engine.dispose()
    expected = {e.key: (e.conversation_id, e.turn_index, ANSWERS["vicuna-13b"][int(e.conversation_id)][e.turn_index])
                for e in load_examples(str(mt_bench / "question.jsonl"), turns="rollout").examples}
    assert stored == expected and run["turns"] == "rollout" and run["status"] == "finished"
    again, _ = import_mt_bench(mt_bench / "model_judgment" / "gpt-4_pair.jsonl", db_url=store_url)
    assert (again[0].new_judgments, again[0].created, again[0].candidate_id) == (0, [], imported[0].candidate_id)


def test_bad_records_are_listed_and_missing_answers_named(mt_bench, store_url):
    path = mt_bench / "model_judgment" / "gpt-4_single.jsonl"
    good = path.read_text().splitlines()[0]
    _jsonl(path, [json.loads(good), {"question_id": 81, "model": "vicuna-13b", "judge": "gpt-4", "score": 3},
                  {"question_id": 81, "model": "vicuna-13b", "judge": ["gpt-4", "x"], "score": "high"},
                  {"question_id": 999, "model": "vicuna-13b", "judge": ["gpt-4", "x"], "score": 3, "turn": 1}])
    path.write_text(path.read_text() + "{not json\n")
    _, rejected = import_mt_bench(path, db_url=store_url)
    assert [r.reason for r in rejected] == [
        "line 2: judge is not [judge model, prompt name]", "line 3: score 'high' is not a number",
        "line 5: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        "line 4: question 999 has no turn 1 in question.jsonl"]
    (mt_bench / "model_answer" / "vicuna-13b.jsonl").unlink()
    with pytest.raises(ValueError, match=r"no answers of vicuna-13b: .*vicuna-13b.jsonl does not exist"):
        import_mt_bench(path, db_url=store_url)
