"""Datasets -> evaluation examples.

``load_examples`` reads a Hub id, a local ``.json``/``.jsonl``/``.csv``/``.parquet`` file or a
``save_to_disk`` directory, detects its format once per dataset, and returns every row either as
examples (:class:`evaluator.types.Example`) or as a :class:`evaluator.types.Rejected` with the reason.
No torch here; ``datasets``/``pyarrow`` are imported only for the sources that need them.
"""
from evaluator.data._errors import DataError
from evaluator.data._formats import FIELD_ROLES, FORMATS
from evaluator.data._keys import KeyAllocator, example_key
from evaluator.data._load import LoadResult, load_examples
from evaluator.data._turns import TURNS, rolled_out, rollout_prompts

__all__ = ["load_examples", "LoadResult", "DataError", "FORMATS", "TURNS", "FIELD_ROLES", "example_key", "KeyAllocator",
           "rolled_out", "rollout_prompts"]
