"""Data parallelism across processes: ``torchrun --nproc_per_node N -m evaluator run ...``.

The launcher (torchrun, or ``accelerate launch``, which uses torchrun's machinery) starts N copies of
the command and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``.
``from_env()`` reads them; with ``WORLD_SIZE`` unset or 1 it returns a single-process context whose
collectives are no-ops, so the runner has one code path.

What the ranks share, and how (the runner's side is in ``_runner.py``)::

    rank 0: store setup (migrations, dataset + example rows, run row, done examples)
            ──broadcast──▶ every rank: run id, example ids, pending example ids (sorted)
    every rank: generate + score + commit pending[rank::world_size]     (one transaction per batch)
    every rank ──gather──▶ rank 0: counts, backend info, error (if any)
    rank 0: aggregates (finalize_run), status, baselines' comparison ──broadcast──▶ outcome

The shard is derived from what is *not yet done in the store*, never from the rank alone: a run
started on 4 ranks and killed resumes correctly on 1 (or 8). Only rank 0 reads ``done`` and decides,
so every rank sees the same pending list even while others are already writing.

The process group uses gloo on CPU and nccl on CUDA (each rank on ``cuda:LOCAL_RANK``); the runner
only exchanges small Python objects, which go through a separate gloo group in both cases, so a rank
waiting for a slower one never trips NCCL's watchdog. The wait limit is ``EVAL_DIST_TIMEOUT_S``
(default 24 h): a rank that crashes makes torchrun stop the others long before that.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import pickle
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
TIMEOUT_ENV = "EVAL_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 24 * 3600


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """The part of ``items`` (already in a canonical order) that ``rank`` evaluates: every
    ``world_size``-th item from position ``rank``. Shards are disjoint, cover ``items`` and differ in
    size by at most one."""
    return list(items[rank::world_size])


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None  # "gloo" | "nccl" once initialised
    _group: Any = field(default=None, repr=False)  # gloo group for object collectives
    _owns_group: bool = field(default=False, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world_size > 1

    def device_for(self, requested: str) -> str:
        """The device this rank loads its model on: ``cuda:LOCAL_RANK`` for ``auto``/``cuda`` where
        CUDA is present; an explicit ``cuda:K`` or ``cpu`` is kept."""
        if not self.parallel or requested not in ("auto", "cuda"):
            return requested
        import torch

        if torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return "cpu" if requested == "auto" else requested

    # ------------------------------------------------------------ collectives (no-ops on one process)

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        if not self.parallel:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self._group)
        return box[0]

    def gather(self, obj: Any) -> Optional[list[Any]]:
        """Every rank's ``obj`` in rank order on rank 0; None elsewhere."""
        if not self.parallel:
            return [obj]
        import torch.distributed as dist

        out: Optional[list[Any]] = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0, group=self._group)
        return out

    def close(self) -> None:
        if self._owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self._owns_group = False


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        raise RuntimeError(f"${name}={value!r} is not an integer (set by torchrun / accelerate launch)") from None


def from_env() -> Dist:
    """The process's place among its peers, initialising ``torch.distributed`` when there are several."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Dist()
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    import torch
    import torch.distributed as dist

    timeout = dt.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
    owns = False
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
            dist.init_process_group("nccl", timeout=timeout, device_id=torch.device(f"cuda:{local_rank}"))
        else:
            dist.init_process_group("gloo", timeout=timeout)
        owns = True
    backend = dist.get_backend()
    group = None if backend == "gloo" else dist.new_group(backend="gloo", timeout=timeout)
    ctx = Dist(rank=rank, world_size=world, local_rank=local_rank, backend=backend, _group=group, _owns_group=owns)
    log.info("rank %d of %d (local rank %d, %s)", rank, world, local_rank, backend)
    return ctx


def portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (to be re-raised on other ranks), else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def on_main(ctx: Dist, fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and give its result to every rank; an exception there is raised on
    every rank (so no rank waits forever for a broadcast that will not come)."""
    if not ctx.parallel:
        return fn()
    result: Any = None
    error: Optional[BaseException] = None
    if ctx.is_main:
        try:
            result = fn()
        except Exception as exc:
            error = exc
    result, shared_error = ctx.broadcast((result, None if error is None else portable(error)))
    if error is not None:
        raise error
    if shared_error is not None:
        raise shared_error
    return result
