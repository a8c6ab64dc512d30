"""The run configuration: one validated object, built from a YAML/TOML file and/or CLI flags.

Flags override file keys. Unknown keys are an error (``extra="forbid"``), so a typo in a config
file fails loudly instead of being ignored. The resolved object is stored with the run
(``runs.config``) and is what ``--resume`` reloads.

Keys (file and flag names are the same, with ``-`` or ``_``)::

    model, adapter, name, family                 what to evaluate and how to label it (model may be
                                                 openai:MODEL; a baseline also outputs:FILE)
    dataset, split, format, turns, limit, fields what to evaluate it on
    baselines                                    models evaluated on the same examples for comparison
    base_url, api_key_env, concurrency,          openai:MODEL endpoints (OpenAI-compatible)
    request_timeout, max_retries
    db                                           store URL (default $EVAL_DB_URL, else sqlite:///eval_store.sqlite)
    backend, device, dtype, load_in_4bit,        how to load the model
    chat_template, max_length, trust_remote_code
    batch_size, max_batch_size                   "auto" (largest that fits, halved on OOM) or a number
    batching                                     auto | static | continuous (transformers' continuous batching)
    max_new_tokens, do_sample, temperature,      generation settings (greedy by default)
    top_p, top_k, repetition_penalty, seed
    metrics, perplexity                          scoring (default: every registered metric)
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from evaluator.errors import UserError
from evaluator.types import GenerationSettings

# Keys that may differ between the first attempt of a run and its --resume (they do not change outputs).
# The endpoint settings are here too: the same model may be served from another host on resume.
OPERATIONAL_KEYS = frozenset({"db", "resume", "reuse", "batch_size", "max_batch_size", "batching", "device", "base_url",
                              "api_key_env", "concurrency", "request_timeout", "max_retries"})


class ConfigError(UserError, ValueError):
    """A configuration the user must fix; the message is one line saying what and where."""


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # what to evaluate
    model: str = Field(description="base model (local dir or hub id), or a PEFT adapter dir")
    adapter: Optional[str] = Field(None, description="PEFT/LoRA adapter dir or hub id applied on top of model")
    name: Optional[str] = Field(None, description="run label (default: adapter or model directory name)")
    family: Optional[str] = Field(None, description="groups versions of one model in trend views")
    # data
    dataset: str = Field(description="dataset file, directory or hub id")
    split: str = "test"
    format: str = "auto"
    turns: Literal["last", "all", "rollout"] = "last"
    limit: Optional[PositiveInt] = None
    fields: Optional[dict[str, str]] = Field(None, description="role -> column mapping for the data loader")
    # comparison
    baselines: list[str] = Field(default_factory=list, description="models, openai:MODEL or outputs:FILE")
    reuse: bool = Field(True, description="a baseline already evaluated identically (a finished run of the same "
                                          "model files, dataset content, settings and evaluator code) is reused, "
                                          "not generated again")
    # OpenAI-compatible endpoints (openai:MODEL as model or baseline)
    base_url: Optional[str] = Field(None, description="API root, e.g. http://127.0.0.1:8000/v1 (default: OpenAI)")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key")
    concurrency: PositiveInt = Field(8, description="requests in flight at once")
    request_timeout: float = Field(60.0, gt=0, description="seconds per request before it is retried")
    max_retries: int = Field(5, ge=0, description="retries on timeouts, 429 and 5xx (exponential backoff)")
    # store
    db: Optional[str] = None
    resume: Optional[str] = None
    # model loading
    backend: Literal["auto", "transformers", "unsloth"] = "auto"
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    load_in_4bit: bool = False
    chat_template: Optional[str] = Field(None, description="jinja file, or a name: llama3, chatml")
    max_length: Optional[PositiveInt] = Field(None, description="context length (default: the model's)")
    trust_remote_code: bool = False
    # batching
    batch_size: Union[Literal["auto"], PositiveInt] = "auto"
    max_batch_size: PositiveInt = 128
    batching: Literal["auto", "static", "continuous"] = Field(
        "auto", description="static batches or transformers' continuous batching (greedy, transformers backend); "
                            "auto: the faster one on the device")
    # generation
    max_new_tokens: PositiveInt = 256
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    repetition_penalty: float = Field(1.0, gt=0)
    seed: int = 0
    # scoring
    metrics: Optional[list[str]] = None
    perplexity: bool = Field(True, description="teacher-force the reference to get its log-probs")

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() != "auto":
            try:
                return int(v)
            except ValueError:
                raise ValueError("must be 'auto' or a positive integer") from None
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("baselines", "metrics", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("model")
    @classmethod
    def _model_spec(cls, v: str) -> str:
        if v.startswith("outputs:"):
            raise ValueError("outputs:FILE can only be a baseline (--baseline outputs:FILE): the candidate is "
                             "the model being evaluated")
        return _check_spec(v)

    @field_validator("baselines")
    @classmethod
    def _baseline_specs(cls, v: list[str]) -> list[str]:
        return [_check_spec(b) for b in v]

    @model_validator(mode="after")
    def _sampling_needs_do_sample(self) -> "RunConfig":
        if not self.do_sample and (self.temperature != 1.0 or self.top_p != 1.0 or self.top_k != 0):
            raise ValueError("temperature/top_p/top_k only apply with do_sample=true (--do-sample); "
                             "generation is greedy otherwise")
        return self

    @model_validator(mode="after")
    def _continuous_is_greedy(self) -> "RunConfig":
        if self.batching == "continuous" and (self.do_sample or self.repetition_penalty != 1.0):
            raise ValueError("batching=continuous is greedy only: transformers' continuous batching drops the "
                             "repetition penalty and samples differently; use --batching static")
        return self

    def generation_settings(self) -> GenerationSettings:
        return GenerationSettings(
            max_new_tokens=self.max_new_tokens, do_sample=self.do_sample, temperature=self.temperature,
            top_p=self.top_p, top_k=self.top_k, repetition_penalty=self.repetition_penalty, seed=self.seed,
        )

    def stored(self) -> dict[str, Any]:
        """The config as recorded with the run (no store URL: it may carry a password)."""
        return self.model_dump(mode="json", exclude={"db", "resume"})


def _check_spec(spec: str) -> str:
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in ("openai", "outputs") and not rest.strip():
        raise ValueError(f"{spec!r}: give a {'model name' if prefix == 'openai' else 'file'} after '{prefix}:'")
    return spec


def _normalise(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    aliases = {"baseline": "baselines", "metric": "metrics"}
    for key, value in data.items():
        k = str(key).replace("-", "_")
        k = aliases.get(k, k)
        if k in out:
            raise ConfigError(f"{where}: key {key!r} given twice")
        out[k] = value
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml) or TOML (.toml) file of RunConfig keys. Nested ``[run]`` tables are not used."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file {path}: use a .yaml, .yml or .toml file")
    except ConfigError:
        raise
    except Exception as exc:  # yaml.YAMLError, tomllib.TOMLDecodeError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:].upper()}: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    return _normalise(data, str(path))


def _describe(exc: ValidationError, where: str) -> ConfigError:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {loc!r}")
        elif err["type"] == "missing":
            parts.append(f"{loc!r} is required (--{loc.replace('_', '-')})")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(msg if loc == "config" else f"{loc}: {msg}")
    return ConfigError(f"{where}: " + "; ".join(parts))


def build_config(file: str | Path | None = None, overrides: Optional[Mapping[str, Any]] = None,
                 base: Optional[Mapping[str, Any]] = None) -> RunConfig:
    """``base`` (e.g. a stored run's config) < ``file`` keys < ``overrides`` (CLI flags that were given)."""
    data: dict[str, Any] = dict(base or {})
    where = "run config"
    if file is not None:
        data.update(read_config_file(file))
        where = f"config {file}"
    data.update(_normalise({k: v for k, v in (overrides or {}).items() if v is not None}, "flags"))
    try:
        return RunConfig(**data)
    except ValidationError as exc:
        raise _describe(exc, where) from None
