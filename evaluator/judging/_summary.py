"""The figures of one pair of runs' judgments, one summary per judge config: what ``compare --json`` lists
under ``"judgments"`` and the dashboard shows beside the metric deltas."""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping, Optional

from evaluator.judging._stats import (
    bradley_terry,
    combine_orders,
    judge_human_agreement,
    length_controlled_win_rate,
    position_consistency,
    win_rate,
)
from evaluator.scoring._stats import mean_ci


def example_preferences(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per example of one judge config: the combined preference (None when every order it was judged
    in failed), whether the orders agreed (None unless both were judged and parsed), both answers' lengths."""
    by_example: dict[int, dict[str, Any]] = {}
    for r in rows:
        e = by_example.setdefault(r["example_id"], {"example_id": r["example_id"], "orders": {},
                                                    "candidate_length": r.get("candidate_length"),
                                                    "baseline_length": r.get("baseline_length")})
        e["orders"][r["order"]] = r["preference"]
    out = []
    for e in by_example.values():
        orders = e.pop("orders")
        preference, consistent = combine_orders(orders.get("ab"), orders.get("ba"))
        out.append({**e, "preference": preference, "consistent": consistent,
                    "failures": sum(p is None for p in orders.values())})
    return out


def _per_pair(rows: Iterable[Mapping[str, Any]]) -> list[tuple[list[Mapping[str, Any]], list[dict[str, Any]]]]:
    """Judgments grouped by judge config and pair of runs, each group with its ``example_preferences``."""
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["judge_key"], r.get("candidate_id"), r["baseline_id"])].append(r)
    return [(group, example_preferences(group)) for group in groups.values()]


def summarize(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``db.judgments_of_pair`` rows -> one dict per judge config with judge, mode, judge_key, n (examples with
    a preference), wins, ties, losses, win_rate, standard_error, ci_low, ci_high (percent), position_consistency,
    lc_win_rate (with lc_ci_low, lc_ci_high) and failures (judgments whose reply could not be parsed)."""
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["judge_key"]].append(r)
    out = []
    for key, group in groups.items():
        examples = example_preferences(group)
        judged = [e for e in examples if e["preference"] is not None]
        wr = win_rate(e["preference"] for e in judged)
        lc: dict[str, Optional[float]] = {"lc_win_rate": None, "ci_low": None, "ci_high": None}
        if judged and all(e["baseline_length"] is not None for e in judged):
            lc = length_controlled_win_rate([e["preference"] for e in judged],
                                            [e["candidate_length"] for e in judged],
                                            [e["baseline_length"] for e in judged])
        out.append({"judge": group[0]["judge"], "mode": group[0]["mode"], "judge_key": key,
                    **{k: wr[k] for k in ("n", "wins", "ties", "losses", "win_rate", "standard_error",
                                          "ci_low", "ci_high")},
                    "position_consistency": position_consistency(e["consistent"] for e in examples),
                    "lc_win_rate": lc["lc_win_rate"], "lc_ci_low": lc["ci_low"], "lc_ci_high": lc["ci_high"],
                    "failures": sum(e["failures"] for e in examples)})
    return sorted(out, key=lambda s: (s["judge"], s["mode"], s["judge_key"]))


HUMAN_PASS, HUMAN_FAIL = "pass", "fail: model error"


def human_pass_fail(verdicts: Iterable[Mapping[str, Any]]) -> dict[int, bool]:
    """example id -> whether the reviewers pass the answer: the majority of the latest verdicts that judge the
    answer itself ("pass" against "fail: model error"; a wrong reference, a misleading metric or "needs
    discussion" say nothing of it). A tie between reviewers leaves the example out."""
    votes: dict[int, list[bool]] = defaultdict(list)
    for v in verdicts:
        if v["verdict"] in (HUMAN_PASS, HUMAN_FAIL):
            votes[int(v["example_id"])].append(v["verdict"] == HUMAN_PASS)
    return {e: sum(b) > len(b) / 2 for e, b in votes.items() if sum(b) * 2 != len(b)}


def judge_agreement(judgments: Iterable[Mapping[str, Any]], verdicts: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per judge config and baseline: how the judge's verdicts on a run's answers agree with its reviewers'. The judge
    passes an answer when it prefers it to the baseline's (combined preference above 0.5). Each item: judge, mode,
    judge_key, baseline_id, and ``evaluator.judging.judge_human_agreement``'s n, kappa, confusion,
    judge_passes_human_fails; only judges that share an example with the reviewers."""
    human = human_pass_fail(verdicts)
    out = []
    for rows, examples in _per_pair(judgments):
        pairs = [(e["preference"] > 0.5, human[e["example_id"]]) for e in examples
                 if e["preference"] is not None and e["example_id"] in human]
        if pairs:
            agreement = judge_human_agreement([p for p, _ in pairs], [h for _, h in pairs])
            out.append({"judge": rows[0]["judge"], "mode": rows[0]["mode"], "judge_key": rows[0]["judge_key"],
                        "baseline_id": rows[0]["baseline_id"], **agreement})
    return sorted(out, key=lambda a: (a["judge"], a["baseline_id"] or 0))


def ratings(judgments: Iterable[Mapping[str, Any]], names: Mapping[int, str]) -> dict[str, Any]:
    """Bradley–Terry ratings of the runs in ``judgments`` (``db.judgments_on_dataset`` rows), one table per judge
    (judges differ, so their verdicts are not pooled): {judge: DataFrame of run_id, run, rating, ci_low, ci_high,
    n}}. Each example of each pair counts once, its two orders averaged; a judge needs two runs to rate."""
    by_judge: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for j in judgments:
        by_judge[j["judge"]].append(j)
    out = {}
    for judge, rows in sorted(by_judge.items()):
        games = [(str(group[0]["candidate_id"]), str(group[0]["baseline_id"]), e["preference"])
                 for group, examples in _per_pair(rows) for e in examples if e["preference"] is not None]
        if len({m for c, b, _ in games for m in (c, b)}) < 2:
            continue
        table = bradley_terry(games)
        table.insert(0, "run_id", table.pop("model").astype(int))
        table.insert(1, "run", [names.get(i, f"#{i}") for i in table["run_id"]])
        out[judge] = table
    return out


def score_summary(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Single-answer grading: one dict per judge config with judge, mode, judge_key, n (rated answers),
    mean_score with ci_low, ci_high (95% BCa over examples, as for metric means) and failures."""
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["mode"] == "single":
            groups[r["judge_key"]].append(r)
    out = []
    for key, group in groups.items():
        scores = [float(r["score"]) for r in group if r["score"] is not None]
        mean, low, high = mean_ci(scores) if scores else (None, None, None)
        out.append({"judge": group[0]["judge"], "mode": "single", "judge_key": key, "n": len(scores),
                    "mean_score": mean, "ci_low": low, "ci_high": high, "failures": len(group) - len(scores)})
    return sorted(out, key=lambda s: (s["judge"], s["judge_key"]))


def judge_metric_disagreements(rows: Iterable[Mapping[str, Any]], *, threshold: float,
                               higher_is_better: bool) -> list[dict[str, Any]]:
    """``db.judged_metric_values`` rows -> the examples where a judge and the metric's pass rule disagree on the
    candidate's answer: the judge prefers it to the baseline's (combined preference above 0.5) while the metric
    fails it, or prefers the baseline's (below 0.5) while the metric passes it. Ties and examples without a value
    are left out. Each item: judge, baseline_id, example_id, preference, value, judge_says ("better"/"worse")."""
    rows = list(rows)
    values = {int(r["example_id"]): r["value"] for r in rows}
    out = []
    for group, examples in _per_pair(rows):
        baseline = group[0]["baseline_id"]
        for e in examples:
            p, v = e["preference"], values.get(int(e["example_id"]))
            if p is None or p == 0.5 or v is None:
                continue
            passes = v >= threshold if higher_is_better else v <= threshold
            if (p > 0.5) != passes:
                out.append({"judge": group[0]["judge"], "baseline_id": baseline, "example_id": e["example_id"],
                            "preference": p, "value": v, "judge_says": "better" if p > 0.5 else "worse"})
    return sorted(out, key=lambda d: (d["judge"], -abs(d["preference"] - 0.5), d["example_id"]))
