"""Who is writing a run: a lease in the run's row, renewed by a heartbeat.

An evaluator that starts or resumes a run takes the run's lease (``writer`` = "host:pid:token",
``heartbeat_at`` = now) and renews it every ``lease_seconds() / 6`` while it works. A second writer is
refused while the heartbeat is fresh, so two overlapping ``--resume`` of one run cannot both write it.
A writer that dies without a word (kill -9, power loss) stops renewing: after ``lease_seconds()``
its run is shown as interrupted, and another evaluator may take the lease and resume it.

Taking the lease is one conditional ``UPDATE``, atomic on SQLite (the writer's ``BEGIN IMMEDIATE``)
and on PostgreSQL (the row lock makes a concurrent ``UPDATE`` re-check its ``WHERE``). Times are the
writers' UTC clocks; the lease is wide enough (default 120 s) that ordinary clock skew between
machines sharing a PostgreSQL store does not matter.
"""
from __future__ import annotations

import datetime as dt
import os
from typing import Any, Iterable, Optional

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from db._models import Run
from db._values import utcnow

LEASE_ENV = "EVAL_LEASE_S"
DEFAULT_LEASE_S = 120.0


def lease_seconds() -> float:
    """How long a writer may stay silent before its run counts as abandoned (``$EVAL_LEASE_S``, default 120)."""
    try:
        value = float(os.environ.get(LEASE_ENV, DEFAULT_LEASE_S))
    except ValueError:
        value = DEFAULT_LEASE_S
    return value if value > 0 else DEFAULT_LEASE_S


def _stale_before(now: dt.datetime) -> dt.datetime:
    return now - dt.timedelta(seconds=lease_seconds())


def acquire_run(*, session: Session, run_id: int, writer: str,
                dead_writer: Optional[str] = None) -> Optional[dict[str, Any]]:
    """Take the run's lease for ``writer``. None when taken; else the live holder:
    {"writer", "heartbeat_at"} (the run is being written by someone else). ``dead_writer``: a holder
    the caller knows to be dead (a process of its own host that no longer exists), taken over at once."""
    now = utcnow()
    free = [Run.writer.is_(None), Run.heartbeat_at.is_(None), Run.writer == writer,
            Run.heartbeat_at < _stale_before(now)]
    if dead_writer:
        free.append(Run.writer == dead_writer)
    taken = session.execute(
        update(Run).where(Run.id == run_id, or_(*free))
        .values(writer=writer, heartbeat_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if taken:
        return None
    row = session.execute(select(Run.writer, Run.heartbeat_at).where(Run.id == run_id)).first()
    return None if row is None else {"writer": row[0], "heartbeat_at": row[1]}


def renew_runs(*, session: Session, run_ids: Iterable[int], writer: str) -> int:
    """Heartbeat: renew ``writer``'s lease on these runs; returns how many it still holds."""
    ids = list(run_ids)
    if not ids:
        return 0
    return session.execute(
        update(Run).where(Run.id.in_(ids), Run.writer == writer).values(heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount


def release_run(*, session: Session, run_id: int, writer: str) -> None:
    """Give the lease back (the run finished, failed or was interrupted)."""
    session.execute(update(Run).where(Run.id == run_id, Run.writer == writer)
                    .values(writer=None, heartbeat_at=None).execution_options(synchronize_session=False))


def writer_gone(run: dict[str, Any], now: Optional[dt.datetime] = None) -> bool:
    """A "running" run whose writer stopped renewing its lease (killed without a word)."""
    if run.get("status") != "running" or not run.get("writer"):
        return False
    beat = run.get("heartbeat_at")
    return beat is None or beat < _stale_before(now or utcnow())


def status_text(run: dict[str, Any], now: Optional[dt.datetime] = None) -> str:
    """The status as a person should read it: a running run without a live writer is
    "interrupted (no writer since 2026-12-03 09:12:40 UTC)"."""
    status = run.get("status") or ""
    if writer_gone(run, now):
        beat = run.get("heartbeat_at")
        since = beat.strftime("%Y-%m-%d %H:%M:%S UTC") if beat else "its start"
        return f"interrupted (no writer since {since})"
    return status
