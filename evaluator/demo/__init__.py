"""The built-in demo: a small conversational dataset and tiny models trained on it on the spot.

``python -m evaluator demo`` (evaluator/commands/demo.py) builds the models with
``build_demo_models`` and evaluates each fine-tuned version against the base; see
the README, "The built-in demo". Importing this package does not import torch.
"""
from evaluator.demo._build import (
    CACHE_ENV,
    DemoModels,
    DemoSettings,
    build_demo_models,
    cache_key,
    cache_root,
)
from evaluator.demo._data import DATA_DIR, TEST_FILE, TRAIN_FILE, read_conversations

__all__ = [
    "CACHE_ENV",
    "DATA_DIR",
    "TEST_FILE",
    "TRAIN_FILE",
    "DemoModels",
    "DemoSettings",
    "build_demo_models",
    "cache_key",
    "cache_root",
    "read_conversations",
]
