"""Shared fixtures: a migrated temporary SQLite store and a tiny Llama checkpoint built on the spot."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# An accidental hub call must fail fast instead of hanging on a machine without internet.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_TEXTS = [
    f"{a} {b}" for a in ("Hello there.", "How do I reset my password?", "What is 3 plus 4?", "Tell me about Paris.",
                         "My parcel is late.", "Thanks a lot!")
    for b in ("Sure, here is how.", "The answer is 7.", "Paris is the capital of France.",
              "I am sorry about the delay.", "You are welcome.", "Click the reset link in the email.")
]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny LlamaForCausalLM + tokenizer with a Llama-3 chat template (random weights, fp32)."""
    from evaluator.tiny import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), TINY_TEXTS, vocab_size=400)


@pytest.fixture()
def store_url(tmp_path) -> str:
    """URL of a fresh SQLite store migrated to head."""
    from db import open_store

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    open_store(url).dispose()
    return url


@pytest.fixture()
def engine(store_url):
    from db import make_engine

    eng = make_engine(store_url)
    yield eng
    eng.dispose()
