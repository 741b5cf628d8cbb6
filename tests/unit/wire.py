"""Judging a message the way a receiving system would: helpers for the mime tests."""

from __future__ import annotations

import base64
import re
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import parseaddr
from functools import cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from odiseo.dkim_signing import DkimSigner

DKIM_DOMAIN = "odiseo.io"
DKIM_SELECTOR = "wire"
_LINE_END = re.compile(rb"\r\n|\r|\n")


def strict(raw: bytes) -> EmailMessage:
    """`raw` parsed by the standard library with every defect an error."""
    parsed = message_from_bytes(raw, policy=policy.strict)
    assert isinstance(parsed, EmailMessage)
    for part in parsed.walk():
        assert not part.defects, part.defects
        for name, value in part.items():
            assert not value.defects, (name, value.defects)
    return parsed


def phrase_of(raw: bytes, name: str) -> str:
    """The display name of the address in header `name`, decoded as RFC 2047 §6.2 says.

    Python 3.11's `policy.default` keeps the whitespace between two adjacent
    encoded-words of a phrase, which §6.2 says to drop, so the older
    `decode_header`, which drops it, is the reference for display names.
    """
    parsed = message_from_bytes(raw, policy=policy.compat32)
    unfolded = re.sub(r"\r\n(?=[ \t])", "", str(parsed[name]))
    phrase, _ = parseaddr(unfolded)
    return str(make_header(decode_header(phrase)))


def assert_well_formed(raw: bytes) -> None:
    """CRLF only, no line over 998 octets, headers of printable ASCII with real folds."""
    assert raw.isascii()
    assert not re.search(rb"\r(?!\n)|(?<!\r)\n", raw), "a bare CR or LF"
    lines = raw.split(b"\r\n")
    assert max(map(len, lines)) <= 998
    for block in header_blocks(raw):
        for number, line in enumerate(block):
            assert re.fullmatch(rb"[\t -~]+", line), line
            assert not line.endswith((b" ", b"\t")), line
            if line[:1] in (b" ", b"\t"):
                assert number > 0 and line.strip(), line
            else:
                assert re.match(rb"[!-9;-~]+:", line), line


def header_blocks(raw: bytes) -> list[list[bytes]]:
    """The header lines of the message and of every MIME part."""
    parsed = message_from_bytes(raw, policy=policy.default)
    found = []
    for part in parsed.walk():
        found.append([line for name, value in part.raw_items() for line in _raw_lines(name, value)])
    return found


def _raw_lines(name: str, value: str) -> list[bytes]:
    text = f"{name}:{value}"
    return [line.encode("ascii", "surrogateescape") for line in text.split("\r\n") if line]


@cache
def dkim_keys() -> tuple[DkimSigner, bytes]:
    """A signer with a fresh RSA-2048 key, and the DNS TXT record of its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signer = DkimSigner.from_settings(domain=DKIM_DOMAIN, selector=DKIM_SELECTOR, key=pem)
    return signer, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def relay(raw: bytes) -> bytes:
    """What a relay such as Postfix passes on: every line over 998 octets broken by
    CRLF + SPACE (smtp_line_length_limit), everything else untouched."""
    out = []
    for line in raw.split(b"\r\n"):
        while len(line) > 998:
            out.append(line[:998])
            line = b" " + line[998:]
        out.append(line)
    return b"\r\n".join(out)


def dkim_verifies(raw: bytes) -> bool:
    """Whether dkimpy's verifier accepts the signature on `raw`, given our public key."""
    import dkim

    _, record = dkim_keys()

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{DKIM_SELECTOR}._domainkey.{DKIM_DOMAIN}.".encode()
        return record

    return bool(dkim.verify(raw, dnsfunc=dns))
