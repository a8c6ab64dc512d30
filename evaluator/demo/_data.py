"""Where the demo's dataset lies, and a reader for it (the evaluator's own loader is evaluator/data)."""
from __future__ import annotations

import json
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
TRAIN_FILE = DATA_DIR / "train.jsonl"
TEST_FILE = DATA_DIR / "test.jsonl"


def read_conversations(path: Path) -> list[dict]:
    """The rows of a demo JSONL file: ``{"id", "category", "messages"}`` each."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
