"""``python -m evaluator serve``: the project's own backends behind an OpenAI-compatible HTTP API.

One base model is loaded once; every ``--adapter NAME=PATH`` is a named PEFT adapter on top of it, and the
request's ``model`` field picks one (the base answers under its own id). Requests that arrive together are
batched by a single worker thread: jobs for the same model and the same settings go to ``generate`` as one
batch, through the same code as ``python -m evaluator run``, so a greedy answer from the server equals the
evaluator's answer for the same messages.

The FastAPI app is built by ``create_app`` (imports of fastapi stay inside it, so ``python -m evaluator
--help`` stays fast). This module has no ``from __future__ import annotations``: FastAPI reads the
endpoints' annotations (``Request``) at run time.
"""
import asyncio
import contextlib
import gc
import json
import logging
import queue
import secrets
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evaluator.models import load_backend, resolve_model
from evaluator.models._chat import encode_conversations
from evaluator.types import Generation, GenerationSettings

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 256  # when a request names none (OpenAI's own default is the context's rest)
MAX_BODY_BYTES = 1_000_000  # a request body above this is refused with 413
MAX_QUEUE = 256  # requests waiting for the worker beyond this are refused with 429
BATCH_WAIT_S = 0.01  # how long the worker waits for more requests before starting a batch


class ServeError(Exception):
    """A request the server refuses: HTTP ``status`` with an OpenAI-style error body."""

    def __init__(self, status: int, message: str, code: str, param: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


# ------------------------------------------------------------------ request schema


class _TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: Union[str, list[_TextPart]]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatRequest(BaseModel):
    """The fields of OpenAI's chat-completions request that the server honours; unknown fields are ignored,
    and ``n`` > 1 and ``stop`` strings are refused rather than silently ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)  # vLLM's extension, as the evaluator's openai: backend sends it
    repetition_penalty: float = Field(1.0, gt=0.0)
    seed: Optional[int] = None
    stream: bool = False
    stream_options: Optional[dict[str, Any]] = None
    logprobs: bool = False
    top_logprobs: Optional[int] = Field(None, ge=0, le=20)
    n: int = Field(1, ge=1, le=1)
    stop: Optional[Union[str, list[str]]] = None

    def settings(self, cap: int) -> GenerationSettings:
        sample = self.temperature > 0
        return GenerationSettings(
            max_new_tokens=min(self.max_completion_tokens or self.max_tokens or DEFAULT_MAX_TOKENS, cap),
            do_sample=sample, temperature=self.temperature if sample else 1.0, top_p=self.top_p,
            top_k=self.top_k, repetition_penalty=self.repetition_penalty,
            # greedy ignores the seed: 0 there, so greedy requests with different seeds share a batch
            seed=(self.seed if self.seed is not None else secrets.randbelow(2**31)) if sample else 0)


def parse_request(raw: bytes) -> ChatRequest:
    """The request body as a ChatRequest, or a 400 that says what is wrong with it."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ServeError(400, f"the body is not JSON: {exc}", "invalid_json") from None
    if not isinstance(data, dict):
        raise ServeError(400, "the body must be a JSON object", "invalid_request")
    try:
        req = ChatRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ServeError(400, f"{where}: {first['msg']}", "invalid_request", where) from None
    if req.stop:
        raise ServeError(400, "stop strings are not supported: generation stops at the chat template's end "
                              "token or max_tokens", "unsupported_parameter", "stop")
    return req


# ------------------------------------------------------------------ the models


class ServedModels:
    """One loaded base model with its named adapters; ``generate`` runs one batch for one of them."""

    def __init__(self, model: str, adapters: Optional[dict[str, str]] = None, *, base_id: Optional[str] = None,
                 **options: Any):
        self.model = model
        self.base_id = base_id or model
        self.adapters = dict(adapters or {})
        if self.base_id in self.adapters:
            raise ValueError(f"adapter name {self.base_id!r} is the base model's id")
        self.backend = load_backend(model, backend="transformers", batching="static", **options)
        if self.adapters:
            self._attach_adapters()
        self._lock = threading.Lock()
        # accelerate's batch-size finder runs gc.collect() before every generate call: over the hundreds of
        # thousands of objects torch and transformers leave, 0.18 s a call here (2-core EPYC), more than a short
        # answer's generation. Everything loaded so far lives as long as the server, so keep it out of every
        # collection: a one-prompt request went from 0.26 to 0.09 s (benchmarks/bench_serve.py).
        gc.freeze()

    def _attach_adapters(self) -> None:
        from peft import PeftModel

        base = self.backend.model
        served = self.backend.resolved.base
        for i, (name, path) in enumerate(self.adapters.items()):
            expected = resolve_model(path).base
            if expected != served:
                log.warning("adapter %s was trained on %s, served on %s", name, expected, self.model)
            if i == 0:
                base = PeftModel.from_pretrained(base, path, adapter_name=name)
            else:
                base.load_adapter(path, adapter_name=name)
        base.eval()
        self.backend.model = base

    @property
    def ids(self) -> list[str]:
        return [self.base_id, *self.adapters]

    @property
    def context_length(self) -> int:
        return self.backend.context_length

    def prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        return len(encode_conversations(self.backend.tokenizer, [messages], 10**9)[0].ids)

    def _use(self, model_id: str):
        """Select the adapter for ``model_id``; a context that disables adapters for the base."""
        peft_model = self.backend.model
        if not self.adapters:
            return contextlib.nullcontext()
        if model_id == self.base_id:
            return peft_model.disable_adapter()
        peft_model.set_adapter(model_id)
        return contextlib.nullcontext()

    def generate(self, model_id: str, conversations: list[list[dict[str, str]]], settings: GenerationSettings,
                 top_logprobs: int = 0) -> list[Generation]:
        with self._lock, self._use(model_id):
            self.backend.top_logprobs = top_logprobs
            return self.backend.generate(conversations, settings, progress=False)

    def close(self) -> None:
        self.backend.close()


# ------------------------------------------------------------------ batching


@dataclass
class _Job:
    model: str
    messages: list[dict[str, str]]
    settings: GenerationSettings
    top_logprobs: int
    future: Future = field(default_factory=Future)

    def key(self) -> tuple:
        return self.model, tuple(sorted(self.settings.as_dict().items())), self.top_logprobs


class Batcher:
    """A worker thread that turns requests arriving together into batches: one ``generate`` call per
    (model, settings) group, at most ``max_batch`` requests per round."""

    def __init__(self, served: ServedModels, *, max_batch: int = 16, wait_s: float = BATCH_WAIT_S,
                 max_queue: int = MAX_QUEUE):
        self.served = served
        self.max_batch = max(1, int(max_batch))
        self.wait_s = wait_s
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.stats = {"batches": 0, "requests": 0, "largest_batch": 0}
        self._thread = threading.Thread(target=self._work, name="serve-batcher", daemon=True)
        self._thread.start()

    def submit(self, job: _Job) -> Future:
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise ServeError(429, "the server has too many requests waiting; retry later", "busy") from None
        return job.future

    def _gather(self, first: _Job) -> list[_Job]:
        jobs = [first]
        deadline = time.monotonic() + self.wait_s
        while len(jobs) < self.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # stop after this round
                break
            jobs.append(job)
        return jobs

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            groups: dict[tuple, list[_Job]] = {}
            for job in self._gather(first):
                if job.future.set_running_or_notify_cancel():  # a request that timed out is skipped
                    groups.setdefault(job.key(), []).append(job)
            for group in groups.values():
                self._run(group)

    def _run(self, group: list[_Job]) -> None:
        head = group[0]
        try:
            gens = self.served.generate(head.model, [j.messages for j in group], head.settings, head.top_logprobs)
        except Exception as exc:  # the batch fails, the server goes on
            log.exception("generation failed for %d request(s)", len(group))
            for job in group:
                job.future.set_exception(exc)
            return
        self.stats["batches"] += 1
        self.stats["requests"] += len(group)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(group))
        for job, gen in zip(group, gens):
            job.future.set_result(gen)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)


# ------------------------------------------------------------------ responses


def _logprobs(gen: Generation, top: int) -> dict[str, Any]:
    content = []
    for i, (token, lp) in enumerate(zip(gen.tokens, gen.logprobs)):
        alts = (gen.top_logprobs or [])[i] if gen.top_logprobs and i < len(gen.top_logprobs) else {}
        content.append({"token": token, "logprob": lp, "bytes": list(token.encode("utf-8")),
                        "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode("utf-8"))}
                                         for t, v in list(alts.items())[:top]]})
    return {"content": content}


def _usage(gen: Generation) -> dict[str, int]:
    return {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.n_tokens,
            "total_tokens": gen.prompt_tokens + gen.n_tokens}


def completion_body(req: ChatRequest, gen: Generation, rid: str, created: int) -> dict[str, Any]:
    return {"id": rid, "object": "chat.completion", "created": created, "model": req.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": gen.text},
                         "finish_reason": gen.finish_reason,
                         "logprobs": _logprobs(gen, req.top_logprobs or 0) if req.logprobs else None}],
            "usage": _usage(gen)}


def stream_chunks(req: ChatRequest, gen: Generation, rid: str, created: int):
    """The answer as server-sent events: a role chunk, one chunk per token (with its log-probability when
    asked) when the tokens spell the text exactly, else the text in one chunk, a finish chunk, ``[DONE]``."""
    def event(delta: dict[str, Any], finish: Optional[str] = None, logprobs=None) -> str:
        chunk = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": req.model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}]}
        return f"data: {json.dumps(chunk)}\n\n"

    yield event({"role": "assistant", "content": ""})
    per_token = "".join(gen.tokens) == gen.text and len(gen.tokens) == len(gen.logprobs)
    if per_token:
        entries = _logprobs(gen, req.top_logprobs or 0)["content"]
        for token, entry in zip(gen.tokens, entries):
            yield event({"content": token}, logprobs={"content": [entry]} if req.logprobs else None)
    elif gen.text:
        yield event({"content": gen.text})
    yield event({}, finish=gen.finish_reason)
    if (req.stream_options or {}).get("include_usage"):
        usage = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": req.model,
                 "choices": [], "usage": _usage(gen)}
        yield f"data: {json.dumps(usage)}\n\n"
    yield "data: [DONE]\n\n"


# ------------------------------------------------------------------ the app


@dataclass
class ServeLimits:
    max_body_bytes: int = MAX_BODY_BYTES
    timeout_s: float = 300.0  # per request, waiting for the batch included
    max_tokens: int = 4096  # the largest max_tokens honoured (a larger one is lowered to it)


def _check_key(request, api_key: Optional[str]) -> None:
    if api_key is None:
        return
    given = request.headers.get("authorization", "")
    if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
        raise ServeError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')", "invalid_api_key")


async def _read_body(request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ServeError(413, f"the body is {declared} bytes; the limit is {limit}", "request_too_large")
    raw = b""
    async for part in request.stream():
        raw += part
        if len(raw) > limit:
            raise ServeError(413, f"the body is over the limit of {limit} bytes", "request_too_large")
    return raw


def _job_for(req: ChatRequest, served: ServedModels, limits: ServeLimits) -> _Job:
    if req.model not in served.ids:
        raise ServeError(404, f"model {req.model!r} is not served here; GET /v1/models lists "
                              f"{', '.join(served.ids)}", "model_not_found", "model")
    messages = [{"role": m.role, "content": m.text()} for m in req.messages]
    settings = req.settings(min(limits.max_tokens, served.context_length))
    need = served.prompt_tokens(messages) + settings.max_new_tokens
    if need > served.context_length:
        raise ServeError(400, f"the messages and max_tokens need {need} tokens; the context is "
                              f"{served.context_length}", "context_length_exceeded", "messages")
    return _Job(req.model, messages, settings, (req.top_logprobs or 0) if req.logprobs else 0)


def create_app(served: ServedModels, *, api_key: Optional[str] = None, limits: ServeLimits = ServeLimits(),
               max_batch: int = 16):
    """The FastAPI app serving ``served``; its batcher is ``app.state.batcher`` (closed on shutdown)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    batcher = Batcher(served, max_batch=max_batch)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        batcher.close()

    app = FastAPI(title="evalbench serve", lifespan=lifespan)
    app.state.batcher = batcher
    created_at = int(time.time())

    @app.exception_handler(ServeError)
    async def refused(request: Request, exc: ServeError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.get("/v1/models")
    async def models(request: Request):
        _check_key(request, api_key)
        data = [{"id": served.base_id, "object": "model", "created": created_at, "owned_by": "evalbench",
                 "parent": None}]
        data += [{"id": name, "object": "model", "created": created_at, "owned_by": "evalbench",
                  "parent": served.base_id, "root": path} for name, path in served.adapters.items()]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        _check_key(request, api_key)
        req = parse_request(await _read_body(request, limits.max_body_bytes))
        future = batcher.submit(_job_for(req, served, limits))
        try:
            gen = await asyncio.wait_for(asyncio.wrap_future(future), timeout=limits.timeout_s)
        except asyncio.TimeoutError:
            future.cancel()
            raise ServeError(504, f"no answer within {limits.timeout_s:g} s", "timeout") from None
        except Exception as exc:
            raise ServeError(500, f"generation failed: {type(exc).__name__}: {exc}", "generation_failed") from None
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if req.stream:
            return StreamingResponse(stream_chunks(req, gen, rid, created), media_type="text/event-stream")
        return completion_body(req, gen, rid, created)

    return app
