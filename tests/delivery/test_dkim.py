"""DKIM: the message that reaches the SMTP server verifies with the matching public key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from odiseo.api.wiring import build_signer, build_worker
from odiseo.config import Settings
from odiseo.errors import ConfigError
from odiseo.storage.store import EmailStore
from tests.support.factories import new_email
from tests.support.smtp import SmtpServer


@pytest.fixture(scope="module")
def key_pair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def dns_record(public_der: bytes) -> bytes:
    import base64

    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(public_der)


async def test_delivered_message_carries_a_valid_signature(
    store: EmailStore, smtp_server: SmtpServer, key_pair: tuple[bytes, bytes], tmp_path: Path
) -> None:
    private, public = key_pair
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(private)  # a path works as well as the PEM itself
    settings = Settings(
        email_provider="smtp",
        smtp_host="127.0.0.1",
        smtp_port=smtp_server.port,
        smtp_use_tls=False,
        dkim_domain="odiseo.test",
        dkim_selector="mail2026",
        dkim_private_key=str(key_file),
        log_to_file=False,
    )
    await store.enqueue(
        [new_email(subject="Signed ✓", cc=("c@example.com",), text="hello\n")],
        now=datetime.now(UTC),
    )
    worker = build_worker(settings, store)
    assert await worker.run_until_idle() == 1
    await worker.provider.close()
    (received,) = smtp_server.wait_for(1)
    assert received.data.startswith(b"DKIM-Signature:")

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"mail2026._domainkey.odiseo.test."
        return dns_record(public)

    assert dkim.verify(received.data, dnsfunc=lookup)
    tampered = received.data.replace(b"hello", b"HELLO")
    assert not dkim.verify(tampered, dnsfunc=lookup)


def test_partial_or_bad_dkim_settings_stop_the_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="go together"):
        Settings(dkim_domain="odiseo.test", log_to_file=False)
    broken = Settings(
        dkim_domain="odiseo.test",
        dkim_selector="s",
        dkim_private_key="-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA "
        "PRIVATE KEY-----",
    )
    with pytest.raises(ConfigError, match="DKIM_PRIVATE_KEY"):
        build_signer(broken)
    missing = Settings(
        dkim_domain="odiseo.test", dkim_selector="s", dkim_private_key=str(tmp_path / "nope.pem")
    )
    with pytest.raises(ConfigError, match="cannot read"):
        build_signer(missing)
