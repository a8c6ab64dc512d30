"""The documentation cannot drift: the README stays a front door, links resolve, and every command, flag
and built-in metric is documented.

Commands and flags are read from the argparse parsers, metric names from the registry, so a new flag or
metric without a line in ``docs/`` (or the README) fails here.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from evaluator.cli import build_parser
from evaluator.scoring import builtin_metrics

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _prose(path: Path) -> str:
    """The text outside fenced code blocks (links in code are not links)."""
    out, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            out.append(line)
    return "\n".join(out)


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces as hyphens."""
    found = set()
    for line in _prose(path).splitlines():
        m = re.match(r"^#{1,6} (.+)$", line)
        if m:
            found.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return found


def test_the_readme_is_a_front_door_of_at_most_250_lines():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    for part in ("## The two commands", "make demo", "make test", "GPU", "## Command line", "## Documentation"):
        assert part in text, part


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: p.name)
def test_every_relative_link_resolves(path):
    broken = []
    for target in LINK.findall(_prose(path)):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.name}")
    assert broken == []


def test_the_link_checker_finds_a_broken_file_and_a_broken_anchor(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title here\n\n[ok](#title-here) [bad](#nowhere) [gone](missing.md)\n\n```\n[code](x.md)\n```\n")
    targets = LINK.findall(_prose(page))
    assert targets == ["#title-here", "#nowhere", "missing.md"]
    assert _anchors(page) == {"title-here"}


def _documentation() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in [README, *PAGES])


def _commands_and_flags() -> list[tuple[str, str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = []
    for name, command in sub.choices.items():
        out.append((name, ""))
        for action in command._actions:
            out += [(name, flag) for flag in action.option_strings if flag.startswith("--") and flag != "--help"]
    return out


def test_every_command_and_flag_is_documented():
    docs = _documentation()
    missing = [f"{cmd} {flag}".strip() for cmd, flag in _commands_and_flags()
               if not re.search(rf"(?<![\w-]){re.escape(flag or f'evaluator {cmd}')}(?![\w-])", docs)]
    assert missing == []


def test_every_built_in_metric_is_documented_in_the_metrics_page():
    page = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    assert [m for m in builtin_metrics() if f"`{m}`" not in page] == []
