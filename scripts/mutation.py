"""Mutation testing of the modules where a silent bug costs the most (``make mutation``).

mutmut (settings in ``pyproject.toml``, ``[tool.mutmut]``) copies ``evaluator/`` and ``db/`` into
``mutants/``, mutates the listed files (statistics and comparisons, metric definitions, perplexity and
confidence, dataset reading, resume and store queries) and runs each mutant against the tests that
cover the mutated function. Results are cached in ``mutants/`` by content: a second run only tests
mutants of functions that changed. The last line printed is one JSON object::

    {"killed": ..., "survived": ..., "no_tests": ..., "timeout": ..., "total": ..., "score": 0.93,
     "survivors": ["evaluator/scoring/_stats.py:231", ...], "load_avg": [...], "seconds": ...}

``survived`` counts mutants no test noticed, ``no_tests`` those in code no selected test runs (both are
holes), ``score`` = (killed + timeout) / (total - skipped). Survivors that cannot change behaviour
(equivalent mutants) are listed in docs/mutation.md.

    python scripts/mutation.py [--workers N] [--fresh]
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTMUT = Path(sys.executable).with_name("mutmut")
HOLES = ("survived", "no tests")


def _run(args: list[str], env: dict[str, str], capture: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([str(MUTMUT), *args], cwd=ROOT, env=env, text=True,
                          capture_output=capture, check=False)


def _statuses(env: dict[str, str]) -> dict[str, str]:
    """mutant name -> status, from ``mutmut results --all true``."""
    out = _run(["results", "--all", "true"], env, capture=True).stdout
    found = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name:
            found[name] = status.strip()
    return found


def _function_starts(path: Path) -> dict[str, int]:
    """Qualified function name ("holm", "Class.method") -> its first line (decorators included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    starts: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                starts[prefix + child.name] = first
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
    visit(tree, "")
    return starts


def _location(name: str, diff: str, starts_by_file: dict[Path, dict[str, int]]) -> str:
    """"file:line" of a mutant: its function's first line plus the offset of the first changed line."""
    module, _, mangled = name.rpartition(".")
    path = Path(*module.split(".")).with_suffix(".py")
    func = re.sub(r"__mutmut_\d+$", "", mangled)
    func = func[2:] if func.startswith("x_") else func  # mutmut's prefix for a module-level function
    func = func.lstrip("xǁ").replace("ǁ", ".")  # and for a method: xǁClassǁmethod
    if path not in starts_by_file:
        starts_by_file[path] = _function_starts(ROOT / path) if (ROOT / path).is_file() else {}
    start = starts_by_file[path].get(func)
    offset = 0
    hunk = re.search(r"^@@ -(\d+)", diff, flags=re.M)
    if hunk:
        offset = int(hunk.group(1)) - 1
        after = diff[hunk.end():].splitlines()[1:]
        for line in after:
            if line.startswith("-"):
                break
            offset += 1
    return f"{path}:{start + offset}" if start is not None else f"{path}:{func}"


def _locations(names: list[str]) -> list[str]:
    if not names:
        return []
    os.chdir(ROOT)  # mutmut reads its settings and mutants/ relative to the working directory
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    starts: dict[Path, dict[str, int]] = {}
    out = []
    for name in names:
        try:
            diff = get_diff_for_mutant(name)
        except Exception:  # a mutant whose diff cannot be rebuilt still gets its function
            diff = ""
        out.append(_location(name, diff, starts))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="mutants tested at once")
    parser.add_argument("--fresh", action="store_true", help="forget cached results (mutants/) first")
    args = parser.parse_args(argv)
    if not MUTMUT.is_file():
        print(f"mutation: {MUTMUT} not found; run 'bash scripts/setup.sh' (requirements-dev.txt has mutmut)",
              file=sys.stderr)
        return 2
    if args.fresh:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    # SQLite only (tests/conftest.py, STORES): a PostgreSQL server per mutant would cost more than its tests.
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               EVAL_TEST_STORES="sqlite", OMP_NUM_THREADS="1")
    started = time.monotonic()
    # The tiny Llama checkpoint some tests load (tests/conftest.py, tiny_model_dir) is built once here,
    # in its own process, instead of once per mutant's pytest session (about 4 seconds each).
    tiny = ROOT / "artifacts" / "mutation" / "tiny-llama"
    shutil.rmtree(tiny, ignore_errors=True)
    subprocess.run([sys.executable, "-c", f"from tests.conftest import build_tiny_llama; build_tiny_llama({str(tiny)!r})"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    env["EVAL_TEST_TINY_LLAMA"] = str(tiny)
    code = _run(["run", "--max-children", str(max(1, args.workers))], env).returncode
    if code not in (0,):
        print(f"mutation: 'mutmut run' exited {code}", file=sys.stderr)
    statuses = _statuses(env)
    if not statuses:
        print("mutation: mutmut recorded no results (see its output above)", file=sys.stderr)
        return 1
    count = {s: sum(1 for v in statuses.values() if v == s) for s in set(statuses.values())}
    holes = sorted(n for n, s in statuses.items() if s in HOLES)
    killed, timeout = count.get("killed", 0), count.get("timeout", 0)
    skipped = count.get("skipped", 0)
    total = len(statuses)
    score = (killed + timeout) / (total - skipped) if total > skipped else 0.0
    locations = _locations(holes)
    for where, name in sorted(zip(locations, holes)):
        print(f"{statuses[name]:<9} {where}  ({name})")
    unchecked = count.get("not checked", 0)
    if unchecked:
        print(f"mutation: {unchecked} mutants were not checked (the run was stopped): the score is partial",
              file=sys.stderr)
    print(json.dumps({
        "killed": killed, "survived": count.get("survived", 0), "no_tests": count.get("no tests", 0),
        "timeout": timeout, "not_checked": unchecked, "total": total, "score": round(score, 4), "survivors": sorted(set(locations)),
        "workers": args.workers, "seconds": round(time.monotonic() - started, 1), "load_avg": list(os.getloadavg()),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
