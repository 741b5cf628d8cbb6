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
from odiseo.providers.smtp import SmtpProvider
from tests.security.conftest import Tls
from tests.support.smtp import SmtpServer

MESSAGE = (
    b"From: noreply@odiseo.io\r\nTo: user@example.com\r\nSubject: Hi\r\n"
    b"Message-ID: <tls@odiseo.io>\r\n\r\nHello\r\n"
)
WARNING = "SMTP_TLS_VERIFY=false"


@pytest.fixture
def starttls_server(tls: Tls) -> Iterator[SmtpServer]:
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


async def test_a_trusted_ca_delivers(starttls_server: SmtpServer, tls: Tls) -> None:
    provider = build_provider(smtp_settings(starttls_server.port, smtp_tls_ca_file=tls.ca_file))
    assert isinstance(provider, SmtpProvider)
    await deliver(provider)
    assert len(starttls_server.wait_for(1)) == 1


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
