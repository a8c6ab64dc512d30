"""``python -m evaluator compare RUN_A RUN_B``: candidate A against baseline B, metric by metric.

Reads the stored comparison; computes and stores it first when there is none (or with ``--recompute``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from typing import Any, Optional

import db
from evaluator.judging import summarize
from evaluator.scoring import compare_runs, get_spec

EPILOG = """\
examples:
  python -m evaluator compare 12 11                     # run 12 (candidate) vs run 11 (baseline)
  python -m evaluator compare my-finetune base-model --slices   # also per category and tag
  python -m evaluator compare 12 11 --json | jq '.rows[] | select(.p_holm < 0.05)'
  python -m evaluator compare 12 11 --recompute --db sqlite:///evals.sqlite

columns: A and B are the means over the examples both runs have (corpus value for kind "corpus"),
delta = A - B with its paired-bootstrap 95% CI, p a two-sided paired bootstrap p-value, p_holm the
Holm-adjusted p across the metrics of the slice, W/T/L the examples where A is better / equal / worse
(for perplexity, lower is better).
"""


def register(sub) -> None:
    p = sub.add_parser("compare", help="compare a candidate run with a baseline run",
                       description="Compare candidate RUN_A with baseline RUN_B on the examples both have: "
                                   "mean difference with paired-bootstrap CI, p-values with Holm correction, "
                                   "wins/ties/losses; corpus BLEU/chrF with sacrebleu's paired bootstrap.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_a", metavar="RUN_A", help="candidate: run id or name")
    p.add_argument("run_b", metavar="RUN_B", help="baseline: run id or name")
    p.add_argument("--json", action="store_true", help="print {run_a, run_b, rows: [...]} as JSON")
    p.add_argument("--slices", action="store_true", help="also print the per-category and per-tag rows")
    p.add_argument("--recompute", action="store_true", help="recompute even if a stored comparison exists")
    p.add_argument("--db", metavar="URL", help="store URL or SQLite path (default $EVAL_DB_URL)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes for corpus statistics (default: 1)")
    p.set_defaults(func=main)


def _fmt(x: Optional[float]) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.3g}"
    return f"{x:.4g}" if abs(x) < 100 else f"{x:.1f}"


def _p(x: Optional[float]) -> str:
    if x is None:
        return "-"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def table(rows: list[dict[str, Any]], *, slices: bool) -> str:
    header = ["slice", "metric", "kind", "n", "A", "B", "delta", "95% CI", "p", "p_holm", "W/T/L"]
    lines = []
    for r in rows:
        if r.get("slice") and not slices:
            continue
        hib = r.get("higher_is_better", True)
        wtl = f"{r['wins']}/{r['ties']}/{r['losses']}" if r["kind"] == "mean" and (r["wins"] or r["ties"] or r["losses"]) else "-"
        ci = f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]" if r.get("ci_low") is not None else "-"
        metric = r["metric"] + (" (lower better)" if hib is False else "")
        lines.append([r.get("slice") or "all", metric, r["kind"], str(r["n"]), _fmt(r["value_a"]), _fmt(r["value_b"]),
                      _fmt(r["delta"]), ci, _p(r["p_value"]), _p(r.get("p_holm")), wtl])
    if not lines:
        return "no metrics in common"
    cols = [header] + lines
    widths = [max(len(row[i]) for row in cols) for i in range(len(header))]
    if not slices:
        cols = [row[1:] for row in cols]
        widths = widths[1:]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cols)


def judgment_line(j: dict[str, Any]) -> str:
    """One judge's verdict on A against B, in words and figures."""
    if j["win_rate"] is None:
        return f"  judge {j['judge']} ({j['mode']}): no parsed verdict ({j['failures']} failures)"
    ci = f" [{_fmt(j['ci_low'])}, {_fmt(j['ci_high'])}]" if j["ci_low"] is not None else ""
    lc = f", length-controlled {_fmt(j['lc_win_rate'])}%" if j["lc_win_rate"] is not None else ""
    pc = (f", position consistency {100 * j['position_consistency']:.0f}%"
          if j["position_consistency"] is not None else "")
    return (f"  judge {j['judge']} ({j['mode']}): A wins {_fmt(j['win_rate'])}%{ci} ± {_fmt(j['standard_error'])} "
            f"over {j['n']} examples ({j['wins']} / {j['ties']} / {j['losses']} W/T/L){lc}{pc}; "
            f"{j['failures']} judge failures")


def score_line(j: dict[str, Any]) -> str:
    """One judge's single-answer ratings of a run."""
    if j["mean_score"] is None:
        return f"  judge {j['judge']} (single): no rating parsed ({j['failures']} failures)"
    ci = f" [{_fmt(j['ci_low'])}, {_fmt(j['ci_high'])}]" if j["ci_low"] is not None else ""
    return (f"  judge {j['judge']} (single): mean rating {_fmt(j['mean_score'])}{ci} out of 10 over {j['n']} answers; "
            f"{j['failures']} judge failures")


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return str(value)


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def main(args: argparse.Namespace) -> int:

    engine = db.open_store(args.db)
    try:
        sf = db.session_factory(engine)
        with sf() as session:
            a = db.find_run(session=session, ref=args.run_a)
            b = db.find_run(session=session, ref=args.run_b)
            run_a, run_b = db.get_run(session=session, run_id=a), db.get_run(session=session, run_id=b)
            rows = [] if args.recompute else db.stored_comparisons(session=session, run_a_id=a, run_b_id=b)
            directions = db.metric_info(session=session)
            judgments = summarize(db.judgments_of_pair(session=session, candidate_id=a, baseline_id=b))
        if a == b:
            print("error: RUN_A and RUN_B are the same run", file=sys.stderr)
            return 2
        if not rows:

            rows = compare_runs(session_factory=sf, run_a_id=a, run_b_id=b, workers=args.workers)
    finally:
        engine.dispose()

    for r in rows:
        if "higher_is_better" not in r:
            spec = get_spec(r["metric"])
            r["higher_is_better"] = spec.higher_is_better if spec is not None else directions.get(r["metric"])
    if args.json:
        out = {"run_a": {k: run_a.get(k) for k in ("id", "name", "model", "adapter")},
               "run_b": {k: run_b.get(k) for k in ("id", "name", "model", "adapter")},
               "rows": [{k: _clean(v) for k, v in r.items() if k not in ("run_a_id", "run_b_id")} for r in rows],
               "judgments": [{k: _clean(v) for k, v in j.items()} for j in judgments]}
        print(json.dumps(out, default=_json_default, ensure_ascii=False))
        return 0
    print(f"A: run {a} {run_a.get('name')!s}   vs   B: run {b} {run_b.get('name')!s}")
    if rows:
        print(table(rows, slices=args.slices))
    else:
        print("no examples with metric values in common")
    for m in sorted({r["method"] for r in rows if r.get("method")}):
        print(f"  method: {m}")
    if judgments:
        print("judgments (A against B):")
    for j in judgments:
        print(judgment_line(j))
    return 0
