"""SMTP certificates are verified unless SMTP_TLS_VERIFY=false says otherwise, loudly."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from odiseo.api.wiring import build_provider
from odiseo.config import Settings
from odiseo.errors import TransientFailure
from odiseo.providers.smtp import SmtpProvider, client_tls_context
from tests.support.smtp import SmtpServer
from tests.support.tls import TlsMaterial

MESSAGE = (
    b"From: noreply@odiseo.io\r\nTo: user@example.com\r\nSubject: Hi\r\n"
    b"Message-ID: <tls@odiseo.io>\r\n\r\nHello\r\n"
)
WARNING = "SMTP_TLS_VERIFY=false"


@pytest.fixture
def starttls_server(tls: TlsMaterial) -> Iterator[SmtpServer]:
    """An aiosmtpd server with a certificate from a CA nobody trusts; MAIL only after STARTTLS."""
    with SmtpServer(tls_context=tls.server_context) as server:
        yield server


async def deliver(provider: SmtpProvider) -> None:
    try:
        await provider.deliver(
            MESSAGE,
            sender="noreply@odiseo.io",
            recipients=["user@example.com"],
            message_id="tls",
        )
    finally:
        await provider.close()


def smtp_settings(port: int, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "email_provider": "smtp",
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_use_tls": True,
        "smtp_timeout_seconds": 5,
        "log_to_file": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


async def test_an_untrusted_certificate_is_refused_by_default(
    starttls_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    provider = build_provider(smtp_settings(starttls_server.port))
    assert isinstance(provider, SmtpProvider)
    with pytest.raises(TransientFailure) as raised:
        await deliver(provider)
    assert raised.value.reason == "tls", raised.value
    assert "certificate" in raised.value.message.lower(), raised.value.message
    assert starttls_server.received == []
    assert WARNING not in caplog.text


async def test_an_untrusted_certificate_is_refused_by_a_bare_provider(
    starttls_server: SmtpServer,
) -> None:
    provider = SmtpProvider(host="127.0.0.1", port=starttls_server.port, use_tls=True, timeout=5)
    with pytest.raises(TransientFailure) as raised:
        await deliver(provider)
    assert raised.value.reason == "tls"
    assert starttls_server.received == []


async def test_a_trusted_ca_delivers(starttls_server: SmtpServer, tls: TlsMaterial) -> None:
    provider = build_provider(smtp_settings(starttls_server.port, smtp_tls_ca_file=tls.ca_file))
    assert isinstance(provider, SmtpProvider)
    await deliver(provider)
    assert len(starttls_server.wait_for(1)) == 1


@pytest.fixture
def system_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> trustme.CA:
    """A CA that the system trust store holds: OpenSSL reads it from SSL_CERT_FILE."""
    ca = trustme.CA()
    bundle = tmp_path / "system-bundle.pem"
    ca.cert_pem.write_to_path(str(bundle))
    (tmp_path / "no-certs").mkdir()
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "no-certs"))
    return ca


def der(ca: trustme.CA) -> bytes:
    return ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode())


async def test_the_ca_file_adds_to_the_system_trust_store(
    system_ca: trustme.CA, starttls_server: SmtpServer, tls: TlsMaterial
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    system_ca.issue_cert("127.0.0.1").configure_cert(context)
    with SmtpServer(tls_context=context) as public_server:
        # A server whose certificate chains to the system store, and one whose
        # certificate chains to the private CA of SMTP_TLS_CA_FILE: both are trusted.
        for server in (public_server, starttls_server):
            provider = build_provider(smtp_settings(server.port, smtp_tls_ca_file=tls.ca_file))
            assert isinstance(provider, SmtpProvider)
            await deliver(provider)
            assert len(server.wait_for(1)) == 1
    trusted = client_tls_context(ca_file=tls.ca_file, verify=True).get_ca_certs(binary_form=True)
    private = ssl.PEM_cert_to_DER_cert(tls.ca_file.read_text())
    assert sorted(trusted) == sorted([der(system_ca), private])


def test_the_ca_file_keeps_every_ca_of_the_real_system_store(tls: TlsMaterial) -> None:
    system = ssl.create_default_context().get_ca_certs(binary_form=True)
    trusted = client_tls_context(ca_file=tls.ca_file, verify=True).get_ca_certs(binary_form=True)
    assert set(system) <= set(trusted)
    assert len(trusted) == len(system) + 1


async def test_a_certificate_for_another_host_is_refused(tmp_path: Path) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mail.example.org").configure_cert(context)
    ca_file = tmp_path / "other-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with SmtpServer(tls_context=context) as server:
        provider = build_provider(smtp_settings(server.port, smtp_tls_ca_file=ca_file))
        assert isinstance(provider, SmtpProvider)
        with pytest.raises(TransientFailure) as raised:
            await deliver(provider)
        assert raised.value.reason == "tls"
        assert server.received == []


async def test_no_starttls_offered_is_not_a_downgrade_to_plain_text() -> None:
    with SmtpServer() as server:  # speaks plain SMTP only
        provider = build_provider(smtp_settings(server.port))
        assert isinstance(provider, SmtpProvider)
        with pytest.raises(TransientFailure):
            await deliver(provider)
        assert server.received == []


async def test_verification_off_delivers_and_says_so(
    starttls_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    provider = build_provider(smtp_settings(starttls_server.port, smtp_tls_verify=False))
    assert isinstance(provider, SmtpProvider)
    warnings = [r for r in caplog.records if WARNING in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    assert warnings[0].levelno == logging.WARNING
    await deliver(provider)
    received = starttls_server.wait_for(1)
    assert received[0].message["Subject"] == "Hi"


def test_verification_is_on_unless_said_otherwise() -> None:
    assert Settings(_env_file=None).smtp_tls_verify is True  # type: ignore[call-arg]
    assert smtp_settings(25, smtp_tls_verify="false").smtp_tls_verify is False
