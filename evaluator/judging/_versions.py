"""One Bradley–Terry rating per version from every kind of pairwise preference in the store: blind votes in the
Arena, LLM judges' pairwise judgments, and reviewers' verdicts on the same example of two runs.

A version is a name: a run's name for judgments and verdicts, the model id an endpoint was asked for in the
Arena. Serving each version under its run's name (as the demo does) makes both sources rate the same version."""
from __future__ import annotations

from collections import defaultdict
from itertools import combinations
from typing import Any, Iterable, Mapping

import pandas as pd

from evaluator.judging._stats import bradley_terry
from evaluator.judging._summary import _per_pair

# A reviewer's verdict that says which answer was good: "pass" beats "fail: model error". The other verdicts are
# about the reference or the metric, not the answer, and say nothing about the version.
VERDICT_WINS = {"pass": 1.0, "fail: model error": 0.0}
SOURCES = ("arena", "judges", "reviewers")


def arena_games(votes: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, float]]:
    """``db.arena_votes`` rows -> (model_a, model_b, preference for a); a vote between a model and itself is
    dropped (it says nothing about versions)."""
    return [(v["model_a"], v["model_b"], float(v["preference"])) for v in votes if v["model_a"] != v["model_b"]]


def judge_games(judgments: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, float]]:
    """``db.judge_preferences`` rows -> one game per example of each (judge config, pair of runs), its two
    orders averaged (as the per-judge ratings count them)."""
    rows = list(judgments)
    names = {}
    for r in rows:
        names[r["candidate_id"]], names[r["baseline_id"]] = r["candidate"], r["baseline"]
    return [(names[group[0]["candidate_id"]], names[group[0]["baseline_id"]], e["preference"])
            for group, examples in _per_pair(rows) for e in examples if e["preference"] is not None]


def reviewer_games(verdicts: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, float]]:
    """``db.reviewer_verdicts`` rows -> a game for each two runs one reviewer judged on the same example, both
    with "pass" or "fail: model error": 1 or 0 when they differ, 0.5 when they agree."""
    seen: dict[tuple[str, int], list[Mapping[str, Any]]] = defaultdict(list)
    for v in verdicts:
        if v["verdict"] in VERDICT_WINS:
            seen[(v["reviewer"], v["example_id"])].append(v)
    games = []
    for group in seen.values():
        for x, y in combinations(sorted(group, key=lambda v: v["run_id"]), 2):
            wx, wy = VERDICT_WINS[x["verdict"]], VERDICT_WINS[y["verdict"]]
            games.append((x["run"], y["run"], 0.5 if wx == wy else float(wx > wy)))
    return games


def version_ratings(votes: Iterable[Mapping[str, Any]], judgments: Iterable[Mapping[str, Any]] = (),
                    verdicts: Iterable[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """Bradley–Terry ratings (Elo scale, 95% CIs; ``bradley_terry``) of every version from all three sources
    pooled, with the games each version played per source (``arena``, ``judges``, ``reviewers``). Empty when
    fewer than two versions met."""
    by_source = {"arena": arena_games(votes), "judges": judge_games(judgments), "reviewers": reviewer_games(verdicts)}
    games = [g for source in SOURCES for g in by_source[source]]
    if len({m for a, b, _ in games for m in (a, b) if a != b}) < 2:
        return pd.DataFrame(columns=["version", "rating", "ci_low", "ci_high", "n", *SOURCES, "smoothed"])
    table = bradley_terry(games).rename(columns={"model": "version"})
    for source in SOURCES:
        played = defaultdict(int)
        for a, b, _ in by_source[source]:
            if a != b:
                played[a] += 1
                played[b] += 1
        table[source] = [played[v] for v in table["version"]]
    return table
