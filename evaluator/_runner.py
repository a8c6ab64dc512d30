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

Data parallel (``torchrun --nproc_per_node N -m evaluator run ...``): rank 0 writes the dataset, example
and run rows and decides which examples are pending (sorted ids of those without a result); every
rank evaluates ``pending[rank::N]`` into the same run; once all shards are in, rank 0 aggregates and
finishes the run, then the next baseline starts the same way (``_distributed.py`` has the protocol).
Because the shard comes from the store and not from the rank, ``--resume`` works at any N. External
baselines (``outputs:FILE``, ``openai:MODEL``) run on rank 0 alone.
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
    world_size: int = 1  # processes that shared the work (torchrun)

    def lines(self) -> list[str]:
        fails = ", ".join(f"{k} {v}" for k, v in sorted(self.failures.items())) or "none"
        rate = self.output_tokens / self.generate_s if self.generate_s else 0.0
        role = f" (baseline for run {self.baseline_for_id})" if self.baseline_for_id else ""
        procs = f" on {self.world_size} processes" if self.world_size > 1 else ""
        out = [
            f"run {self.run_id} '{self.name}'{role}: {self.status}{procs}",
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
        except NotImplementedError as exc:  # an external backend: no model to teacher-force with
            log.info("run %d: no reference log-probs from the %s backend (%s); perplexity is not computed",
                     self.run_id, getattr(self.backend, "name", "?"), exc)
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
                   output_tokens=g.n_tokens, reference_logprobs=lp, finish_reason=g.finish_reason,
                   prompt_truncated=g.prompt_truncated, error=g.error, category=e.category)
            for e, g, lp in zip(exs, gens, ref_lps)
        ]
        values = score_samples(samples, metrics=self.metrics)
        rows = []
        for eid, g, s, v in zip(ids, gens, samples, values):
            if not g.count_known:  # stored outputs without a token count: 0 would be a false value
                v.pop("output_tokens", None)
            mask = failure_mask(s)
            nll = reference_nll(s)
            rows.append(dict(
                example_id=eid, output=g.text, output_tokens=g.n_tokens, prompt_tokens=g.prompt_tokens,
                finish_reason=g.finish_reason, failures=mask, latency_ms=g.latency_s * 1000.0,
                logprobs=list(g.logprobs), tokens=list(g.tokens), error=g.error, metrics=v,
                ref_nll=nll[0] if nll else None, ref_tokens=nll[1] if nll else None,
            ))
            self.failures.update(FailureKind.names(mask))
            self.output_tokens += g.n_tokens
        with self.sf.begin() as session:
            db.insert_results(session=session, run_id=self.run_id, results=rows, higher_is_better=self.hib)
        self.generated += len(rows)

    def run(self) -> None:
        settings = self.config.generation_settings()

        def on_batch(indices: list[int], gens: list[Generation]) -> None:
            self.commit_batch([self.examples[i] for i in indices], [self.ids[i] for i in indices], gens)

        extra = {"keys": [e.key for e in self.examples]} if getattr(self.backend, "uses_example_keys", False) else {}
        self.backend.generate([e.messages for e in self.examples], settings, on_batch=on_batch,
                              progress=self.progress, **extra)


def _default_loader(model: str, adapter: Optional[str], **kwargs: Any):
    from evaluator.models import load_backend

    return load_backend(model, adapter, **kwargs)


def _backend_options(config: RunConfig, device: str) -> dict[str, Any]:
    return dict(device=device, dtype=config.dtype, chat_template=config.chat_template,
                load_in_4bit=config.load_in_4bit, trust_remote_code=config.trust_remote_code,
                batch_size=config.batch_size, max_batch_size=config.max_batch_size, max_length=config.max_length,
                base_url=config.base_url, api_key_env=config.api_key_env, concurrency=config.concurrency,
                request_timeout=config.request_timeout, max_retries=config.max_retries)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message the user acts on as it is (no RunError wrapping)."""
    import db
    from evaluator.models import BackendError, ChatTemplateError

    return (KeyboardInterrupt, db.StoreError, ConfigError, BackendError, ChatTemplateError)


def _error_text(exc: BaseException) -> str:
    return "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"


def _mark_failed(sf, run_id: int, text: str) -> None:
    import db

    try:
        with sf.begin() as session:
            db.update_run(session=session, run_id=run_id, status="failed", error=text[:4000])
    except Exception:  # the store itself may be what failed
        log.exception("could not mark run %d failed", run_id)


def _start_run(*, sf, config: RunConfig, ident, dataset_id: int, ids: list[int], data, backend_name: str,
               baseline_for: Optional[int], existing_run: Optional[int], world_size: int) -> dict[str, Any]:
    """Rank 0: create the run row (or reopen it for a resume); returns its id and the pending example
    ids, sorted — the canonical order every rank shards."""
    import db
    from evaluator import _repro

    name = config.name or ident.label
    with sf.begin() as session:
        if existing_run is None:
            repro = _repro.collect(seed=config.seed, dataset_hash=data.content_hash, base_model=ident.base,
                                   adapter=ident.adapter)
            repro["world_size"] = world_size
            run_id = db.create_run(
                session=session, name=name, model=ident.model, backend=backend_name, dataset_id=dataset_id,
                family=config.family or (name if baseline_for is not None else None), adapter=ident.adapter,
                baseline_for_id=baseline_for,
                generation=config.generation_settings().as_dict(), config=config.stored(), repro=repro,
                n_rows=data.n_rows, n_examples=len(ids), n_rejected=len(data.rejected),
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
                {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "skipped": len(done), "world_size": world_size,
                 **_repro.git_state()}]
            db.update_run(session=session, run_id=run_id, status="running", error=None,
                          repro={**(stored["repro"] or {}), "resumes": resumes})
    return dict(run_id=run_id, name=name, skipped=len(done), pending=sorted(i for i in ids if i not in done))


def _run_shard(*, sf, config: RunConfig, ident, run_id: int, examples: list[Example], ids: list[int], metrics,
               loader: BackendLoader, backend_name: str, device: str, progress: bool) -> dict[str, Any]:
    """Every rank: load the backend and evaluate its share. Never raises: the error (and the exception,
    under "exc", which stays on this rank) is in the report, so that every rank reaches the gather."""
    report: dict[str, Any] = dict(generated=0, output_tokens=0, failures={}, generate_s=0.0, info=None,
                                  error=None, exc=None)
    backend = ev = None
    try:
        if examples:
            backend = loader(config.model, config.adapter, backend=backend_name, resolved=ident.resolved,
                             **_backend_options(config, device))
            report["info"] = backend.info()
            ev = _Evaluation(sf=sf, config=config, run_id=run_id, examples=examples, ids=ids, backend=backend,
                             metrics=metrics, progress=progress)
            t0 = time.perf_counter()
            ev.run()
            report["generate_s"] = time.perf_counter() - t0
            report["info"] = backend.info()  # external backends add what they saw (matches, retries)
    except BaseException as exc:
        report.update(error=_error_text(exc), exc=exc)
    finally:
        if ev is not None:
            report.update(generated=ev.generated, output_tokens=ev.output_tokens, failures=dict(ev.failures))
        if backend is not None:
            try:
                backend.close()
            except Exception:  # pragma: no cover - freeing is best effort
                log.exception("closing the %s backend failed", backend_name)
    return report


def _close_run(*, sf, run_id: int, reports: list[dict[str, Any]], fresh: bool) -> Optional[str]:
    """Rank 0, once every shard is in: record the backend, then aggregate and finish — or mark the run
    failed with the ranks' errors (returned)."""
    import db
    from evaluator.scoring import finalize_run

    infos = [r["info"] for r in reports if r.get("info")]
    if infos:
        info = infos[0]
        with sf.begin() as session:
            stored = db.get_run(session=session, run_id=run_id)
            repro_now = dict(stored["repro"] or {})
            if fresh:
                repro_now.update(chat_template_sha256=info.get("chat_template_sha256"),
                                 model_revision=info.get("model_revision"), backend=info)
                if len(reports) > 1:
                    repro_now["devices"] = [r["info"].get("device") if r.get("info") else None for r in reports]
            db.update_run(session=session, run_id=run_id, repro=repro_now, model_revision=info.get("model_revision"))
    errors = [(rank, r["error"]) for rank, r in enumerate(reports) if r.get("error")]
    if errors:
        text = errors[0][1] if len(reports) == 1 else "; ".join(f"rank {k}: {e}" for k, e in errors)
        _mark_failed(sf, run_id, text)
        return text
    finalize_run(session_factory=sf, run_id=run_id)
    with sf.begin() as session:
        db.update_run(session=session, run_id=run_id, status="finished", error=None)
    return None


def _evaluate_model(*, ctx, sf, config: RunConfig, dataset_id: int, examples: list[Example], key_ids: dict[str, int],
                    data, metrics, loader: BackendLoader, backend_name: str, progress: bool,
                    baseline_for: Optional[int] = None, existing_run: Optional[int] = None) -> RunSummary:
    """Create (or resume) one run and evaluate ``config.model`` on ``examples``, on every rank."""
    from evaluator import _distributed
    from evaluator.models import describe_model

    started = time.perf_counter()
    ident = describe_model(config.model, config.adapter)
    if ident.external:
        backend_name = ident.kind
    ids = [key_ids[e.key] for e in examples]
    plan = _distributed.on_main(ctx, lambda: _start_run(
        sf=sf, config=config, ident=ident, dataset_id=dataset_id, ids=ids, data=data, backend_name=backend_name,
        baseline_for=baseline_for, existing_run=existing_run, world_size=ctx.world_size))
    run_id, name = plan["run_id"], plan["name"]
    summary = RunSummary(run_id=run_id, name=name, model=config.model, status="running", n_rows=data.n_rows,
                         n_examples=len(examples), n_rejected=len(data.rejected), n_skipped=plan["skipped"],
                         baseline_for_id=baseline_for, world_size=ctx.world_size)
    # External backends have no weights to spread: rank 0 takes them whole (the concurrency limit
    # stays what the user set); local models are split over the ranks.
    if ident.external:
        mine = plan["pending"] if ctx.is_main else []
    else:
        mine = _distributed.shard(plan["pending"], ctx.rank, ctx.world_size)
    if ctx.parallel:
        log.info("run %d: rank %d evaluates %d of %d pending examples", run_id, ctx.rank, len(mine),
                 len(plan["pending"]))
    by_id = dict(zip(ids, examples))
    report = _run_shard(sf=sf, config=config, ident=ident, run_id=run_id, examples=[by_id[i] for i in mine],
                        ids=mine, metrics=metrics, loader=loader, backend_name=backend_name,
                        device=ctx.device_for(config.device) if not ident.external else config.device,
                        progress=progress)
    own_exc = report.pop("exc")
    reports = ctx.gather(report)
    close_exc: Optional[BaseException] = None
    outcome: Optional[str] = None
    if ctx.is_main:
        try:
            outcome = _close_run(sf=sf, run_id=run_id, reports=reports, fresh=existing_run is None)
        except BaseException as exc:
            close_exc, outcome = exc, _error_text(exc)
            _mark_failed(sf, run_id, outcome)
        summary.n_generated = sum(r["generated"] for r in reports)
        summary.output_tokens = sum(r["output_tokens"] for r in reports)
        summary.generate_s = max(r["generate_s"] for r in reports)
        failures: Counter[str] = Counter()
        for r in reports:
            failures.update(r["failures"])
        summary.failures = dict(failures)
    else:
        summary.n_generated, summary.output_tokens = report["generated"], report["output_tokens"]
        summary.generate_s, summary.failures = report["generate_s"], dict(report["failures"])
    outcome = ctx.broadcast(outcome)
    summary.elapsed_s = time.perf_counter() - started
    exc = own_exc or close_exc
    resume_id = baseline_for or run_id
    if exc is not None:
        if isinstance(exc, _user_errors()):
            raise exc  # a message the user acts on as it is; the run row says "failed" with the same text
        raise RunError(f"run {run_id} ('{name}') failed: {_error_text(exc)}. Committed batches are kept: "
                       f"resume with 'python -m evaluator run --resume {resume_id}'") from exc
    if outcome is not None:
        raise RunError(f"run {run_id} ('{name}') failed: {outcome}. Committed batches are kept: "
                       f"resume with 'python -m evaluator run --resume {resume_id}'")
    summary.status = "finished"
    return summary


def run_evaluation(config: RunConfig, *, loader: Optional[BackendLoader] = None, progress: bool = True) -> RunSummary:
    """Evaluate ``config.model`` (and each baseline) on the dataset, writing everything to the store.

    Under torchrun / ``accelerate launch`` (``WORLD_SIZE`` > 1) every process calls this; they share the
    work as described in ``evaluator/_distributed.py``, and rank 0's summary covers all of them.
    """
    from evaluator import _distributed

    ctx = _distributed.from_env()
    try:
        return _run(config, ctx=ctx, loader=loader, progress=progress and ctx.is_main)
    finally:
        ctx.close()


def _run(config: RunConfig, *, ctx, loader: Optional[BackendLoader], progress: bool) -> RunSummary:
    import db
    from evaluator import _distributed
    from evaluator.data import load_examples
    from evaluator.models import external_kind, prepare_backend
    from evaluator.scoring import compare_runs, get_metrics

    loader = loader or _default_loader
    needs_weights = any(external_kind(m) is None for m in [config.model, *config.baselines])
    # Unsloth must be imported before transformers: choose (and import) the backend first.
    if loader is not _default_loader or not needs_weights:
        backend_name = config.backend if config.backend != "auto" else "transformers"
    else:
        backend_name = prepare_backend(config.backend)
    metrics = get_metrics(config.metrics)
    data = load_examples(config.dataset, split=config.split, format=config.format, turns=config.turns,
                         limit=config.limit, fields=config.fields)
    if not data.examples:
        raise ConfigError(f"{config.dataset}: no examples to evaluate ({len(data.rejected)} rows rejected)")
    engine = None

    def prepare() -> dict[str, Any]:
        """Rank 0 (first, alone): migrate the store, write the dataset's rows, find what a resume continues."""
        nonlocal engine
        engine = db.open_store(config.db)
        sf = db.session_factory(engine)
        with sf.begin() as session:
            dataset_id = db.get_or_create_dataset(session=session, name=data.name, split=data.split,
                                                  turns=config.turns, format=data.format)
            key_ids = db.upsert_examples(session=session, dataset_id=dataset_id,
                                         examples=[_example_dict(e) for e in data.examples])
        existing, previous = None, {}
        if config.resume:
            with sf() as session:
                existing = db.find_run(session=session, ref=config.resume)
                for rid in db.baselines_of(session=session, run_id=existing):
                    r = db.get_run(session=session, run_id=rid)
                    previous.setdefault((r["config"] or {}).get("model") or r["model"], rid)
        return dict(dataset_id=dataset_id, key_ids=key_ids, existing=existing, previous=previous)

    try:
        shared = _distributed.on_main(ctx, prepare)
        if engine is None:
            engine = db.open_store(config.db)  # the other ranks, once rank 0 has migrated it
        sf = db.session_factory(engine)
        common = dict(ctx=ctx, sf=sf, dataset_id=shared["dataset_id"], examples=data.examples,
                      key_ids=shared["key_ids"], data=data, metrics=metrics, loader=loader,
                      backend_name=backend_name, progress=progress)
        summary = _evaluate_model(config=config, existing_run=shared["existing"], **common)
        for model in config.baselines:
            # A baseline is its own model: it does not join the candidate's family in the trend views.
            bcfg = config.model_copy(update={"model": model, "adapter": None, "name": None, "baselines": [],
                                             "resume": None, "family": None})
            b = _evaluate_model(config=bcfg, baseline_for=summary.run_id, existing_run=shared["previous"].get(model),
                                **common)
            _distributed.on_main(ctx, lambda: compare_runs(session_factory=sf, run_a_id=summary.run_id,
                                                           run_b_id=b.run_id) and None)
            summary.baselines.append(b)
        return summary
    finally:
        if engine is not None:
            engine.dispose()
