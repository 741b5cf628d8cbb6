"""DKIM signing: one signature per message, over the exact bytes that are sent.

The signature header is the one dkimpy's own `dkim.sign` writes, byte for byte (a
test compares them): dkimpy parses and canonicalises the headers (relaxed), selects
and hashes the signed ones and folds the DKIM-Signature. Two steps are ours, because
they were most of the cost of a signature: the signature itself is made by the
`cryptography` package (OpenSSL) instead of dkimpy's pure-Python RSA, and the relaxed
body canonicalisation is a linear rewrite of dkimpy's, checked equal to it by a
property test. RSA keys sign with PKCS#1 v1.5 over SHA-256 (rsa-sha256, RFC 6376);
Ed25519 keys sign the SHA-256 digest of the same header data (ed25519-sha256, RFC
8463). The worker has the signature itself made by a child process
(`sign_off_loop`, see dkim_process.py), so its event loop goes on meanwhile.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
from pathlib import Path

import dkim
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils

from odiseo.dkim_process import SignerGone, SigningProcess
from odiseo.errors import ConfigError

log = logging.getLogger(__name__)

SIGNED_HEADERS = (
    b"from", b"to", b"cc", b"reply-to", b"subject", b"date", b"message-id",
    b"mime-version", b"content-type", b"list-unsubscribe", b"list-unsubscribe-post",
)  # fmt: skip
_SIGNED = frozenset(SIGNED_HEADERS)
HEADER_NAME = b"DKIM-Signature"
CANONICALIZATION = b"relaxed/relaxed"
MIN_RSA_BITS = 1024  # RFC 8301 §3.2: verifiers refuse shorter keys
_POLICY = dkim.CanonicalizationPolicy.from_c_value(CANONICALIZATION)
_PREHASHED = utils.Prehashed(hashes.SHA256())
_TRAILING_WSP = re.compile(rb"[\t ]+\r\n")
_WSP_TO_SQUEEZE = re.compile(rb"[\t ][\t ]+|\t")

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
Field = tuple[bytes, bytes]  # one tag=value of the DKIM-Signature


class DkimSigner:
    """Signs messages for one domain and selector with an RSA or Ed25519 key."""

    def __init__(self, *, domain: str, selector: str, private_key: bytes) -> None:
        self.domain = domain.encode("idna")
        self.selector = selector.encode("ascii")
        self._key = load_private_key(private_key)
        if isinstance(self._key, rsa.RSAPrivateKey):
            self.algorithm, size = b"rsa-sha256", (self._key.key_size + 7) // 8
        else:
            self.algorithm, size = b"ed25519-sha256", 64
        self._process = SigningProcess(pem=private_key, signature_size=size)

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

    def sign(self, data: bytes, *, timestamp: int | None = None) -> bytes:
        """The message with its DKIM-Signature header prepended.

        Args:
            timestamp: the t= tag, in seconds since the epoch; now when not given.
        """
        fields, digest = self._prepare(data, timestamp=timestamp)
        return _signed(data, fields=fields, signature=make_signature(self._key, digest))

    async def sign_off_loop(self, data: bytes, *, timestamp: int | None = None) -> bytes:
        """`sign`, with the signature itself made by the signing process.

        Parsing and hashing stay here; the event loop serves other messages while
        the child signs. Without the child, the signature is made here.
        """
        fields, digest = self._prepare(data, timestamp=timestamp)
        try:
            signature = await self._process.sign(digest)
        except SignerGone:
            log.warning("DKIM: the signing process is gone; this signature is made in-process")
            signature = make_signature(self._key, digest)
        return _signed(data, fields=fields, signature=signature)

    def close(self) -> None:
        """Stop the signing process (a later signature starts it again)."""
        self._process.stop()

    def _prepare(self, data: bytes, *, timestamp: int | None) -> tuple[list[Field], bytes]:
        """The tags with a placeholder b=, and the digest that b= signs."""
        try:
            headers, body = split_message(data)
        except dkim.MessageFormatError as exc:
            raise ValueError(f"DKIM: cannot sign this message: {exc}") from None
        headers = [header for header in headers if header[0].lower() in _SIGNED]
        present = {name.lower() for name, _ in headers}
        include = tuple(name for name in SIGNED_HEADERS if name in present)
        body_hash = hashlib.sha256(relaxed_body(body)).digest()
        fields = [
            (b"v", b"1"),
            (b"a", self.algorithm),
            (b"c", CANONICALIZATION),
            (b"d", self.domain),
            (b"i", b"@" + self.domain),
            (b"q", b"dns/txt"),
            (b"s", self.selector),
            (b"t", b"%d" % (int(time.time()) if timestamp is None else timestamp)),
            (b"h", b" : ".join(include)),
            (b"bh", base64.b64encode(body_hash)),
            (b"b", b"0" * 60),  # folds b= onto its own line, as dkimpy does
        ]
        return fields, _headers_digest(headers=headers, include=include, fields=fields)


def make_signature(key: PrivateKey, digest: bytes) -> bytes:
    """The b= signature of a header digest: rsa-sha256 or ed25519-sha256."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(digest, padding.PKCS1v15(), _PREHASHED)
    return key.sign(digest)  # RFC 8463 §3: Ed25519 signs the SHA-256 digest itself


def load_private_key(pem: bytes) -> PrivateKey:
    """The RSA or Ed25519 key of a PEM; a ConfigError that never quotes the key otherwise."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(
            f"DKIM_PRIVATE_KEY: not a usable unencrypted PEM private key ({type(exc).__name__})"
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(
                f"DKIM_PRIVATE_KEY: an RSA key of {key.key_size} bits; DKIM needs at least "
                f"{MIN_RSA_BITS}"
            )
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise ConfigError(
        f"DKIM_PRIVATE_KEY: an unsupported key type ({type(key).__name__}); "
        "DKIM signs with RSA or Ed25519 keys"
    )


def split_message(data: bytes) -> tuple[list[list[bytes]], bytes]:
    """dkimpy's `rfc822_parse`, without its line-by-line pass over a CRLF-only body.

    On CRLF-only bytes (what the message writer makes) that start with a header, the
    body it would rebuild from its lines is the bytes after the first empty line;
    anything else goes through `rfc822_parse` whole.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0 or data.startswith(b"\r\n") or data.count(b"\n") != data.count(b"\r\n"):
        headers, body = dkim.rfc822_parse(data)
        return headers, body
    headers, _ = dkim.rfc822_parse(data[: end + 4])
    return headers, data[end + 4 :]


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4 relaxed body, equal to dkimpy's `Relaxed.canonicalize_body`.

    dkimpy runs three regular expressions over every body, the last one touching every
    space; these skip the passes that the body gives nothing to do.
    """
    if b" \r\n" in body or b"\t" in body:
        body = _TRAILING_WSP.sub(b"\r\n", body)
    if b"  " in body or b"\t" in body:
        body = _WSP_TO_SQUEEZE.sub(b" ", body)
    end = len(body)
    while body.endswith(b"\r\n", 0, end):
        end -= 2
    return body[:end] + b"\r\n" if end else b""


def _tag_list(fields: list[Field]) -> bytes:
    return b"; ".join(b"=".join(field) for field in fields)


def _signed(data: bytes, *, fields: list[Field], signature: bytes) -> bytes:
    """`data` under its DKIM-Signature: the tags with b= filled in, folded as dkimpy folds."""
    tags = [*fields[:-1], (b"b", base64.b64encode(signature))]
    value: bytes = dkim.fold(_tag_list(tags) + b"\r\n", namelen=len(HEADER_NAME))
    return HEADER_NAME + b": " + value + data


def _headers_digest(
    *, headers: list[list[bytes]], include: tuple[bytes, ...], fields: list[Field]
) -> bytes:
    """SHA-256 of the signed headers and the DKIM-Signature with an empty b=, as dkimpy hashes."""
    value = dkim.fold(_tag_list(fields), namelen=len(HEADER_NAME), linesep=b"\r\n")
    signature_header = (HEADER_NAME, b" " + dkim.RE_BTAG.sub(b"\\1", value))
    hasher = hashlib.sha256()
    dkim.hash_headers(
        hasher, _POLICY, _POLICY.canonicalize_headers(headers), include, signature_header, None
    )
    return hasher.digest()
