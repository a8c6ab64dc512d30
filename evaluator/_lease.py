"""The evaluator's side of the run lease (``db/_lease.py``) and of stop signals.

``WriterLease`` holds the lease of every run this process writes: it takes it (or refuses with a
message naming the live writer), renews it from a daemon thread every ``lease / 6`` seconds, and
gives it back when the run ends. ``stop_signals()`` turns SIGTERM (``kill``, ``docker stop``, Slurm
time limits) into the same unwinding as Ctrl-C: committed batches stay, the run is marked
"interrupted", and the message says which ``--resume`` finishes it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import threading
from pathlib import Path
from typing import Iterator, Optional

import db
from db import utcnow  # the store's own clock convention (naive UTC)
from evaluator.config import ConfigError

log = logging.getLogger(__name__)


class RunBusyError(ConfigError):
    """Another live process is writing the run."""


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived (SIGINT or SIGTERM); ``signal_name`` says which."""

    def __init__(self, signal_name: str = "SIGINT"):
        super().__init__(signal_name)
        self.signal_name = signal_name


def signal_name(exc: BaseException) -> str:
    return getattr(exc, "signal_name", "SIGINT")


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``Interrupted`` in the main thread while the block runs (elsewhere,
    e.g. a notebook's worker thread, handlers cannot be set and nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class WriterLease:
    """The lease of the runs this process writes, renewed by a heartbeat thread."""

    def __init__(self, sf):
        self.sf = sf
        self.writer = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.held: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def fields(self) -> dict:
        """Columns for ``db.create_run``: a new run is leased by its creator from the first commit."""
        return dict(writer=self.writer, heartbeat_at=utcnow())

    def adopt(self, run_id: int) -> None:
        """A run created with ``fields()``: already ours."""
        with self._lock:
            self.held.add(run_id)
        self._start()

    def take(self, run_id: int) -> None:
        """Take the lease of an existing run, or raise ``RunBusyError`` naming its live writer."""
        with self.sf.begin() as session:
            holder = db.acquire_run(session=session, run_id=run_id, writer=self.writer)
        if holder is not None and _dead_here(holder["writer"]):
            # Its writer was a process of this machine that no longer exists (kill -9): no need to wait
            # for the lease to run out.
            log.info("run %d: its writer %s is gone; taking the run over", run_id, holder["writer"])
            with self.sf.begin() as session:
                holder = db.acquire_run(session=session, run_id=run_id, writer=self.writer,
                                        dead_writer=holder["writer"])
        if holder is not None:
            beat = holder["heartbeat_at"]
            ago = f"{(utcnow() - beat).total_seconds():.0f} s ago" if beat else "never"
            host, _, rest = (holder["writer"] or "?").partition(":")
            pid = rest.split(":", 1)[0]
            raise RunBusyError(
                f"run {run_id} is being written by another evaluator (host {host}, pid {pid}; last heartbeat "
                f"{ago}): wait for it to end or stop it; a writer silent for {db.lease_seconds():.0f} s "
                "counts as gone and its run may then be resumed")
        self.adopt(run_id)

    def release(self, run_id: int) -> None:
        with self._lock:
            self.held.discard(run_id)
        try:
            with self.sf.begin() as session:
                db.release_run(session=session, run_id=run_id, writer=self.writer)
        except Exception:  # the store itself may be what failed; the lease then expires
            log.warning("could not release the lease of run %d", run_id, exc_info=True)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for run_id in list(self.held):
            self.release(run_id)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="evalbench-heartbeat", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        interval = db.lease_seconds() / 6
        while not self._stop.wait(interval):
            with self._lock:
                ids = sorted(self.held)
            if not ids:
                continue
            try:
                with self.sf.begin() as session:
                    db.renew_runs(session=session, run_ids=ids, writer=self.writer)
            except Exception:  # a busy or unreachable store: try again at the next beat
                log.warning("heartbeat of runs %s failed", ids, exc_info=True)


def _dead_here(writer: Optional[str]) -> bool:
    """The writer was a process of this host, and that process no longer exists."""
    host, _, rest = (writer or "").partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    return pid != os.getpid() and process_gone(pid)


def process_gone(pid: int) -> bool:
    """No process of this machine runs as ``pid`` any more: none exists, or it was killed and its parent has
    not reaped it yet (a zombie, which still answers kill(pid, 0))."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")
