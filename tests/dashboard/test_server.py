"""`streamlit run dashboard/server.py` warms the server: what the pages import is loaded before a page runs."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "dashboard" / "views").glob("*.py")) + [ROOT / "dashboard" / "app.py"]


def _third_party_imports(path: Path) -> set[str]:
    """Top-level modules a page file imports, other than the standard library, Streamlit and our own."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {n for n in names
            if n.split(".")[0] not in sys.stdlib_module_names | {"streamlit", "dashboard", "__future__"}}


def test_the_warm_start_loads_every_library_the_pages_import():
    wanted = sorted(set().union(*map(_third_party_imports, PAGES)))
    assert {"pandas", "altair", "db"} <= set(wanted)  # what the pages import today
    probe = ("import json, sys; from dashboard import server; server.warm(); "
             f"print(json.dumps([m for m in {wanted!r} if m not in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    missing = json.loads(out.stdout.strip().splitlines()[-1])
    assert missing == [], f"add to dashboard/server.py PRELOAD: {missing}"


def test_the_warm_start_loads_the_store_modules_and_the_schema_head():
    probe = ("import json, sys, db; from dashboard import server; server.warm(); "
             "print(json.dumps([sorted(set(db._HOME.values()) - set(sys.modules)), "
             "db.head_revision.cache_info().currsize]))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    missing, cached = json.loads(out.stdout.strip().splitlines()[-1])
    assert missing == [] and cached == 1


def test_streamlit_run_finds_the_app_with_its_warm_start():
    from streamlit.web.server.app_discovery import discover_asgi_app

    found = discover_asgi_app(ROOT / "dashboard" / "server.py")
    assert found.is_asgi_app and found.import_string.endswith(":app")
