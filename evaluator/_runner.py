"""One evaluation, start to finish: dataset → store rows → model → batches of results → aggregates.

Order of work (each step commits before the next starts)::

    load examples ─▶ dataset + examples rows ─▶ run row (status "running", config, repro, counts)
    + rejected rows ─▶ load the model ─▶ per batch: generate ─▶ teacher-force the references
    ─▶ score ─▶ insert results + metric values (one transaction) ─▶ finalize_run (aggregates)
    ─▶ status "finished" ─▶ each baseline as its own run on the same examples ─▶ compare_runs

Crash safety: a batch lands whole or not at all, so a run killed at any moment holds a prefix of
complete batches. ``--resume RUN`` reloads the run's stored config, skips the examples that already
have a result and evaluates the rest; greedy outputs do not depend on the batch composition, so the
finished run equals an uninterrupted one. Any exception marks the run "failed" with its error text
and is re-raised as a ``RunError`` saying how to resume.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from evaluator.config import OPERATIONAL_KEYS, ConfigError, RunConfig, build_config
from evaluator.types import Example, Generation, Sample

log = logging.getLogger(__name__)

BackendLoader = Callable[..., Any]  # (model, adapter, *, backend, resolved, **options) -> Backend


class RunError(RuntimeError):
    """A run stopped; the message says what happened and how to resume."""


@dataclass
class RunSummary:
    run_id: int
    name: str
    model: str
    status: str
    n_rows: int = 0
    n_examples: int = 0
    n_rejected: int = 0
    n_skipped: int = 0  # already committed before this invocation (resume)
    n_generated: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # failure kind -> results (this invocation)
    output_tokens: int = 0
    elapsed_s: float = 0.0  # everything: store writes, model load, generation, scoring, aggregates
    generate_s: float = 0.0  # generation + per-batch scoring and commits
    baseline_for_id: Optional[int] = None
    baselines: list["RunSummary"] = field(default_factory=list)

    def lines(self) -> list[str]:
        fails = ", ".join(f"{k} {v}" for k, v in sorted(self.failures.items())) or "none"
        rate = self.output_tokens / self.generate_s if self.generate_s else 0.0
        role = f" (baseline for run {self.baseline_for_id})" if self.baseline_for_id else ""
        out = [
            f"run {self.run_id} '{self.name}'{role}: {self.status}",
            f"  rows in {self.n_rows} = {self.n_examples} examples + {self.n_rejected} rejected"
            if self.n_rows == self.n_examples + self.n_rejected else
            f"  rows in {self.n_rows}: {self.n_examples} examples, {self.n_rejected} rejected",
            f"  generated {self.n_generated} (skipped {self.n_skipped} already committed), "
            f"{self.output_tokens} tokens in {self.generate_s:.1f}s ({rate:.1f} tok/s); "
            f"total {self.elapsed_s:.1f}s with model load and aggregates",
            f"  failures: {fails}",
        ]
        for b in self.baselines:
            out.extend(b.lines())
        return out


# ---------------------------------------------------------------- config for --resume


def resume_config(ref: str, *, db_url: Optional[str], file: Optional[str] = None,
                  overrides: Optional[Mapping[str, Any]] = None) -> RunConfig:
    """The stored config of run ``ref`` (id or name); other given keys must agree with it, except the
    operational ones (db, batch size, device) that do not change outputs."""
    import db

    engine = db.open_store(db_url)
    try:
        with db.session_factory(engine)() as session:
            run_id = db.find_run(session=session, ref=ref)
            stored = db.get_run(session=session, run_id=run_id)
    finally:
        engine.dispose()
    if stored["baseline_for_id"] is not None:
        raise ConfigError(f"run {run_id} is a baseline of run {stored['baseline_for_id']}: "
                          f"resume the candidate (--resume {stored['baseline_for_id']}), which resumes its baselines")
    saved = dict(stored["config"] or {})
    base = build_config(overrides=saved)
    cfg = build_config(file, overrides, base=saved)
    changed = [k for k in RunConfig.model_fields
               if k not in OPERATIONAL_KEYS and getattr(cfg, k) != getattr(base, k)]
    if changed:
        raise ConfigError(f"--resume {ref}: {', '.join(changed)} differ from the stored run; resume with the "
                          f"same settings (only {', '.join(sorted(OPERATIONAL_KEYS - {'resume'}))} may change) "
                          "or start a new run")
    return cfg.model_copy(update={"resume": str(run_id), "db": db_url})


# ---------------------------------------------------------------- the run


def _example_dict(e: Example) -> dict[str, Any]:
    return dataclasses.asdict(e)


def _has_reference(e: Example) -> bool:
    return e.reference is not None and e.reference != ""


class _Evaluation:
    """Evaluate one model (a candidate or a baseline) on given examples into one run row."""

    def __init__(self, *, sf, config: RunConfig, run_id: int, examples: list[Example], ids: list[int],
                 backend, metrics, progress: bool):
        self.sf = sf
        self.config = config
        self.run_id = run_id
        self.examples = examples
        self.ids = ids
        self.backend = backend
        self.metrics = metrics
        self.hib = {m.name: m.higher_is_better for m in metrics}
        self.progress = progress
        self.perplexity = config.perplexity
        self.failures: Counter[str] = Counter()
        self.generated = 0
        self.output_tokens = 0

    def _reference_logprobs(self, exs: list[Example], gens: list[Generation]) -> list[Optional[list[float]]]:
        out: list[Optional[list[float]]] = [None] * len(exs)
        if not self.perplexity:
            return out
        want = [i for i, (e, g) in enumerate(zip(exs, gens)) if _has_reference(e) and g.finish_reason != "error"]
        if not want:
            return out
        try:
            lps = self.backend.reference_logprobs([exs[i].messages for i in want], [exs[i].reference for i in want])
        except ModuleNotFoundError as exc:  # teacher forcing not available in this install
            log.warning("reference log-probs unavailable (%s); perplexity is not computed for this run", exc)
            self.perplexity = False
            return out
        for i, lp in zip(want, lps):
            out[i] = list(lp)
        return out

    def commit_batch(self, exs: list[Example], ids: list[int], gens: list[Generation]) -> None:
        import db
        from db import FailureKind
        from evaluator.scoring import failure_mask, reference_nll, score_samples

        ref_lps = self._reference_logprobs(exs, gens)
        samples = [
            Sample(output=g.text, reference=e.reference, output_logprobs=list(g.logprobs),
                   output_tokens=len(g.token_ids), reference_logprobs=lp, finish_reason=g.finish_reason,
                   prompt_truncated=g.prompt_truncated, error=g.error, category=e.category)
            for e, g, lp in zip(exs, gens, ref_lps)
        ]
        values = score_samples(samples, metrics=self.metrics)
        rows = []
        for eid, g, s, v in zip(ids, gens, samples, values):
            mask = failure_mask(s)
            nll = reference_nll(s)
            rows.append(dict(
                example_id=eid, output=g.text, output_tokens=len(g.token_ids), prompt_tokens=g.prompt_tokens,
                finish_reason=g.finish_reason, failures=mask, latency_ms=g.latency_s * 1000.0,
                logprobs=list(g.logprobs), tokens=list(g.tokens), error=g.error, metrics=v,
                ref_nll=nll[0] if nll else None, ref_tokens=nll[1] if nll else None,
            ))
            self.failures.update(FailureKind.names(mask))
            self.output_tokens += len(g.token_ids)
        with self.sf.begin() as session:
            db.insert_results(session=session, run_id=self.run_id, results=rows, higher_is_better=self.hib)
        self.generated += len(rows)

    def run(self) -> None:
        settings = self.config.generation_settings()

        def on_batch(indices: list[int], gens: list[Generation]) -> None:
            self.commit_batch([self.examples[i] for i in indices], [self.ids[i] for i in indices], gens)

        self.backend.generate([e.messages for e in self.examples], settings, on_batch=on_batch,
                              progress=self.progress)


def _default_loader(model: str, adapter: Optional[str], **kwargs: Any):
    from evaluator.models import load_backend

    return load_backend(model, adapter, **kwargs)


def _backend_options(config: RunConfig) -> dict[str, Any]:
    return dict(device=config.device, dtype=config.dtype, chat_template=config.chat_template,
                load_in_4bit=config.load_in_4bit, trust_remote_code=config.trust_remote_code,
                batch_size=config.batch_size, max_batch_size=config.max_batch_size, max_length=config.max_length)


def _evaluate_model(*, sf, config: RunConfig, dataset_id: int, examples: list[Example], key_ids: dict[str, int],
                    data, metrics, loader: BackendLoader, backend_name: str, progress: bool,
                    baseline_for: Optional[int] = None, existing_run: Optional[int] = None) -> RunSummary:
    """Create (or resume) one run and evaluate ``config.model`` on ``examples``."""
    import db
    from evaluator import _repro
    from evaluator.models import resolve_model

    started = time.perf_counter()
    resolved = resolve_model(config.model, config.adapter)
    name = config.name or resolved.label
    ids = [key_ids[e.key] for e in examples]
    repro = _repro.collect(seed=config.seed, dataset_hash=data.content_hash, base_model=resolved.base,
                           adapter=resolved.adapter)
    with sf.begin() as session:
        if existing_run is None:
            run_id = db.create_run(
                session=session, name=name, model=config.model, backend=backend_name, dataset_id=dataset_id,
                family=config.family, adapter=resolved.adapter, baseline_for_id=baseline_for,
                generation=config.generation_settings().as_dict(), config=config.stored(), repro=repro,
                n_rows=data.n_rows, n_examples=len(examples), n_rejected=len(data.rejected),
            )
            db.add_rejected(session=session, run_id=run_id,
                            rows=[dataclasses.asdict(r) for r in data.rejected])
            done: set[int] = set()
        else:
            run_id = existing_run
            stored = db.get_run(session=session, run_id=run_id)
            if stored["dataset_id"] != dataset_id:
                raise ConfigError(f"run {run_id} was evaluated on another dataset; start a new run")
            old_hash = (stored["repro"] or {}).get("dataset_sha256")
            if old_hash and old_hash != data.content_hash:
                raise ConfigError(f"the dataset changed since run {run_id} started (content hash differs): "
                                  "start a new run instead of resuming")
            done = db.done_example_ids(session=session, run_id=run_id)
            resumes = list((stored["repro"] or {}).get("resumes", [])) + [
                {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "skipped": len(done), **_repro.git_state()}]
            db.update_run(session=session, run_id=run_id, status="running", error=None,
                          repro={**(stored["repro"] or {}), "resumes": resumes})
    summary = RunSummary(run_id=run_id, name=name, model=config.model, status="running", n_rows=data.n_rows,
                         n_examples=len(examples), n_rejected=len(data.rejected), n_skipped=len(done),
                         baseline_for_id=baseline_for)
    pending = [(e, i) for e, i in zip(examples, ids) if i not in done]
    backend = None
    try:
        if pending:
            backend = loader(config.model, config.adapter, backend=backend_name, resolved=resolved,
                             **_backend_options(config))
            info = backend.info()
            with sf.begin() as session:
                stored = db.get_run(session=session, run_id=run_id)
                repro_now = dict(stored["repro"] or {})
                if existing_run is None:
                    repro_now.update(chat_template_sha256=info.get("chat_template_sha256"),
                                     model_revision=info.get("model_revision"), backend=info)
                db.update_run(session=session, run_id=run_id, repro=repro_now,
                              model_revision=info.get("model_revision"))
            ev = _Evaluation(sf=sf, config=config, run_id=run_id, examples=[e for e, _ in pending],
                             ids=[i for _, i in pending], backend=backend, metrics=metrics, progress=progress)
            t0 = time.perf_counter()
            ev.run()
            summary.generate_s = time.perf_counter() - t0
            summary.n_generated, summary.output_tokens = ev.generated, ev.output_tokens
            summary.failures = dict(ev.failures)
        from evaluator.scoring import finalize_run

        finalize_run(session_factory=sf, run_id=run_id)
        with sf.begin() as session:
            db.update_run(session=session, run_id=run_id, status="finished", error=None)
        summary.status = "finished"
    except BaseException as exc:
        text = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        try:
            with sf.begin() as session:
                db.update_run(session=session, run_id=run_id, status="failed", error=text[:4000])
        except Exception:  # the store itself may be what failed
            log.exception("could not mark run %d failed", run_id)
        from evaluator.models import BackendError, ChatTemplateError

        if isinstance(exc, (KeyboardInterrupt, db.StoreError, ConfigError, BackendError, ChatTemplateError)):
            raise  # a message the user acts on as it is; the run row says "failed" with the same text
        resume_id = baseline_for or run_id
        raise RunError(f"run {run_id} ('{name}') failed: {text}. Committed batches are kept: "
                       f"resume with 'python -m evaluator run --resume {resume_id}'") from exc
    finally:
        if backend is not None:
            backend.close()
        summary.elapsed_s = time.perf_counter() - started
    return summary


def run_evaluation(config: RunConfig, *, loader: Optional[BackendLoader] = None, progress: bool = True) -> RunSummary:
    """Evaluate ``config.model`` (and each baseline) on the dataset, writing everything to the store."""
    import db
    from evaluator.data import load_examples
    from evaluator.models import prepare_backend
    from evaluator.scoring import compare_runs, get_metrics

    loader = loader or _default_loader
    # Unsloth must be imported before transformers: choose (and import) the backend first.
    backend_name = prepare_backend(config.backend) if loader is _default_loader else (
        config.backend if config.backend != "auto" else "transformers")
    metrics = get_metrics(config.metrics)
    data = load_examples(config.dataset, split=config.split, format=config.format, turns=config.turns,
                         limit=config.limit, fields=config.fields)
    if not data.examples:
        raise ConfigError(f"{config.dataset}: no examples to evaluate ({len(data.rejected)} rows rejected)")
    engine = db.open_store(config.db)
    sf = db.session_factory(engine)
    try:
        with sf.begin() as session:
            dataset_id = db.get_or_create_dataset(session=session, name=data.name, split=data.split,
                                                  turns=config.turns, format=data.format)
            key_ids = db.upsert_examples(session=session, dataset_id=dataset_id,
                                         examples=[_example_dict(e) for e in data.examples])
        existing = None
        if config.resume:
            with sf() as session:
                existing = db.find_run(session=session, ref=config.resume)
        common = dict(sf=sf, dataset_id=dataset_id, examples=data.examples, key_ids=key_ids, data=data,
                      metrics=metrics, loader=loader, backend_name=backend_name, progress=progress)
        summary = _evaluate_model(config=config, existing_run=existing, **common)
        previous: dict[str, int] = {}
        if existing is not None:
            with sf() as session:
                for rid in db.baselines_of(session=session, run_id=summary.run_id):
                    r = db.get_run(session=session, run_id=rid)
                    previous.setdefault(r["model"], rid)
        for model in config.baselines:
            bcfg = config.model_copy(update={"model": model, "adapter": None, "name": None, "baselines": [],
                                             "resume": None})
            b = _evaluate_model(config=bcfg, baseline_for=summary.run_id, existing_run=previous.get(model), **common)
            compare_runs(session_factory=sf, run_a_id=summary.run_id, run_b_id=b.run_id)
            summary.baselines.append(b)
        return summary
    finally:
        engine.dispose()
