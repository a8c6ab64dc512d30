"""Build the demo's models once and cache them: a tokenizer, a weak base model, three LoRA versions.

- Tokenizer: byte-level BPE trained on the train split (``evaluator.tiny.train_tokenizer``), with
  the Llama 3 chat template.
- Base: a tiny ``LlamaForCausalLM`` (``evaluator.tiny.build_model``) pre-trained briefly on the train
  conversations as plain text, without the chat template: it has seen the words, not the format, so
  in a chat it rambles, repeats itself and rarely stops, as an untuned base model does.
- v1, v2, v3: checkpoints of one LoRA fine-tune (PEFT, on q/k/v/o/gate/up/down) on the chat-templated
  train conversations, loss on assistant tokens only, saved after increasing numbers of steps with
  ``save_pretrained``; each adapter's ``base_model_name_or_path`` is the base directory.

Everything is seeded and trained with a plain torch loop on the CPU, so a build takes about a
minute and gives the same weights on the same machine. One thread: at these matrix sizes a second
one gains little, and on a busy 2-core machine two OpenMP threads made each step 3-6x slower.
Unsloth's trainer is not used even where it is installed: for a model of half a million parameters
it saves nothing, and the weights would then depend on the machine (the README, "The built-in demo").

Layout of the cache: ``<cache>/<key>/demo-base`` (model + tokenizer), ``<cache>/<key>/demo-v1..v3``
(adapters, each with the tokenizer), ``<cache>/<key>/build.json`` (written last). The key is the
hash of the train split and the settings: change either and the next call builds anew. A build runs
in a temporary folder that is renamed when complete, so an interrupted build is never reused.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from evaluator.demo._data import TRAIN_FILE, read_conversations
from evaluator.demo._train import encode_chat, encode_plain, train
from evaluator.tiny import build_model, train_tokenizer

log = logging.getLogger(__name__)

CACHE_ENV = "EVALBENCH_CACHE"
DEFAULT_CACHE = Path("~/.cache/evalbench-demo")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
BASE_DIR = "demo-base"  # folder names double as the evaluator's default run names
_DONE = "build.json"  # written last: a folder without it is an interrupted build


@dataclass(frozen=True)
class DemoSettings:
    """Everything that decides the weights; part of the cache key."""

    vocab_size: int = 1024
    hidden_size: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    max_len: int = 160  # tokens per training sequence (the longest train conversation is shorter)
    seed: int = 0
    base_steps: int = 150
    base_lr: float = 3e-3
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_lr: float = 5e-3
    batch_size: int = 16
    # version name -> LoRA steps at which it is saved (checkpoints of one run).
    versions: tuple[tuple[str, int], ...] = (("v1", 40), ("v2", 120), ("v3", 300))
    threads: int = 1
    format: int = 1  # bump when the build changes in a way the fields above do not show


@dataclass
class DemoModels:
    base_dir: Path  # the base model, with its tokenizer
    versions: list[tuple[str, Path]]  # [("v1", adapter_dir), ...], oldest first
    tokenizer_dir: Path
    key: str = ""
    build_seconds: Optional[float] = None  # time the build took (None if it was not recorded)
    reused: bool = False  # True when the models came from the cache
    info: dict = field(default_factory=dict)  # contents of build.json


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$EVALBENCH_CACHE``, else ``~/.cache/evalbench-demo``."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def cache_key(settings: DemoSettings, train_file: Path = TRAIN_FILE) -> str:
    digest = hashlib.sha256()
    digest.update(train_file.read_bytes())
    digest.update(json.dumps(asdict(settings), sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _models_in(folder: Path, settings: DemoSettings, key: str, reused: bool) -> DemoModels:
    info = json.loads((folder / _DONE).read_text())
    return DemoModels(
        base_dir=folder / BASE_DIR,
        versions=[(name, folder / f"demo-{name}") for name, _ in settings.versions],
        tokenizer_dir=folder / BASE_DIR,
        key=key,
        build_seconds=info.get("build_seconds"),
        reused=reused,
        info=info,
    )


def build_demo_models(cache_dir: str | os.PathLike | None = None, *, progress: bool = True,
                      rebuild: bool = False, settings: DemoSettings = DemoSettings()) -> DemoModels:
    """Build the demo models under ``cache_dir`` (see ``cache_root``), or reuse a finished build.

    ``rebuild`` discards a cached build with the same key first.
    """
    root = cache_root(cache_dir)
    key = cache_key(settings)
    final = root / key
    if rebuild and final.exists():
        shutil.rmtree(final)
    if (final / _DONE).exists():
        log.info("reusing demo models in %s", final)
        return _models_in(final, settings, key, reused=True)

    root.mkdir(parents=True, exist_ok=True)
    work = root / f".building-{key}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    log.info("building demo models in %s (about a minute of CPU)", final)
    started = time.perf_counter()
    try:
        stages = _build(work, settings, progress=progress)
        # Adapters name their base by absolute path: the one it will have after the rename.
        for name, _ in settings.versions:
            _point_adapter_at(work / f"demo-{name}", final / BASE_DIR)
        seconds = round(time.perf_counter() - started, 1)
        info = {"key": key, "settings": asdict(settings), "build_seconds": seconds, **stages}
        (work / _DONE).write_text(json.dumps(info, indent=2))
        if final.exists() and not (final / _DONE).exists():  # a damaged copy (build.json removed)
            shutil.rmtree(final)
        try:
            work.rename(final)
        except OSError:  # another process finished the same build first: use theirs
            if not (final / _DONE).exists():
                raise
            shutil.rmtree(work, ignore_errors=True)
            return _models_in(final, settings, key, reused=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log.info("built demo models in %.0f s", seconds)
    return _models_in(final, settings, key, reused=False)


def _point_adapter_at(adapter_dir: Path, base_dir: Path) -> None:
    path = adapter_dir / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = str(base_dir.resolve())
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


def _build(work: Path, s: DemoSettings, *, progress: bool) -> dict[str, dict[str, float]]:
    """Train and save everything under ``work``; returns the seconds and final losses of each stage."""
    import torch
    from peft import LoraConfig, get_peft_model
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM


    threads = torch.get_num_threads()
    torch.set_num_threads(min(s.threads, threads))
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        seconds[stage] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()

    try:
        conversations = read_conversations(TRAIN_FILE)
        texts = [m["content"] for row in conversations for m in row["messages"]]
        tokenizer = train_tokenizer(texts, vocab_size=s.vocab_size)
        base_dir = work / BASE_DIR

        model = build_model(tokenizer, hidden_size=s.hidden_size, layers=s.layers, heads=s.heads,
                            kv_heads=s.kv_heads, max_positions=2 * s.max_len, seed=s.seed)
        plain = [encode_plain(tokenizer, row["messages"], s.max_len) for row in conversations]
        lap("tokenizer")
        with tqdm(total=s.base_steps, desc="demo: pre-train base", disable=not progress, leave=False) as bar:
            base_losses = train(model, plain, steps=s.base_steps, lr=s.base_lr, batch_size=s.batch_size,
                                pad_id=tokenizer.pad_token_id, seed=s.seed, progress=bar)
        model.save_pretrained(base_dir)
        tokenizer.save_pretrained(base_dir)
        lap("base")

        # Fine-tune the saved base as a user would: load it, wrap it in LoRA, train, save adapters.
        model = AutoModelForCausalLM.from_pretrained(base_dir)
        torch.manual_seed(s.seed + 1)
        lora = LoraConfig(r=s.lora_rank, lora_alpha=s.lora_alpha, lora_dropout=0.0, target_modules=LORA_TARGETS,
                          task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
        chat = [encode_chat(tokenizer, row["messages"], s.max_len) for row in conversations]
        steps_of = {step: name for name, step in s.versions}

        def save(step: int) -> None:
            adapter_dir = work / f"demo-{steps_of[step]}"
            model.save_pretrained(adapter_dir)
            tokenizer.save_pretrained(adapter_dir)

        total = max(steps_of)
        with tqdm(total=total, desc="demo: LoRA fine-tune v1-v3", disable=not progress, leave=False) as bar:
            lora_losses = train(model, chat, steps=total, lr=s.lora_lr, batch_size=s.batch_size,
                                pad_id=tokenizer.pad_token_id, seed=s.seed + 2, checkpoints=steps_of,
                                on_checkpoint=save, progress=bar)
        lap("lora")
        return {"stage_seconds": seconds,
                "final_losses": {"base": round(sum(base_losses[-10:]) / 10, 3),
                                 "lora": round(sum(lora_losses[-10:]) / 10, 3)}}
    finally:
        torch.set_num_threads(threads)
