"""Model backends. Importing this package is cheap: torch/transformers/unsloth load inside the backends."""
from evaluator.models._base import Backend
from evaluator.models._chat import NAMED_TEMPLATES, ChatTemplateError
from evaluator.models._loading import ModelResolutionError, ResolvedModel, resolve_model
from evaluator.models._select import BACKENDS, BackendError, choose_backend, load_backend, prepare_backend

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "ChatTemplateError",
    "ModelResolutionError",
    "NAMED_TEMPLATES",
    "ResolvedModel",
    "choose_backend",
    "load_backend",
    "prepare_backend",
    "resolve_model",
]
