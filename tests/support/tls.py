"""TLS material for the tests: a private CA and a certificate for 127.0.0.1 it signed."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class TlsMaterial:
    """A private CA (PEM in `ca_file`) and a server context with a 127.0.0.1 certificate."""

    ca_file: Path
    server_context: ssl.SSLContext


def make_tls(directory: Path) -> TlsMaterial:
    """A private CA (its PEM written into `directory`) and a 127.0.0.1 certificate it signed."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return TlsMaterial(ca_file=ca_file, server_context=context)
