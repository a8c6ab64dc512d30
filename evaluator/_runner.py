"""One evaluation, start to finish: dataset → store rows → model → batches of results → aggregates.

Order of work (each step commits before the next starts)::

    load examples ─▶ dataset + examples rows ─▶ run row (status "running", config, repro, counts)
    + rejected rows ─▶ load the model ─▶ per batch: generate ─▶ teacher-force the references
    ─▶ score ─▶ insert results + metric values (one transaction) ─▶ finalize_run (aggregates)
    ─▶ status "finished" ─▶ each baseline as its own run on the same examples ─▶ compare_runs

Before anything is written, every model (candidate and baselines) is checked (``models/_validate.py``):
a typo in a ``--baseline`` fails in a second, not after the candidate's hours of generation, and a
model that cannot load leaves no run behind.

Crash safety: a batch lands whole or not at all, so a run killed at any moment holds a prefix of
complete batches. SIGINT and SIGTERM stop at the next Python step: what is committed stays, the run is
marked "interrupted" and the message names the ``--resume`` that finishes it. A writer killed without
a word (kill -9, power loss) stops renewing its lease (``_lease.py``), and the run then reads
"interrupted (no writer since ...)". ``--resume RUN`` takes the run's lease (refused while another
live evaluator holds it), reloads the stored config, skips the examples that already have a result
and evaluates the rest; outputs do not depend on the batch composition, so the finished run equals an
uninterrupted one. Any other exception marks the run "failed" with its error text and is re-raised as
a ``RunError`` saying how to resume.

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
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import db
from db import FailureKind
from evaluator import _distributed, _repro
from evaluator._lease import WriterLease, signal_name, stop_signals
from evaluator.config import OPERATIONAL_KEYS, ConfigError, RunConfig, build_config
from evaluator.data import load_examples, rolled_out
from evaluator.errors import UserError
from evaluator.models import (
    check_models,
    describe_model,
    external_kind,
    load_backend,
    prepare_backend,
)
from evaluator.scoring import (
    compare_runs,
    failure_mask,
    finalize_run,
    get_metrics,
    reference_nll,
    score_samples,
)
from evaluator.types import Example, Generation, Sample

log = logging.getLogger(__name__)

BackendLoader = Callable[..., Any]  # (model, adapter, *, backend, resolved, **options) -> Backend


class RunError(RuntimeError):
    """A run stopped; the message says what happened and how to resume."""


class RunInterrupted(RunError):
    """SIGINT or SIGTERM stopped a run; committed batches are kept and the run is marked interrupted."""

    def __init__(self, message: str, signal_name: str = "SIGINT"):
        super().__init__(message)
        self.signal_name = signal_name

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process stopped by it."""
        return 128 + signal.Signals[self.signal_name].value


def _no_examples_error(dataset: str, rejected: list) -> ConfigError:
    """Every row was rejected: say why, with the first reasons (their row and line numbers)."""
    first = "; ".join(r.reason for r in rejected[:3])
    more = f"; and {len(rejected) - 3} more" if len(rejected) > 3 else ""
    if not rejected:
        return ConfigError(f"{dataset}: no examples to evaluate (the dataset has no rows)")
    return ConfigError(f"{dataset}: no examples to evaluate, all {len(rejected)} rows rejected: {first}{more}")


@dataclass
class _Setup:
    """Rank 0's store setup, broadcast to every rank."""

    dataset_id: int
    key_ids: dict[str, int]  # example key -> example id
    existing: Optional[int]  # the run a --resume continues
    previous: dict[str, int]  # baseline model -> its run, for a resumed candidate
    reused: set[int] = field(default_factory=set)  # those of them that were reused, not evaluated for it


@dataclass
class _RunPlan:
    """Rank 0's start of one run, broadcast to every rank: the run and what is left to evaluate."""

    run_id: int
    name: str
    skipped: int  # examples committed before (a resume)
    pending: list[int]  # example ids still to evaluate, sorted: the order every rank shards


@dataclass
class _ShardReport:
    """What one rank tells rank 0 after evaluating its share (gathered, so it must pickle; the
    exception itself stays on its rank)."""

    generated: int = 0
    output_tokens: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    generate_s: float = 0.0
    info: Optional[dict[str, Any]] = None  # the backend's description
    error: Optional[str] = None
    interrupted: Optional[str] = None  # the signal's name, when a stop signal ended it


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
    reused: bool = False  # a finished run of the identical baseline, linked instead of evaluated again

    def lines(self) -> list[str]:
        fails = ", ".join(f"{k} {v}" for k, v in sorted(self.failures.items())) or "none"
        rate = self.output_tokens / self.generate_s if self.generate_s else 0.0
        role = f" (baseline for run {self.baseline_for_id})" if self.baseline_for_id else ""
        procs = f" on {self.world_size} processes" if self.world_size > 1 else ""
        if self.reused:
            return [f"run {self.run_id} '{self.name}' (baseline for run {self.baseline_for_id}): reused, "
                    f"{self.n_examples} examples evaluated identically before (same model files, data, settings "
                    "and evaluator code); nothing generated (--no-reuse evaluates it again)"]
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
    engine = db.open_store(db_url)
    try:
        with db.session_factory(engine)() as session:
            run_id = db.find_run(session=session, ref=ref)
            stored = db.get_run(session=session, run_id=run_id)
            if stored["baseline_for_id"] is not None:
                raise ConfigError(f"run {run_id} is a baseline of run {stored['baseline_for_id']}: resume the "
                                  f"candidate (--resume {stored['baseline_for_id']}), which resumes its baselines")
            started = {(db.get_run(session=session, run_id=b)["config"] or {}).get("model")
                       for b in db.baselines_of(session=session, run_id=run_id)}
    finally:
        engine.dispose()
    saved = dict(stored["config"] or {})
    base = build_config(overrides=saved)
    cfg = build_config(file, overrides, base=saved)
    changed = [k for k in RunConfig.model_fields
               if k not in OPERATIONAL_KEYS and getattr(cfg, k) != getattr(base, k)]
    if "baselines" in changed and "baselines" in (overrides or {}):
        # A baseline that never started (say, a bad path found after the candidate ran) may be replaced;
        # one with a run in the store keeps its place, so that every stored comparison stays explained.
        dropped = [b for b in base.baselines if b not in cfg.baselines]
        kept_started = [b for b in dropped if b in started]
        if kept_started:
            raise ConfigError(f"--resume {ref}: baseline {kept_started[0]} already has a run in the store; "
                              "it cannot be dropped (resume with it, or start a new run)")
        changed.remove("baselines")
    if changed:
        raise ConfigError(f"--resume {ref}: {', '.join(changed)} differ from the stored run; resume with the "
                          f"same settings (only {', '.join(sorted(OPERATIONAL_KEYS - {'resume'}))} may change) "
                          "or start a new run")
    return cfg.model_copy(update={"resume": str(run_id), "db": db_url})


# ---------------------------------------------------------------- the run


def _example_dict(e: Example) -> db.ExampleRecord:
    return db.ExampleRecord(**dataclasses.asdict(e))


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

    def _reference_logprobs(self, exs: list[Example], gens: list[Generation],
                            prompts: list[list[dict[str, str]]]) -> list[Optional[list[float]]]:
        out: list[Optional[list[float]]] = [None] * len(exs)
        if not self.perplexity:
            return out
        want = [i for i, (e, g) in enumerate(zip(exs, gens)) if _has_reference(e) and g.finish_reason != "error"]
        if not want:
            return out
        try:
            lps = self.backend.reference_logprobs([prompts[i] for i in want], [exs[i].reference for i in want])
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

    def commit_batch(self, exs: list[Example], ids: list[int], gens: list[Generation],
                     prompts: Optional[list[list[dict[str, str]]]] = None) -> None:
        """Score one batch and insert it in one transaction; ``prompts`` are what the model was given (a rollout's
        own history), the examples' messages when None."""
        ref_lps = self._reference_logprobs(exs, gens, prompts or [e.messages for e in exs])
        samples = [
            Sample(output=g.text, reference=e.reference, output_logprobs=list(g.logprobs),
                   output_tokens=g.n_tokens, reference_logprobs=lp, finish_reason=g.finish_reason,
                   prompt_truncated=g.prompt_truncated, error=g.error, category=e.category)
            for e, g, lp in zip(exs, gens, ref_lps)
        ]
        values = score_samples(samples, metrics=self.metrics)
        rows: list[db.ResultRecord] = []
        for eid, g, s, v in zip(ids, gens, samples, values):
            if not g.count_known:  # stored outputs without a token count: 0 would be a false value
                v.pop("output_tokens", None)
            mask = failure_mask(s)
            nll = reference_nll(s)
            rows.append(db.ResultRecord(
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
        if self.config.turns == "rollout":
            self._rollout()
        else:
            self._generate(list(range(len(self.examples))), [e.messages for e in self.examples])

    def _generate(self, which: list[int], prompts: list[list[dict[str, str]]],
                  answered: Optional[Callable[[Example, Generation], None]] = None) -> None:
        """Generate ``prompts`` for ``self.examples[i]``, i in ``which``, committing each backend batch."""

        def on_batch(indices: list[int], gens: list[Generation]) -> None:
            exs = [self.examples[which[i]] for i in indices]
            self.commit_batch(exs, [self.ids[which[i]] for i in indices], gens, [prompts[i] for i in indices])
            if answered is not None:
                for e, g in zip(exs, gens):
                    answered(e, g)

        keys = [self.examples[i].key for i in which]
        extra = {"keys": keys} if getattr(self.backend, "uses_example_keys", False) else {}
        self.backend.generate(prompts, self.config.generation_settings(), on_batch=on_batch, progress=self.progress,
                              **extra)

    def _rollout(self) -> None:
        """``--turns rollout``: every conversation's turn t after its turns 0..t-1, each answered after the
        model's own earlier answers (this invocation's, or those a resumed run committed before). A turn whose
        history failed is committed as an error saying which turn, without asking the model."""
        with self.sf() as session:
            answers = db.conversation_answers(session=session, run_id=self.run_id,
                                              conversation_ids={e.conversation_id for e in self.examples})

        def answered(e: Example, g: Generation) -> None:
            answers[(e.conversation_id, e.turn_index)] = None if g.finish_reason == "error" else g.text

        for turn in sorted({e.turn_index for e in self.examples}):
            ready, prompts, broken = [], [], []
            for i, e in enumerate(self.examples):
                if e.turn_index != turn:
                    continue
                history = [answers.get((e.conversation_id, t)) for t in range(turn)]
                missing = [t for t, a in enumerate(history) if a is None]
                if missing:
                    broken.append((i, missing[0]))
                else:
                    ready.append(i)
                    prompts.append(rolled_out(e.messages, history))
            if broken:
                gens = [Generation(text="", token_ids=[], tokens=[], logprobs=[], finish_reason="error",
                                   error=f"turn {t} of this conversation has no answer to stand as its history")
                        for _, t in broken]
                self.commit_batch([self.examples[i] for i, _ in broken], [self.ids[i] for i, _ in broken], gens)
            if ready:
                self._generate(ready, prompts, answered)


def _default_loader(model: str, adapter: Optional[str], **kwargs: Any):

    return load_backend(model, adapter, **kwargs)


def _backend_options(config: RunConfig, device: str) -> dict[str, Any]:
    return dict(device=device, dtype=config.dtype, chat_template=config.chat_template,
                load_in_4bit=config.load_in_4bit, trust_remote_code=config.trust_remote_code,
                batch_size=config.batch_size, max_batch_size=config.max_batch_size, max_length=config.max_length,
                batching=config.batching, base_url=config.base_url, api_key_env=config.api_key_env, concurrency=config.concurrency,
                request_timeout=config.request_timeout, max_retries=config.max_retries)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return f"interrupted by {signal_name(exc)}"
    return f"{type(exc).__name__}: {exc}"


def _set_status(sf, run_id: int, status: str, text: Optional[str]) -> None:
    try:
        with sf.begin() as session:
            db.update_run(session=session, run_id=run_id, status=status, error=text[:4000] if text else None)
    except Exception:  # the store itself may be what failed
        log.exception("could not mark run %d %s", run_id, status)


def _check_resumable(session, *, run_id: int, data) -> None:
    """A resume must see the dataset the run started on; checked before anything is written."""
    stored = db.get_run(session=session, run_id=run_id)
    same_content = stored["dataset_fingerprint"] in (data.fingerprint, f"name:{data.name}")
    if stored["split"] != data.split or (not same_content and stored["dataset_source"] != data.name):
        raise ConfigError(f"run {run_id} was evaluated on another dataset "
                          f"({stored['dataset_source'] or stored['dataset']} {stored['split']}); start a new run")
    old_hash = (stored["repro"] or {}).get("dataset_sha256")
    if not same_content or (old_hash and old_hash != data.content_hash):
        raise ConfigError(f"the dataset changed since run {run_id} started (content hash differs): "
                          "start a new run instead of resuming")


def _start_run(*, sf, config: RunConfig, ident, dataset_id: int, ids: list[int], data, backend_name: str,
               baseline_for: Optional[int], existing_run: Optional[int], world_size: int,
               lease: WriterLease) -> _RunPlan:
    """Rank 0: create the run row (or reopen it for a resume) under this process's lease; returns its
    id and the pending example ids, sorted — the canonical order every rank shards."""

    name = config.name or ident.label
    if existing_run is not None:
        lease.take(existing_run)  # refuses while another live evaluator writes it
    with sf.begin() as session:
        if existing_run is None:
            repro = _repro.collect(seed=config.seed, dataset_hash=data.content_hash, base_model=ident.base,
                                   adapter=ident.adapter)
            repro["world_size"] = world_size
            repro.update(ident.repro)
            run_id = db.create_run(
                session=session, name=name, model=ident.model, backend=backend_name, dataset_id=dataset_id,
                family=config.family or (name if baseline_for is not None else None), adapter=ident.adapter,
                baseline_for_id=baseline_for,
                generation=config.generation_settings().as_dict(), config=config.stored(), repro=repro,
                n_rows=data.n_rows, n_examples=len(ids), n_rejected=len(data.rejected), **lease.fields(),
            )
            db.add_rejected(session=session, run_id=run_id,
                            rows=[db.RejectedRecord(**dataclasses.asdict(r)) for r in data.rejected])
            done: set[int] = set()
        else:
            run_id = existing_run
            _check_resumable(session, run_id=run_id, data=data)
            stored = db.get_run(session=session, run_id=run_id)
            done = db.done_example_ids(session=session, run_id=run_id)
            resumes = list((stored["repro"] or {}).get("resumes", [])) + [
                {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "skipped": len(done), "world_size": world_size,
                 **_repro.git_state()}]
            # The stored config follows the resume (a baseline that never started may have been replaced).
            db.update_run(session=session, run_id=run_id, status="running", error=None, finished_at=None,
                          config={**(stored["config"] or {}), "baselines": list(config.baselines)},
                          repro={**(stored["repro"] or {}), "resumes": resumes})
    if existing_run is None:
        lease.adopt(run_id)
    return _RunPlan(run_id=run_id, name=name, skipped=len(done), pending=sorted(i for i in ids if i not in done))


def _run_shard(*, sf, config: RunConfig, ident, run_id: int, examples: list[Example], ids: list[int], metrics,
               loader: BackendLoader, backend_name: str, device: str,
               progress: bool) -> tuple[_ShardReport, Optional[BaseException]]:
    """Every rank: load the backend and evaluate its share. Never raises: the error is in the report
    and the exception is returned beside it (it stays on this rank), so that every rank reaches the
    gather."""
    report = _ShardReport()
    error: Optional[BaseException] = None
    backend = ev = None
    try:
        if examples:
            backend = loader(config.model, config.adapter, backend=backend_name, resolved=ident.resolved,
                             **_backend_options(config, device))
            report.info = backend.info()
            ev = _Evaluation(sf=sf, config=config, run_id=run_id, examples=examples, ids=ids, backend=backend,
                             metrics=metrics, progress=progress)
            t0 = time.perf_counter()
            ev.run()
            report.generate_s = time.perf_counter() - t0
            report.info = backend.info()  # external backends add what they saw (matches, retries)
    except BaseException as exc:
        error, report.error = exc, _error_text(exc)
        report.interrupted = signal_name(exc) if isinstance(exc, KeyboardInterrupt) else None
    finally:
        if ev is not None:
            report.generated, report.output_tokens, report.failures = ev.generated, ev.output_tokens, dict(ev.failures)
        if backend is not None:
            try:
                backend.close()
            except Exception:  # pragma: no cover - freeing is best effort
                log.exception("closing the %s backend failed", backend_name)
    return report, error


def _close_run(*, sf, run_id: int, reports: list[_ShardReport], fresh: bool) -> Optional[str]:
    """Rank 0, once every shard is in: record the backend, then aggregate and finish — or mark the run
    interrupted (a stop signal) or failed, with the ranks' errors (returned)."""

    infos = [r.info for r in reports if r.info]
    if infos:
        info = infos[0]
        with sf.begin() as session:
            stored = db.get_run(session=session, run_id=run_id)
            repro_now = dict(stored["repro"] or {})
            if fresh:
                repro_now.update(chat_template_sha256=info.get("chat_template_sha256"),
                                 model_revision=info.get("model_revision"), backend=info)
                if len(reports) > 1:
                    repro_now["devices"] = [r.info.get("device") if r.info else None for r in reports]
            db.update_run(session=session, run_id=run_id, repro=repro_now, model_revision=info.get("model_revision"))
    errors = [(rank, r.error) for rank, r in enumerate(reports) if r.error]
    if errors:
        text = errors[0][1] if len(reports) == 1 else "; ".join(f"rank {k}: {e}" for k, e in errors)
        interrupted = any(r.interrupted for r in reports)
        _set_status(sf, run_id, "interrupted" if interrupted else "failed", text)
        return text
    finalize_run(session_factory=sf, run_id=run_id)
    with sf.begin() as session:
        db.update_run(session=session, run_id=run_id, status="finished", error=None)
    return None


def conversation_shard(pending: list[int], conversation_of: Mapping[int, str], rank: int,
                       world_size: int) -> list[int]:
    """The pending example ids ``rank`` evaluates in a rollout: whole conversations (every ``world_size``-th of
    their sorted ids), so that one process answers a conversation's turns in order."""
    convs = _distributed.shard(sorted({conversation_of[i] for i in pending}), rank, world_size)
    mine = set(convs)
    return [i for i in pending if conversation_of[i] in mine]


def _stored_progress(sf, run_id: int) -> tuple[int, dict[str, int]]:
    """(results committed, failure-kind counts) of the whole run, resumed parts included."""
    with sf() as session:
        done = len(db.done_example_ids(session=session, run_id=run_id))
        rows = db.failure_summary(session=session, run_ids=[run_id])
    counts = rows[0]["counts"] if rows else {}
    return done, {k: v for k, v in counts.items() if v}


def _evaluate_model(*, ctx, sf, config: RunConfig, dataset_id: int, examples: list[Example], key_ids: dict[str, int],
                    data, metrics, loader: BackendLoader, backend_name: str, progress: bool, lease: WriterLease,
                    baseline_for: Optional[int] = None, existing_run: Optional[int] = None,
                    keep_lease: bool = False) -> RunSummary:
    """Create (or resume) one run and evaluate ``config.model`` on ``examples``, on every rank. The run's
    lease is given back when it ends, unless ``keep_lease`` (a candidate whose baselines come next)."""

    started = time.perf_counter()
    # A loader that brings its own model (the Python API's in-memory one) also says what it is.
    ident = getattr(loader, "describe", describe_model)(config.model, config.adapter)
    if ident.external:
        backend_name = ident.kind
    ids = [key_ids[e.key] for e in examples]
    plan = _distributed.on_main(ctx, lambda: _start_run(
        sf=sf, config=config, ident=ident, dataset_id=dataset_id, ids=ids, data=data, backend_name=backend_name,
        baseline_for=baseline_for, existing_run=existing_run, world_size=ctx.world_size, lease=lease))
    run_id, name = plan.run_id, plan.name
    summary = RunSummary(run_id=run_id, name=name, model=config.model, status="running", n_rows=data.n_rows,
                         n_examples=len(examples), n_rejected=len(data.rejected), n_skipped=plan.skipped,
                         baseline_for_id=baseline_for, world_size=ctx.world_size)
    # External backends have no weights to spread: rank 0 takes them whole (the concurrency limit
    # stays what the user set); local models are split over the ranks.
    if ident.external:
        mine = plan.pending if ctx.is_main else []
    elif config.turns == "rollout":  # a conversation's turns stay on one rank, which answers them in order
        mine = conversation_shard(plan.pending, {i: e.conversation_id for i, e in zip(ids, examples)},
                                  ctx.rank, ctx.world_size)
    else:
        mine = _distributed.shard(plan.pending, ctx.rank, ctx.world_size)
    if ctx.parallel:
        log.info("run %d: rank %d evaluates %d of %d pending examples", run_id, ctx.rank, len(mine),
                 len(plan.pending))
    by_id = dict(zip(ids, examples))
    report, own_exc = _run_shard(sf=sf, config=config, ident=ident, run_id=run_id, examples=[by_id[i] for i in mine],
                        ids=mine, metrics=metrics, loader=loader, backend_name=backend_name,
                        device=ctx.device_for(config.device) if not ident.external else config.device,
                        progress=progress)
    reports = ctx.gather(report)
    close_exc: Optional[BaseException] = None
    outcome: Optional[str] = None
    committed = 0
    if ctx.is_main:
        try:
            outcome = _close_run(sf=sf, run_id=run_id, reports=reports, fresh=existing_run is None)
        except BaseException as exc:
            close_exc, outcome = exc, _error_text(exc)
            _set_status(sf, run_id, "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed", outcome)
        finally:
            if not keep_lease:
                lease.release(run_id)
        summary.n_generated = sum(r.generated for r in reports)
        summary.output_tokens = sum(r.output_tokens for r in reports)
        summary.generate_s = max(r.generate_s for r in reports)
        # Failure counts of the whole run, the parts committed before a resume included.
        committed, summary.failures = _stored_progress(sf, run_id)
    else:
        summary.n_generated, summary.output_tokens = report.generated, report.output_tokens
        summary.generate_s, summary.failures = report.generate_s, dict(report.failures)
    outcome = ctx.broadcast(outcome)
    summary.elapsed_s = time.perf_counter() - started
    exc = own_exc or close_exc
    resume_id = baseline_for or run_id
    resume = f"python -m evaluator run --resume {resume_id}"
    if isinstance(exc, KeyboardInterrupt):
        raise RunInterrupted(f"run {run_id} ('{name}') interrupted by {signal_name(exc)}: {committed} of "
                             f"{len(examples)} examples are committed and kept; finish it with '{resume}'",
                             signal_name(exc)) from exc
    if exc is not None:
        if isinstance(exc, UserError):
            raise exc  # a message the user acts on as it is; the run row says "failed" with the same text
        raise RunError(f"run {run_id} ('{name}') failed: {_error_text(exc)}. Committed batches are kept: "
                       f"resume with '{resume}'") from exc
    if outcome is not None:
        raise RunError(f"run {run_id} ('{name}') failed: {outcome}. Committed batches are kept: "
                       f"resume with '{resume}'")
    summary.status = "finished"
    return summary


def run_evaluation(config: RunConfig, *, loader: Optional[BackendLoader] = None, progress: bool = True) -> RunSummary:
    """Evaluate ``config.model`` (and each baseline) on the dataset, writing everything to the store.

    Under torchrun / ``accelerate launch`` (``WORLD_SIZE`` > 1) every process calls this; they share the
    work as described in ``evaluator/_distributed.py``, and rank 0's summary covers all of them.
    SIGINT and SIGTERM raise ``RunInterrupted`` after marking the run interrupted (main thread only).
    """

    ctx = _distributed.from_env()
    try:
        with stop_signals():
            return _run(config, ctx=ctx, loader=loader, progress=progress and ctx.is_main)
    finally:
        ctx.close()


def _check_models(config: RunConfig) -> None:
    """Every model of the run can be loaded (or reached), before anything is written or generated."""

    specs = [(config.model, config.adapter, "--model")] + [(b, None, "--baseline") for b in config.baselines]
    check_models(specs, device=config.device, options=dict(base_url=config.base_url, api_key_env=config.api_key_env))


def _reuse_baseline(*, sf, config: RunConfig, dataset_id: int, data, candidate: int, previous: Optional[int],
                    previous_reused: set[int]) -> Optional[RunSummary]:
    """Rank 0: the finished run this baseline may stand on instead of generating again, linked to the
    candidate as reused; None when the baseline must be evaluated (or resumed).

    A run is reused when it is a local model's run on this dataset whose model files (fingerprint),
    adapter, dataset content, generation settings, scoring settings, evaluator code and package
    versions are all the same (``db.find_reusable_run``). Endpoints (``openai:``) are never reused: the
    model behind them may change. ``config.reuse`` false (``--no-reuse``) evaluates afresh."""
    if previous is not None and previous not in previous_reused:
        return None  # a resumed candidate's own baseline run: resume it
    with sf.begin() as session:
        rid = previous
        if rid is None:
            if not config.reuse:
                return None
            ident = describe_model(config.model, config.adapter)
            if ident.external:
                return None
            repro = dict(dataset_sha256=data.content_hash, base_model_fingerprint=_repro.model_fingerprint(ident.base),
                         adapter_sha256=_repro.adapter_hash(ident.adapter), eval_code_sha256=_repro.eval_code_hash(),
                         packages=_repro.package_versions())
            rid = db.find_reusable_run(session=session, dataset_id=dataset_id,
                                       generation=config.generation_settings().as_dict(), config=config.stored(),
                                       repro=repro, exclude=[candidate])
            if rid is None:
                return None
            db.link_baseline(session=session, candidate_id=candidate, baseline_id=rid, reused=True)
        run = db.get_run(session=session, run_id=rid)
    log.info("baseline %s: reusing run %d, evaluated identically before (--no-reuse evaluates it again)",
             config.model, rid)
    return RunSummary(run_id=rid, name=run["name"], model=config.model, status="finished", n_rows=run["n_rows"],
                      n_examples=run["n_examples"], n_rejected=run["n_rejected"], baseline_for_id=candidate,
                      reused=True)


def _baseline(config: RunConfig, model: str, *, ctx, sf, shared: _Setup, data, candidate: int,
              common: dict[str, Any]) -> RunSummary:
    """One baseline of the candidate: a reused identical run, or its own run evaluated (or resumed) on the
    same examples; then the comparison, stored."""
    # A baseline is its own model: it does not join the candidate's family in the trend views.
    bcfg = config.model_copy(update={"model": model, "adapter": None, "name": None, "baselines": [],
                                     "resume": None, "family": None})
    b = _distributed.on_main(ctx, lambda: _reuse_baseline(
        sf=sf, config=bcfg, dataset_id=shared.dataset_id, data=data, candidate=candidate,
        previous=shared.previous.get(model), previous_reused=shared.reused))
    if b is None:
        b = _evaluate_model(config=bcfg, baseline_for=candidate, existing_run=shared.previous.get(model), **common)
    _distributed.on_main(ctx, lambda: compare_runs(session_factory=sf, run_a_id=candidate,
                                                   run_b_id=b.run_id) and None)
    return b


def _run(config: RunConfig, *, ctx, loader: Optional[BackendLoader], progress: bool) -> RunSummary:

    if loader is None:  # a custom loader (tests, the notebook API) brings its own models
        _check_models(config)
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
        raise _no_examples_error(config.dataset, data.rejected)
    engine = None
    lease: Optional[WriterLease] = None
    candidate: dict[str, Any] = {}

    def prepare() -> _Setup:
        """Rank 0 (first, alone): migrate the store, take a resumed run's lease, write the dataset's
        rows, find what a resume continues."""
        nonlocal engine, lease
        engine = db.open_store(config.db)
        sf = db.session_factory(engine)
        lease = WriterLease(sf)
        existing, previous, reused = None, {}, set()
        if config.resume:
            with sf() as session:
                existing = db.find_run(session=session, ref=config.resume)
                _check_resumable(session, run_id=existing, data=data)  # before the dataset's rows are touched
                for link in db.baseline_links(session=session, run_ids=[existing]):
                    if link["candidate_id"] != existing:
                        continue
                    rid = link["baseline_id"]
                    r = db.get_run(session=session, run_id=rid)
                    previous.setdefault((r["config"] or {}).get("model") or r["model"], rid)
                    if link["reused"]:
                        reused.add(rid)
            lease.take(existing)
            candidate["id"] = existing
        with sf.begin() as session:
            dataset_id = db.get_or_create_dataset(session=session, name=data.display_name, split=data.split,
                                                  turns=config.turns, format=data.format,
                                                  fingerprint=data.fingerprint, source=data.name)
            key_ids = db.upsert_examples(session=session, dataset_id=dataset_id,
                                         examples=[_example_dict(e) for e in data.examples])
        return _Setup(dataset_id=dataset_id, key_ids=key_ids, existing=existing, previous=previous, reused=reused)

    try:
        shared = _distributed.on_main(ctx, prepare)
        if engine is None:
            engine = db.open_store(config.db)  # the other ranks, once rank 0 has migrated it
        sf = db.session_factory(engine)
        if lease is None:
            lease = WriterLease(sf)  # other ranks: never takes a lease (rank 0 writes the run rows)
        common = dict(ctx=ctx, sf=sf, dataset_id=shared.dataset_id, examples=data.examples,
                      key_ids=shared.key_ids, data=data, metrics=metrics, loader=loader,
                      backend_name=backend_name, progress=progress, lease=lease)
        summary = _evaluate_model(config=config, existing_run=shared.existing, keep_lease=bool(config.baselines),
                                  **common)
        candidate["id"] = summary.run_id
        for model in config.baselines:
            summary.baselines.append(_baseline(config, model, ctx=ctx, sf=sf, shared=shared, data=data,
                                               candidate=summary.run_id, common=common))
        return summary
    except KeyboardInterrupt as exc:  # between runs (a comparison, a baseline's start): nothing is lost
        rid = candidate.get("id")
        where = f" run {rid}" if rid else ""
        resume = f"; finish it with 'python -m evaluator run --resume {rid}'" if rid else ""
        raise RunInterrupted(f"interrupted by {signal_name(exc)}:{where} committed results are kept{resume}",
                             signal_name(exc)) from exc
    finally:
        if lease is not None:
            lease.close()
        if engine is not None:
            engine.dispose()
