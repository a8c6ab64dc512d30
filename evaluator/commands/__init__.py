"""Sub-commands of ``python -m evaluator``; see evaluator/cli.py."""
