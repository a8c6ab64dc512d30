"""Import judgments made elsewhere: ``python -m evaluator import_judgments FILE --format alpaca_eval``.

AlpacaEval's ``annotations.json`` is a JSON list of records with ``instruction``, ``output_1``, ``generator_1``,
``output_2``, ``generator_2``, ``annotator`` and ``preference`` (1: output_1 better, 2: output_2 better, 1.5 a
draw, 0 a draw in older files, weighted annotators in between, null: not judged). Each (generator_1,
generator_2) pair becomes two runs on one dataset (``alpaca_eval``, or ``--dataset-name``): generator_2 the
candidate, generator_1 its baseline, as AlpacaEval compares a model (output_2) against its reference
(output_1). A run of that name on that dataset that already answers every instruction is matched instead of
created. Each annotator is a judge; its judgments are stored in the order AlpacaEval shows the answers
(output_1 first: the baseline, order "ba"), with the candidate's preference ``preference - 1``.

Stored that way, ``compare CANDIDATE BASELINE --json`` reports AlpacaEval's own win rate and standard error
(100 × mean, 100 × standard error of the mean of ``preference - 1`` over the judged records). Records that cannot
be read are listed with the reason and stored as the candidate run's rejected rows; a re-import adds nothing.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import db
from evaluator.data import example_key
from evaluator.errors import UserError
from evaluator.judging import alpaca_eval_preference, summarize
from evaluator.scoring import finalize_run
from evaluator.types import Rejected

FORMATS = ("alpaca_eval",)
REQUIRED = ("instruction", "output_1", "generator_1", "output_2", "generator_2")


class JudgmentFileError(UserError, ValueError):
    """The file as a whole cannot be imported; the message says why."""


@dataclass
class Record:
    index: int
    instruction: str
    outputs: tuple[str, str]  # (output_1: the baseline's, output_2: the candidate's)
    generators: tuple[str, str]
    annotator: str
    preference: Optional[float]  # the candidate's, in [0, 1]; None: not judged


@dataclass
class PairSummary:
    candidate_id: int
    baseline_id: int
    candidate: str
    baseline: str
    created: list[str]
    new_judgments: int
    not_judged: int
    judgments: list[dict[str, Any]] = field(default_factory=list)


def _raw(rec: Any) -> str:
    return json.dumps(rec, ensure_ascii=False)[:500]


def read_alpaca_eval(path: Path) -> tuple[list[Record], list[Rejected]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JudgmentFileError(f"{path} is not a JSON file: {exc}") from None
    if not isinstance(data, list):
        raise JudgmentFileError(f"{path}: AlpacaEval annotations are a JSON list of records, not {type(data).__name__}")
    records, rejected = [], []
    for i, rec in enumerate(data):
        missing = [k for k in REQUIRED if not isinstance(rec, dict) or not isinstance(rec.get(k), str)]
        if missing:
            rejected.append(Rejected(i, f"record {i}: no text in {', '.join(missing)}", _raw(rec)))
            continue
        try:
            value = rec.get("preference")
            preference = alpaca_eval_preference(None if value is None else float(value))
        except (TypeError, ValueError) as exc:
            rejected.append(Rejected(i, f"record {i}: preference {rec.get('preference')!r}: {exc}", _raw(rec)))
            continue
        records.append(Record(i, rec["instruction"], (rec["output_1"], rec["output_2"]),
                              (rec["generator_1"], rec["generator_2"]), str(rec.get("annotator") or "unknown"),
                              preference))
    return records, rejected


def imported_run(session, *, name: str, dataset_id: int, outputs: dict[int, str], file: str,
                 format: str = "alpaca_eval") -> tuple[int, bool]:
    """(run, created): the run named ``name`` on this dataset that answers every example, else a new one with
    these outputs (``finish_imported`` finishes it once the transaction is in)."""
    try:
        found = db.find_run(session=session, ref=name)
    except db.StoreError:
        found = None
    if found is not None and db.get_run(session=session, run_id=found)["dataset_id"] == dataset_id \
            and set(outputs) <= db.done_example_ids(session=session, run_id=found):
        return found, False
    run_id = db.create_run(session=session, name=name, model=name, backend=f"import:{format}", dataset_id=dataset_id,
                           config={"import": {"format": format, "file": file}},
                           n_rows=len(outputs), n_examples=len(outputs), n_rejected=0)
    db.insert_results(session=session, run_id=run_id, results=[
        dict(example_id=e, output=o, finish_reason="stop", output_tokens=0, prompt_tokens=0, metrics={})
        for e, o in outputs.items()])
    return run_id, True


def _judgments(records: list[Record], cand: int, base: int, ids: dict[str, int]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        if r.preference is None:
            continue
        config = {"judge": r.annotator, "mode": "pairwise", "import": "alpaca_eval"}
        out.append(dict(candidate_id=cand, baseline_id=base, example_id=ids[r.instruction], order="ba",
                        judge=r.annotator, mode="pairwise", judge_key=db.judge_key(config), config=config,
                        preference=r.preference, verdict=str(1 + r.preference)))
    return out


def _pair(s, records: list[Record], dataset_id: int, ids: dict[str, int], file: str) -> PairSummary:
    gen_1, gen_2 = records[0].generators
    first = {}
    for r in records:  # an instruction judged by several annotators has one answer per generator
        first.setdefault(r.instruction, r)
    base, base_new = imported_run(s, name=gen_1, dataset_id=dataset_id, file=file,
                          outputs={ids[i]: r.outputs[0] for i, r in first.items()})
    cand, cand_new = imported_run(s, name=gen_2, dataset_id=dataset_id, file=file,
                          outputs={ids[i]: r.outputs[1] for i, r in first.items()})
    db.link_baseline(session=s, candidate_id=cand, baseline_id=base)
    new = db.add_judgments(session=s, judgments=_judgments(records, cand, base, ids))
    return PairSummary(cand, base, gen_2, gen_1, [n for n, c in ((gen_1, base_new), (gen_2, cand_new)) if c], new,
                       sum(r.preference is None for r in records))


def finish_imported(sf, run_id: int, path: Path) -> None:
    """A created run's aggregates, its "finished" status and where it came from."""
    finalize_run(session_factory=sf, run_id=run_id)
    with sf.begin() as s:
        db.update_run(session=s, run_id=run_id, status="finished",
                      repro={"imported_from": str(path.resolve()),
                             "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                             "imported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})


def import_judgments(path: str | Path, *, format: str, db_url: Optional[str] = None,
                     dataset_name: Optional[str] = None) -> tuple[list[PairSummary], list[Rejected]]:
    """Store the file's judgments (and the runs and examples they judge); see the module docstring."""
    if format not in FORMATS:
        raise JudgmentFileError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    path = Path(path)
    if not path.is_file():
        raise JudgmentFileError(f"no file {path}")
    records, rejected = read_alpaca_eval(path)
    if not records:
        first = f" (first: {rejected[0].reason})" if rejected else ""
        raise JudgmentFileError(f"{path}: nothing to import, {len(rejected)} records rejected{first}")
    pairs: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in records:
        pairs[r.generators].append(r)
    engine = db.open_store(db_url)
    sf = db.session_factory(engine)
    summaries = []
    try:
        with sf.begin() as s:
            dataset_id = db.get_or_create_dataset(session=s, name=dataset_name or "alpaca_eval", split="",
                                                  format="import:alpaca_eval", source=str(path.resolve()))
            instructions = list(dict.fromkeys(r.instruction for r in records))
            examples = [dict(key=example_key([{"role": "user", "content": i}], None, 0), row_index=n,
                             messages=[{"role": "user", "content": i}], reference=None, turn_index=0,
                             source="alpaca_eval", tags=[], metadata={}) for n, i in enumerate(instructions)]
            by_key = db.upsert_examples(session=s, dataset_id=dataset_id, examples=examples)
            ids = {i: by_key[e["key"]] for i, e in zip(instructions, examples)}
            for group in pairs.values():
                summaries.append(_pair(s, group, dataset_id, ids, path.name))
            if rejected:
                db.add_rejected(session=s, run_id=summaries[0].candidate_id, rows=[
                    dict(row_index=r.row_index, reason=r.reason, raw=r.raw) for r in rejected])
        for p in summaries:
            for run_id, name in ((p.baseline_id, p.baseline), (p.candidate_id, p.candidate)):
                if name in p.created:
                    finish_imported(sf, run_id, path)
            with sf() as s:
                p.judgments = summarize(db.judgments_of_pair(session=s, candidate_id=p.candidate_id,
                                                             baseline_id=p.baseline_id))
    finally:
        engine.dispose()
    return summaries, rejected
