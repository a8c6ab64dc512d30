"""Model backends. Importing this package is cheap: torch/transformers/unsloth load inside the backends."""
from evaluator.models._base import Backend, BackendError
from evaluator.models._chat import NAMED_TEMPLATES, ChatTemplateError
from evaluator.models._loading import ModelResolutionError, ResolvedModel, resolve_model
from evaluator.models._select import (
    BACKENDS,
    EXTERNAL,
    ModelIdentity,
    choose_backend,
    describe_model,
    external_kind,
    load_backend,
    prepare_backend,
)
from evaluator.models._validate import check_device, check_models

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "ChatTemplateError",
    "check_device",
    "check_models",
    "EXTERNAL",
    "ModelIdentity",
    "ModelResolutionError",
    "NAMED_TEMPLATES",
    "ResolvedModel",
    "choose_backend",
    "describe_model",
    "external_kind",
    "load_backend",
    "prepare_backend",
    "resolve_model",
]
