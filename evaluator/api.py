"""The Python API: evaluate from the notebook where the model was just fine-tuned (docs/api.md).

    >>> import evaluator
    >>> run = evaluator.evaluate(model, tokenizer, dataset="data/support.jsonl", baselines=["meta-llama/Llama-3.1-8B-Instruct"],
    ...                          name="support-v4", family="support-lora", max_new_tokens=256)
    >>> run.summary()                      # metric, value, ci_low, ci_high, n
    >>> run.compare()                      # against its baseline: delta, CI, Holm p, wins/ties/losses

``evaluate`` takes what the CLI's ``--model`` takes (a path, a Hub id, ``openai:MODEL``) or a model object in
memory (transformers or PEFT), and goes through the CLI's own code path: the same store, batching and
scores, so its outputs equal a CLI run of the same weights saved to disk. ``open_store`` lists stored runs
as ``RunHandle``s; ``generate_response`` answers one prompt the way the batch path would.
"""
from __future__ import annotations

import copy
import hashlib
import html
import sys
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import pandas as pd

import db
from evaluator import cli
from evaluator._runner import run_evaluation
from evaluator.config import RunConfig, build_config
from evaluator.models import ModelIdentity, ResolvedModel, check_models, describe_model, load_backend
from evaluator.models._chat import apply_template_choice
from evaluator.models._transformers import HFBackend
from evaluator.scoring import compare_runs
from evaluator.types import GenerationSettings

IN_MEMORY = "in-memory:"  # the --model spec of a model object handed to evaluate()
DASHBOARD_ENV = "EVAL_DASHBOARD_URL"
DEFAULT_DASHBOARD = "http://127.0.0.1:8501"


# ---------------------------------------------------------------- in-memory models


def _is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def _base_source(model: Any) -> str:
    """Where the model's base weights came from: the PEFT config's base, else the model's own path."""
    if _is_peft(model):
        cfg = model.peft_config.get(getattr(model, "active_adapter", "default")) or next(iter(model.peft_config.values()))
        if cfg.base_model_name_or_path:
            return str(cfg.base_model_name_or_path)
    return str(getattr(getattr(model, "config", None), "_name_or_path", "") or getattr(model, "name_or_path", ""))


def _tensors_sha256(tensors: dict[str, Any]) -> str:
    """sha256 over each tensor's name, shape, dtype and bytes, in name order."""
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}\n".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def weights_record(model: Any) -> dict[str, Any]:
    """The reproducibility fields of an in-memory model: a PEFT model's adapter weights hashed in full (its
    base is the one on disk, frozen during LoRA training); any other model's weights hashed in full."""
    if _is_peft(model):
        from peft import get_peft_model_state_dict

        return {"in_memory": True, "adapter_sha256": _tensors_sha256(get_peft_model_state_dict(model))}
    digest = _tensors_sha256(dict(model.state_dict()))
    return {"in_memory": True, "base_model_fingerprint": f"in-memory:{digest}"}


def _prepared_tokenizer(tokenizer: Any, source: str, chat_template: Optional[str]) -> Any:
    """A copy set up as the evaluator's loader sets a tokenizer it loads (the caller's stays as it is)."""
    tok = copy.deepcopy(tokenizer)
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    apply_template_choice(tok, chat_template, source)
    return tok


class _InMemoryLoader:
    """The runner's model loader for one in-memory model (``IN_MEMORY`` spec); other specs (the baselines)
    load as the CLI loads them."""

    def __init__(self, spec: str, model: Any, tokenizer: Any, *, label: str):
        self.spec, self.model, self.tokenizer, self.label = spec, model, tokenizer, label
        self.base = _base_source(model)
        self.resolved = ResolvedModel(base=self.base, tokenizer_source=self.base)
        self._ident: Optional[ModelIdentity] = None

    def describe(self, model: str, adapter: Optional[str]) -> ModelIdentity:
        """What the run stores about the model; its weights are hashed here, once, only for a run."""
        if model != self.spec:
            return describe_model(model, adapter)
        if self._ident is None:
            self._ident = ModelIdentity(kind="local", label=self.label, model=self.base or self.label,
                                        base=self.base or None, adapter="(in memory)" if _is_peft(self.model) else None,
                                        resolved=self.resolved, repro=weights_record(self.model))
        return self._ident

    def __call__(self, model: str, adapter: Optional[str], **options: Any):
        if model != self.spec:
            return load_backend(model, adapter, **options)
        tokenizer = self.tokenizer
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.base)
        tok = _prepared_tokenizer(tokenizer, self.base, options.get("chat_template"))
        device = str(next(self.model.parameters()).device)
        return _InMemoryBackend(self.model, tok, resolved=self.resolved, device=device,
                                batch_size=options.get("batch_size", "auto"),
                                max_batch_size=options.get("max_batch_size", 128),
                                max_length=options.get("max_length"), extra_info={"in_memory": True})


def _is_unsloth(model: Any) -> bool:
    """Whether Unsloth loaded this model (it marks the model it patches; only when unsloth is imported)."""
    if "unsloth" not in sys.modules:
        return False
    base = model.get_base_model() if _is_peft(model) else model
    return hasattr(base, "max_seq_length") or any("unsloth" in name for name in vars(base))


class _InMemoryBackend(HFBackend):
    """An HFBackend on the caller's model: evaluation mode while it generates (Unsloth's ``for_inference``
    for an Unsloth model), the caller's mode after (``for_training`` when it was training)."""

    def __init__(self, model, tokenizer, **kwargs):
        self._was_training = bool(getattr(model, "training", False))
        self._unsloth = _is_unsloth(model)
        if self._unsloth:
            from unsloth import FastLanguageModel

            FastLanguageModel.for_inference(model)
            self.name = "unsloth"
        model.eval()
        super().__init__(model, tokenizer, **kwargs)

    def close(self) -> None:
        model = self.model
        super().close()  # drops this backend's reference only: the model is the caller's
        if model is None or not self._was_training:
            return
        if self._unsloth:
            from unsloth import FastLanguageModel

            FastLanguageModel.for_training(model)
        model.train()


# ---------------------------------------------------------------- runs


class RunHandle:
    """One stored run: ``.id``, ``.summary()``, ``.results()``, ``.compare()``, ``.failures()``,
    ``.dashboard_url()``; shown in a notebook as a compact summary with a link to the dashboard.

    >>> run = evaluator.open_store().run("support-v3")
    >>> run.summary().query("metric == 'rougeL'")
    """

    def __init__(self, run_id: int, db_url: Optional[str] = None):
        self.id = int(run_id)
        self.db_url = db.resolve_url(db_url)

    def _read(self, fn, **kwargs):
        engine = db.open_store_readonly(self.db_url)
        try:
            with db.session_factory(engine)() as session:
                return fn(session=session, **kwargs)
        finally:
            engine.dispose()

    @property
    def info(self) -> dict[str, Any]:
        """The run's row: name, family, model, adapter, dataset, status, counts, config, reproducibility record."""
        return self._read(db.get_run, run_id=self.id)

    @property
    def name(self) -> str:
        return self.info["name"]

    def summary(self, slice: str = "") -> pd.DataFrame:
        """One row per metric and kind (mean, corpus) of the whole run (or of one category ``slice``):
        metric, kind, value, ci_low, ci_high, n.

        >>> run.summary()
        """
        rows = [r for r in self._read(db.run_aggregates, run_id=self.id) if r["slice"] == slice]
        return pd.DataFrame(rows, columns=["metric", "kind", "value", "ci_low", "ci_high", "n"])

    def results(self, *, category: Optional[str] = None, failed: Optional[bool] = None) -> pd.DataFrame:
        """One row per example, in dataset order: example_key, category, prompt, reference, output,
        finish_reason, failures (the failure kinds), then a column per metric. ``category`` keeps one
        category; ``failed`` True keeps examples with any failure kind, False those without.

        >>> run.results(failed=True).sort_values("rougeL").head()
        """
        rows = []
        for r in self._read(lambda session, **kw: list(db.export_rows(session=session, **kw)), run_id=self.id):
            if category is not None and r["category"] != category:
                continue
            if failed is not None and bool(r["failures"]) != failed:
                continue
            prompt = "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in r["messages"] or [])
            rows.append({"example_key": r["example_key"], "category": r["category"], "prompt": prompt,
                         "reference": r["reference"], "output": r["output"], "finish_reason": r["finish_reason"],
                         "failures": ", ".join(r["failures"]), **(r["metrics"] or {})})
        return pd.DataFrame(rows)

    def failures(self) -> pd.DataFrame:
        """The examples with a failure kind (empty output, truncated, repetition, ...): ``results(failed=True)``."""
        return self.results(failed=True)

    def baselines(self) -> list["RunHandle"]:
        """The runs this candidate was compared with (evaluated for it, or reused), oldest first."""
        return [RunHandle(i, self.db_url) for i in self._read(db.baselines_of, run_id=self.id)]

    def compare(self, other: Union["RunHandle", int, str, None] = None) -> pd.DataFrame:
        """The stored paired comparison of this run (A) with ``other`` (B; default: its first baseline), per
        metric and slice: value_a, value_b, delta, ci_low, ci_high, p_value, p_holm, wins, ties, losses.
        Computed and stored first when it was never computed, as ``python -m evaluator compare`` does.

        >>> run.compare().query("slice == ''")[["metric", "delta", "ci_low", "ci_high", "p_holm"]]
        """
        b = self._other(other)
        rows = self._read(db.stored_comparisons, run_a_id=self.id, run_b_id=b)
        if not rows:
            engine = db.open_store(self.db_url)
            try:
                compare_runs(session_factory=db.session_factory(engine), run_a_id=self.id, run_b_id=b)
            finally:
                engine.dispose()
            rows = self._read(db.stored_comparisons, run_a_id=self.id, run_b_id=b)
        return pd.DataFrame(rows).drop(columns=["created_at"], errors="ignore")

    def _other(self, other: Union["RunHandle", int, str, None]) -> int:
        if other is None:
            found = self._read(db.baselines_of, run_id=self.id)
            if not found:
                raise ValueError(f"run {self.id} has no baseline: pass the run to compare with")
            return found[0]
        if isinstance(other, RunHandle):
            return other.id
        return self._read(db.find_run, ref=str(other))

    # ------------------------------------------------------------ charts (Altair: shown inline in a notebook)

    def plot_distribution(self, metric: str, bins: int = 30):
        """A histogram of ``metric`` over the run's examples (failed values left out).

        >>> run.plot_distribution("rougeL")
        """
        import altair as alt

        h = self._read(db.metric_histograms, run_ids=[self.id], metric=metric, bins=bins)
        if not h["rows"]:
            raise ValueError(f"run {self.id} has no value of {metric!r}")
        data = pd.DataFrame(h["rows"])
        x = (alt.X("bin_lo:O", title=metric) if h["exact"] else
             alt.X("bin_lo:Q", bin="binned", title=metric))
        bars = alt.Chart(data).mark_bar().encode(x=x, y=alt.Y("count:Q", title="examples"),
                                                 tooltip=["bin_lo:Q", "bin_hi:Q", "count:Q"])
        if not h["exact"]:
            bars = bars.encode(x2="bin_hi:Q")
        return bars.properties(title=f"{metric}: run {self.id} ({h['n'][self.id]} examples)", width=480, height=220)

    def plot_confidence(self, metric: str = "rougeL", confidence: str = "confidence", bins: int = 10):
        """Is the model sure when it is right? Each example's ``confidence`` (the geometric-mean probability
        of its output tokens) against its ``metric``, and the mean ``metric`` per confidence bin (reliability).

        >>> run.plot_confidence("token_f1")
        """
        import altair as alt

        points = self._read(db.metric_pair_sample, run_id=self.id, metric_x=confidence, metric_y=metric)
        rel = self._read(db.reliability_bins, run_id=self.id, confidence=confidence, metric=metric, bins=bins)
        if not points["rows"]:
            raise ValueError(f"run {self.id} has no example with both {confidence!r} and {metric!r}")
        scatter = alt.Chart(pd.DataFrame(points["rows"])).mark_circle(opacity=0.4, size=20).encode(
            x=alt.X("x:Q", title=confidence), y=alt.Y("y:Q", title=metric), tooltip=["example_id:Q", "x:Q", "y:Q"])
        line = alt.Chart(pd.DataFrame(rel["rows"])).mark_line(point=True, color="#e76f51").encode(
            x="mean_confidence:Q", y="mean_quality:Q", tooltip=["bin_lo:Q", "bin_hi:Q", "n:Q", "mean_quality:Q"])
        return (scatter + line).properties(title=f"{metric} by {confidence}: run {self.id} (line: mean per bin)",
                                           width=480, height=300)

    def plot_trend(self, metric: str):
        """``metric``'s mean with its 95% CI over the versions of this run's family on its dataset, oldest
        first (each checkpoint EvalCallback stored, or each run evaluated with the same ``family``).

        >>> run.plot_trend("rougeL")
        """
        import altair as alt

        info = self.info
        runs = [r for r in self._read(db.list_runs) if r["dataset_id"] == info["dataset_id"]
                and (r["family"] or r["name"]) == (info["family"] or info["name"])]
        rows = []
        for r in sorted(runs, key=lambda r: (r["created_at"], r["id"])):
            mean = [a for a in self._read(db.run_aggregates, run_id=r["id"])
                    if a["metric"] == metric and a["slice"] == "" and a["kind"] == "mean"]
            if mean:
                rows.append({"version": f"{len(rows) + 1}. {r['name']}", "run": r["id"], "value": mean[0]["value"],
                             "ci_low": mean[0]["ci_low"], "ci_high": mean[0]["ci_high"]})
        if not rows:
            raise ValueError(f"no run of this family has a mean of {metric!r}")
        data = pd.DataFrame(rows)
        x = alt.X("version:O", sort=list(data["version"]), title="version (oldest first)",
                  axis=alt.Axis(labelAngle=-30))
        line = alt.Chart(data).mark_line(point=True).encode(x=x, y=alt.Y("value:Q", title=f"mean {metric}"),
                                                            tooltip=["run:Q", "value:Q", "ci_low:Q", "ci_high:Q"])
        band = alt.Chart(data).mark_errorbar().encode(x=x, y="ci_low:Q", y2="ci_high:Q")
        return (band + line).properties(title=f"{metric} over the versions of {info['family'] or info['name']}",
                                        width=480, height=260)

    def dashboard_url(self, base: Optional[str] = None) -> str:
        """A link to this run in the example browser: ``base``, else $EVAL_DASHBOARD_URL, else the local
        dashboard's address."""
        import os

        root = (base or os.environ.get(DASHBOARD_ENV) or DEFAULT_DASHBOARD).rstrip("/")
        return f"{root}/browser?run={self.id}"

    def __repr__(self) -> str:
        return f"RunHandle(id={self.id}, db={db.shown_url(self.db_url)!r})"

    def _repr_html_(self) -> str:
        info = self.info
        head = self.summary()
        head = head[head["kind"] == "mean"].head(8)
        cells = "".join(f"<tr><td>{html.escape(str(r.metric))}</td><td>{r.value:.4g}</td>"
                        f"<td>[{r.ci_low:.4g}, {r.ci_high:.4g}]</td><td>{int(r.n)}</td></tr>"
                        if r.ci_low is not None and not pd.isna(r.ci_low) else
                        f"<tr><td>{html.escape(str(r.metric))}</td><td>{r.value:.4g}</td><td></td><td>{int(r.n)}</td></tr>"
                        for r in head.itertuples())
        url = html.escape(self.dashboard_url(), quote=True)
        return (f"<div><b>run {self.id}: {html.escape(str(info['name']))}</b> · {html.escape(str(info['status']))}"
                f" · {int(info['n_examples'] or 0)} examples · <a href=\"{url}\" target=\"_blank\">open in the "
                f"dashboard</a><table><tr><th>metric</th><th>mean</th><th>95% CI</th><th>n</th></tr>{cells}"
                "</table></div>")


class Store:
    """The runs of one store. ``evaluator.open_store(db=None)``; ``.runs()`` lists them, ``.run(ref)``
    opens one by id or name (the newest of that name)."""

    def __init__(self, db_url: Optional[str] = None):
        self.db_url = db.resolve_url(db_url)

    def runs(self) -> pd.DataFrame:
        """One row per run, newest first: id, name, family, model, adapter, dataset, status, created_at, examples.

        >>> evaluator.open_store().runs().head()
        """
        engine = db.open_store_readonly(self.db_url)
        try:
            with db.session_factory(engine)() as session:
                rows = db.list_runs(session=session)
        finally:
            engine.dispose()
        return pd.DataFrame([{"id": r["id"], "name": r["name"], "family": r["family"], "model": r["model"],
                              "adapter": r["adapter"], "dataset": r["dataset"], "status": r["status_text"],
                              "created_at": r["created_at"], "examples": r["n_results"]} for r in rows])

    def run(self, ref: Union[int, str]) -> RunHandle:
        """The run ``ref`` (an id, or a name: the newest run of that name) as a ``RunHandle``.

        >>> evaluator.open_store().run("support-v3").summary()
        """
        engine = db.open_store_readonly(self.db_url)
        try:
            with db.session_factory(engine)() as session:
                return RunHandle(db.find_run(session=session, ref=str(ref)), self.db_url)
        finally:
            engine.dispose()


def open_store(db: Optional[str] = None) -> Store:
    """The store at ``db`` (default: $EVAL_DB_URL, else sqlite:///eval_store.sqlite).

    >>> store = evaluator.open_store("sqlite:///evals.sqlite")
    >>> store.runs().head()
    >>> run = store.run("support-v3")
    """
    return Store(db)


# ---------------------------------------------------------------- evaluate


def evaluate(model: Any, tokenizer: Any = None, *, dataset: str, split: Optional[str] = None,
             baselines: Sequence[str] = (), name: Optional[str] = None, family: Optional[str] = None,
             db: Optional[str] = None, limit: Optional[int] = None, turns: str = "last", judge: Optional[str] = None,
             progress: bool = True, **settings: Any) -> RunHandle:
    """Evaluate ``model`` on ``dataset`` (and each baseline on the same examples) into the store; returns
    the candidate's run.

    ``model`` is what ``--model`` takes (a path, a Hub id, ``openai:MODEL``) or a transformers or PEFT model
    object in memory, with its ``tokenizer`` (default: the base model's). ``settings`` are the other
    ``python -m evaluator run`` options by their config names: ``max_new_tokens``, ``batch_size``,
    ``metrics``, ``chat_template``, ``seed``, ``device``, ... ``judge`` (a judge spec) also judges the run
    against its baselines. A model in memory is evaluated in eval mode and handed back in the mode it
    came in; its weights (a PEFT model's adapter) are hashed into the run's reproducibility record.

    >>> run = evaluator.evaluate(model, tokenizer, dataset="data/support.jsonl", name="step-400",
    ...                          family="support-lora", baselines=["models/base"], limit=200)
    """
    overrides: dict[str, Any] = dict(dataset=str(dataset), split=split, baselines=list(baselines), name=name,
                                     family=family, db=db, limit=limit, turns=turns, **settings)
    loader = None
    if isinstance(model, (str, Path)):
        overrides["model"] = str(model)
    else:
        label = name or f"{Path(_base_source(model)).name or type(model).__name__} (in memory)"
        overrides["model"] = IN_MEMORY + label
        if _is_unsloth(model):
            overrides.setdefault("backend", "unsloth")
        loader = _InMemoryLoader(overrides["model"], model, tokenizer, label=label)
    config: RunConfig = build_config(overrides=overrides)
    if loader is not None and config.baselines:  # the runner checks a CLI run's models; these are ours to check
        check_models([(b, None, "baseline") for b in config.baselines], device=config.device,
                     options=dict(base_url=config.base_url, api_key_env=config.api_key_env))
    summary = run_evaluation(config, loader=loader, progress=progress)
    handle = RunHandle(summary.run_id, config.db)
    if judge:
        _judge(handle, judge, config)
    return handle


def _judge(handle: RunHandle, judge: str, config: RunConfig) -> None:
    """``python -m evaluator judge RUN --judge SPEC``, on the run just evaluated (against its baselines)."""
    argv = ["judge", str(handle.id), "--judge", judge] + (["--db", config.db] if config.db else [])
    if config.base_url:
        argv += ["--base-url", config.base_url]
    code = cli.main(argv)
    if code != 0:
        raise RuntimeError(f"judging run {handle.id} with {judge} ended with exit code {code} (its messages are above)")


def generate_response(model: Any, tokenizer: Any, prompt: Union[str, Sequence[dict[str, str]]], *,
                      chat_template: Optional[str] = None, **settings: Any) -> str:
    """One answer, rendered with the model's chat template and generated exactly as the batch path generates
    it for that example (greedy unless ``do_sample=True``; ``max_new_tokens`` and the other generation
    settings as in ``evaluate``). ``prompt`` is a user message or a list of {"role", "content"} messages.

    >>> evaluator.generate_response(model, tokenizer, "How do I reset my password?", max_new_tokens=64)
    """
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    loader = _InMemoryLoader(IN_MEMORY + "generate", model, tokenizer, label="generate")
    backend = loader(loader.spec, None, chat_template=chat_template, batch_size=1)
    try:
        known = {k: v for k, v in settings.items() if k in GenerationSettings.__dataclass_fields__}
        (gen,) = backend.generate([messages], GenerationSettings(**known), progress=False)
    finally:
        backend.close()
    return gen.text
