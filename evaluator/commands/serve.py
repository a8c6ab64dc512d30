"""``python -m evaluator serve``: an OpenAI-compatible server for a base model and its LoRA versions.

The server itself is ``evaluator._serve`` (docs/serving.md); this module parses the flags and runs uvicorn.
"""
from __future__ import annotations

import argparse
import logging
import os
from typing import Optional

from evaluator import _serve
from evaluator.errors import UserError

log = logging.getLogger(__name__)

EPILOG = """\
examples:
  # the base and two fine-tuned versions from one copy of the base weights, on 127.0.0.1:8000
  python -m evaluator serve --model meta-llama/Llama-3.1-8B-Instruct \\
      --adapter v2=outputs/lora-v2 --adapter v3=outputs/lora-v3

  # then any OpenAI client, the evaluator included; the request's "model" picks the version
  python -m evaluator run --model openai:v3 --base-url http://127.0.0.1:8000/v1 --dataset test.jsonl

  # reachable from other machines, with a key (clients send it as a bearer token)
  SERVE_KEY=... python -m evaluator serve --model ./base --host 0.0.0.0 --api-key-env SERVE_KEY
"""


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a model and its LoRA adapters behind an OpenAI-compatible API",
                       description="Load a base model once with its named LoRA adapters and answer OpenAI "
                                   "chat-completions requests (streaming included); concurrent requests are "
                                   "batched. Greedy answers equal 'run --model M' for the same messages.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, metavar="PATH_OR_HUB_ID", help="the base model (its id in requests)")
    p.add_argument("--name", metavar="ID", help="the base model's id in requests (default: --model as given)")
    p.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH",
                   help="a PEFT/LoRA adapter served under NAME (repeatable)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, metavar="N", help="port (default 8000)")
    p.add_argument("--api-key-env", metavar="VAR",
                   help="require the key in environment variable VAR as 'Authorization: Bearer KEY'")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--chat-template", metavar="FILE_OR_NAME", help="override the tokenizer's chat template")
    p.add_argument("--max-length", type=int, metavar="N", help="context length (default: the model's)")
    p.add_argument("--max-batch-size", type=int, default=16, metavar="N",
                   help="most requests generated together (default 16)")
    p.add_argument("--max-tokens", type=int, default=4096, metavar="N",
                   help="the largest max_tokens honoured; larger requests are lowered to it (default 4096)")
    p.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                   help="per request, waiting included; then 504 (default 300)")
    p.add_argument("--max-body-bytes", type=int, default=_serve.MAX_BODY_BYTES, metavar="N",
                   help=f"larger request bodies get 413 (default {_serve.MAX_BODY_BYTES:,})")
    p.set_defaults(func=main)


def parse_adapters(values: list[str]) -> dict[str, str]:
    adapters: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--adapter {value!r}: expected NAME=PATH")
        if name in adapters:
            raise UserError(f"--adapter {name} given twice")
        if not os.path.exists(path):
            raise UserError(f"--adapter {name}: {path} does not exist")
        adapters[name] = path
    return adapters


def _api_key(var: Optional[str]) -> Optional[str]:
    if var is None:
        return None
    key = os.environ.get(var)
    if not key:
        raise UserError(f"--api-key-env {var}: the variable is not set or empty")
    return key


def main(args: argparse.Namespace) -> int:
    import uvicorn

    adapters = parse_adapters(args.adapter)
    if args.name and args.name in adapters:
        raise UserError(f"--name {args.name} is also an adapter's name")
    key = _api_key(args.api_key_env)
    served = _serve.ServedModels(args.model, adapters, base_id=args.name, device=args.device, dtype=args.dtype,
                                 chat_template=args.chat_template, max_length=args.max_length,
                                 batch_size="auto", max_batch_size=args.max_batch_size)
    limits = _serve.ServeLimits(max_body_bytes=args.max_body_bytes, timeout_s=args.timeout,
                                max_tokens=args.max_tokens)
    app = _serve.create_app(served, api_key=key, limits=limits, max_batch=args.max_batch_size)
    log.info("serving %s on http://%s:%d/v1", ", ".join(served.ids), args.host, args.port)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        served.close()
    return 0
