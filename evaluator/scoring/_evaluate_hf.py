"""``--metric evaluate:NAME_OR_PATH[#KEY]``: a Hugging Face ``evaluate`` metric as a per-example metric.

The module is loaded once per process (``evaluate.load`` is slow) and called per example with
``compute(predictions=[output], references=[reference])``; the number reported is the result's
``KEY`` entry, or its only numeric entry when no key is given. The metric is named
``evaluate:<name>[.<key>]`` in the store. It runs in the calling process (a loaded module cannot be
sent to worker processes).

Offline, ``evaluate.load`` only works with a local path: a hub name such as ``sacrebleu`` makes it
fetch the metric script. Without network access that is reported as a one-line error that says
how to get the directory. The built-in metrics never call ``evaluate``.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Optional

from evaluator.scoring._registry import MetricSpec
from evaluator.types import Sample, reference_of


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "HF_EVALUATE_OFFLINE"))


def _hint(path: str) -> str:
    return (f"download its directory (git clone https://huggingface.co/spaces/evaluate-metric/{path}) "
            f"and pass --metric evaluate:/path/to/{path}")


@lru_cache(maxsize=None)
def _load(path: str):
    local = Path(path).expanduser()
    if not local.exists() and _offline():
        raise ValueError(f"evaluate metric {path!r} is not a local path and the hub is offline "
                         f"(HF_HUB_OFFLINE): {_hint(path)}")
    try:
        import evaluate
    except ImportError:  # pragma: no cover - evaluate is in requirements.txt
        raise ValueError("--metric evaluate:... needs the 'evaluate' package (pip install evaluate)") from None
    try:
        return evaluate.load(str(local) if local.exists() else path, keep_in_memory=True)
    except Exception as exc:  # network, missing script, bad script: one clear line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        extra = "" if local.exists() else f"; if there is no network, {_hint(path)}"
        raise ValueError(f"cannot load evaluate metric {path!r}: {first}{extra}") from None


def _pick(result: dict, key: Optional[str], label: str) -> float:
    if key is not None:
        if key not in result:
            raise KeyError(f"{label} returned no {key!r} (it returned {sorted(result)})")
        return float(result[key])
    numeric = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if len(numeric) == 1:
        return float(next(iter(numeric.values())))
    raise ValueError(f"{label} returned several numbers {sorted(numeric)}: pick one with evaluate:PATH#KEY")


def evaluate_metric(ref: str, *, higher_is_better: Optional[bool] = True) -> MetricSpec:
    """A ``MetricSpec`` for ``evaluate:`` + ``ref`` (``NAME_OR_PATH`` or ``NAME_OR_PATH#KEY``)."""
    path, _, key = ref.partition("#")
    path = path.strip()
    if not path:
        raise ValueError("--metric evaluate: needs a metric name or path, e.g. evaluate:./metrics/my_metric")
    module = _load(path)
    base = Path(path.rstrip("/")).name or path
    name = f"evaluate:{base}" + (f".{key}" if key else "")
    label = f"evaluate metric {base!r}"

    def fn(sample: Sample) -> Optional[float]:
        ref_text = reference_of(sample)
        if ref_text is None:
            return None
        result = module.compute(predictions=[sample.output or ""], references=[ref_text])
        return _pick(result or {}, key or None, label)

    fn.__doc__ = f"Hugging Face evaluate metric {path!r}" + (f", key {key!r}" if key else "")
    return MetricSpec(name=name[:100], fn=fn, higher_is_better=higher_is_better, needs_reference=True,
                      description=fn.__doc__, parallel=False)
