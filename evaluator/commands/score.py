"""``python -m evaluator score RUN``: (re)compute metrics of a stored run, then its aggregates and comparisons.

Works from what the store holds — outputs, token log-probabilities, reference NLLs — and never
generates again. Only metric values that are missing (or stored as errors) are computed, unless
``--force``. The model is loaded only when ``--metric perplexity`` is asked for and some results
with a reference have no stored reference NLL.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Optional

import db
from evaluator.data import rollout_prompts
from evaluator.models import load_backend
from evaluator.scoring import (
    compare_runs,
    finalize_run,
    get_metrics,
    reference_nll,
    score_samples,
    stored_samples,
)
from evaluator.types import reference_of

log = logging.getLogger(__name__)

EPILOG = """\
examples:
  python -m evaluator score 12                          # compute missing built-in metrics of run 12
  python -m evaluator score my-finetune --metric bleu --metric rougeL --force
  python -m evaluator score 12 --metric mypkg.metrics:politeness   # your own @register_metric function
  python -m evaluator score 12 --metric evaluate:./metrics/bertscore#f1   # a local `evaluate` metric
  python -m evaluator score 12 --metric perplexity      # loads the model only for results without ref NLL
  python -m evaluator score 12 --db sqlite:///evals.sqlite --workers 4
"""


def register(sub) -> None:
    p = sub.add_parser("score", help="recompute metrics, aggregates and comparisons of a stored run",
                       description="Recompute metrics of a stored run from its outputs (no generation), "
                                   "then its aggregates and the comparisons it is part of.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="run id or name (the newest run of that name)")
    p.add_argument("--metric", action="append", metavar="NAME",
                   help="metric to compute (repeatable): a built-in name, module:function, or evaluate:PATH[#KEY]; "
                        "default: all built-ins")
    p.add_argument("--force", action="store_true", help="recompute values that are already stored")
    p.add_argument("--db", metavar="URL", help="store URL or SQLite path (default $EVAL_DB_URL)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="scoring processes (default: 1, in this process)")
    p.add_argument("--no-compare", action="store_true", help="do not recompute the run's comparisons")
    p.set_defaults(func=main)


def _needs(spec, sample, stored: dict, force: bool) -> bool:

    if spec.needs_reference and reference_of(sample) is None:
        return False  # not applicable: nothing to store
    if force:
        return True
    value = stored.get(spec.name)
    if value is None:
        return True
    # A metric's own stored failure is retried; a failed generation stays failed.
    return value[0] is None and not sample.error


# Backends that replay or request outputs and have no weights to teacher-force a reference with.
NO_WEIGHTS_BACKENDS = ("outputs", "openai")


def _load_backend(run: dict[str, Any]):

    cfg = dict(run.get("config") or {})
    options = {k: cfg[k] for k in ("device", "dtype", "chat_template", "load_in_4bit", "trust_remote_code",
                                   "batch_size", "max_batch_size", "max_length") if cfg.get(k) is not None}
    return load_backend(cfg.get("model") or run["model"], cfg.get("adapter", run.get("adapter")),
                        backend=cfg.get("backend", "auto"), **options)


def _teacher_force(sf, run: dict[str, Any], samples: list, messages: dict[int, list]) -> int:
    """Compute and store reference NLLs of the given samples with the run's model; returns how many."""

    if run.get("backend") in NO_WEIGHTS_BACKENDS:
        log.warning("run %s was not generated from model weights (backend %r): perplexity of the reference cannot be "
                    "computed for it and stays missing", run["id"], run["backend"])
        return 0
    log.info("loading %s to compute reference log-probabilities of %d results", run["model"], len(samples))
    backend = _load_backend(run)
    try:
        lps = backend.reference_logprobs([messages[s.result_id] for s in samples], [s.reference for s in samples])
    except NotImplementedError:
        log.warning("the %s backend cannot teacher-force references: perplexity stays missing", run["backend"])
        return 0
    finally:
        backend.close()
    stored = {}
    for s, lp in zip(samples, lps):
        s.reference_logprobs = list(lp)
        pair = reference_nll(s)
        if pair is not None:
            s.ref_nll, s.ref_tokens = pair
            stored[s.result_id] = pair
    with sf.begin() as session:
        db.set_reference_nll(session=session, values=stored)
    return len(stored)


def score_run(*, session_factory, run_id: int, metric_names: Optional[list[str]] = None, force: bool = False,
              workers: Optional[int] = None, compare: bool = True) -> dict[str, Any]:
    """The command's work, callable from Python; returns counts for the report."""

    specs = get_metrics(metric_names)
    explicit_ppl = bool(metric_names) and any(s.name == "perplexity" for s in specs)
    with session_factory() as session:
        run = db.get_run(session=session, run_id=run_id)
        rows = db.scoring_inputs(session=session, run_id=run_id, with_logprobs=True, with_messages=explicit_ppl)
        stored = db.run_metric_values(session=session, run_id=run_id, names=[s.name for s in specs])
    samples = stored_samples(rows)
    messages = {r["result_id"]: r.get("messages") or [] for r in rows}
    if explicit_ppl and run["turns"] == "rollout":  # the model was given its own earlier answers
        with session_factory() as session:
            answers = db.conversation_answers(session=session, run_id=run_id)
        messages = {r["result_id"]: p for r, p in zip(rows, rollout_prompts(rows, answers))}

    # Perplexity reads the stored reference NLL; results without one need the model.
    ppl = next((sp for sp in specs if sp.name == "perplexity"), None)
    lacking = [] if ppl is None else [
        s for s in samples
        if not s.error and s.ref_nll is None and _needs(ppl, s, stored.get(s.result_id, {}), force)
    ]
    teacher_forced = 0
    if lacking and explicit_ppl:
        teacher_forced = _teacher_force(session_factory, run, lacking, messages)
    elif lacking:
        log.info("%d results have no stored reference NLL; their perplexity needs the model: "
                 "pass --metric perplexity to compute it", len(lacking))

    groups: dict[tuple[str, ...], list] = {}
    for s in samples:
        todo = tuple(sp.name for sp in specs if _needs(sp, s, stored.get(s.result_id, {}), force))
        if todo:
            groups.setdefault(todo, []).append(s)
    by_name = {sp.name: sp for sp in specs}
    hib = {sp.name: sp.higher_is_better for sp in specs}
    written = 0
    for names, group in groups.items():
        values = score_samples(group, metrics=[by_name[n] for n in names], workers=workers)
        with session_factory.begin() as session:
            written += db.replace_metric_values(session=session, run_id=run_id, only=names, higher_is_better=hib,
                                                values={s.result_id: v for s, v in zip(group, values)})
    finalize_run(session_factory=session_factory, run_id=run_id, workers=workers)
    pairs: list[tuple[int, int]] = []
    if compare:
        with session_factory() as session:
            pairs = db.comparison_partners(session=session, run_id=run_id)
        for a, b in pairs:
            compare_runs(session_factory=session_factory, run_a_id=a, run_b_id=b, workers=workers)
    return dict(run_id=run_id, results=len(samples), values_written=written, teacher_forced=teacher_forced,
                metrics=[sp.name for sp in specs], comparisons=pairs)


def main(args: argparse.Namespace) -> int:

    engine = db.open_store(args.db)
    try:
        sf = db.session_factory(engine)
        with sf() as session:
            run_id = db.find_run(session=session, ref=args.run)
        try:
            report = score_run(session_factory=sf, run_id=run_id, metric_names=args.metric, force=args.force,
                               workers=args.workers, compare=not args.no_compare)
        except ValueError as exc:  # unknown metric, unloadable evaluate metric: one line
            print(f"error: {exc}", file=sys.stderr)
            return 2
    finally:
        engine.dispose()
    comps = ", ".join(f"{a} vs {b}" for a, b in report["comparisons"]) or "none"
    print(f"run {run_id}: {report['values_written']} metric values written over {report['results']} results "
          f"({', '.join(report['metrics'])}); aggregates updated; comparisons updated: {comps}")
    if report["teacher_forced"]:
        print(f"reference log-probabilities computed for {report['teacher_forced']} results")
    return 0
