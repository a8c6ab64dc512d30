"""A small OpenAI-compatible chat server on 127.0.0.1 for the external-backend tests (holds no tests).

It misbehaves on purpose, chosen by a marker in the last user message:

=============  ===============================================================
``#slow``      answers after 0.3 s
``#limited``   429 with ``Retry-After: 0`` the first time, then answers
``#stall``     the first time sleeps past the client's timeout, then answers
``#broken``    500 every time
=============  ===============================================================

Every other prompt is answered at once with ``"echo: <prompt>"`` (or, when ``reply`` is set, with what it
returns for the request body: a stub judge; None answers 500), token log-probabilities and usage.
``requests[marker]`` counts requests per prompt; ``max_in_flight`` is the highest number of requests
handled at the same time; ``required_key`` makes it answer 401 to any other bearer token. ``models``
(None: no such route, 404) is what ``GET /v1/models`` lists.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional

STALL_S = 2.5


class ChatStub:
    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.required_key: Optional[str] = None
        self.models: Optional[list[str]] = None
        self.reply: Optional[Callable[[dict], str]] = None  # when set: the answer to every request body
        self.delay_s = 0.0  # added to every answer: a remote API's latency
        self.alternatives: dict[str, float] = {}  # when top_logprobs are asked: these for a token in them
        self.limit_first = False  # when set: the first request of every prompt gets 429 (Retry-After: 0)
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: with Nagle's algorithm the body then waits ~40 ms for the
            # client's delayed ACK, on every request (a real server sets TCP_NODELAY too)
            disable_nagle_algorithm = True

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                if self.path != "/v1/models" or stub.models is None:
                    return stub._send(self, 404, {"error": {"message": f"no route {self.path}"}})
                if stub.required_key and self.headers.get("Authorization") != f"Bearer {stub.required_key}":
                    return stub._send(self, 401, {"error": {"message": "invalid api key"}})
                stub._send(self, 200, {"object": "list", "data": [{"id": m, "object": "model"} for m in stub.models]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                with stub.lock:
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    stub.handle(self, body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass
                finally:
                    with stub.lock:
                        stub.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "ChatStub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _send(handler, status: int, payload: dict, headers: Optional[dict] = None) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)

    def handle(self, handler, body: dict) -> None:
        if handler.path != "/v1/chat/completions":
            return self._send(handler, 404, {"error": {"message": f"no route {handler.path}"}})
        prompt = [m for m in body.get("messages", []) if m.get("role") == "user"][-1]["content"]
        marker = next((m for m in ("#slow", "#limited", "#stall", "#broken") if m in prompt), prompt)
        with self.lock:
            self.requests[marker] += 1
            n = self.requests[marker]
            self.bodies.append(body)
            self.headers.append(dict(handler.headers))
        if self.required_key and handler.headers.get("Authorization") != f"Bearer {self.required_key}":
            return self._send(handler, 401, {"error": {"message": "invalid api key"}})
        if marker == "#broken":
            return self._send(handler, 500, {"error": {"message": "internal error, on purpose"}})
        if marker == "#limited" and n == 1:
            return self._send(handler, 429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
        if marker == "#stall" and n == 1:
            time.sleep(STALL_S)
        if marker == "#slow":
            time.sleep(0.3)
        if self.limit_first and n == 1:
            return self._send(handler, 429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
        if self.delay_s:
            time.sleep(self.delay_s)
        text = self.reply(body) if self.reply is not None else None
        if self.reply is not None and text is None:
            return self._send(handler, 500, {"error": {"message": "the stub judge fails this one, on purpose"}})
        if text is not None:
            words, finish = text.split(" "), "stop"
        else:
            words = ["echo:", *prompt.split()][: int(body.get("max_tokens") or 16)]
            finish = "stop" if len(words) == len(prompt.split()) + 1 else "length"
        choice = {"index": 0, "message": {"role": "assistant", "content": " ".join(words)}, "finish_reason": finish}
        if body.get("logprobs"):
            top = int(body.get("top_logprobs") or 0)
            choice["logprobs"] = {"content": [
                {"token": w, "logprob": self.alternatives.get(w, -0.25 * (i + 1)), "bytes": list(w.encode()),
                 "top_logprobs": ([{"token": t, "logprob": lp, "bytes": list(t.encode())}
                                   for t, lp in list(self.alternatives.items())[:top]]
                                  if top and w in self.alternatives else [])}
                for i, w in enumerate(words)]}
        self._send(handler, 200, {
            "id": "chatcmpl-test", "object": "chat.completion", "model": body.get("model"), "choices": [choice],
            "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(words),
                      "total_tokens": len(prompt.split()) + len(words)},
        })


def serve(argv: Optional[list[str]] = None) -> None:
    """``python tests/support/openai_stub.py --delay 0.2 --reply '[[A]]'``: the stub in a process of its own
    (for benchmarks: in the client's process it would share the client's interpreter lock). Prints its base URL,
    then serves until killed."""
    import argparse

    ap = argparse.ArgumentParser(description=serve.__doc__)
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    ap.add_argument("--reply", help="the answer to every request (default: echo the prompt)")
    args = ap.parse_args(argv)
    stub = ChatStub()
    stub.delay_s = args.delay
    if args.reply is not None:
        stub.reply = lambda body: args.reply
    with stub:
        print(stub.base_url, flush=True)
        stub.thread.join()


if __name__ == "__main__":
    serve()
