"""``python -m evaluator demo``: its flags, and the runs it asks the runner for (runner replaced by a fake)."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from evaluator.cli import build_parser
from evaluator.commands import demo as demo_cmd
from evaluator.demo import TEST_FILE, DemoModels


def test_demo_flags_parse():
    args = build_parser().parse_args(["demo", "--db", "x.sqlite", "--cache", "c", "--no-dashboard", "--port", "9000",
                                      "--rebuild"])
    assert (args.db, args.cache, args.dashboard, args.port, args.rebuild) == ("x.sqlite", "c", False, 9000, True)
    defaults = build_parser().parse_args(["demo"])
    assert (defaults.db, defaults.cache, defaults.dashboard, defaults.port, defaults.rebuild) == (
        None, None, True, 8501, False)


def test_demo_help_shows_examples(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "python -m evaluator demo --db demo.sqlite --no-dashboard" in out


def _fake_models(tmp_path: Path) -> DemoModels:
    base = tmp_path / "demo-base"
    return DemoModels(base_dir=base, tokenizer_dir=base,
                      versions=[(v, tmp_path / f"demo-{v}") for v in ("v1", "v2", "v3")])


def test_versions_are_evaluated_oldest_first_against_the_base(tmp_path, store_url, monkeypatch):
    seen = []

    class Summary:
        def lines(self):
            return []

    monkeypatch.setattr(demo_cmd, "run_evaluation", lambda config, progress: seen.append(config) or Summary())
    models = _fake_models(tmp_path)
    demo_cmd.evaluate_versions(models, url=store_url, progress=False)
    assert [c.name for c in seen] == ["demo-v1", "demo-v2", "demo-v3"]
    for config, (_, adapter) in zip(seen, models.versions):
        assert config.model == str(models.base_dir) and config.adapter == str(adapter)
        assert config.baselines == [str(models.base_dir)]
        assert (config.family, config.dataset, config.turns, config.db) == ("demo", str(TEST_FILE), "all", store_url)
        assert config.max_new_tokens == demo_cmd.MAX_NEW_TOKENS and not config.do_sample


def test_a_busy_port_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    def no_build(*args, **kwargs):
        raise AssertionError("built models although the port is busy")

    monkeypatch.setattr(demo_cmd, "build_demo_models", no_build)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        args = build_parser().parse_args(["demo", "--db", str(tmp_path / "s.sqlite"), "--port", str(port)])
        assert args.func(args) == 2
    assert f"port {port} is in use" in capsys.readouterr().err
