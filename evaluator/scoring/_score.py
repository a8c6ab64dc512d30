"""Per-example scoring: run every metric on every sample, batch by batch, optionally in worker processes.

Each metric runs in its own try/except: one metric failing on one example becomes ``(None, "error")``
for that metric and example (what ``db.insert_results`` stores as the metric's error) and the other
metrics still run. A sample whose generation failed gets ``(None, "generation failed: ...")`` for
every metric, so the failure is visible per metric rather than scored as a zero.

Worker processes (``workers > 1``) come from one ``ProcessPoolExecutor`` per worker count, created on
first use with the ``spawn`` start method (safe when the parent holds a CUDA context or torch
threads) and reused by every later call in the process; each worker keeps its own scorer objects and
stemming cache warm. Metric functions are pure, so the numbers are identical for any worker count
and chunk size. Metrics that cannot be pickled to a worker (``MetricSpec.parallel=False``, e.g. a
loaded ``evaluate`` module) run in the calling process.
"""
from __future__ import annotations

import atexit
import logging
import math
import pickle
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Iterable, Iterator, Optional, Sequence, Union

from evaluator.scoring._catalogue import get_metrics
from evaluator.scoring._registry import MetricSpec
from evaluator.scoring._text import absorb_segment_stats, collect_segment_stats
from evaluator.types import Sample, reference_of

log = logging.getLogger(__name__)

Value = Union[float, None, tuple[None, str]]
CHUNK_SIZE = 32  # samples per task sent to a worker
_MAX_ERROR_CHARS = 500

_POOLS: dict[int, ProcessPoolExecutor] = {}


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_ERROR_CHARS else text[:_MAX_ERROR_CHARS - 1] + "…"


def score_one(sample: Sample, metrics: Sequence[MetricSpec]) -> dict[str, Value]:
    """All metrics of one sample: float, None (not applicable) or (None, error text)."""
    if sample.error or sample.finish_reason == "error":
        msg = f"generation failed: {sample.error or 'error'}"[:_MAX_ERROR_CHARS]
        return {m.name: (None, msg) for m in metrics}
    has_ref = reference_of(sample) is not None
    out: dict[str, Value] = {}
    for m in metrics:
        if m.needs_reference and not has_ref:
            out[m.name] = None
            continue
        try:
            value = m.fn(sample)
        except Exception as exc:  # one metric's failure must not stop the others
            out[m.name] = (None, _error_text(exc))
            continue
        if value is None:
            out[m.name] = None
            continue
        try:
            value = float(value)
        except (TypeError, ValueError):
            out[m.name] = (None, f"metric returned {type(value).__name__}, not a number")
            continue
        out[m.name] = (None, "metric returned NaN") if math.isnan(value) else value
    return out


def _score_chunk(samples: Sequence[Sample], metrics: Sequence[MetricSpec]):
    """Worker task: the chunk's values, plus the BLEU/chrF segment statistics computed on the way
    (the parent keeps them, so its finalize_run does not compute them again)."""
    collect_segment_stats(True)
    try:
        values = [score_one(s, metrics) for s in samples]
    finally:
        stats = collect_segment_stats(False)
    return values, stats


def _pool(workers: int) -> ProcessPoolExecutor:
    pool = _POOLS.get(workers)
    if pool is None:
        import multiprocessing

        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        _POOLS[workers] = pool
    return pool


def _warm(_: int = 0) -> int:
    """Import the scoring libraries and build the scorers (a worker's first task); returns the pid."""
    import os
    import time

    score_one(Sample(output="warm up", reference="warm up"), get_metrics())
    time.sleep(0.05)  # stay busy a moment, so that the next warm-up task goes to another worker
    return os.getpid()


def start_pool(workers: int, *, timeout_s: float = 120.0) -> None:
    """Start the worker processes now (they otherwise start on the first parallel call) and wait until
    every one has imported the scoring libraries, so timings and progress bars exclude start-up."""
    import time

    if workers <= 1:
        return
    pool = _pool(workers)
    seen: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while len(seen) < workers and time.monotonic() < deadline:
        seen.update(pool.map(_warm, range(workers)))


def shutdown_pools() -> None:
    """Stop the worker processes (also done at interpreter exit)."""
    while _POOLS:
        _, pool = _POOLS.popitem()
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown_pools)


def _picklable(spec: MetricSpec) -> bool:
    if not spec.parallel:
        return False
    try:
        pickle.dumps(spec)
    except Exception:  # lambdas, closures, local classes
        return False
    return True


def iter_scores(samples: Iterable[Sample], metrics: Optional[Sequence[MetricSpec]] = None,
                workers: Optional[int] = None, *, chunk_size: int = CHUNK_SIZE) -> Iterator[dict[str, Value]]:
    """Like ``score_samples`` but a generator: yields each sample's dict in input order as soon as
    its chunk is done, keeping at most ``2 × workers`` chunks in flight (bounded memory for long runs)."""
    specs = list(metrics) if metrics is not None else get_metrics()
    workers = int(workers or 1)
    remote = [m for m in specs if workers > 1 and _picklable(m)]
    local = [m for m in specs if m not in remote]
    names = [m.name for m in specs]

    def merged(chunk: Sequence[Sample], done) -> Iterator[dict[str, Value]]:
        if isinstance(done, tuple):  # from a worker: (values, segment statistics)
            done, stats = done
            absorb_segment_stats(stats)
        for sample, part in zip(chunk, done):
            if local:
                part.update(score_one(sample, local))
            yield {n: part[n] for n in names}  # keep the caller's metric order

    chunks = _chunks(samples, max(1, chunk_size))
    if not remote:
        for chunk in chunks:
            yield from merged(chunk, [{} for _ in chunk])
        return
    pool = _pool(workers)
    pending: deque[tuple[list[Sample], Future]] = deque()
    warned = False

    def result(chunk: list[Sample], fut: Future):
        nonlocal warned
        try:
            return fut.result()
        except Exception as exc:  # a worker that cannot run the chunk: do it here
            if isinstance(exc, BrokenProcessPool):
                _POOLS.pop(workers, None)
            if not warned:
                log.warning("scoring in a worker process failed (%s); scoring in this process instead",
                            _error_text(exc))
                warned = True
            return _score_chunk(chunk, remote)

    for chunk in chunks:
        try:
            pending.append((chunk, pool.submit(_score_chunk, chunk, remote)))
        except RuntimeError:  # the pool broke or was shut down: finish here
            pending.append((chunk, _failed_future(chunk)))
        if len(pending) >= 2 * workers:
            done_chunk, fut = pending.popleft()
            yield from merged(done_chunk, result(done_chunk, fut))
    while pending:
        done_chunk, fut = pending.popleft()
        yield from merged(done_chunk, result(done_chunk, fut))


def _failed_future(chunk) -> Future:
    fut: Future = Future()
    fut.set_exception(RuntimeError("process pool unavailable"))
    return fut


def _chunks(samples: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    chunk: list[Sample] = []
    for s in samples:
        chunk.append(s)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def score_samples(samples: Sequence[Sample], metrics: Optional[Sequence[MetricSpec]] = None,
                  workers: Optional[int] = None, *, chunk_size: int = CHUNK_SIZE) -> list[dict[str, Value]]:
    """Score samples with the given metrics (default: all built-ins); one dict per sample, in order.

    Values: a float; None where the metric does not apply (no reference, no log-probs); or
    ``(None, "error text")`` where it failed — the form ``db.insert_results`` takes as ``metrics``.
    ``workers`` > 1 uses the shared process pool (created once per process, then reused).
    """
    return list(iter_scores(samples, metrics, workers, chunk_size=chunk_size))
