"""Import FastChat's MT-Bench judgments: ``python -m evaluator import_judgments FILE --format mt_bench``.

FastChat's llm_judge writes ``data/mt_bench/`` with ``question.jsonl``, ``model_answer/MODEL.jsonl`` (each record:
``question_id``, ``model_id``, ``choices[0].turns``: the answer to each turn) and ``model_judgment/``:

- a **single** file (``gpt-4_single.jsonl``): ``question_id``, ``model``, ``judge`` ([judge model, prompt name]),
  ``judgment`` (the reply), ``score`` (1-10; -1 when the judge gave no rating) and ``turn`` (1 or 2);
- a **pair** file (``gpt-4_pair.jsonl``): ``question_id``, ``model_1``, ``model_2``, ``judge``, ``g1_winner`` and
  ``g1_judgment`` (model_1 shown first), ``g2_winner`` and ``g2_judgment`` (model_2 shown first), ``turn``; a
  winner is ``model_1``, ``model_2``, ``tie`` or ``error``.

The questions are read as ``run --dataset question.jsonl --turns rollout`` reads them, so the imported runs share
that dataset and its example keys with the user's own runs on it (and can be compared, judged and browsed with
them). Each model's answers become a run of that name (one that already answers every example is matched). Each
judge (its model; turn 2's ``-multi-turn`` prompt is the same judge) is a judge config:

- single: one single-answer judgment per (model, question, turn), the score as the rating; -1 is a judge failure.
  The mean rating is the MT-Bench score (FastChat's ``show_result``: the mean of every score but -1, both turns).
- pair: model_1 is the candidate and model_2 its baseline (FastChat's ``pairwise-baseline`` puts the baseline
  second); g1 is order "ab", g2 order "ba"; the candidate's preference is 1, 0 or 0.5, and ``error`` a judge
  failure. The stored figures combine the two orders as every judgment here does (their mean); FastChat's own
  win rate (an inconsistent pair is a tie, a record with an error is left out) is reported beside them.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import db
from evaluator._import_judgments import finish_imported, imported_run
from evaluator.data import DataError, load_examples
from evaluator.errors import UserError
from evaluator.judging import score_summary, summarize
from evaluator.types import Rejected

WINNERS = {"model_1": 1.0, "model_2": 0.0, "tie": 0.5, "error": None}
LETTER = {("ab", 1.0): "A", ("ab", 0.0): "B", ("ba", 1.0): "B", ("ba", 0.0): "A"}


class MTBenchFileError(UserError, ValueError):
    """The files as a whole cannot be imported; the message says why."""


@dataclass
class Judged:
    """One record of the judgment file, read."""

    index: int
    kind: str  # "single" | "pair"
    question: str
    turn: int  # 0-based
    judge: str
    prompt: str
    models: tuple[str, ...]  # (model,) or (model_1, model_2)
    score: Optional[float] = None  # single; None: no rating
    winners: tuple[Optional[float], Optional[float]] = (None, None)  # pair: model_1's preference in g1, g2
    replies: tuple[str, ...] = ()


@dataclass
class Imported:
    """One judged run (single) or pair of runs, with its figures."""

    candidate_id: int
    baseline_id: Optional[int]
    candidate: str
    baseline: Optional[str]
    created: list[str]
    new_judgments: int
    judgments: list[dict[str, Any]] = field(default_factory=list)
    fastchat: Optional[dict[str, Any]] = None  # pair: FastChat's own count and win rate


def _record(i: int, rec: Any) -> Judged:
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    judge = rec.get("judge")
    if not (isinstance(judge, list) and len(judge) == 2 and all(isinstance(x, str) for x in judge)):
        raise ValueError("judge is not [judge model, prompt name]")
    turn = rec.get("turn", 1)
    if isinstance(turn, bool) or not isinstance(turn, int) or turn < 1:
        raise ValueError(f"turn {turn!r} is not a turn number (1, 2, ...)")
    common = dict(index=i, question=str(rec.get("question_id")), turn=turn - 1, judge=judge[0],
                  prompt=judge[1].removesuffix("-multi-turn"))
    if "model" in rec and "score" in rec:
        score = rec["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise ValueError(f"score {score!r} is not a number")
        return Judged(kind="single", models=(str(rec["model"]),), score=None if score == -1 else float(score),
                      replies=(str(rec.get("judgment") or ""),), **common)
    if "model_1" in rec and "g1_winner" in rec:
        bad = [k for k in ("g1_winner", "g2_winner") if rec.get(k) not in WINNERS]
        if bad:
            raise ValueError(f"{bad[0]} {rec.get(bad[0])!r} is none of {', '.join(WINNERS)}")
        return Judged(kind="pair", models=(str(rec["model_1"]), str(rec["model_2"])),
                      winners=(WINNERS[rec["g1_winner"]], WINNERS[rec["g2_winner"]]),
                      replies=(str(rec.get("g1_judgment") or ""), str(rec.get("g2_judgment") or "")), **common)
    raise ValueError("neither a single judgment (model, score) nor a pair judgment (model_1, g1_winner)")


def read_judgments(path: Path) -> tuple[list[Judged], list[Rejected]]:
    records, rejected = [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise MTBenchFileError(f"cannot read {path}: {exc}") from None
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(_record(i, json.loads(line)))
        except (json.JSONDecodeError, ValueError) as exc:
            rejected.append(Rejected(i, f"line {i + 1}: {exc}", line[:500]))
    kinds = {r.kind for r in records}
    if len(kinds) > 1:
        raise MTBenchFileError(f"{path} mixes single and pair judgments; import each file on its own")
    return records, rejected


def read_answers(folder: Path, model: str) -> dict[tuple[str, int], str]:
    """(question id, turn) -> the model's answer, from FastChat's ``model_answer/MODEL.jsonl``."""
    path = folder / f"{model}.jsonl"
    if not path.is_file():
        raise MTBenchFileError(f"no answers of {model}: {path} does not exist (pass --answers FOLDER, FastChat's "
                               "model_answer folder)")
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            turns = rec["choices"][0]["turns"]
            if not all(isinstance(t, str) for t in turns):
                raise TypeError("an answer is not text")
        except (json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
            raise MTBenchFileError(f"{path} line {n} is not a FastChat answer record: {exc}") from None
        for t, text in enumerate(turns):
            out[(str(rec.get("question_id")), t)] = text
    return out


def fastchat_win_rate(records: list[Judged]) -> dict[str, Any]:
    """model_1's win, loss and tie counts and win rate (percent, a tie half) by FastChat's ``show_result``: a
    record with an error in either order is left out, and one whose orders disagree (or call a tie) is a tie."""
    win = loss = tie = 0
    for r in records:
        g1, g2 = r.winners
        if g1 is None or g2 is None:
            continue
        if g1 == 0.5 or g1 != g2:
            tie += 1
        elif g1 == 1.0:
            win += 1
        else:
            loss += 1
    n = win + loss + tie
    return {"n": n, "wins": win, "ties": tie, "losses": loss,
            "win_rate": 100 * (win + 0.5 * tie) / n if n else None}


def _rows(group: list[Judged], runs: dict[str, int], ids: dict[tuple[str, int], int]) -> list[dict[str, Any]]:
    """The judgments of one model (single) or one pair of models, as ``db.add_judgments`` takes them."""
    out = []
    for r in group:
        mode = "single" if r.kind == "single" else "pairwise"
        config = {"judge": r.judge, "mode": mode, "prompt": r.prompt, "import": "mt_bench"}
        common = dict(candidate_id=runs[r.models[0]], baseline_id=runs[r.models[1]] if r.kind == "pair" else None,
                      example_id=ids[(r.question, r.turn)], judge=r.judge, mode=mode, judge_key=db.judge_key(config),
                      config=config)
        if r.kind == "single":
            out.append(dict(common, order="ab", score=r.score, reply=r.replies[0],
                            error=None if r.score is not None else "no rating in the reply (FastChat's score -1)"))
            continue
        for order, preference, reply in zip(("ab", "ba"), r.winners, r.replies):
            out.append(dict(common, order=order, preference=preference, reply=reply,
                            verdict="C" if preference == 0.5 else LETTER.get((order, preference)),
                            error=None if preference is not None else "FastChat recorded an error for this order"))
    return out


def _inputs(path: Path, questions: Optional[str], answers: Optional[str], records: list[Judged],
            rejected: list[Rejected]):
    """The questions (read as a rollout dataset), each model's answers, and the records both cover."""
    root = path.resolve().parent.parent  # FastChat: data/mt_bench/model_judgment/FILE
    qpath = Path(questions) if questions else root / "question.jsonl"
    if not qpath.is_file():
        raise MTBenchFileError(f"no questions: {qpath} does not exist (pass --questions FILE, MT-Bench's question.jsonl)")
    try:
        data = load_examples(str(qpath), turns="rollout")
    except DataError as exc:
        raise MTBenchFileError(f"{qpath}: {exc}") from None
    examples = {(e.conversation_id, e.turn_index): e for e in data.examples}
    folder = Path(answers) if answers else root / "model_answer"
    answered = {m: read_answers(folder, m) for m in sorted({m for r in records for m in r.models})}
    kept = []
    for r in records:
        lacking = [m for m in r.models if (r.question, r.turn) not in answered[m]]
        if (r.question, r.turn) not in examples:
            rejected.append(Rejected(r.index, f"line {r.index + 1}: question {r.question} has no turn {r.turn + 1} "
                                              f"in {qpath.name}", None))
        elif lacking:
            rejected.append(Rejected(r.index, f"line {r.index + 1}: {lacking[0]} has no answer to question "
                                              f"{r.question} turn {r.turn + 1}", None))
        else:
            kept.append(r)
    return data, examples, answered, kept


def import_mt_bench(path: str | Path, *, db_url: Optional[str] = None, questions: Optional[str] = None,
                    answers: Optional[str] = None) -> tuple[list[Imported], list[Rejected]]:
    """Store a FastChat MT-Bench judgment file's judgments, with the runs and examples they judge (see the module
    docstring); ``questions`` and ``answers`` default to FastChat's layout around the file."""
    path = Path(path)
    if not path.is_file():
        raise MTBenchFileError(f"no file {path}")
    records, rejected = read_judgments(path)
    if not records:
        first = f" (first: {rejected[0].reason})" if rejected else ""
        raise MTBenchFileError(f"{path}: nothing to import, {len(rejected)} records rejected{first}")
    data, examples, answered, kept = _inputs(path, questions, answers, records, rejected)
    engine = db.open_store(db_url)
    sf = db.session_factory(engine)
    out: list[Imported] = []
    try:
        with sf.begin() as s:
            dataset_id = db.get_or_create_dataset(session=s, name=data.display_name, split=data.split, turns="rollout",
                                                  format=data.format, fingerprint=data.fingerprint, source=data.name)
            key_ids = db.upsert_examples(session=s, dataset_id=dataset_id,
                                         examples=[db.ExampleRecord(**asdict(e)) for e in data.examples])
            ids = {k: key_ids[e.key] for k, e in examples.items()}
            runs, created = {}, set()
            for model, texts in answered.items():
                runs[model], new = imported_run(s, name=model, dataset_id=dataset_id, file=path.name, format="mt_bench",
                                                outputs={ids[k]: t for k, t in texts.items() if k in ids})
                if new:
                    created.add(model)
            groups: dict[tuple[str, ...], list[Judged]] = defaultdict(list)
            for r in kept:
                groups[r.models].append(r)
            for models, group in groups.items():
                base = runs[models[1]] if len(models) == 2 else None
                if base is not None:
                    db.link_baseline(session=s, candidate_id=runs[models[0]], baseline_id=base)
                out.append(Imported(runs[models[0]], base, models[0], models[1] if base else None,
                                    [m for m in models if m in created],
                                    db.add_judgments(session=s, judgments=_rows(group, runs, ids)),
                                    fastchat=fastchat_win_rate(group) if base else None))
        for model in sorted(created):
            finish_imported(sf, runs[model], path)
        with sf() as s:
            for imp in out:
                rows = db.judgments_of_pair(session=s, candidate_id=imp.candidate_id, baseline_id=imp.baseline_id)
                imp.judgments = (summarize if imp.baseline_id else score_summary)(rows)
    finally:
        engine.dispose()
    return out, rejected
