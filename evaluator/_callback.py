"""``evaluator.EvalCallback``: every checkpoint of a training run evaluated into the store as a version.

    >>> trainer = SFTTrainer(model=model, ..., callbacks=[evaluator.EvalCallback(
    ...     dataset="data/support.jsonl", family="support-lora", limit=200, baselines=["models/base"])])
    >>> trainer.train()          # each save: a run "support-lora step 200", "... step 400", ... in the store

A ``transformers.TrainerCallback``, so it works with ``Trainer`` and with TRL's ``SFTTrainer`` (Unsloth's
notebooks use it), which subclasses it. Imported from ``evaluator`` on first use: it loads transformers.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Optional, Sequence, Union

from transformers import TrainerCallback

from evaluator.api import RunHandle, evaluate

log = logging.getLogger("evaluator")


class EvalCallback(TrainerCallback):
    """Evaluate the model being trained at each save (``every="save"``) or every ``every`` steps, into the
    store, as a new version of ``family`` named "<family> step <N>". Training is never disturbed: the model
    goes back to train mode (Unsloth's ``for_training`` for an Unsloth model), and an evaluation that fails
    is logged and recorded in ``errors`` while training goes on. Each evaluation's time is in the training
    logs (``eval_seconds``, with the run id as ``evalbench_run``) and the finished runs are in ``runs``.

    ``settings`` are ``evaluate``'s: ``db``, ``split``, ``limit``, ``max_new_tokens``, ``metrics``, ...

    >>> callback = evaluator.EvalCallback(dataset="data/support.jsonl", family="support-lora", every=200, limit=100)
    """

    def __init__(self, *, dataset: str, family: str, db: Optional[str] = None, limit: Optional[int] = None,
                 every: Union[str, int] = "save", baselines: Sequence[str] = (), **settings: Any):
        if every != "save" and not (isinstance(every, int) and every > 0):
            raise ValueError(f"every must be 'save' or a positive number of steps, not {every!r}")
        self.dataset, self.family, self.db, self.limit, self.every = dataset, family, db, limit, every
        self.baselines = list(baselines)
        self.settings = {"progress": False, **settings}
        self.runs: list[RunHandle] = []
        self.errors: list[tuple[int, str]] = []  # (step, what went wrong)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if isinstance(self.every, int) and state.global_step % self.every == 0:
            self._evaluate(state, model, kwargs)

    def on_save(self, args, state, control, model=None, **kwargs):
        if self.every == "save":
            self._evaluate(state, model, kwargs)

    def _evaluate(self, state, model, kwargs: dict[str, Any]) -> None:
        if model is None:
            return
        tokenizer = kwargs.get("processing_class") or kwargs.get("tokenizer")
        tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor wraps the tokenizer
        step = int(state.global_step)
        started = time.perf_counter()
        entry: dict[str, Any] = {"step": step}
        try:
            run = evaluate(model, tokenizer, dataset=self.dataset, name=f"{self.family} step {step}",
                           family=self.family, db=self.db, limit=self.limit, baselines=self.baselines,
                           **self.settings)
            self.runs.append(run)
            entry["evalbench_run"] = run.id
        except Exception as exc:  # training goes on; the error is kept and logged
            text = f"{type(exc).__name__}: {exc}"
            self.errors.append((step, text))
            entry["evalbench_error"] = text
            log.warning("evaluation at step %d failed (training goes on): %s", step, text)
        finally:
            if model is not None and not model.training:
                model.train()  # what the trainer expects, whatever happened above
        entry["eval_seconds"] = round(time.perf_counter() - started, 3)
        state.log_history.append(entry)
        log.info("evalbench: step %d evaluated in %.1f s%s", step, entry["eval_seconds"],
                 f" (run {entry['evalbench_run']})" if "evalbench_run" in entry else "")
