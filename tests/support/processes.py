"""torchrun subprocesses: the launcher command, the results a run has committed so far, and killing a
launcher with every worker it started, as if the machine went down (used by the torchrun tests and by
benchmarks/gpu_check.py)."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

import db
from evaluator._lease import process_gone


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (torchrun starts each worker in a session of its own, so killing
    the launcher's process group would leave the workers running)."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, ppid in parent.items() if ppid in frontier]
        tree.extend(frontier)
    return tree


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and its descendants, and return once none of them runs any more.

    A killed process still answers ``kill(pid, 0)`` while the kernel tears down its address space (a
    torch worker takes a moment), so a resume started at once could find its writer alive; waiting for
    every process to be gone or a zombie is what "the machine went down" means."""
    tree = process_tree(pid)
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 60
    while not all(process_gone(p) for p in tree):
        assert time.monotonic() < deadline, f"processes {tree} outlived SIGKILL by 60 s"
        time.sleep(0.05)


def torchrun(nproc: int, *target: str) -> list[str]:
    """``torchrun --standalone --nproc_per_node N -m evaluator run`` (or another target)."""
    exe = Path(sys.executable).with_name("torchrun")
    launcher = [str(exe)] if exe.is_file() else [sys.executable, "-m", "torch.distributed.run"]
    return [*launcher, "--standalone", "--nproc_per_node", str(nproc), *(target or ("-m", "evaluator", "run"))]


def result_count(url: str) -> int:
    """Results committed in the store at ``url`` (0 before its tables exist)."""
    engine = db.make_engine(url)
    try:
        with engine.connect() as c:
            return int(c.scalar(select(func.count()).select_from(db.Result)) or 0)
    except Exception:  # no tables yet
        return 0
    finally:
        engine.dispose()
