"""Check every model of a run before the first generation: a bad ``--baseline`` found after an 8-hour
candidate run on a GPU is hours lost, and a model that cannot load must not leave a failed run behind.

What is checked, without loading weights:

- a local checkpoint directory holds ``config.json``, weights (``*.safetensors`` / ``*.bin``) and a
  tokenizer; a LoRA adapter directory holds ``adapter_config.json`` and adapter weights;
- a Hub id is in the local Hugging Face cache, or (online) exists on the Hub: its ``config.json`` is
  fetched, which also tells a typo, a private or a gated repository apart;
- ``--device cuda[:N]`` names a CUDA device this machine has;
- ``outputs:FILE`` reads as an outputs file;
- ``openai:MODEL``: the endpoint answers ``GET {base}/models``, accepts the key, and serves MODEL
  when it lists models (a server without that route is taken at its word).

Each problem is a ``ModelResolutionError`` or ``BackendError`` whose message names the model and says
what to do.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional

from evaluator.models._base import BackendError
from evaluator.models._loading import (
    ModelResolutionError,
    ResolvedModel,
    _has_tokenizer,
)
from evaluator.models._openai import DEFAULT_BASE_URL, chat_url
from evaluator.models._select import describe_model, external_kind

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
ENDPOINT_CHECK_TIMEOUT_S = 10.0


def _has_any(path: Path, patterns: tuple[str, ...]) -> bool:
    return any(next(path.glob(p), None) is not None for p in patterns)


def _check_local_checkpoint(path: Path, role: str) -> None:
    if not (path / "config.json").is_file():
        raise ModelResolutionError(
            f"{role} {path} has no config.json: it is not a saved model (a checkpoint directory holds "
            "config.json, weights and a tokenizer; a LoRA adapter directory holds adapter_config.json)")
    if not _has_any(path, WEIGHT_PATTERNS):
        raise ModelResolutionError(f"{role} {path} has config.json but no weights (*.safetensors or *.bin): "
                                   "was the save interrupted?")


def _check_hub(repo: str, role: str) -> None:
    """The Hub id is cached locally, or exists on the Hub (fetching its small config.json)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        hf_hub_download(repo, "config.json")
    except HFValidationError:
        raise ModelResolutionError(f"{role} {repo} is neither a local directory nor a valid Hub id") from None
    except GatedRepoError:
        raise ModelResolutionError(f"{role} {repo} is gated on the Hub: accept its licence there and log in "
                                   "(huggingface-cli login)") from None
    except RepositoryNotFoundError:
        raise ModelResolutionError(f"{role} {repo}: no such local directory, and no such model on the Hub "
                                   "(check the id; for a private repo, log in)") from None
    except RevisionNotFoundError:
        raise ModelResolutionError(f"{role} {repo}: the requested revision does not exist") from None
    except LocalEntryNotFoundError:
        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
        why = "HF_HUB_OFFLINE is set" if offline else "the Hub cannot be reached from here"
        raise ModelResolutionError(
            f"{role} {repo} is not a local directory and is not in the Hugging Face cache, and {why}: "
            f"download it first (huggingface-cli download {repo}) or pass a local directory") from None
    except EntryNotFoundError:
        raise ModelResolutionError(f"{role} {repo} has no config.json on the Hub: it is not a transformers model") from None


def _check_source(source: str, role: str) -> None:
    path = Path(source).expanduser()
    if path.is_dir():
        _check_local_checkpoint(path, role)
    else:
        _check_hub(source, role)


def _check_resolved(resolved: ResolvedModel, role: str) -> None:
    _check_source(resolved.base, role if resolved.adapter is None else f"{role}'s base model")
    if resolved.adapter is not None:
        adapter = Path(resolved.adapter).expanduser()
        if adapter.is_dir() and not _has_any(adapter, ("adapter_model.*",)):
            raise ModelResolutionError(f"adapter {adapter} has adapter_config.json but no adapter weights "
                                       "(adapter_model.safetensors or .bin)")
    tok = Path(resolved.tokenizer_source).expanduser()
    if tok.is_dir() and not _has_tokenizer(str(tok)):
        raise ModelResolutionError(f"{role}: no tokenizer in {tok} (tokenizer.json, tokenizer_config.json or "
                                   "tokenizer.model); save the tokenizer next to the model")


def check_device(device: Optional[str]) -> None:
    """``--device`` names something this machine has (CUDA devices are counted, which imports torch)."""
    device = (device or "auto").strip()
    if not _DEVICE.match(device):
        raise BackendError(f"--device {device!r}: expected auto, cpu, mps, cuda or cuda:N")
    if not device.startswith("cuda"):
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        built = torch.version.cuda or "no CUDA"
        raise BackendError(f"--device {device}: no CUDA device is visible here (torch {torch.__version__}, "
                           f"built with {built}); use --device cpu, or run on a GPU machine")
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= count:
        raise BackendError(f"--device {device}: this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1})")


def _check_openai(model: str, *, base_url: Optional[str], api_key_env: Optional[str], role: str) -> None:
    import httpx


    base = chat_url(base_url or DEFAULT_BASE_URL)[: -len("/chat/completions")]
    env = api_key_env or "OPENAI_API_KEY"
    if base_url is None and not os.environ.get(env):
        raise BackendError(f"{role} openai:{model}: no key in ${env} for {DEFAULT_BASE_URL} "
                           "(set it, name another variable with --api-key-env, or give --base-url)")
    headers = {"Authorization": f"Bearer {os.environ[env]}"} if os.environ.get(env) else {}
    try:
        resp = httpx.get(f"{base}/models", headers=headers, timeout=ENDPOINT_CHECK_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise BackendError(f"{role} openai:{model}: cannot reach {base} ({type(exc).__name__}: {exc}); "
                           "check --base-url and that the server is up") from None
    if resp.status_code in (401, 403):
        raise BackendError(f"{role} openai:{model}: {base} refused the key (HTTP {resp.status_code}); "
                           f"check ${env} (--api-key-env names the variable)")
    if resp.status_code != 200:
        return  # no model list on this server: its chat route is the judge
    try:
        served = [str(m.get("id")) for m in resp.json().get("data", []) if isinstance(m, dict)]
    except (ValueError, AttributeError):
        return
    if served and model not in served:
        shown = ", ".join(served[:10]) + (" ..." if len(served) > 10 else "")
        raise BackendError(f"{role} openai:{model}: {base} does not serve {model!r} (it serves: {shown})")


def check_models(specs: list[tuple[str, Optional[str], str]], *, device: Optional[str],
                 options: dict[str, Any]) -> None:
    """Check each (model, adapter, role) before anything is written or generated; ``role`` names it in
    messages ("--model", "--baseline"). ``options``: base_url and api_key_env for ``openai:`` models."""
    needs_device = False
    for model, adapter, role in specs:
        kind = external_kind(model)
        try:
            ident = describe_model(model, adapter)  # resolves paths, reads outputs files
            if kind == "openai":
                _check_openai(ident.model, base_url=options.get("base_url"),
                              api_key_env=options.get("api_key_env"), role=role)
            elif kind is None:
                _check_resolved(ident.resolved, role)
                needs_device = True
        except (ModelResolutionError, BackendError) as exc:
            text = str(exc)
            if not text.startswith(role):
                text = f"{role} {model}: {text}"
            raise type(exc)(text) from None
    if needs_device:
        check_device(device)
