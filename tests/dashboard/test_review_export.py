"""Agreement statistics against hand-computed values, and decision-log exports with hostile strings."""
from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest

from dashboard import _review as review
from tests.support.dashboard_seed import HOSTILE

P, F = "pass", "fail: model error"


def _v(example_id, reviewer, verdict, run_id=1):
    return dict(run_id=run_id, example_id=example_id, reviewer=reviewer, verdict=verdict)


def test_cohen_kappa_of_two_reviewers():
    # p_o = 3/4; A passes 1/2, B 1/4 -> p_e = 1/2 * 1/4 + 1/2 * 3/4 = 1/2; kappa = (3/4 - 1/2) / (1/2) = 1/2
    assert review.cohen_kappa([(P, P), (P, F), (F, F), (F, F)]) == pytest.approx(0.5)
    assert review.cohen_kappa([(P, P), (P, P)]) is None  # p_e = 1: undefined
    assert review.cohen_kappa([]) is None


def test_fleiss_kappa_of_three_reviewers():
    # P_i = 1, 1/3, 1 -> P = 7/9; p_pass = 5/9, p_fail = 4/9 -> P_e = 41/81; kappa = (7/9 - 41/81) / (40/81) = 0.55
    assert review.fleiss_kappa([[P, P, P], [P, P, F], [F, F, F]]) == pytest.approx(0.55)
    assert review.fleiss_kappa([[P]]) is None


def test_agreement_says_which_kappa_and_the_unanimous_share():
    two = [_v(1, "a", P), _v(1, "b", P), _v(2, "a", P), _v(2, "b", F), _v(3, "a", F), _v(3, "b", F),
           _v(4, "a", F), _v(4, "b", F), _v(5, "a", P)]
    a = review.agreement(two)
    assert (a["examples"], a["overlapping"], a["unanimous"]) == (5, 4, 3)
    assert a["unanimous_share"] == pytest.approx(0.75)
    assert a["kappa_kind"] == "Cohen's kappa" and a["kappa"] == pytest.approx(0.5) and a["kappa_n"] == 4
    three = [_v(1, r, P) for r in "abc"] + [_v(2, "a", P), _v(2, "b", P), _v(2, "c", F)] + [_v(3, r, F) for r in "abc"]
    b = review.agreement(three)
    assert b["kappa_kind"] == "Fleiss' kappa" and b["kappa"] == pytest.approx(0.55)
    assert [(p["a"], p["b"], p["n"]) for p in b["pairwise"]] == [("a", "b", 3), ("a", "c", 3), ("b", "c", 3)]
    alone = review.agreement([_v(1, "a", P), _v(2, "b", F)])
    assert alone["kappa_kind"] is None and alone["unanimous_share"] is None


def test_verdict_table_has_a_column_per_reviewer():
    rows = review.verdict_table([_v(1, "ann", P), _v(1, "bo", F), _v(2, "ann", P)], {1: "k1", 2: "k2"})
    assert rows == [dict(example_id=1, key="k1", ann=P, bo=F, unanimous=False),
                    dict(example_id=2, key="k2", ann=P, bo="", unanimous=None)]


def _log():
    when = dt.datetime(2026, 3, 2, 9, 30, 5)
    rows = []
    for i, text in enumerate(HOSTILE):
        rows.append(dict(annotation_id=i, created_at=when, reviewer=f"rev|{i}", verdict=P if i % 2 else F,
                         comment=text, run_id=5, run_name="acme <v3>", example_id=100 + i, key=f"k{i}",
                         row_index=i, category="<i>weird</i> & co", latest=i != 0))
    rows.append(dict(annotation_id=99, created_at=when, reviewer="=cmd|' /C calc'!A0", verdict=P,
                     comment="line one\nline two | with pipe", run_id=5, run_name="r", example_id=7, key="k7",
                     row_index=7, category=None, latest=True))
    return rows


def test_example_links_use_the_browser_page_and_a_safe_base_url(monkeypatch):
    monkeypatch.delenv(review.BASE_URL_ENV, raising=False)
    assert review.example_link("", 5, 42) == "http://localhost:8501/browser?run=5&ex=42"
    assert review.example_link("https://eval.example.com/dash/", 5, 42) == \
        "https://eval.example.com/dash/browser?run=5&ex=42"
    assert review.base_url("javascript:alert(1)") == "http://localhost:8501"
    assert review.base_url("http://a b") == "http://localhost:8501"
    monkeypatch.setenv(review.BASE_URL_ENV, "https://team.example.org")
    assert review.base_url(None) == "https://team.example.org"
    assert review.relative_link("browser", {"run": 3, "category": "<i>x</i> & y", "failure": None}) == \
        "browser?run=3&category=%3Ci%3Ex%3C%2Fi%3E+%26+y"


def test_links_for_a_whole_table_equal_one_link_each():
    base = {"metric": "rougeL", "thr": 0.5, "dataset": 2, "empty": "", "none": None}
    keys = ["a b", "x&y=z", "ключ", "<i>"]
    assert review.relative_links("history", base, "key", keys) == \
        [review.relative_link("history", {**base, "key": k}) for k in keys]
    assert review.relative_links("browser", {}, "ex", [1, 2]) == ["browser?ex=1", "browser?ex=2"]


def test_csv_export_keeps_every_string_and_defuses_formulas():
    data = review.decision_log_csv(_log(), "https://eval.example.com")
    assert data.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert [r["comment"] for r in rows[:-1]] == HOSTILE
    assert rows[-1]["comment"] == "line one\nline two | with pipe"
    assert rows[-1]["reviewer"] == "'=cmd|' /C calc'!A0"  # a spreadsheet shows it, never runs it
    assert rows[0]["link"] == "https://eval.example.com/browser?run=5&ex=100"
    assert rows[0]["current"].startswith("no") and rows[1]["current"] == "yes"
    assert list(rows[0]) == list(review.EXPORT_COLUMNS)


def test_markdown_export_is_one_inert_table_row_per_verdict():
    text = review.decision_log_markdown(_log(), None, title="v3 <support> | meeting",
                                        agreement_summary=dict(overlapping=4, unanimous=3, unanimous_share=0.75,
                                                               kappa_kind="Cohen's kappa", kappa=0.5, kappa_n=4))
    assert text.startswith("# Decision log: v3 &lt;support&gt; \\| meeting\n")
    assert "<" not in text.replace("<br>", "")  # no raw HTML anywhere
    assert "Cohen's kappa: 0.50 on 4 examples" in text and "(75%)" in text
    table = [line for line in text.splitlines() if line.startswith("| ") and "](http" in line]
    assert len(table) == len(_log())
    for line in table:  # every cell boundary is an unescaped pipe: 9 cells per row
        assert len(re.split(r"(?<!\\)\|", line)) == 9 + 2
    assert "\\[click me\\](javascript:alert(1))" in text  # a link in data stays text
    assert "[open](http://localhost:8501/browser?run=5&ex=100)" in text
    assert "line one line two \\| with pipe" in text


def test_without_a_setting_links_use_the_address_the_page_was_opened_at(monkeypatch):
    monkeypatch.delenv(review.BASE_URL_ENV, raising=False)
    assert review.base_url(page_url="https://evals.acme.dev/team/review?view=q&pos=3") == "https://evals.acme.dev/team"
    assert review.base_url(page_url="http://10.0.0.7:8501/review") == "http://10.0.0.7:8501"
    assert review.base_url(page_url=None) == review.DEFAULT_BASE_URL  # no request known: the local default
    monkeypatch.setenv(review.BASE_URL_ENV, "https://set.by.admin")
    assert review.base_url(page_url="http://10.0.0.7:8501/review") == "https://set.by.admin"  # the setting wins
