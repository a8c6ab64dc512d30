"""``pip install .`` gives a working ``evalbench`` command, with the migrations and the demo data inside.

The package is built from a copy of the checkout (a build writes ``build/`` and ``*.egg-info`` next to
the sources) and installed without dependencies into a temporary folder; the dependencies are this
environment's, so the test needs no network. It then runs from a folder outside the checkout, so
nothing can be imported from the sources by accident.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("evaluator", "db", "dashboard", "migrations")


def _requirements(name: str) -> set[str]:
    """The requirement lines a requirements file adds (without ``-r`` includes and comments)."""
    lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
    return {re.sub(r"\s+#.*$", "", line).strip() for line in lines
            if line.strip() and not line.startswith(("#", "-r"))}


def test_the_extras_list_what_the_requirements_files_add():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert set(project["optional-dependencies"]["gpu"]) == _requirements("requirements-gpu.txt")
    assert set(project["optional-dependencies"]["dev"]) == _requirements("requirements-dev.txt")
    assert project["scripts"]["evalbench"] == "evaluator.cli:main"


def test_pip_install_gives_the_evalbench_command(tmp_path):
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SHIPPED:
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy2(ROOT / name, src / name)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(src)], check=True, capture_output=True, text=True)

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    exe = site / "bin" / "evalbench"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(exe), *args], cwd=work, env=env, capture_output=True, text=True, timeout=300)

    helped = run("--help")
    assert helped.returncode == 0, helped.stderr
    assert all(cmd in helped.stdout for cmd in ("run", "runs", "export", "compare", "demo"))

    # The installed copy, not the checkout, and its migrations build a store.
    probe = subprocess.run([sys.executable, "-c", (
        "import db, evaluator.demo as d, sys; "
        f"assert db.__file__.startswith({str(site)!r}), db.__file__; "
        "assert d.TEST_FILE.is_file(), d.TEST_FILE; "
        "db.open_store('sqlite:///new.sqlite').dispose()")], cwd=work, env=env, capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    listed = run("runs", "--db", "sqlite:///new.sqlite", "--json")
    assert listed.returncode == 0 and listed.stdout == "", listed.stderr

    missing = run("runs", "--db", "sqlite:///nowhere.sqlite")  # a UserError: one line, status 2
    assert missing.returncode == 2 and missing.stderr.startswith("error: no store at ")
