"""The built-in metrics: importing this module registers them (see ``_text.py`` and ``_model_metrics.py``)."""
from __future__ import annotations

import evaluator.scoring._model_metrics  # registers perplexity, confidence, ...
import evaluator.scoring._text  # noqa: F401  (registers bleu, chrf, rouge*, exact_match, ...)

# What ``get_metrics(None)`` returns, in this order (also the order reports list them).
BUILTIN_ORDER = (
    "bleu", "chrf", "rouge1", "rouge2", "rougeL", "exact_match", "token_f1", "length_ratio",
    "perplexity", "confidence", "min_token_prob", "output_tokens",
)
