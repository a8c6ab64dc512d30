"""The Arena's side of the wire: listing an OpenAI-compatible endpoint's models, streaming one answer from it,
and writing kept conversations as a JSONL dataset in the messages format. Used by the dashboard's Arena page
(which never loads weights) and by ``python -m evaluator export_kept``."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

KEY_ENV = "EVAL_ARENA_API_KEY"  # the bearer key sent to every Arena endpoint, when set
CONNECT_TIMEOUT_S = 3.0


class EndpointError(Exception):
    """An endpoint that is down, refuses the request or answers nonsense: one line saying which and why."""


def _client(base_url: str, timeout: float):
    import openai

    return openai.OpenAI(base_url=base_url, api_key=os.environ.get(KEY_ENV) or "none", max_retries=0,
                         timeout=openai.Timeout(timeout, connect=CONNECT_TIMEOUT_S))


def _reason(exc: BaseException, base_url: str) -> str:
    import openai

    if isinstance(exc, openai.APIConnectionError):
        return f"{base_url} is not answering ({type(exc.__cause__ or exc).__name__}): is the server running?"
    if isinstance(exc, openai.APIStatusError):
        try:
            message = exc.response.json()["error"]["message"]
        except Exception:  # not OpenAI's error shape
            message = exc.response.text[:200]
        return f"{base_url} answered {exc.status_code}: {message}"
    return f"{base_url}: {type(exc).__name__}: {exc}"


def list_models(base_url: str, timeout: float = 5.0) -> list[str]:
    """The model ids ``GET /v1/models`` lists; EndpointError when the endpoint cannot say."""
    try:
        return [m.id for m in _client(base_url, timeout).models.list().data]
    except Exception as exc:
        raise EndpointError(_reason(exc, base_url)) from None


@dataclass
class ChatSettings:
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    seed: Optional[int] = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def stream_answer(base_url: str, model: str, messages: Sequence[Mapping[str, str]], settings: ChatSettings,
                  on_text: Callable[[str], None], timeout: float = 300.0) -> str:
    """Stream one answer, calling ``on_text(text so far)`` as chunks arrive; the whole answer. EndpointError
    when the endpoint fails before or during the answer."""
    try:
        stream = _client(base_url, timeout).chat.completions.create(
            model=model, messages=[dict(m) for m in messages], stream=True, max_tokens=settings.max_tokens,
            temperature=settings.temperature, top_p=settings.top_p, seed=settings.seed)
        text = ""
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
                on_text(text)
        return text
    except Exception as exc:
        raise EndpointError(_reason(exc, base_url)) from None


def kept_jsonl(rows: Iterable[Mapping[str, Any]], set_name: str) -> str:
    """``db.kept_examples`` rows as JSONL in the messages format: the conversation with the reference as the last
    assistant turn, ``category`` the set's name, ``id`` stable per kept row; ``evaluator run --dataset FILE``
    evaluates each conversation's last turn against it."""
    lines = []
    for r in rows:
        messages = [*r["messages"], {"role": "assistant", "content": r["reference"]}]
        lines.append(json.dumps({"id": f"{set_name}-{r['id']}", "messages": messages, "category": set_name,
                                 "source": "arena"}, ensure_ascii=False))
    return "".join(line + "\n" for line in lines)
