"""Candidate run A against baseline run B, on the examples both have, overall and per slice.

Per metric both runs have (kind ``"mean"``): means of A and B over the examples where both have a
value, the mean paired difference A − B with a paired-bootstrap 95% CI and a two-sided paired
bootstrap p-value, and wins/ties/losses — per example, "win" means A is *better*, which for a
lower-is-better metric such as perplexity means A's value is smaller. Metrics without a better
direction (output_tokens, length_ratio) get no wins/ties/losses (all 0).

Corpus metrics (kind ``"corpus"``: BLEU, chrF, token-weighted perplexity) use sacrebleu's paired
bootstrap on the corpus value (see ``_stats.py``).

``p_holm`` is the Holm-adjusted p-value across all rows of the same slice (every metric and kind
compared there), so "p_holm < 0.05" can be read per row without inflating false positives.
"""
from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import db
from evaluator.scoring._aggregate import Values, _finite, ordered_metrics
from evaluator.scoring._catalogue import get_spec
from evaluator.scoring._stats import (
    N_RESAMPLES,
    P_RESAMPLED,
    PAIRED_CORPUS_METHOD,
    PAIRED_MEAN_METHOD,
    holm,
    paired_corpus_test,
    paired_mean_test,
    wins_ties_losses,
)
from evaluator.scoring._store import (
    StoredSample,
    corpus_eligible,
    corpus_stats,
    slice_members,
    stored_samples,
)

log = logging.getLogger(__name__)



def _p_note(test: dict) -> str:
    """"; p from 20000 resamples (none of 1000 was as extreme)" when the p-value needed more resamples."""
    used = test.get("p_resamples")
    return f"; {P_RESAMPLED.format(used, N_RESAMPLES)}" if used and used > N_RESAMPLES else ""

def comparison_rows(samples_a: Sequence[StoredSample], values_a: Values, samples_b: Sequence[StoredSample],
                    values_b: Values, *, directions: Optional[dict[str, Optional[bool]]] = None,
                    workers: Optional[int] = None) -> list[dict[str, Any]]:
    """Comparison rows (the dicts ``db.replace_comparisons`` takes, plus ``higher_is_better``)."""
    by_example_b = {s.example_id: s for s in samples_b}
    pairs = [(a, by_example_b[a.example_id]) for a in samples_a if a.example_id in by_example_b]
    if not pairs:
        return []
    pa = [a for a, _ in pairs]
    pb = [b for _, b in pairs]
    names_a = {n for per in values_a.values() for n in per}
    names_b = {n for per in values_b.values() for n in per}
    names = ordered_metrics(names_a & names_b)

    def direction(name: str) -> Optional[bool]:
        spec = get_spec(name)
        if spec is not None:
            return spec.higher_is_better
        return (directions or {}).get(name, True)

    corpus = {}
    for name in names:
        spec = get_spec(name)
        if spec is None or spec.corpus is None:
            continue
        eligible = [i for i in range(len(pairs)) if corpus_eligible(spec, pa[i]) and corpus_eligible(spec, pb[i])]
        if not eligible:
            continue
        # Statistics of each run's eligible examples (memoised per example while scoring, see
        # _text.segment_stats), then the rows of the paired examples.
        stats_a, pos_a = _run_stats(spec, samples_a, workers)
        stats_b, pos_b = _run_stats(spec, samples_b, workers)
        rows_a = [pos_a[pa[i].result_id] for i in eligible]
        rows_b = [pos_b[pb[i].result_id] for i in eligible]
        corpus[name] = (spec, eligible, stats_a[rows_a], stats_b[rows_b])

    out: list[dict[str, Any]] = []
    for slice_name, members in slice_members(pa).items():
        rows: list[dict[str, Any]] = []
        member_set = set(members)
        for name in names:
            hib = direction(name)
            xa, xb = [], []
            for i in members:
                va = values_a.get(pa[i].result_id, {}).get(name)
                vb = values_b.get(pb[i].result_id, {}).get(name)
                if va is not None and vb is not None and va[0] is not None and vb[0] is not None:
                    xa.append(va[0])
                    xb.append(vb[0])
            if xa:
                test = paired_mean_test(xa, xb)
                wins, ties, losses = wins_ties_losses(xa, xb, hib)
                method = PAIRED_MEAN_METHOD + _p_note(test) + ("" if hib is not None else
                                                               "; no better direction: wins/ties/losses not counted")
                rows.append(dict(metric=name, slice=slice_name, kind="mean", n=len(xa),
                                 value_a=_finite(sum(xa) / len(xa)), value_b=_finite(sum(xb) / len(xb)),
                                 delta=_finite(test["delta"]), ci_low=test["ci_low"], ci_high=test["ci_high"],
                                 p_value=test["p_value"], wins=wins, ties=ties, losses=losses, method=method,
                                 higher_is_better=hib))
            if name in corpus:
                spec, eligible, sa, sb = corpus[name]
                sel = [k for k, i in enumerate(eligible) if i in member_set]
                if sel:
                    test = paired_corpus_test(sa[sel], sb[sel], spec.corpus.score, dtype=spec.corpus.bootstrap_dtype)
                    rows.append(dict(metric=name, slice=slice_name, kind="corpus", n=len(sel),
                                     value_a=_finite(test["value_a"]), value_b=_finite(test["value_b"]),
                                     delta=_finite(test["delta"]), ci_low=test["ci_low"], ci_high=test["ci_high"],
                                     p_value=test["p_value"], wins=0, ties=0, losses=0,
                                     method=f"{PAIRED_CORPUS_METHOD}{_p_note(test)}; {spec.corpus.description}",
                                     higher_is_better=hib))
        for row, adjusted in zip(rows, holm([r["p_value"] for r in rows])):
            row["p_holm"] = adjusted
        out.extend(rows)
    return out


def _run_stats(spec, samples: Sequence[StoredSample], workers: Optional[int]):
    eligible = [s for s in samples if corpus_eligible(spec, s)]
    stats = corpus_stats(spec, eligible, workers)
    return stats, {s.result_id: k for k, s in enumerate(eligible)}


def compare_runs(*, session_factory, run_a_id: int, run_b_id: int, workers: Optional[int] = None) -> list[dict]:
    """Compute, store (replacing) and return the comparison of candidate A with baseline B."""
    with session_factory() as session:
        samples_a = stored_samples(db.scoring_inputs(session=session, run_id=run_a_id))
        samples_b = stored_samples(db.scoring_inputs(session=session, run_id=run_b_id))
        values_a = db.run_metric_values(session=session, run_id=run_a_id)
        values_b = db.run_metric_values(session=session, run_id=run_b_id)
        directions = db.metric_info(session=session)
    rows = comparison_rows(samples_a, values_a, samples_b, values_b, directions=directions, workers=workers)
    if not rows:
        log.warning("runs %d and %d have no examples with metric values in common", run_a_id, run_b_id)
    with session_factory.begin() as session:
        db.replace_comparisons(session=session, run_a_id=run_a_id, run_b_id=run_b_id, rows=rows)
    return [dict(r, run_a_id=run_a_id, run_b_id=run_b_id) for r in rows]
