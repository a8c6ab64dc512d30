"""Reading an lm-evaluation-harness ``--log_samples`` file (``samples_<task>_<date>.jsonl``) as a run.

What lm-eval writes, one JSON object per (document, filter), as of lm-eval 0.4
(``lm_eval/evaluator.py`` builds the record, ``EvaluationTracker.save_results_samples`` writes it)::

    doc_id          int, the document's index in the task's split
    doc             the source row
    target          str(doc_to_target(doc)): the answer text, or the index of the gold choice
    arguments       {"gen_args_<i>": {"arg_<j>": ...}}, one entry per request (older files: [[...], ...])
                    generate_until: one request (prompt, generation kwargs)
                    loglikelihood (multiple choice): one request per choice (context, " continuation")
                    loglikelihood_rolling (perplexity tasks): (text,)
    resps           per request, the model's answers (repeats), every value turned into a string
    filtered_resps  per request, the answer after the filter (e.g. the extracted number)
    filter          the filter's name ("none", "strict-match", ...): a document appears once per filter
    metrics         the metric names (newer files); each metric's value is a top-level key
    doc_hash, prompt_hash, target_hash

How it maps onto a run (nothing is inferred that the file does not say):

- the example's messages are one user message holding the prompt lm-eval sent (``arg_0`` of the first
  request, exactly as rendered: few-shot examples and any chat template included); row_index is
  ``doc_id``; the example key is the evaluator's (``evaluator.data.example_key``), so the same prompt
  and reference imported again (another model, another day) is the same example;
- generate_until: the output is the first response of the request (``resps[0][0]``); the reference
  is ``target``;
- multiple choice: the output is the continuation with the highest log-likelihood (the choice lm-eval's
  ``acc`` counts), the reference is the gold continuation (``target`` as a choice index, or a choice's
  text), both without surrounding white space;
- each numeric metric of the file is kept as ``lm_eval:<metric>`` (``lm_eval:<metric>,<filter>`` for a
  filter other than "none"); a non-numeric one (e.g. corpus BLEU's (reference, prediction) pair) is
  left out and named in the report;
- the filtered responses are not in the store. Token counts and finish reasons are not in the file: with
  ``--tokenizer`` the output and the prompt are counted with it, and an output of ``max_gen_toks`` tokens or
  more (the task's generation kwargs, else lm-eval's default 256) ends with "length"; without one the
  counts are 0 and every finish reason is "stop";
- with ``--dataset`` (the file the samples were drawn from, as ``run --dataset`` reads it) each sample joins
  the example of that dataset whose conversation renders to the prompt lm-eval sent: with the tokenizer's
  chat template (lm-eval's ``--apply_chat_template``) or as the bare user message; so the run compares with
  a native run of the same data. A sample that no example renders to is rejected with the reason.

Rows that cannot be mapped (loglikelihood_rolling, a single loglikelihood request, a target that is no
choice, a malformed record, the same document twice for one filter) are rejected with the reason.
The ``results_<date>.json`` lm-eval writes next to the samples, when present, gives the model name,
the metrics' directions and the task's configuration (stored with the run).
"""
from __future__ import annotations

import datetime as dt
import json
import math
import re
from pathlib import Path
from typing import Any, Optional

from evaluator.types import Rejected

PREFIX = "lm_eval:"
DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's limit for Hugging Face models when the task's generation kwargs set none
_SAMPLES_NAME = re.compile(r"^samples_(?P<task>.+)_(?P<date>\d{4}-\d{2}-\d{2}T[0-9.\-]+)\.jsonl(\.gz)?$")
# Keys of a sample record that are not metrics (older files have no "metrics" list).
_RECORD_KEYS = {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "filter", "metrics", "doc_hash",
                "prompt_hash", "target_hash", "task_name", "sample_id"}


class RowError(ValueError):
    """A record that cannot become an example; the message is the reason."""


def task_and_date(path: Path) -> tuple[Optional[str], Optional[dt.datetime]]:
    """(task, evaluation time) from lm-eval's file name ``samples_<task>_<date>.jsonl``, else (None, None)."""
    m = _SAMPLES_NAME.match(path.name)
    if not m:
        return None, None
    date = m.group("date")
    day, _, clock = date.partition("T")
    hms, _, frac = clock.partition(".")  # lm-eval writes isoformat() with ":" replaced by "-"
    try:
        when = dt.datetime.fromisoformat(f"{day}T{hms.replace('-', ':')}" + (f".{frac}" if frac else ""))
    except ValueError:
        when = None
    return m.group("task"), when


def results_file(path: Path) -> Optional[dict[str, Any]]:
    """The ``results_<date>.json`` written with these samples (same folder, same date), if readable."""
    m = _SAMPLES_NAME.match(path.name)
    if not m:
        return None
    candidate = path.with_name(f"results_{m.group('date')}.json")
    try:
        data = json.loads(candidate.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_info(results: Optional[dict[str, Any]], task: Optional[str]) -> dict[str, Any]:
    """Model name, metric directions and the task's settings from a results file (empty without one)."""
    if not results:
        return {}
    config = results.get("config") if isinstance(results.get("config"), dict) else {}
    model = results.get("model_name") or None
    if not model and isinstance(config.get("model_args"), str):
        m = re.search(r"(?:^|,)(?:peft|delta|pretrained|model|path|engine)=([^,]+)", config["model_args"])
        model = m.group(1) if m else None
    hib = ((results.get("higher_is_better") or {}).get(task) or {}) if task else {}
    task_cfg = ((results.get("configs") or {}).get(task) or {}) if task else {}
    stored = {
        "task": task,
        "model_args": config.get("model_args"),
        "results": (results.get("results") or {}).get(task) if task else None,
        "n_shot": (results.get("n-shot") or {}).get(task) if task else None,
        "version": (results.get("versions") or {}).get(task) if task else None,
        "generation_kwargs": task_cfg.get("generation_kwargs"),
        "lm_eval_version": results.get("lm_eval_version"),
        "git_hash": results.get("git_hash"),
    }
    return {"model": model, "higher_is_better": {k: v for k, v in hib.items() if isinstance(v, bool)},
            "config": {k: v for k, v in stored.items() if v is not None}}


def _requests(arguments: Any) -> list[list[Any]]:
    """``arguments`` in either layout -> one list of arguments per request, in order."""
    if isinstance(arguments, dict):
        def index(name: str, prefix: str) -> int:
            if not (isinstance(name, str) and name.startswith(prefix) and name[len(prefix):].isdigit()):
                raise RowError(f"arguments: unexpected key {name!r}")
            return int(name[len(prefix):])

        out = []
        for name in sorted(arguments, key=lambda n: index(n, "gen_args_")):
            args = arguments[name]
            if not isinstance(args, dict):
                raise RowError(f"arguments.{name} is not an object")
            out.append([args[k] for k in sorted(args, key=lambda k: index(k, "arg_"))])
        return out
    if isinstance(arguments, list) and all(isinstance(a, (list, tuple)) for a in arguments):
        return [list(a) for a in arguments]
    raise RowError("arguments is neither lm-eval's {gen_args_i: {arg_j}} object nor a list of requests")


def _loglikelihood(value: Any) -> float:
    """The log-likelihood in a (log-likelihood, is_greedy) response: [-1.2, false], ["-1.2", "False"] or "(-1.2, False)"."""
    while isinstance(value, list) and len(value) == 1 and isinstance(value[0], (list, str)):
        value = value[0]  # resps nests the repeats: [[(ll, greedy)]]
    if isinstance(value, str):
        value = [p.strip(" ()'\"") for p in value.split(",")]
    if isinstance(value, (list, tuple)) and value:
        try:
            ll = float(value[0])
        except (TypeError, ValueError):
            raise RowError(f"response {value!r} is not a (log-likelihood, is_greedy) pair") from None
        if math.isnan(ll):
            raise RowError("a log-likelihood is NaN")
        return ll
    raise RowError(f"response {value!r} is not a (log-likelihood, is_greedy) pair")


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def parse_record(rec: Any) -> dict[str, Any]:
    """One samples record -> {doc_id, filter, prompt, output, reference, kind, metrics, skipped, doc, target}.

    ``metrics``: lm-eval metric name -> float; ``skipped``: names of non-numeric metrics. Raises RowError.
    """
    if not isinstance(rec, dict):
        raise RowError(f"record is {type(rec).__name__}, expected an object")
    for field in ("doc_id", "arguments", "target"):
        if field not in rec:
            raise RowError(f"no '{field}' field: not an lm-eval samples record")
    doc_id = rec["doc_id"]
    if isinstance(doc_id, bool) or not isinstance(doc_id, int) or doc_id < 0:
        raise RowError(f"doc_id {doc_id!r} is not a whole number >= 0")
    requests = _requests(rec["arguments"])
    if not requests:
        raise RowError("no request in arguments")
    resps = rec.get("filtered_resps") if rec.get("resps") is None else rec.get("resps")
    if not isinstance(resps, list) or len(resps) != len(requests):
        raise RowError(f"resps has {len(resps) if isinstance(resps, list) else 'no'} entries for {len(requests)} requests")
    target = rec["target"]
    target = target if isinstance(target, str) else json.dumps(target, ensure_ascii=False)
    if any(len(r) == 1 for r in requests):
        raise RowError("loglikelihood_rolling request (a perplexity task): no output to import")
    if any(len(r) < 2 or not isinstance(r[0], str) for r in requests):
        raise RowError("a request's arguments are not (prompt, ...)")
    if all(isinstance(r[1], dict) for r in requests):
        if len(requests) != 1:
            raise RowError(f"{len(requests)} generation requests for one document; expected one")
        answers = resps[0] if isinstance(resps[0], list) else [resps[0]]
        if not answers or not isinstance(answers[0], str):
            raise RowError("the generation request has no text response")
        kind, prompt, output, reference = "generate_until", requests[0][0], answers[0], target
        max_gen_toks = requests[0][1].get("max_gen_toks")
    elif all(isinstance(r[1], str) for r in requests):
        if len(requests) == 1:
            raise RowError("a single loglikelihood request (no choices): no output to import")
        contexts = {r[0] for r in requests}
        if len(contexts) != 1:
            raise RowError("the choices have different contexts (a multiple-input task): not imported")
        choices = [r[1].strip() for r in requests]
        filtered = rec.get("filtered_resps")
        source = filtered if isinstance(filtered, list) and len(filtered) == len(requests) else resps
        lls = [_loglikelihood(v) for v in source]
        best = max(range(len(lls)), key=lambda i: (lls[i], -i))  # ties: the first, as numpy.argmax
        if target.strip().isdigit() and int(target) < len(choices):
            reference = choices[int(target)]
        elif target.strip() in choices:
            reference = target.strip()
        else:
            raise RowError(f"target {target[:80]!r} is neither a choice index nor one of the {len(choices)} choices")
        kind, prompt, output = "multiple_choice", requests[0][0], choices[best]
        max_gen_toks = None
    else:
        raise RowError("requests mix generation and loglikelihood arguments")
    names = rec["metrics"] if isinstance(rec.get("metrics"), list) else [k for k in rec if k not in _RECORD_KEYS]
    metrics, skipped = {}, []
    for name in names:
        value = _number(rec.get(name))
        if value is None:
            skipped.append(str(name))
        else:
            metrics[str(name)] = value
    filt = rec.get("filter") if isinstance(rec.get("filter"), str) and rec.get("filter") else "none"
    if not (isinstance(max_gen_toks, int) and max_gen_toks > 0):
        max_gen_toks = DEFAULT_MAX_GEN_TOKS if kind == "generate_until" else None
    return dict(doc_id=doc_id, filter=filt, prompt=prompt, output=output, reference=reference, kind=kind,
                metrics=metrics, skipped=skipped, doc=rec.get("doc"), target=target, max_gen_toks=max_gen_toks)


def metric_name(metric: str, filt: str) -> str:
    """The store's name of an lm-eval metric: ``lm_eval:acc``, or ``lm_eval:exact_match,strict-match``."""
    return f"{PREFIX}{metric}" if filt == "none" else f"{PREFIX}{metric},{filt}"


def merge_filters(records: list[tuple[int, str, dict[str, Any]]]) -> tuple[list[tuple[int, dict]], list[Rejected]]:
    """Records (row index, raw line, parsed) -> one per document (its filters' metrics merged), rejections.

    A document appears once per filter with the same prompt and response; a second record for the same
    (document, filter), or one whose prompt or response differs from the document's first, is rejected.
    """
    docs: dict[int, tuple[int, dict]] = {}
    seen: set[tuple[int, str]] = set()
    rejected: list[Rejected] = []
    for index, raw, p in records:
        mark = (p["doc_id"], p["filter"])
        if mark in seen:
            rejected.append(Rejected(index, f"row {index} (line {index + 1}): doc_id {p['doc_id']} appears "
                                            f"twice for filter '{p['filter']}'", raw))
            continue
        first = docs.get(p["doc_id"])
        if first is not None and (first[1]["prompt"], first[1]["output"], first[1]["reference"]) != (
                p["prompt"], p["output"], p["reference"]):
            rejected.append(Rejected(index, f"row {index} (line {index + 1}): doc_id {p['doc_id']} has another "
                                            "prompt, response or target than its first record", raw))
            continue
        seen.add(mark)
        named = {metric_name(k, p["filter"]): v for k, v in p["metrics"].items()}
        if first is None:
            docs[p["doc_id"]] = (index, dict(p, metrics=named, filters=[p["filter"]]))
        else:
            first[1]["metrics"].update(named)
            first[1]["filters"].append(p["filter"])
            first[1]["skipped"] = sorted(set(first[1]["skipped"]) | set(p["skipped"]))
    return list(docs.values()), rejected
