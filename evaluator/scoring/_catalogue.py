"""Metrics by name: the built-ins, ``module:name`` plug-ins and ``evaluate:`` metrics.

Above both the registry (``_registry.py``, which imports no metric module) and the metric modules
(``_text.py``, ``_model_metrics.py``, which register themselves on import through ``_builtin.py``):
importing this module registers the built-ins, so every lookup here sees them.
"""
from __future__ import annotations

import importlib
from typing import Iterable, Optional

from evaluator.scoring import _registry
from evaluator.scoring._builtin import BUILTIN_ORDER
from evaluator.scoring._evaluate_hf import evaluate_metric
from evaluator.scoring._registry import MetricSpec, add_metric


def known_metrics() -> list[str]:
    return sorted(_registry._REGISTRY)


def builtin_metrics() -> list[str]:
    """Names of the built-in metrics, in display order."""
    return list(BUILTIN_ORDER)


def _from_module(ref: str) -> MetricSpec:
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"--metric {ref}: cannot import module {module_name!r}: {exc}") from None
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(f"--metric {ref}: module {module_name!r} has no attribute {attr!r}")
    if isinstance(obj, MetricSpec):
        return add_metric(obj) if obj.name not in _registry._REGISTRY else _registry._REGISTRY[obj.name]
    spec = getattr(obj, "metric_spec", None)
    if isinstance(spec, MetricSpec):
        return spec
    if not callable(obj):
        raise ValueError(f"--metric {ref}: {attr!r} is neither a function nor a MetricSpec")
    # A plain function: register it under its own name, direction from an attribute if it has one.
    spec = MetricSpec(name=getattr(obj, "__name__", attr), fn=obj,
                      higher_is_better=getattr(obj, "higher_is_better", True),
                      needs_reference=getattr(obj, "needs_reference", False),
                      description=(obj.__doc__ or "").strip())
    return add_metric(spec)


def get_metrics(names: Optional[Iterable[str]] = None) -> list[MetricSpec]:
    """Resolve metric names to specs. ``None`` → all built-ins.

    A name is a registered metric (``bleu``, ``rougeL`` ...), ``module:function`` (imported; the
    function may carry ``@register_metric``), or ``evaluate:NAME_OR_PATH`` (loaded once). Unknown
    names raise ``ValueError`` listing the known ones.
    """
    registry = _registry._REGISTRY
    if names is None:
        return [registry[n] for n in builtin_metrics()]
    specs: list[MetricSpec] = []
    seen: set[str] = set()
    for raw in names:
        name = raw.strip()
        if name.startswith("evaluate:"):
            spec = evaluate_metric(name[len("evaluate:"):])
        elif name in registry:
            spec = registry[name]
        elif ":" in name:
            spec = _from_module(name)
        else:
            raise ValueError(
                f"unknown metric {name!r}; known: {', '.join(known_metrics())} "
                "(or 'module:function' for your own, 'evaluate:PATH' for an evaluate metric)"
            )
        if spec.name not in seen:
            seen.add(spec.name)
            specs.append(spec)
    return specs


def get_spec(name: str) -> Optional[MetricSpec]:
    """The registered spec of a metric name, if any (used to find directions and corpus rules)."""
    return _registry._REGISTRY.get(name)
