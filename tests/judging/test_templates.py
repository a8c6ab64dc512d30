"""Judging prompts: Jinja2 template files, their checks, and what a judge reads after a rollout (a stub judge on
127.0.0.1 stands in for a remote judge API; nothing else is contacted)."""
from __future__ import annotations

import pytest

import db
from evaluator.cli import main
from evaluator.judging._judge import JudgeError, Template, parse_score, parse_verdict
from tests.support.openai_stub import ChatStub
from tests.support.store_seed import seed_minimal, seed_rollout

ITEM = {"messages": [{"role": "user", "content": "What is 2 + 2?"}], "reference": "4", "turn_index": 0,
        "candidate_output": "It is 4.", "baseline_output": "Five."}


def test_a_jinja2_text_template_is_the_user_message_and_may_set_the_system_message(tmp_path):
    path = tmp_path / "judge.j2"
    path.write_text("{% set system %}You judge {{ turn }}-turn answers.{% endset %}\n"
                    "Q: {{ question }}\n{% if reference %}Ref: {{ reference }}\n{% endif %}"
                    "A: {{ answer_a }}\nB: {{ answer_b }}\n")
    t = Template.load(path, "reference")
    assert t.messages(ITEM, "ba") == [
        {"role": "system", "content": "You judge 1-turn answers."},
        {"role": "user", "content": "Q: ### User:\nWhat is 2 + 2?\nRef: 4\nA: Five.\nB: It is 4."}]
    assert t.record == {"system": None, "user": path.read_text()}  # the file's text is the record


def test_a_yaml_template_may_leave_out_the_system_message(tmp_path):
    path = tmp_path / "rate.yaml"
    path.write_text("user: 'Rate {{ answer }} for {{ question }}: [[N]]'\n")
    assert Template.load(path, "single").messages(ITEM, "ab") == [
        {"role": "user", "content": "Rate It is 4. for ### User:\nWhat is 2 + 2?: [[N]]"}]


@pytest.mark.parametrize("text, mode, message", [
    ("{{ question }} {{ answer_a }} {{ answr_b }}", "pairwise", "unknown field(s) answr_b; a template may use"),
    ("{{ question }} {{ answer_a }}", "pairwise", "a pairwise template shows {{ answer_b }} or {{ conversation_b }}"),
    ("{{ answer_a }} {{ answer_b }}", "reference", "a reference template shows {{ reference }}"),
    ("{{ question }}", "single", "a single template shows {{ answer }} or {{ answer_a }} or {{ conversation_a }}"),
    ("{{ answer_a }} {% if %}", "single", "line 1: "),
    ("{conversation} {answer_a} {answer_b}", "pairwise", "shows {{ answer_a }}"),  # the old brace fields
])
def test_a_bad_template_is_refused_before_anything_is_asked(tmp_path, text, mode, message):
    path = tmp_path / "t.txt"
    path.write_text(text)
    with pytest.raises(JudgeError, match="t.txt") as info:
        Template.load(path, mode)
    assert message in str(info.value)


def test_the_built_in_templates_hash_differs_by_mode():
    hashes = {Template.load(None, m).sha256 for m in ("pairwise", "reference", "single")}
    assert len(hashes) == 3


# --- after a rollout the judge reads each run's own conversation --------------------------------------------


def test_after_a_rollout_the_judge_reads_both_whole_conversations(store_url):
    engine = db.open_store(store_url)
    seed_rollout(engine)
    engine.dispose()
    with ChatStub() as stub:
        stub.reply = lambda body: "[[A]]"
        assert main(["judge", "cand", "--against", "base", "--judge", "openai:stub-judge", "--base-url", stub.base_url,
                     "--db", store_url]) == 0
        asked = [b["messages"][-1]["content"] for b in stub.bodies]
    assert len(asked) == 4
    second = [a for a in asked if "Conversation with the User" in a]
    assert len(second) == 2  # turn 1 in both orders; turn 0 with the single-turn prompt
    cand = "### User:\nName a fruit.\n\n### Assistant:\nApple.\n\n### User:\nWhy that one?\n\n### Assistant:\nIt is crisp."
    base = "### User:\nName a fruit.\n\n### Assistant:\nBanana.\n\n### User:\nWhy that one?\n\n### Assistant:\nIt is yellow."
    ab = next(a for a in second if a.index(cand) < a.index(base))
    ba = next(a for a in second if a.index(base) < a.index(cand))
    assert ab.startswith("<|The Start of Assistant A's Conversation with the User|>\n" + cand)
    assert ba.startswith("<|The Start of Assistant A's Conversation with the User|>\n" + base)
    first = [a for a in asked if "Conversation with the User" not in a]
    assert all("Why that one?" not in a and "[The Start of the Conversation]\n### User:\nName a fruit." in a
               for a in first)


def test_a_template_may_set_its_own_verdict_pattern(tmp_path, store_url):
    yaml_path = tmp_path / "winner.yaml"
    yaml_path.write_text("user: '{{ question }} / {{ answer_a }} / {{ answer_b }}'\npattern: 'Winner: (A|B|tie)'\n")
    t = Template.load(yaml_path, "pairwise")
    assert (parse_verdict("Winner: B ... no, Winner: tie", "ab", t.pattern), parse_verdict("[[A]]", "ab", t.pattern)
            ) == (("C", 0.5), (None, None))
    assert parse_verdict("Winner: a", "ba", "Winner: ([a-c])") == ("A", 0.0)
    assert t.record["pattern"] == "Winner: (A|B|tie)" and t.sha256 != Template.load(None, "pairwise").sha256
    plain = tmp_path / "rate.j2"
    plain.write_text('{% set pattern = "Score: (\\\\d+)/10" %}Rate {{ answer }} ({{ turn }}).')
    rate = Template.load(plain, "single")
    assert rate.pattern == "Score: (\\d+)/10"
    assert (parse_score("Score: 7/10", rate.pattern), parse_score("Score: 11/10", rate.pattern),
            parse_score("[[7]]", rate.pattern)) == (7.0, None, None)
    with ChatStub() as stub:  # the whole path: the stub answers in the template's own words
        stub.reply = lambda body: "Winner: A"
        engine = db.open_store(store_url)
        seed_minimal(engine, n_examples=2)
        engine.dispose()
        assert main(["judge", "cand", "--judge", "openai:stub-judge", "--base-url", stub.base_url, "--template",
                     str(yaml_path), "--db", store_url]) == 0
    engine = db.open_store(store_url)
    with db.session_factory(engine)() as s:
        rows = [r for r in db.judgments_of_pair(session=s, candidate_id=1, baseline_id=2)
                if r["judge"] == "openai:stub-judge"]
    engine.dispose()
    assert sorted((r["order"], r["verdict"], r["preference"]) for r in rows) == [
        ("ab", "A", 1.0), ("ab", "A", 1.0), ("ba", "A", 0.0), ("ba", "A", 0.0)]


@pytest.mark.parametrize("pattern, message", [("Winner: (A|B", "is not a regular expression"),
                                               ("Winner: [ABC]", "has no group")])
def test_a_bad_pattern_is_refused(tmp_path, pattern, message):
    path = tmp_path / "t.yaml"
    path.write_text(f"user: '{{{{ answer_a }}}} {{{{ answer_b }}}}'\npattern: '{pattern}'\n")
    with pytest.raises(JudgeError, match=message):
        Template.load(path, "pairwise")
