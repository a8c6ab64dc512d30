"""The Python API's contract: every public name has a docstring with an example, and docs/api.md, its
reference, names every one of them."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import evaluator
from evaluator import api

DOC = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
FUNCTIONS = ["evaluate", "open_store", "generate_response", "EvalCallback"]
METHODS = {api.RunHandle: ["summary", "results", "compare", "failures", "baselines", "plot_distribution",
                           "plot_confidence", "plot_trend", "dashboard_url"],
           api.Store: ["runs", "run"]}


@pytest.mark.parametrize("name", FUNCTIONS + ["RunHandle"])
def test_each_api_name_has_a_docstring_with_an_example_and_is_in_the_reference(name):
    obj = getattr(evaluator, name)
    assert ">>>" in (inspect.getdoc(obj) or ""), f"evaluator.{name} has no example in its docstring"
    assert f"evaluator.{name}" in DOC or f"`{name}`" in DOC


@pytest.mark.parametrize("cls,method", [(c, m) for c, ms in METHODS.items() for m in ms])
def test_each_method_has_a_docstring_and_is_in_the_reference(cls, method):
    doc = inspect.getdoc(getattr(cls, method)) or ""
    assert doc, f"{cls.__name__}.{method} has no docstring"
    assert f".{method}(" in DOC, f"docs/api.md does not name {cls.__name__}.{method}"
    if method.startswith(("plot_", "summary", "results", "compare")):
        assert ">>>" in doc, f"{cls.__name__}.{method} has no example"


def test_the_public_names_are_exactly_these():
    assert sorted(evaluator.__all__) == sorted(FUNCTIONS + ["RunHandle", "Store"])
