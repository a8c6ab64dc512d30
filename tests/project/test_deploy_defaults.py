"""Safe defaults for a shared dashboard (docs/deploying.md): loopback only, XSRF protection on, secrets never
committed."""
from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

from evaluator.commands import demo

ROOT = Path(__file__).resolve().parents[2]


def test_the_dashboard_binds_to_loopback_with_xsrf_protection_from_the_repository_root():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1" and config["server"]["enableXsrfProtection"] is True


def test_sign_in_secrets_and_the_role_list_are_never_committed():
    for name in ("secrets.toml", "roles.toml"):
        proc = subprocess.run(["git", "check-ignore", "-q", f".streamlit/{name}"], cwd=ROOT)
        assert proc.returncode == 0, f".streamlit/{name} is not ignored by git"


def test_the_demo_starts_its_dashboard_on_loopback(monkeypatch):
    started = []

    class Exited:
        def poll(self):
            return 1

    monkeypatch.setattr(demo.subprocess, "Popen", lambda cmd, env: started.append(cmd) or Exited())
    demo.start_dashboard("sqlite:///x.sqlite", 8599)
    (cmd,) = started
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
