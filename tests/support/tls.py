"""TLS material for the tests: a private CA and a certificate for 127.0.0.1 it signed."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class TlsMaterial:
    """A private CA (PEM in `ca_file`) and a server context with a 127.0.0.1 certificate,
    whose key and chain are also in `server_pem` (for servers configured by file)."""

    ca_file: Path
    server_context: ssl.SSLContext
    server_pem: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts the private CA (and checks the host name)."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_tls(directory: Path) -> TlsMaterial:
    """A private CA (its PEM written into `directory`) and a 127.0.0.1 certificate it signed."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_pem = directory / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(server_pem))
    return TlsMaterial(ca_file=ca_file, server_context=context, server_pem=server_pem)
