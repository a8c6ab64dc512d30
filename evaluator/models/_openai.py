"""The ``openai:MODEL`` backend: any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, TGI, ...).

One ``POST {base}/chat/completions`` per example with the example's messages, ``max_tokens`` and the
run's sampling settings (greedy → ``temperature: 0``; ``seed`` is sent; vLLM's ``top_k`` and
``repetition_penalty`` only when set), and ``logprobs: true`` so that endpoints which can return
token log-probabilities do (an endpoint that refuses the parameter with a 400 is asked again without
it, once for the run). ``--base-url`` is the API root as the OpenAI SDK takes it
(``http://host:8000/v1``; a URL without a ``/v1`` segment gets one). The key comes from the
environment variable ``--api-key-env`` (default ``OPENAI_API_KEY``); without it no Authorization
header is sent (local servers need none).

Requests run in ``--concurrency`` threads (httpx's client is thread-safe). Each has a
``--request-timeout``; a timeout, a connection error, 408, 409, 429 or 5xx is retried up to
``--max-retries`` times, waiting the server's ``Retry-After`` when it gives one (capped at
``MAX_RETRY_AFTER_S``), else ``BACKOFF_S · 2^attempt`` (capped at ``MAX_BACKOFF_S``) with ±20%
jitter. An example that still fails, or gets another 4xx, becomes one result with
``finish_reason="error"`` and the reason — the run goes on. 401/403 stop the run instead (a wrong
key fails every example the same way): fix the key and ``--resume``.

Results are committed in chunks as they complete (``on_batch``), so a killed run keeps them.
"""
from __future__ import annotations

import email.utils
import logging
import os
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any, Optional, Sequence

from evaluator.models._base import BackendError
from evaluator.types import Generation, GenerationSettings, Message

log = logging.getLogger(__name__)

PREFIX = "openai:"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 300.0
COMMIT_EVERY = 16  # completed results per on_batch call


def chat_url(base_url: str) -> str:
    """``{base}/chat/completions``, adding ``/v1`` when the base has no version segment."""
    base = base_url.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    last = base.rsplit("/", 1)[-1]
    if not (last.startswith("v") and last[1:].isdigit()):
        base += "/v1"
    return base + "/chat/completions"


def retry_after_s(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _finish(reason: Any) -> str:
    return "length" if reason == "length" else "stop"


class _Fatal(Exception):
    """A response that will fail every request the same way (auth): stops the run."""


class OpenAIBackend:
    name = "openai"

    def __init__(self, model: str, *, base_url: Optional[str] = None, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, request_timeout: float = 60.0, max_retries: int = 5, top_logprobs: int = 0):
        import httpx

        if not model:
            raise ValueError("openai:MODEL needs a model name after the colon")
        self.model = model
        self.base_url = base_url or DEFAULT_BASE_URL
        self.url = chat_url(self.base_url)
        self.api_key_env = api_key_env
        self.concurrency = max(1, int(concurrency))
        self.request_timeout = float(request_timeout)
        self.max_retries = max(0, int(max_retries))
        self.top_logprobs = max(0, min(20, int(top_logprobs)))  # the API's limit is 20
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(self.request_timeout), limits=limits)
        self._logprobs = True
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0, "errors": 0, "with_logprobs": 0}

    # ------------------------------------------------------------------ one request

    def _body(self, messages: Sequence[Message], settings: GenerationSettings) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "max_tokens": settings.max_new_tokens,
            "temperature": settings.temperature if settings.do_sample else 0.0,
            "seed": settings.seed,
        }
        if settings.do_sample:
            body["top_p"] = settings.top_p
            if settings.top_k:
                body["top_k"] = settings.top_k
        if settings.repetition_penalty != 1.0:
            body["repetition_penalty"] = settings.repetition_penalty
        if self._logprobs:
            body["logprobs"] = True
            if self.top_logprobs:
                body["top_logprobs"] = self.top_logprobs
        return body

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    def _sleep_before_retry(self, attempt: int, retry_after: Optional[float]) -> None:
        if retry_after is not None:
            delay = min(retry_after, MAX_RETRY_AFTER_S)
        else:
            delay = min(MAX_BACKOFF_S, BACKOFF_S * (2 ** attempt)) * random.uniform(0.8, 1.2)
        self._count("retries")
        time.sleep(delay)

    def _parse(self, data: dict[str, Any], latency: float) -> Generation:
        choice = (data.get("choices") or [None])[0]
        if not isinstance(choice, dict):
            raise ValueError("response has no choices")
        message = choice.get("message") or {}
        text = message.get("content") or ""
        content = (choice.get("logprobs") or {}).get("content") or []
        tokens = [str(c.get("token", "")) for c in content if isinstance(c, dict)]
        logprobs = [float(c["logprob"]) for c in content if isinstance(c, dict) and c.get("logprob") is not None]
        if len(logprobs) != len(tokens):
            tokens, logprobs = [], []
        top = [{str(t.get("token", "")): float(t["logprob"]) for t in (c.get("top_logprobs") or [])
                if isinstance(t, dict) and t.get("logprob") is not None} for c in content if isinstance(c, dict)]
        top = top if tokens and len(top) == len(tokens) and any(top) else None
        if logprobs:
            self._count("with_logprobs")
        usage = data.get("usage") or {}
        completion = usage.get("completion_tokens")
        count = int(completion) if isinstance(completion, int) else (len(tokens) if tokens else None)
        return Generation(text=text, token_ids=[], tokens=tokens, logprobs=logprobs,
                          finish_reason=_finish(choice.get("finish_reason")),
                          prompt_tokens=int(usage.get("prompt_tokens") or 0), latency_s=latency,
                          token_count=count, count_known=count is not None, top_logprobs=top)

    def _error(self, text: str, latency: float) -> Generation:
        self._count("errors")
        return Generation(text="", token_ids=[], tokens=[], logprobs=[], finish_reason="error", error=text[:2000],
                          latency_s=latency)

    def complete(self, messages: Sequence[Message], settings: GenerationSettings) -> Generation:
        """One chat completion with retries; an error result instead of an exception (except auth)."""
        import httpx

        started = time.perf_counter()
        attempt = 0
        last = ""
        while True:
            self._count("requests")
            retry_after = None
            try:
                resp = self._client.post(self.url, json=self._body(messages, settings))
            except httpx.TimeoutException as exc:
                last = f"timed out after {self.request_timeout:g}s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code == 200:
                    try:
                        return self._parse(resp.json(), time.perf_counter() - started)
                    except ValueError as exc:
                        return self._error(f"unreadable response from {self.url}: {exc}", time.perf_counter() - started)
                body = resp.text[:500]
                if resp.status_code in (401, 403):
                    raise _Fatal(f"{self.url} answered {resp.status_code} ({body.strip()[:200]}): check the key in "
                                 f"${self.api_key_env} (--api-key-env names the variable)")
                if resp.status_code == 400 and self._logprobs and "logprob" in body.lower():
                    log.warning("%s refuses logprobs (%s); asking without them", self.url, body.strip()[:200])
                    self._logprobs = False
                    continue
                last = f"HTTP {resp.status_code}: {body.strip()}"
                if resp.status_code not in RETRY_STATUS:
                    return self._error(last, time.perf_counter() - started)
                retry_after = retry_after_s(resp.headers.get("Retry-After"))
            if attempt >= self.max_retries:
                return self._error(f"{last} (gave up after {attempt + 1} attempts)", time.perf_counter() - started)
            log.debug("retrying (%s) attempt %d", last, attempt + 1)
            self._sleep_before_retry(attempt, retry_after)
            attempt += 1

    # ------------------------------------------------------------------ interface

    def generate(self, conversations: Sequence[Sequence[Message]], settings: GenerationSettings, *,
                 on_batch=None, progress: bool = True) -> list[Generation]:
        from tqdm.auto import tqdm

        n = len(conversations)
        results: list[Optional[Generation]] = [None] * n
        pending_idx: list[int] = []
        pending_gen: list[Generation] = []
        bar = tqdm(total=n, desc=f"openai:{self.model}", unit="ex", disable=not progress, dynamic_ncols=True)
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai")
        futures = {}
        try:
            it = iter(range(n))
            # keep at most 2×concurrency requests queued, so an early stop abandons little work
            for i in it:
                futures[pool.submit(self.complete, conversations[i], settings)] = i
                if len(futures) >= 2 * self.concurrency:
                    break
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = futures.pop(fut)
                    try:
                        gen = fut.result()
                    except _Fatal as exc:
                        raise BackendError(str(exc)) from None
                    results[i] = gen
                    pending_idx.append(i)
                    pending_gen.append(gen)
                    bar.update(1)
                    nxt = next(it, None)
                    if nxt is not None:
                        futures[pool.submit(self.complete, conversations[nxt], settings)] = nxt
                if on_batch is not None and pending_idx and (len(pending_idx) >= COMMIT_EVERY or not futures):
                    on_batch(pending_idx, pending_gen)
                    pending_idx, pending_gen = [], []
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
        if self.stats["retries"] or self.stats["errors"]:
            log.info("openai:%s: %d requests, %d retries, %d examples failed", self.model, self.stats["requests"],
                     self.stats["retries"], self.stats["errors"])
        return [g for g in results if g is not None]

    def reference_logprobs(self, conversations, references) -> list[list[float]]:
        raise NotImplementedError("a chat-completions endpoint does not score given references")

    def info(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "base_url": self.base_url,
                "api_key_env": self.api_key_env, "concurrency": self.concurrency,
                "request_timeout_s": self.request_timeout, "max_retries": self.max_retries,
                "logprobs": self._logprobs, **{f"requests_{k}": v for k, v in self.stats.items()}}

    def close(self) -> None:
        self._client.close()


def load_openai(model: str, **options: Any) -> OpenAIBackend:
    return OpenAIBackend(model, **options)
