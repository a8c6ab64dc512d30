"""What is needed to reproduce a run, recorded in ``runs.repro``.

git commit (and whether the tree had local changes), Python and package versions, the device,
the chat template's hash, the adapter weights' hash, a fingerprint of the base model files,
the seed, the dataset's content hash and the evaluator code's hash. Nothing here imports torch unless it is already loaded.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

PACKAGES = ("torch", "transformers", "tokenizers", "accelerate", "peft", "unsloth", "unsloth_zoo",
            "bitsandbytes", "datasets", "sacrebleu", "rouge-score", "sqlalchemy", "numpy")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_CHUNK = 1 << 20


def git_state(path: Optional[Path] = None) -> dict[str, Any]:
    """Commit of the checkout the evaluator runs from, and whether it has uncommitted changes."""
    root = path or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip() != ""
        return {"git_sha": sha, "git_dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": None, "git_dirty": None}


def package_versions(names=PACKAGES) -> dict[str, Optional[str]]:
    out: dict[str, Optional[str]] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def device_info() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine()}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def hash_files(paths) -> Optional[str]:
    """sha256 over the files' names and contents, in name order."""
    paths = sorted(Path(p) for p in paths)
    if not paths:
        return None
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode("utf-8") + b"\0")
        with p.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def _weight_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)]


def adapter_hash(adapter: Optional[str]) -> Optional[str]:
    """sha256 of an adapter's weights and config (adapters are small: read in full)."""
    if not adapter or not Path(adapter).is_dir():
        return None
    d = Path(adapter)
    files = _weight_files(d) + [p for p in [d / "adapter_config.json"] if p.is_file()]
    return hash_files(files)


# Tokenizer files that decide how a conversation becomes tokens (the chat template among them).
TOKENIZER_FILES = ("tokenizer_config.json", "chat_template.jinja", "chat_template.json", "tokenizer.json",
                   "special_tokens_map.json", "generation_config.json")
_SAMPLE = 1 << 20  # bytes read from the start and the end of each weight file


def model_fingerprint(model: Optional[str]) -> Optional[str]:
    """Cheap identity of a local base model: config.json and the tokenizer files, each weight file's
    name and size, and its first and last MiB (hashing 16 GB of weights for every run would take
    minutes; two checkpoints of one shape differ in those bytes). Hub models record their revision."""
    if not model or not Path(model).is_dir():
        return None
    d = Path(model)
    h = hashlib.sha256()
    for name in ("config.json", *TOKENIZER_FILES):
        if (d / name).is_file():
            h.update(name.encode() + b"\0" + (d / name).read_bytes())
    for p in sorted(_weight_files(d)):
        size = p.stat().st_size
        h.update(f"{p.name}:{size}\n".encode())
        with p.open("rb") as f:
            h.update(f.read(_SAMPLE))
            if size > 2 * _SAMPLE:
                f.seek(size - _SAMPLE)
                h.update(f.read(_SAMPLE))
    return h.hexdigest()


# The code that turns examples into outputs and scores: a run evaluated by other code is not reused.
_CODE_DIRS = ("data", "models", "scoring")
_CODE_FILES = ("_generate.py", "_runner.py")


def eval_code_hash() -> str:
    """sha256 of the evaluator's data, model, generation and scoring code (its .py files by relative
    path): the "scoring code version" a reused run must share. The same in every clone of a commit."""
    root = Path(__file__).resolve().parent
    files = [p for d in _CODE_DIRS for p in (root / d).rglob("*.py")] + [root / f for f in _CODE_FILES]
    h = hashlib.sha256()
    for p in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def collect(*, seed: int, dataset_hash: Optional[str], backend_info: Optional[dict[str, Any]] = None,
            base_model: Optional[str] = None, adapter: Optional[str] = None) -> dict[str, Any]:
    info = dict(backend_info or {})
    return {
        **git_state(),
        "argv": sys.argv[1:],
        "packages": package_versions(),
        "device": device_info(),
        "seed": seed,
        "dataset_sha256": dataset_hash,
        "chat_template_sha256": info.get("chat_template_sha256"),
        "adapter_sha256": adapter_hash(adapter),
        "base_model_fingerprint": model_fingerprint(base_model),
        "eval_code_sha256": eval_code_hash(),
        "model_revision": info.get("model_revision"),
        "backend": info,
    }
