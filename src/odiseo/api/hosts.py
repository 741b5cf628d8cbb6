"""Refuse requests whose Host header names a host this API does not serve.

A web page can point a name it controls at 127.0.0.1 (DNS rebinding) and then
call the API as if it were its own origin: the browser sends the page's name in
Host. So the API answers only to the names it is reached by: the loopback names,
the API_HOST address, and API_ALLOWED_HOSTS (a reverse proxy that forwards the
public name needs it listed). Listening on every interface (0.0.0.0, ::), any IP
address passes as well: an address in Host cannot have been rebound. The port is
not compared, so tunnels and published container ports keep working.

A request that changes something (any method but GET, HEAD and OPTIONS) and that a
browser sent from another origin is refused too (403): a page can send a bodiless
POST such as /emails/retry to a keyless API on loopback without a preflight, but the
browser names the page's origin in `Origin`. Programs other than browsers send no
Origin, and pass.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_ADDRESSES = frozenset({"0.0.0.0", "::", ""})
_REMEMBERED = 256  # distinct Host values whose verdict is cached
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CROSS_SITE = (
    "cross-site request refused: a page at {origin!r} may not change anything here "
    "(its name is not this API's; see API_ALLOWED_HOSTS)"
)


@dataclass(frozen=True)
class HostPolicy:
    """Which Host header values the API answers to."""

    names: frozenset[str]
    any_address: bool = False
    everything: bool = False

    @classmethod
    def from_settings(
        cls, *, api_host: str, allowed_hosts: str, public_url: str | None = None
    ) -> HostPolicy:
        listed = {_normal(name) for name in allowed_hosts.split(",") if name.strip()}
        if public_url:  # recipients follow unsubscribe links to this name
            listed.add(_normal(_without_port(urlsplit(public_url).netloc)))
        if "*" in listed:
            return cls(names=frozenset(), everything=True)
        bound = _normal(api_host)
        wildcard = bound in WILDCARD_ADDRESSES
        names = LOOPBACK_NAMES | listed | (set() if wildcard else {bound})
        return cls(names=frozenset(names), any_address=wildcard)

    def admits(self, host: str) -> bool:
        """Whether a request with this Host header value (port included) is served."""
        if self.everything:
            return True
        name = _normal(_without_port(host))
        if name in self.names:
            return True
        return self.any_address and _is_address(name)


def _without_port(host: str) -> str:
    if host.startswith("["):
        return host[1:].partition("]")[0]
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() else host


def _normal(name: str) -> str:
    name = name.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name[:-1] if name.endswith(".") else name


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheck:
    """ASGI middleware: a Host the policy does not admit is answered 421 with a `detail`.

    A request without Host (HTTP/1.0) passes: browsers always send one.
    """

    def __init__(self, app: ASGIApp, *, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy
        self.verdicts: dict[bytes, bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.policy.everything:
            host = _header(scope, b"host")
            if host is not None and not self._admits(host):
                await _misdirected(host.decode("latin-1"), send)
                return
        if scope["type"] == "http" and scope["method"] not in _SAFE_METHODS:
            origin = _header(scope, b"origin")
            if origin is not None and not self._admits(_origin_host(origin)):
                await _refuse(403, _CROSS_SITE.format(origin=origin.decode("latin-1")[:100]), send)
                return
        await self.app(scope, receive, send)

    def _admits(self, host: bytes) -> bool:
        verdict = self.verdicts.get(host)
        if verdict is None:
            verdict = self.policy.admits(host.decode("latin-1"))
            if len(self.verdicts) < _REMEMBERED:
                self.verdicts[host] = verdict
        return verdict


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return bytes(value)
    return None


def _origin_host(origin: bytes) -> bytes:
    """The host[:port] of an Origin header (`null` and anything odd stay as they are)."""
    _, separator, rest = origin.partition(b"://")
    return rest.partition(b"/")[0] if separator else origin


async def _misdirected(host: str, send: Send) -> None:
    detail = (
        f"Host {host[:100]!r} is not a name this API answers to; "
        "if it should be, add it to API_ALLOWED_HOSTS"
    )
    await _refuse(421, detail, send)


async def _refuse(status: int, detail: str, send: Send) -> None:
    log.info("refused with %d: %s", status, detail)
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
