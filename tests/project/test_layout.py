"""The import graph of the project, read from the source: layers, no cycles, imports at the top.

Function-level imports count: an import inside a function is still an edge of the graph, only a hidden
one. The rules are those of docs/development.md.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("evaluator", "db", "dashboard")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, ast.Module]:
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    return {_module_name(p): ast.parse(p.read_text(encoding="utf-8"), filename=str(p)) for p in files}


def _imports(tree: ast.Module, known: set[str]) -> list[tuple[str, ast.AST]]:
    """(imported project module, node) for every import statement in the file, at any depth."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                target = full if full in known else node.module
                if target.split(".")[0] in PACKAGES:
                    out.append((target, node))
        elif isinstance(node, ast.Import):
            out += [(a.name, node) for a in node.names if a.name.split(".")[0] in PACKAGES]
    return out


def _function_level(tree: ast.Module) -> set[int]:
    """ids of the import nodes that sit inside a function. A module-level ``__getattr__`` (PEP 562) is the one
    exception: ``evaluator/__init__.py`` re-exports the Python API through it, so that importing any part of
    the package (a scoring worker, ``--help``) does not load the API's store and pandas imports."""
    inner = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and not (fn.name == "__getattr__"
                                                                             and fn in tree.body):
            inner |= {id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return inner


def test_layers_db_imports_neither_evaluator_nor_dashboard_and_evaluator_not_dashboard():
    sources = _sources()
    known = set(sources)
    for name, tree in sources.items():
        targets = {t.split(".")[0] for t, _ in _imports(tree, known)}
        if name.split(".")[0] == "db":
            assert targets <= {"db"}, (name, targets)
        if name.split(".")[0] == "evaluator":
            assert "dashboard" not in targets, name


def test_project_modules_are_imported_at_the_top_of_a_file():
    found = []
    for name, tree in _sources().items():
        inner = _function_level(tree)
        found += [f"{name}:{node.lineno} imports {target}" for target, node in _imports(tree, set())
                  if id(node) in inner]
    assert found == []


def test_a_scoring_worker_does_not_load_the_store():
    """Every scoring worker process imports the scoring package, which imports ``db`` at the top; ``db``
    loads its modules on first use, so a worker that never touches the store never imports SQLAlchemy
    (it would add about 0.4 s to each worker's start)."""
    import subprocess
    import sys

    code = "import evaluator.scoring._score, sys; print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path)
        path.pop()
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    return cycles


def test_the_import_graph_has_no_cycle():
    sources = _sources()
    known = set(sources)
    graph = {name: {t for t, _ in _imports(tree, known) if t in known and t != name}
             for name, tree in sources.items()}
    assert len(graph) > 50 and _cycles(graph) == []


def test_the_checks_see_a_cycle_and_a_hidden_import():
    """The checks above can fail: here on made-up modules."""
    a = ast.parse("from evaluator.b import f\n")
    b = ast.parse("def g():\n    from evaluator.a import h\n")
    known = {"evaluator.a", "evaluator.b"}
    graph = {"evaluator.a": {t for t, _ in _imports(a, known)}, "evaluator.b": {t for t, _ in _imports(b, known)}}
    assert _cycles(graph) == ["evaluator.a -> evaluator.b -> evaluator.a"]
    assert [t for t, n in _imports(b, known) if id(n) in _function_level(b)] == ["evaluator.a"]


def test_ruff_check_is_clean():
    """The lint settings are in pyproject.toml ([tool.ruff]); every noqa left says why."""
    import subprocess
    import sys

    ruff = Path(sys.executable).with_name("ruff")
    proc = subprocess.run([str(ruff), "check", "--no-cache", "--output-format", "concise", str(ROOT)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


MAX_FUNCTION_LINES = 80  # docs/development.md; Alembic revisions (migrations/) are generated and left out


def _long_functions(tree: ast.Module, where: str) -> list[str]:
    return [f"{where}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]


def test_no_function_is_longer_than_80_lines():
    files = [p for d in (*PACKAGES, "tests", "benchmarks", "scripts") for p in sorted((ROOT / d).rglob("*.py"))]
    long = [f for p in files for f in _long_functions(ast.parse(p.read_text(encoding="utf-8")),
                                                          str(p.relative_to(ROOT)))]
    assert len(files) > 100 and long == []


def test_the_length_check_sees_a_long_function():
    def source(lines: int) -> str:  # a function of exactly ``lines`` lines
        return "def f():\n" + "".join(f"    x{i} = {i}\n" for i in range(lines - 1))
    assert _long_functions(ast.parse(source(81)), "m.py") == ["m.py:1 f (81 lines)"]
    assert _long_functions(ast.parse(source(80)), "m.py") == []
