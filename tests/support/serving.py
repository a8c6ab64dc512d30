"""``evaluator serve``'s app under a real uvicorn server on a free loopback port, in a thread (holds no tests)."""
from __future__ import annotations

import socket
import threading
import time


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningServer:
    """``app`` served on 127.0.0.1 until ``stop()``; ``base_url`` is its API root (``.../v1``)."""

    def __init__(self, app, port: int | None = None):
        import uvicorn

        self.port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    @property
    def app(self):
        return self.server.config.app

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def serve_demo(demo_models, **options):
    """The demo base (as ``demo-base``) and its versions (``demo-v1`` ...) loaded as ``evaluator serve`` does."""
    from evaluator import _serve

    adapters = {f"demo-{name}": str(path) for name, path in demo_models.versions}
    return _serve.ServedModels(str(demo_models.base_dir), adapters, base_id="demo-base", device="cpu", **options)
