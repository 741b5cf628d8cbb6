"""A real webhook receiver: an ASGI app served by uvicorn on a loopback port, in its own
thread, recording every request and answering as the test tells it."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from standardwebhooks import Webhook

from tests.support.smtp import free_port


@dataclass(frozen=True)
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes

    def verify(self, secret: str) -> Any:
        """The body as JSON if the signature verifies with `secret` (the `standardwebhooks`
        package's check, timestamp tolerance included); raises otherwise."""
        return Webhook(secret).verify(self.body, self.headers)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    """Answers `status` (or the next of `statuses`) after `delay` seconds, with `location`
    if set; over https with `tls` (a PEM file of key and certificate chain). `peak` is
    the most requests it ever held at once."""

    def __init__(self, *, port: int | None = None, tls: Path | None = None) -> None:
        self.port = port or free_port()
        self.hits: list[Hit] = []
        self.statuses: collections.deque[int] = collections.deque()
        self.status = 200
        self.delay = 0.0
        self.location: str | None = None
        self.active = 0
        self.peak = 0
        self.cut = 0  # requests whose sender went away before the whole body came
        self._tls = tls
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":  # the sender died mid-request
                self.cut += 1
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.hits.append(Hit(scope["path"], headers, body))
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.delay)
            status = self.statuses.popleft() if self.statuses else self.status
            extra = [(b"location", self.location.encode())] if self.location else []
            start = {"type": "http.response.start", "status": status}
            await send({**start, "headers": [(b"content-type", b"text/plain"), *extra]})
            await send({"type": "http.response.body", "body": f"answer {status}; ".encode() * 90})
        finally:
            self.active -= 1

    def start(self) -> Receiver:
        tls = {"ssl_certfile": self._tls, "ssl_keyfile": self._tls} if self._tls else {}
        config = uvicorn.Config(
            self, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning", **tls
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = None
