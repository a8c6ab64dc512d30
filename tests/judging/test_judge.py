"""``python -m evaluator judge``: a stub judge on 127.0.0.1 (it stands in for a remote judge API; nothing else is
contacted) with known behaviour, and the numbers that behaviour implies, asserted exactly."""
from __future__ import annotations

import json
import math
import re

import pytest
from sqlalchemy import select

import db
from evaluator.cli import main
from evaluator.judging._judge import Template, parse_verdict
from evaluator.models import _openai
from tests.support.openai_stub import ChatStub
from tests.support.store_seed import seed_minimal
from tests.support.verdict_judge import VERDICT_LOGITS, make_verdict_judge

N = 5  # seed_minimal's examples: the candidate answers "answer i", the baseline answers "" (empty)


@pytest.fixture()
def stub():
    with ChatStub() as s:
        yield s


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(_openai, "BACKOFF_S", 0.01)


@pytest.fixture()
def seeded(store_url):
    engine = db.open_store(store_url)
    seed = seed_minimal(engine, n_examples=N)
    engine.dispose()
    return seed


def _answers(body) -> tuple[str, str]:
    user = body["messages"][-1]["content"]
    a = re.search(r"\[The Start of Assistant A's Answer\]\n(.*?)\n\[The End", user, re.S).group(1)
    b = re.search(r"\[The Start of Assistant B's Answer\]\n(.*?)\n\[The End", user, re.S).group(1)
    return a, b


JUDGES = {
    "always_first": lambda body: "A is first, so [[A]]",  # position bias: both orders pick A
    "tie": lambda body: "They are equally good. [[C]]",
    "unparseable": lambda body: "I cannot decide between them.",
    "prefers_an_answer": lambda body: "Only one answers. [[A]]" if _answers(body)[0] else "Only one answers. [[B]]",
}


def _judge(capsys, store_url, stub, *extra):
    code = main(["judge", "cand", "--judge", "openai:stub-judge", "--base-url", stub.base_url, "--db", store_url,
                 *map(str, extra)])
    out, err = capsys.readouterr()
    return code, out, err


def _summary(capsys, store_url, judge="openai:stub-judge"):
    assert main(["compare", "cand", "base", "--json", "--db", store_url]) == 0
    items = [j for j in json.loads(capsys.readouterr()[0])["judgments"] if j["judge"] == judge]
    assert len(items) == 1
    return items[0]


@pytest.mark.parametrize("behaviour, expected", [
    # (win rate, W/T/L, position consistency, failures)
    ("always_first", (50.0, (0, N, 0), 0.0, 0)),  # each pair: 1 and 0, averaged to a tie; never consistent
    ("tie", (50.0, (0, N, 0), 1.0, 0)),
    ("prefers_an_answer", (100.0, (N, 0, 0), 1.0, 0)),
])
def test_a_judges_behaviour_gives_the_numbers_it_implies(capsys, store_url, seeded, stub, behaviour, expected):
    stub.reply = JUDGES[behaviour]
    code, out, err = _judge(capsys, store_url, stub)
    assert code == 0, err
    assert f"{2 * N} new judgments of {2 * N} asked, 0 without a verdict" in out
    j = _summary(capsys, store_url)
    win_rate, wtl, consistency, failures = expected
    assert j["win_rate"] == pytest.approx(win_rate, abs=1e-12)  # means of 0, 0.5 and 1: exact in binary
    assert (j["wins"], j["ties"], j["losses"]) == wtl and j["n"] == N
    assert j["position_consistency"] == consistency and j["failures"] == failures
    assert len(stub.bodies) == 2 * N


def test_an_unparseable_reply_is_a_judge_failure_not_a_tie(capsys, store_url, seeded, stub):
    stub.reply = JUDGES["unparseable"]
    code, out, _ = _judge(capsys, store_url, stub)
    assert code == 0 and f"{2 * N} without a verdict" in out
    j = _summary(capsys, store_url)
    assert (j["n"], j["failures"], j["win_rate"], j["ties"]) == (0, 2 * N, None, 0)


def test_judging_again_asks_nothing_and_a_changed_template_judges_anew(capsys, any_store_url, stub, tmp_path):
    store_url = any_store_url  # SQLite and PostgreSQL
    engine = db.open_store(store_url)
    seeded = seed_minimal(engine, n_examples=N)
    engine.dispose()
    stub.reply = JUDGES["prefers_an_answer"]
    assert _judge(capsys, store_url, stub)[0] == 0
    code, out, _ = _judge(capsys, store_url, stub)
    assert code == 0 and "0 new judgments of 0 asked" in out and len(stub.bodies) == 2 * N
    template = tmp_path / "judge.yaml"
    template.write_text("system: Be brief and fair.\nuser: |\n  {{ question }}\n  A: {{ answer_a }}\n  B: {{ answer_b }}\n")
    stub.reply = lambda body: "[[A]]" if "A: answer" in body["messages"][-1]["content"] else "[[B]]"
    code, out, _ = _judge(capsys, store_url, stub, "--template", template)
    assert code == 0 and f"{2 * N} new judgments of {2 * N} asked" in out
    assert stub.bodies[-1]["messages"][0] == {"role": "system", "content": "Be brief and fair."}
    engine = db.open_store(store_url)
    with db.session_factory(engine)() as s:
        rows = db.judgments_of_pair(session=s, candidate_id=seeded["candidate"], baseline_id=seeded["baseline"])
    engine.dispose()
    assert len({r["judge_key"] for r in rows if r["judge"] == "openai:stub-judge"}) == 2


def test_a_killed_judging_keeps_what_it_stored_and_resumes(capsys, store_url, seeded, stub, monkeypatch):
    stub.reply = JUDGES["prefers_an_answer"]
    monkeypatch.setattr(_openai, "COMMIT_EVERY", 4)
    calls = {"n": 0}
    real = db.add_judgments

    def dies_after_the_first_batch(**kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # as a Ctrl-C between two batches
        return real(**kw)

    monkeypatch.setattr(db, "add_judgments", dies_after_the_first_batch)
    code, _, err = _judge(capsys, store_url, stub, "--concurrency", 1)
    assert code == 130 and "what was committed is kept" in err
    monkeypatch.setattr(db, "add_judgments", real)
    asked_before = len(stub.bodies)
    code, out, _ = _judge(capsys, store_url, stub)
    assert code == 0 and f"{2 * N - 4} new judgments of {2 * N - 4} asked" in out
    assert len(stub.bodies) - asked_before == 2 * N - 4
    assert _summary(capsys, store_url)["win_rate"] == 100.0


def test_a_failed_request_is_not_stored_and_is_asked_again(capsys, store_url, seeded, stub):
    stub.reply = lambda body: None if "answer 3" in body["messages"][-1]["content"] else "[[C]]"  # 500 for one
    code, out, _ = _judge(capsys, store_url, stub)
    assert code == 1 and f"{2 * N - 2} new judgments of {2 * N} asked" in out and "2 requests failed" in out
    stub.reply = JUDGES["tie"]
    code, out, _ = _judge(capsys, store_url, stub)
    assert code == 0 and "2 new judgments of 2 asked" in out


def test_verdicts_parse_from_the_last_mark_and_answers_stay_text():
    assert parse_verdict("[[A]] at first, but on reflection [[B]]", "ab") == ("B", 0.0)
    assert parse_verdict("[[B]]", "ba") == ("B", 1.0) and parse_verdict("[[ C ]]", "ba") == ("C", 0.5)
    assert parse_verdict("[[D]] or [A]", "ab") == (None, None)
    item = {"messages": [{"role": "user", "content": "Use {{ answer_b }} literally"}], "reference": None,
            "candidate_output": "{% if true %}{reference}{% endif %} {{ conversation_b }}", "baseline_output": "[[A]]"}
    user = Template.load(None, "pairwise").messages(item, "ab")[1]["content"]
    assert "Use {{ answer_b }} literally" in user and "{% if true %}{reference}{% endif %} {{ conversation_b }}" in user



def test_a_tiny_local_judge_end_to_end(capsys, store_url, seeded, tiny_model_dir):
    """A real Llama-architecture model (random weights, a short context) as the judge through the transformers
    backend: the judging prompt does not fit its context, so every judgment is a judge failure that says so (a
    verdict on a cut prompt would not be one), stored with its whole reply; a second run asks nothing."""
    argv = ["judge", "cand", "--judge", str(tiny_model_dir), "--max-new-tokens", "8", "--device", "cpu",
            "--db", store_url]
    assert main(argv) == 0
    out = capsys.readouterr()[0]
    assert f"{2 * N} new judgments of {2 * N} asked, {2 * N} without a verdict, 0 requests failed" in out
    engine = db.open_store(store_url)
    with db.session_factory(engine)() as s:
        rows = [r for r in db.judgments_of_pair(session=s, candidate_id=seeded["candidate"],
                                                 baseline_id=seeded["baseline"]) if r["judge"] == str(tiny_model_dir)]
    engine.dispose()
    assert len(rows) == 2 * N and {r["order"] for r in rows} == {"ab", "ba"}
    assert all(r["preference"] is None and r["error"].startswith("the judging prompt did not fit the judge's context")
               for r in rows)
    assert main(argv) == 0 and "0 new judgments of 0 asked" in capsys.readouterr()[0]


def test_run_with_judge_judges_the_new_run_against_its_baselines(capsys, store_url, stub, tiny_model_dir):
    from tests.support.runner import CHAT_JSONL

    stub.reply = lambda body: "[[C]]"  # the baseline's answers, and the judge's verdict: a tie, always
    code = main(["run", "--model", str(tiny_model_dir), "--dataset", str(CHAT_JSONL), "--baseline", "openai:base",
                 "--base-url", stub.base_url, "--max-new-tokens", "4", "--no-perplexity", "--metric", "exact_match",
                 "--device", "cpu", "--no-progress", "--db", store_url, "--judge", "openai:stub-judge"])
    out = capsys.readouterr()[0]
    assert code == 0, out
    assert "24 new judgments of 24 asked, 0 without a verdict" in out  # 12 good rows, both orders
    assert "judge openai:stub-judge (pairwise): A wins 50%" in out


def test_single_answer_grading_rates_each_answer_once(capsys, store_url, seeded, stub):
    # 8 for an answer with text, 2 for the empty baseline-like answer, no rating for "answer 4"
    stub.reply = lambda body: ("no idea" if "answer 4" in body["messages"][-1]["content"] else "Rating: [[8]]")
    code, out, _ = _judge(capsys, store_url, stub, "--mode", "single")
    assert code == 0, out
    assert f"run {seeded['candidate']}: {N} new judgments of {N} asked, 1 without a verdict" in out
    assert f"mean rating 8 [8, 8] out of 10 over {N - 1} answers; 1 judge failures" in out
    assert "[[8]]" not in stub.bodies[0]["messages"][-1]["content"]  # the answer alone: no second answer, no order
    assert "Assistant B" not in stub.bodies[0]["messages"][-1]["content"]
    assert _judge(capsys, store_url, stub, "--mode", "single")[1].count("0 new judgments of 0 asked") == 1


def test_ratings_parse_from_the_last_mark_within_the_scale():
    from evaluator.judging._judge import parse_score

    assert parse_score("Rating: [[7]]") == 7.0 and parse_score("[[3]] then [[9.5]]") == 9.5
    assert parse_score("Rating: [[11]]") is None and parse_score("Rating: 7") is None


def test_an_openai_judges_verdict_is_weighted_by_its_probabilities(capsys, store_url, seeded, stub):
    stub.reply = lambda body: "The first one. [[ A ]]"  # always the first answer, with P(A) .7, P(B) .2, P(C) .1
    stub.alternatives = {"A": math.log(0.7), "B": math.log(0.2), "C": math.log(0.1)}
    code, out, _ = _judge(capsys, store_url, stub)
    assert code == 0, out
    assert all(b.get("top_logprobs") == 5 and b.get("logprobs") for b in stub.bodies)
    engine = db.open_store(store_url)
    with db.session_factory(engine)() as s:
        rows = [r for r in db.judgments_of_pair(session=s, candidate_id=seeded["candidate"],
                                                 baseline_id=seeded["baseline"]) if r["judge"] == "openai:stub-judge"]
    engine.dispose()
    # candidate first ("ab"): P(A) + P(C)/2 = 0.75; candidate second: P(B) + P(C)/2 = 0.25 (AlpacaEval's weighting)
    assert sorted({(r["order"], round(r["preference"], 12)) for r in rows}) == [("ab", 0.75), ("ba", 0.25)]
    assert {r["verdict"] for r in rows} == {"A"}
    j = _summary(capsys, store_url)
    assert j["win_rate"] == pytest.approx(50.0) and j["position_consistency"] == 0.0


def test_weighting_needs_the_letter_after_the_brackets():
    from evaluator.judging._judge import weighted_verdict
    from evaluator.types import Generation

    def gen(tokens, top):
        return Generation(text="".join(tokens), token_ids=[], tokens=tokens, logprobs=[-0.1] * len(tokens),
                          finish_reason="stop", top_logprobs=top)

    top = [{}, {}, {"B": math.log(0.5), " B": math.log(0.25), "C": math.log(0.25)}, {}]
    pref, lp = weighted_verdict(gen(["So", "[[", "B", "]]"], top), "ba")
    # B and " B" both read as B: P(B) = exp(-0.1) merged with the alternatives, normalised with C
    p_b = math.exp(-0.1) + 0.25
    assert pref == pytest.approx((p_b + 0.25 / 2) / (p_b + 0.25)) and lp["A"] is None
    assert weighted_verdict(gen(["B", "is", "better", "."], [{"B": 0.0}, {}, {}, {}]), "ab") is None
    assert weighted_verdict(gen(["[[", "B", "]]"], None), "ab") is None


def test_a_rate_limited_and_slow_judge_is_retried_and_asked_concurrently(capsys, store_url, seeded, stub):
    stub.reply = JUDGES["prefers_an_answer"]
    stub.limit_first = True  # 429 with Retry-After: 0 on the first request of every judging prompt
    stub.delay_s = 0.2  # then a slow answer
    code, out, _ = _judge(capsys, store_url, stub, "--concurrency", 4)
    assert code == 0 and f"{2 * N} new judgments of {2 * N} asked, 0 without a verdict, 0 requests failed" in out
    assert sorted(stub.requests.values()) == [2] * (2 * N)  # each prompt: refused once, answered once
    assert 1 < stub.max_in_flight <= 4
    assert _summary(capsys, store_url)["win_rate"] == 100.0


def test_a_local_judges_verdict_is_weighted_by_its_probabilities(capsys, store_url, seeded, tmp_path):
    """A Llama-architecture judge built so that it always answers "[[A]]" with P(A) : P(B) : P(C) = e² : e : 1
    (tests/support/verdict_judge.py), through the transformers backend: each judgment's preference is P(the
    candidate's letter) + P(C) / 2 of those three, and the always-first judge's pairs average to a tie."""
    judge = make_verdict_judge(tmp_path / "verdict-judge")
    argv = ["judge", "cand", "--judge", str(judge), "--max-new-tokens", "8", "--device", "cpu", "--db", store_url]
    assert main(argv) == 0
    assert f"{2 * N} new judgments of {2 * N} asked, 0 without a verdict" in capsys.readouterr()[0]
    total = sum(math.exp(v) for v in VERDICT_LOGITS.values())
    share = {k: math.exp(v) / total for k, v in VERDICT_LOGITS.items()}
    expected = {"ab": share["A"] + share["C"] / 2, "ba": share["B"] + share["C"] / 2}
    engine = db.open_store(store_url)
    with db.session_factory(engine)() as s:
        rows = [r for r in db.judgments_of_pair(session=s, candidate_id=seeded["candidate"],
                                                 baseline_id=seeded["baseline"]) if r["judge"] == str(judge)]
        weights = list(s.scalars(select(db.Judgment.verdict_logprobs).where(db.Judgment.judge == str(judge))))
    engine.dispose()
    assert len(rows) == 2 * N and all(r["verdict"] == "A" for r in rows)
    for r in rows:
        # fp32 log-softmax of logits 10, 9, 8 against the exact shares: measured 1.9e-7 apart at most (batches of
        # 1, 3 and 7 prompts of different lengths)
        assert r["preference"] == pytest.approx(expected[r["order"]], abs=1e-6)
    assert all(w["weighted"] is True and w["A"] > w["B"] > w["C"] for w in weights)
    # each pair averages its orders: (sA + sB + sC) / 2 of shares normalised in float64
    assert _summary(capsys, store_url, judge=str(judge))["win_rate"] == pytest.approx(50.0, abs=1e-9)
