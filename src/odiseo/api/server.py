"""The HTTP server under the API: uvicorn, with a deadline on every part of a request.

uvicorn closes a keep-alive connection left idle after a response, but sets no
deadline on a request in progress: a client that connects and sends nothing,
half a header or half a body keeps its socket, and enough of them exhaust the
process's descriptors. `BoundedHttpProtocol` gives each phase of a connection a
deadline, measured from the start of that phase (never reset by a trickle of
bytes), and closes the connection when it passes:

- waiting for a request's headers: API_HEADER_TIMEOUT_SECONDS from the
  connection, or from the first byte of a request on a kept-alive one;
- receiving its body: API_BODY_TIMEOUT_SECONDS from the end of its headers,
  whether or not the application reads the body;
- idle between requests: API_KEEPALIVE_TIMEOUT_SECONDS (uvicorn's own timer).

While the application works on a request, no deadline runs. A request cut off
before anything was answered gets a 408 with a JSON `detail` first.

Two more bounds: a request's headers may take at most MAX_HEADER_BYTES (else 431,
and the connection is closed), and a client that stops reading what it is sent (its
socket buffer full, our writes paused) has API_BODY_TIMEOUT_SECONDS to start again
before the connection is dropped.
"""

from __future__ import annotations

import asyncio
import enum
import json
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from odiseo.config import Settings

MAX_HEADER_BYTES = 65536  # a request line and its headers; nginx's default is 32 KB


class ServerConfig(uvicorn.Config):
    """uvicorn's configuration, with the deadlines BoundedHttpProtocol enforces."""

    def __init__(
        self, app: Any, *, header_timeout: float, body_timeout: float, **options: Any
    ) -> None:
        super().__init__(app, http=BoundedHttpProtocol, **options)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout


def server_config(settings: Settings, app: Any, **options: Any) -> ServerConfig:
    """How `odiseo api` and `odiseo run` serve `app` (an app or an import string)."""
    return ServerConfig(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=settings.api_access_log,
        server_header=False,
        # uvicorn hands it to loop.call_later, which takes fractions of a second too.
        timeout_keep_alive=settings.api_keepalive_timeout_seconds,
        header_timeout=settings.api_header_timeout_seconds,
        body_timeout=settings.api_body_timeout_seconds,
        **options,
    )


class Phase(enum.Enum):
    CONNECTED = "connected"  # nothing received yet
    IDLE = "idle"  # between requests: uvicorn's keep-alive timer runs
    HEADERS = "headers"  # a request has begun
    BODY = "body"  # its headers are complete
    APP = "app"  # it is complete: the application has it


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose request is late."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not isinstance(config, ServerConfig):
            raise TypeError("BoundedHttpProtocol needs a ServerConfig")
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout = config.header_timeout
        self.body_timeout = config.body_timeout
        self.phase = Phase.CONNECTED
        self.deadline: asyncio.TimerHandle | None = None
        self.stalled: asyncio.TimerHandle | None = None  # while our writes are paused
        self.header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.stalled is not None:
            self.stalled.cancel()
            self.stalled = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.phase is Phase.IDLE:
            self._arm(self.header_timeout)
        if self.phase in {Phase.CONNECTED, Phase.IDLE}:
            self.phase = Phase.HEADERS
        super().data_received(data)
        if self.phase is Phase.HEADERS and not self.transport.is_closing():
            self.header_bytes += len(data)  # the headers are not complete yet
            if self.header_bytes > MAX_HEADER_BYTES:
                self._disarm()
                self._answer(431, "Request Header Fields Too Large", _HEADERS_TOO_LARGE)
                self.transport.close()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.stalled is None:
            self.stalled = self.loop.call_later(self.body_timeout, self._not_reading)

    def resume_writing(self) -> None:
        if self.stalled is not None:
            self.stalled.cancel()
            self.stalled = None
        super().resume_writing()

    def _not_reading(self) -> None:
        """The client has not taken what we sent for the body deadline: let it go."""
        self.stalled = None
        if self.cycle is not None:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.abort()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.phase is Phase.APP:  # the next request of a pipeline
            self._arm(self.header_timeout)
        self.phase = Phase.HEADERS
        self.header_bytes = 0

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout)
        self.phase = Phase.BODY

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        if self.cycle.response_complete:  # answered (a 401, say) before its body was read
            self.phase = Phase.IDLE  # and uvicorn's keep-alive timer is already spent
            self._arm(self.timeout_keep_alive)
        else:
            self.phase = Phase.APP

    def on_response_complete(self) -> None:
        next_in_pipeline = bool(self.pipeline)
        super().on_response_complete()
        if self.phase is Phase.APP and not next_in_pipeline:
            self.phase = Phase.IDLE

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self.deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _expired(self) -> None:
        self.deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if self.phase is Phase.HEADERS and (cycle is None or cycle.response_complete):
            self._answer(
                408,
                "Request Timeout",
                f"request headers not received within {self.header_timeout:g} s "
                "(API_HEADER_TIMEOUT_SECONDS)",
            )
        elif self.phase is Phase.BODY and cycle is not None and not cycle.response_started:
            self._answer(
                408,
                "Request Timeout",
                f"request body not received within {self.body_timeout:g} s "
                "(API_BODY_TIMEOUT_SECONDS)",
            )
            cycle.disconnected = True  # the application's answer, if any, goes nowhere
            cycle.message_event.set()  # and its receive() learns the client is gone
        self.transport.close()

    def _answer(self, status: int, reason: str, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\n"
            b"content-type: application/json\r\n"
            b"content-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, reason.encode(), len(body), body)
        )


_HEADERS_TOO_LARGE = f"request line and headers larger than {MAX_HEADER_BYTES} bytes"
