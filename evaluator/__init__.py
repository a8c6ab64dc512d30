"""Batch evaluator: dataset -> model -> generations -> scores -> store.

Heavy libraries (torch, transformers, unsloth) are imported inside the backend modules only,
so ``python -m evaluator --help`` and the dashboard never pay for them.
"""
