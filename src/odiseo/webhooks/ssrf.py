"""Where a webhook may be sent: https to globally routable addresses only, unless
WEBHOOK_ALLOW_PRIVATE (then plain http and any address, for tests and intranets).

A URL is checked when it is saved and again before every delivery, and the request
goes to the very address that was checked: the URL's host is replaced by that
address, with the name kept in the `Host` header and as the TLS server name (SNI
and certificate check). A name whose DNS answer changes between the check and the
connection (DNS rebinding) therefore cannot lead a delivery to an internal address.

`ipaddress`'s `is_global` excludes private, loopback, link-local (169.254.169.254,
the cloud metadata address), shared (100.64.0.0/10, where 100.100.100.200 is another
cloud's metadata) and reserved ranges; IPv6 addresses carrying an IPv4 one
(mapped, 6to4, Teredo, NAT64) are judged by that one too, and multicast is refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from odiseo.errors import WebhookRefused

if TYPE_CHECKING:
    import httpx

Resolver = Callable[[str, int], Awaitable[list[str]]]
MAX_URL_CHARS = 2048
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host`, in its order."""
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookRefused(f"url: cannot resolve {host}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in found))


@dataclass(frozen=True, kw_only=True)
class Target:
    """A checked URL and the address to connect to for it."""

    url: httpx.URL
    address: str

    @property
    def pinned(self) -> httpx.URL:
        """The URL with its host replaced by the checked address."""
        return self.url.copy_with(host=self.address)

    @property
    def host_header(self) -> str:
        return self.url.netloc.decode("ascii")

    @property
    def extensions(self) -> dict[str, str]:
        """httpx request extensions: TLS is sent, and checked, for the URL's name."""
        return {"sni_hostname": self.url.host} if self.url.scheme == "https" else {}


def parse(url: str, *, allow_private: bool) -> httpx.URL:
    """`url` if its form is acceptable; raises WebhookRefused saying why not."""
    import httpx  # on first use: an API or worker with no webhook never loads it

    if len(url) > MAX_URL_CHARS:
        raise WebhookRefused(f"url: at most {MAX_URL_CHARS} characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise WebhookRefused(f"url: {exc}") from None
    schemes = {"https", "http"} if allow_private else {"https"}
    if parsed.scheme not in schemes:
        raise WebhookRefused(
            "url: must be https (plain http only with WEBHOOK_ALLOW_PRIVATE=true)"
            if parsed.scheme == "http"
            else "url: must be an https URL"
        )
    if not parsed.host:
        raise WebhookRefused("url: has no host")
    if parsed.userinfo:
        raise WebhookRefused("url: may not carry a user name or password")
    if parsed.fragment:
        raise WebhookRefused("url: may not have a #fragment")
    return parsed


async def check(url: str, *, allow_private: bool, resolver: Resolver) -> Target:
    """The URL checked, resolved, and every address it resolves to allowed; raises
    WebhookRefused saying why not."""
    parsed = parse(url, allow_private=allow_private)
    host = parsed.host
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        addresses = await resolver(parsed.raw_host.decode("ascii"), parsed.port or _port(parsed))
    if not addresses:
        raise WebhookRefused(f"url: {host} resolves to no address")
    if not allow_private:
        for address in addresses:
            if not is_global(address):
                raise WebhookRefused(
                    f"url: {host} resolves to {address}, which is not a globally routable "
                    "address (WEBHOOK_ALLOW_PRIVATE=true allows private ones)"
                )
    return Target(url=parsed, address=addresses[0])


def is_global(address: str) -> bool:
    """A public unicast address, and so is any IPv4 address carried inside it."""
    ip = ipaddress.ip_address(address)
    if not ip.is_global or ip.is_multicast:
        return False
    return all(is_global(str(inner)) for inner in _carried(ip))


def _carried(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address embeds (mapped, 6to4, Teredo, NAT64)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return []
    carried = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    if ip in _NAT64:
        carried.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [inner for inner in carried if inner is not None]


def _port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80
