"""DKIM signing (dkimpy): one signature per message, over the exact bytes that are sent."""

from __future__ import annotations

from pathlib import Path

import dkim

from odiseo.errors import ConfigError

SIGNED_HEADERS = (
    b"from", b"to", b"cc", b"reply-to", b"subject", b"date", b"message-id",
    b"mime-version", b"content-type",
)  # fmt: skip


class DkimSigner:
    """Signs messages for one domain and selector with an RSA or Ed25519 key."""

    def __init__(self, *, domain: str, selector: str, private_key: bytes) -> None:
        self.domain = domain.encode("idna")
        self.selector = selector.encode("ascii")
        self._key = private_key

    def __repr__(self) -> str:
        return f"DkimSigner(domain={self.domain.decode()!r}, selector={self.selector.decode()!r})"

    @classmethod
    def from_settings(cls, *, domain: str, selector: str, key: str) -> DkimSigner:
        """Build from DKIM_PRIVATE_KEY, which holds the PEM itself or a path to it."""
        pem = key.strip()
        if not pem.startswith("-----BEGIN"):
            try:
                pem = Path(pem).read_text()
            except OSError as exc:
                raise ConfigError(
                    f"DKIM_PRIVATE_KEY: cannot read key file: {exc.strerror}"
                ) from None
        signer = cls(domain=domain, selector=selector, private_key=pem.encode())
        signer.sign(b"From: check@" + signer.domain + b"\r\nSubject: x\r\n\r\nx\r\n")
        return signer

    def sign(self, data: bytes) -> bytes:
        """The message with its DKIM-Signature header prepended."""
        try:
            signature = dkim.sign(
                data,
                self.selector,
                self.domain,
                self._key,
                include_headers=[h for h in SIGNED_HEADERS if _has_header(data, h)],
                canonicalize=(b"relaxed", b"relaxed"),
            )
        except (dkim.DKIMException, ValueError) as exc:
            raise ConfigError(f"DKIM_PRIVATE_KEY: cannot sign: {type(exc).__name__}") from None
        signed: bytes = signature + data
        return signed


def _has_header(data: bytes, name: bytes) -> bool:
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    return head.startswith(name + b":") or b"\r\n" + name + b":" in head
