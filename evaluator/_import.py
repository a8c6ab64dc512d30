"""Import an evaluation made elsewhere as a run, so that it joins the history of its dataset.

Two formats (``python -m evaluator import_run FILE --format ...``):

- ``export``: a ``python -m evaluator export`` JSONL (this tool's own records, from any version). Outputs,
  finish reasons, failure kinds, latencies, token log-probabilities, reference NLLs and metric values
  are taken as they are (a metric value exported as null is stored as failed, as it was); the dataset
  is the record's ``dataset``/``split``/``turns`` (older exports have none: then ``--dataset-name``, or
  else the one dataset of the store that holds the examples' keys).
- ``lm-eval``: an lm-evaluation-harness ``--log_samples`` file; see ``evaluator/_import_lm_eval.py`` for
  what is mapped. Its metrics are kept as ``lm_eval:<name>``; the built-in reference-based metrics
  (``--metric`` to choose others) are computed on the imported outputs.

Either way each example gets the key the evaluator gives it (``evaluator.data.example_key`` of its
messages, reference and turn index), so an imported example *is* the stored example with the same
content: a re-imported export joins the original dataset's examples, and two lm-eval files with the same
prompts share theirs. Rows that cannot be mapped are stored as the run's rejected rows with the reason,
never repaired by guessing. The run is written in one transaction, then ``finalize_run`` computes its
aggregates (and metric columns), as for a run the evaluator made.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import db
from evaluator import _import_lm_eval as lm
from evaluator.data import KeyAllocator, example_key, load_examples
from evaluator.errors import UserError
from evaluator.scoring import (
    failure_mask,
    finalize_run,
    get_metrics,
    get_spec,
    score_samples,
)
from evaluator.types import Rejected, Sample

log = logging.getLogger(__name__)

FORMATS = ("lm-eval", "export")
RAW_CHARS = 500
RESULT_BATCH = 1000
EXPORT_FAILED = "failed in the exported run (the export has no error text)"


class ImportFileError(UserError, ValueError):
    """The file as a whole cannot be imported; the message says why and what to do."""


@dataclass
class Row:
    """One result to store: the example it answers (evaluator.types.Example fields) and the result."""

    example: dict[str, Any]
    result: dict[str, Any]  # db.insert_results fields except example_id
    index: int


@dataclass
class Parsed:
    rows: list[Row]
    rejected: list[Rejected]
    n_rows: int
    name: Optional[str] = None  # run name, model, date from the file when it says
    task: Optional[str] = None  # lm-eval's task
    model: Optional[str] = None
    created_at: Optional[dt.datetime] = None
    dataset: Optional[tuple[str, str, str]] = None  # (name, split, turns)
    dataset_fingerprint: Optional[str] = None  # an export's dataset content identity (db.Dataset.fingerprint)
    config: dict[str, Any] = field(default_factory=dict)
    higher_is_better: dict[str, Optional[bool]] = field(default_factory=dict)
    compute: bool = False  # compute the built-in reference-based metrics by default
    notes: list[str] = field(default_factory=list)


@dataclass
class ImportSummary:
    run_id: int
    name: str
    model: str
    dataset: str
    dataset_id: int
    n_rows: int
    n_imported: int
    n_rejected: int
    n_new_examples: int
    file_metrics: list[str]
    computed_metrics: list[str]
    rejected: list[Rejected]
    notes: list[str]

    def lines(self, show_rejected: int = 20) -> list[str]:
        joined = self.n_imported - self.n_new_examples
        out = [
            f"run {self.run_id} '{self.name}' (model {self.model}): imported {self.n_imported} results "
            f"into dataset '{self.dataset}' (#{self.dataset_id})",
            f"  rows in {self.n_rows}: {self.n_imported} results imported, {self.n_rejected} rejected; "
            f"{joined} joined existing examples, {self.n_new_examples} new",
            f"  metrics from the file: {', '.join(self.file_metrics) or 'none'}",
            f"  metrics computed: {', '.join(self.computed_metrics) or 'none'}; aggregates stored",
        ]
        out += [f"  note: {n}" for n in self.notes]
        for r in self.rejected[:show_rejected]:
            out.append(f"  rejected {r.reason}")
        if len(self.rejected) > show_rejected:
            out.append(f"  ... and {len(self.rejected) - show_rejected} more, stored as the run's rejected rows "
                       "(db.rejected_rows)")
        return out


# ---------------------------------------------------------------- reading


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            index = 0
            for line in f:
                if line.strip():
                    yield index, line.rstrip("\n")
                    index += 1
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ImportFileError(f"{path} is not UTF-8 text: is it the right file?") from None


def _raw(line: str) -> str:
    return line if len(line) <= RAW_CHARS else line[:RAW_CHARS - 3] + "..."


@dataclass
class _Bad:
    reason: str


def _records(path: Path) -> Iterator[tuple[int, str, Any]]:
    """(row index, raw line, value or a json error message as ``_Bad``) per non-blank line."""
    for index, line in _lines(path):
        try:
            yield index, line, json.loads(line)
        except ValueError as exc:
            yield index, line, _Bad(f"invalid JSON: {exc}")


def _assistant_turns(messages: list[dict[str, Any]]) -> int:
    """The evaluator's turn index of the answer that follows ``messages`` (see evaluator.data._turns)."""
    return sum(1 for m in messages if m.get("role") == "assistant")


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise ValueError("messages is not a non-empty list")
    out = []
    for i, m in enumerate(value):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise ValueError(f"message {i} is not {{role, content}} text")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _export_fields(rec: Any) -> dict[str, Any]:
    """The checked fields of one export record; ``ValueError(reason)`` when it cannot be imported."""
    if not isinstance(rec, dict):
        raise ValueError(f"record is {type(rec).__name__}, expected an object")
    messages = _messages(rec.get("messages"))
    reference, output = rec.get("reference"), rec.get("output")
    if reference is not None and not isinstance(reference, str):
        raise ValueError("reference is not text")
    if not isinstance(output, str):
        raise ValueError("no output text: not an export record")
    turn = rec.get("turn_index")
    turn = turn if isinstance(turn, int) and not isinstance(turn, bool) else _assistant_turns(messages)
    finish = rec.get("finish_reason") or "stop"
    if finish not in ("stop", "length", "error"):
        raise ValueError(f"finish_reason {finish!r} is not stop, length or error")
    failures = 0
    for name in rec.get("failures") or []:
        failures |= int(db.FailureKind.parse(str(name)))
    metrics, bad = {}, None
    for name, value in (rec.get("metrics") or {}).items():
        if value is None:
            metrics[name] = (None, EXPORT_FAILED)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            metrics[name] = float(value)
        else:
            bad = f"metric {name} is {value!r}, not a number"
    if bad:
        raise ValueError(bad)
    return dict(messages=messages, reference=reference, output=output, turn=turn, finish=finish,
                failures=failures, metrics=metrics)


def _export_row(rec: dict[str, Any], f: dict[str, Any], key: str, index: int) -> Row:
    logprobs = rec.get("token_logprobs")
    return Row(
        example=dict(key=key, messages=f["messages"], reference=f["reference"],
                     row_index=_int(rec.get("row_index"), index), category=_text(rec.get("category")),
                     conversation_id=_text(rec.get("conversation_id")), turn_index=f["turn"],
                     source=_text(rec.get("source")),
                     tags=[str(t) for t in rec.get("tags") or [] if isinstance(t, (str, int))],
                     metadata=rec.get("metadata") if isinstance(rec.get("metadata"), dict) else {}),
        result=dict(output=f["output"], finish_reason=f["finish"], failures=f["failures"],
                    output_tokens=_int(rec.get("output_tokens"), 0), prompt_tokens=_int(rec.get("prompt_tokens"), 0),
                    error=_text(rec.get("error")), latency_ms=_float(rec.get("latency_ms")),
                    ref_nll=_float(rec.get("ref_nll")), ref_tokens=_int(rec.get("ref_tokens"), None),
                    logprobs=[float(x) for x in logprobs] if isinstance(logprobs, list) and logprobs else None,
                    metrics=f["metrics"]),
        index=index)


def read_export(path: Path) -> Parsed:
    """A ``python -m evaluator export`` JSONL -> rows (see the module docstring)."""
    rows: list[Row] = []
    rejected: list[Rejected] = []
    keys = KeyAllocator()
    rekeyed = 0
    first: Optional[dict[str, Any]] = None
    n = 0
    for index, raw, rec in _records(path):
        n += 1
        try:
            if isinstance(rec, _Bad):
                raise ValueError(rec.reason)
            f = _export_fields(rec)
            here = (rec.get("dataset"), rec.get("split"), rec.get("turns"))
            if first is None:
                first = rec
            elif here != (first.get("dataset"), first.get("split"), first.get("turns")):
                raise ValueError(f"belongs to dataset {here[0]!r} / {here[1]!r}, "
                                 f"not {first.get('dataset')!r} / {first.get('split')!r}")
        except ValueError as exc:
            rejected.append(Rejected(index, f"row {index} (line {index + 1}): {exc}", _raw(raw)))
            continue
        # Exact duplicates get base-2, base-3, ... in file order, as the evaluator's keys do.
        key = keys.unique(example_key(f["messages"], f["reference"], f["turn"]))
        if isinstance(rec.get("example_key"), str) and rec["example_key"] != key:
            rekeyed += 1
        rows.append(_export_row(rec, f, key, index))
    parsed = Parsed(rows, rejected, n)
    if rekeyed:
        parsed.notes.append(f"{rekeyed} records' example_key is not the evaluator's key of their messages, "
                            "reference and turn (edited, or keyed by another tool): stored under the evaluator's key")
    if first is not None:
        parsed.name, parsed.model = _text(first.get("run_name")), _text(first.get("model"))
        parsed.created_at = _date(first.get("run_created_at"))
        if first.get("dataset"):
            parsed.dataset = (str(first["dataset"]), str(first.get("split") or ""), str(first.get("turns") or "last"))
            parsed.dataset_fingerprint = _text(first.get("dataset_fingerprint"))
        parsed.config = {"exported_run_id": first.get("run_id")}
    return parsed


def _count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _lm_eval_result(p: dict[str, Any], tokenizer: Any) -> dict[str, Any]:
    """A sample's result fields: with a tokenizer its token counts, and "length" for an output that reached
    max_gen_toks; without one, counts 0 and "stop" (the file says neither)."""
    out = dict(output=p["output"], finish_reason="stop", output_tokens=0, prompt_tokens=0, metrics=dict(p["metrics"]))
    if tokenizer is not None:
        out["output_tokens"], out["prompt_tokens"] = _count(tokenizer, p["output"]), _count(tokenizer, p["prompt"])
        if p.get("max_gen_toks") and out["output_tokens"] >= p["max_gen_toks"]:
            out["finish_reason"] = "length"
    return out


def read_lm_eval(path: Path, tokenizer: Any = None) -> Parsed:
    """An lm-evaluation-harness samples file -> rows (see evaluator/_import_lm_eval.py)."""

    task, when = lm.task_and_date(path)
    info = lm.run_info(lm.results_file(path), task)
    parsed_records, rejected = [], []
    n = 0
    for index, raw, rec in _records(path):
        n += 1
        if isinstance(rec, _Bad):
            rejected.append(Rejected(index, f"row {index} (line {index + 1}): {rec.reason}", _raw(raw)))
            continue
        try:
            parsed_records.append((index, _raw(raw), lm.parse_record(rec)))
        except lm.RowError as exc:
            rejected.append(Rejected(index, f"row {index} (line {index + 1}): {exc}", _raw(raw)))
    docs, more = lm.merge_filters(parsed_records)
    rejected = sorted(rejected + more, key=lambda r: r.row_index)
    keys = KeyAllocator()
    rows, skipped, kinds = [], set(), set()
    for index, p in sorted(docs, key=lambda d: d[1]["doc_id"]):
        messages = [{"role": "user", "content": p["prompt"]}]
        key = keys.unique(example_key(messages, p["reference"], 0))
        skipped.update(p["skipped"])
        kinds.add(p["kind"])
        meta = {"lm_eval": {"task": task, "doc_id": p["doc_id"], "target": p["target"], "doc": p["doc"]}}
        rows.append(Row(
            example=dict(key=key, messages=messages, reference=p["reference"], row_index=p["doc_id"], turn_index=0,
                         source=f"lm-eval:{task}" if task else "lm-eval", tags=[], metadata=meta),
            result=_lm_eval_result(p, tokenizer), index=index))
    parsed = Parsed(rows, rejected, n, task=task, model=info.get("model"), created_at=when, compute=True)
    parsed.dataset = (f"lm-eval:{task}", "", "last") if task else None
    parsed.config = {"lm_eval": info.get("config") or {"task": task}}
    filters = sorted({f for _, p in docs for f in p["filters"]})
    if len(filters) > 1:
        parsed.notes.append(f"each document appears once per filter ({', '.join(filters)}): one result per "
                            "document, with every filter's metrics")
    if skipped:
        parsed.notes.append(f"non-numeric lm-eval metrics not stored: {', '.join(sorted(skipped))}")
    parsed.higher_is_better = {lm.metric_name(k, f): v for k, v in (info.get("higher_is_better") or {}).items()
                               for f in filters}
    if "multiple_choice" in kinds:
        parsed.notes.append("multiple-choice documents: the output is the choice with the highest log-likelihood")
    if task is None:
        parsed.notes.append(f"{path.name} is not named samples_<task>_<date>.jsonl: pass --dataset-name")
    return parsed


def _text(v: Any) -> Optional[str]:
    return v if isinstance(v, str) else None


def _int(v: Any, default: Optional[int]) -> Optional[int]:
    return v if isinstance(v, int) and not isinstance(v, bool) else default


def _float(v: Any) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _date(v: Any) -> Optional[dt.datetime]:
    try:
        return dt.datetime.fromisoformat(v).replace(tzinfo=None) if isinstance(v, str) else None
    except ValueError:
        return None


# ---------------------------------------------------------------- writing


def _compute(rows: list[Row], names: Optional[list[str]]) -> tuple[list[str], dict[str, Optional[bool]]]:
    """Add metric values the file does not have, computed on the outputs; returns (names, directions)."""

    specs = get_metrics(names) if names is not None else [
        s for s in get_metrics(None) if s.needs_reference and s.name != "perplexity"]
    if not specs or not rows:
        return [], {}
    samples = [Sample(output=r.result["output"], reference=r.example["reference"],
                      output_tokens=r.result.get("output_tokens") or 0, finish_reason=r.result["finish_reason"],
                      error=r.result.get("error"), category=r.example.get("category"),
                      output_logprobs=list(r.result.get("logprobs") or [])) for r in rows]
    for row, values in zip(rows, score_samples(samples, metrics=specs)):
        for name, value in values.items():
            row.result["metrics"].setdefault(name, value)
    return [s.name for s in specs], {s.name: s.higher_is_better for s in specs}


def _renderings(messages: list[dict[str, str]], tokenizer: Any) -> list[str]:
    """The prompts lm-eval may have sent for a conversation: rendered with the chat template (its
    ``--apply_chat_template``), and the last user message as it is (a plain prompt)."""
    out = []
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        out.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    users = [m["content"] for m in messages if m.get("role") == "user"]
    if users:
        out.append(users[-1])
    return [t.strip() for t in out]


def match_dataset(parsed: Parsed, data: Any, tokenizer: Any = None) -> None:
    """Join each sample to the example of ``data`` (``evaluator.data.load_examples``) that renders to its
    prompt, in place: the rows take that example (its key, messages and reference) and the dataset's identity;
    a sample no example renders to is rejected with the reason."""
    by_prompt: dict[str, Any] = {}
    for e in data.examples:
        for text in _renderings(e.messages, tokenizer):
            by_prompt.setdefault(text, e)
    kept = []
    for r in parsed.rows:
        prompt = r.example["messages"][0]["content"]
        e = by_prompt.get(prompt.strip())
        if e is None:
            how = "with the tokenizer's chat template or " if tokenizer is not None else ""
            parsed.rejected.append(Rejected(r.index, f"row {r.index} (line {r.index + 1}): no example of "
                                            f"{data.display_name} renders ({how}as its user message) to this "
                                            "prompt", json.dumps(prompt[:2000], ensure_ascii=False)))
            continue
        r.example = dataclasses.asdict(e)
        kept.append(r)
    parsed.rows = kept
    parsed.rejected.sort(key=lambda x: x.row_index)
    parsed.dataset = (data.display_name, data.split, "last")
    parsed.dataset_fingerprint = data.fingerprint
    parsed.notes.append(f"{len(kept)} samples joined the examples of {data.display_name} / {data.split or '-'}")


def import_run(path: str | Path, *, format: str, db_url: Optional[str] = None, name: Optional[str] = None,
               model: Optional[str] = None, family: Optional[str] = None, dataset_name: Optional[str] = None,
               split: Optional[str] = None, metrics: Optional[list[str]] = None, dataset: Optional[str] = None,
               tokenizer: Optional[str] = None) -> ImportSummary:
    """Read ``path`` in ``format`` and store it as a finished run; see the module docstring. For lm-eval,
    ``tokenizer`` (a model directory or Hub id) counts tokens and tells outputs cut at the limit, and
    ``dataset`` joins the samples to that dataset's examples."""

    path = Path(path)
    parsed = _parse(path, format, dataset=dataset, split=split, tokenizer=tokenizer)
    if not parsed.rows:
        first = f" (first: {parsed.rejected[0].reason})" if parsed.rejected else ""
        raise ImportFileError(f"{path}: nothing to import, {len(parsed.rejected)} of {parsed.n_rows} rows rejected{first}")
    model = model or parsed.model
    if not model:
        raise ImportFileError(f"{path} does not say which model produced it: pass --model NAME")
    file_metrics = sorted({m for r in parsed.rows for m in r.result["metrics"]})
    computed, hib = _compute(parsed.rows, metrics) if (metrics is not None or parsed.compute) else ([], {})
    for m in file_metrics:
        spec = get_spec(m)
        hib.setdefault(m, parsed.higher_is_better.get(m, spec.higher_is_better if spec is not None else None))
    for r in parsed.rows:
        if format == "lm-eval":
            r.result["failures"] = failure_mask(Sample(output=r.result["output"], reference=r.example["reference"]))

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    engine = db.open_store(db_url)
    sf = db.session_factory(engine)
    try:
        with sf.begin() as s:
            ds_name, ds_split, ds_turns, ds_fp = _dataset(s, parsed, dataset_name, split, path)
            dataset_id = db.get_or_create_dataset(session=s, name=ds_name, split=ds_split, turns=ds_turns,
                                                  fingerprint=ds_fp,
                                                  format=f"import:{format}")
            before = db.count_examples(session=s, dataset_id=dataset_id)
            ids = db.upsert_examples(session=s, dataset_id=dataset_id, examples=[r.example for r in parsed.rows])
            new = db.count_examples(session=s, dataset_id=dataset_id) - before
            run_name = name or parsed.name or (f"{model} {parsed.task}" if parsed.task else f"{model} ({path.name})")
            # Dated when the evaluation ran (lm-eval's file name, the export's run), so that history
            # places it among the versions evaluated since.
            when = parsed.created_at or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
            run_id = db.create_run(
                session=s, name=run_name, model=model, backend=f"import:{format}", dataset_id=dataset_id,
                family=family, config={"import": {"format": format, "file": path.name}, **parsed.config},
                repro={"imported_from": str(path.resolve()), "file_sha256": digest,
                       "imported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")},
                n_rows=parsed.n_rows, n_examples=len(parsed.rows), n_rejected=len(parsed.rejected))
            db.update_run(session=s, run_id=run_id, created_at=when)
            db.add_rejected(session=s, run_id=run_id, rows=[
                dict(row_index=r.row_index, reason=r.reason, raw=r.raw) for r in parsed.rejected])
            for i in range(0, len(parsed.rows), RESULT_BATCH):
                db.insert_results(session=s, run_id=run_id, higher_is_better=hib, results=[
                    dict(r.result, example_id=ids[r.example["key"]]) for r in parsed.rows[i:i + RESULT_BATCH]])
        try:
            finalize_run(session_factory=sf, run_id=run_id)
            with sf.begin() as s:
                db.update_run(session=s, run_id=run_id, status="finished", finished_at=when)
        except BaseException as exc:
            with sf.begin() as s:
                db.update_run(session=s, run_id=run_id, status="failed",
                              error=f"aggregating the import failed: {type(exc).__name__}: {exc}"[:4000])
            raise
    finally:
        engine.dispose()
    log.info("imported %d results from %s as run %d", len(parsed.rows), path, run_id)
    return ImportSummary(run_id=run_id, name=run_name, model=model, dataset=f"{ds_name} / {ds_split or '-'}",
                         dataset_id=dataset_id, n_rows=parsed.n_rows, n_imported=len(parsed.rows),
                         n_rejected=len(parsed.rejected), n_new_examples=new, file_metrics=file_metrics,
                         computed_metrics=[m for m in computed if m not in file_metrics],
                         rejected=parsed.rejected, notes=parsed.notes)


def _parse(path: Path, format: str, *, dataset: Optional[str], split: Optional[str],
           tokenizer: Optional[str]) -> Parsed:
    if format not in FORMATS:
        raise ImportFileError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise ImportFileError(f"no file {path}")
    if (dataset or tokenizer) and format != "lm-eval":
        raise ImportFileError("--dataset and --tokenizer apply to --format lm-eval only")
    tok = _tokenizer(tokenizer) if tokenizer else None
    parsed = read_export(path) if format == "export" else read_lm_eval(path, tok)
    if dataset:
        try:
            data = load_examples(dataset, split=split if split is not None else "test", turns="last")
        except UserError as exc:
            raise ImportFileError(f"--dataset {dataset}: {exc}") from None
        match_dataset(parsed, data, tok)
    return parsed


def _tokenizer(source: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ImportFileError(f"--tokenizer {source}: cannot load a tokenizer from it ({exc})") from None


def _dataset(session, parsed: Parsed, dataset_name: Optional[str], split: Optional[str],
             path: Path) -> tuple[str, str, str, Optional[str]]:
    """(name, split, turns, fingerprint) of the dataset the rows join: the flag (a dataset known by that
    name), else the file's (an export carries its dataset's content fingerprint), else the one dataset of
    the store that holds the examples' keys."""

    turns = parsed.dataset[2] if parsed.dataset else "last"
    if dataset_name:
        return (dataset_name, split if split is not None else (parsed.dataset[1] if parsed.dataset else ""), turns,
                None)
    if parsed.dataset:
        return parsed.dataset[0], split if split is not None else parsed.dataset[1], turns, parsed.dataset_fingerprint
    holders = db.datasets_holding(session=session, keys=[r.example["key"] for r in parsed.rows])
    if len(holders) == 1:
        h = holders[0]
        return h["name"], h["split"] if split is None else split, h["turns"], h["fingerprint"]
    where = "no dataset of this store holds its examples" if not holders else (
        f"{len(holders)} datasets of this store hold its examples ("
        + ", ".join(f"{h['name']} / {h['split'] or '-'}" for h in holders[:5]) + ")")
    raise ImportFileError(f"{path} does not name its dataset and {where}: pass --dataset-name NAME (and --split)")
