"""Delivery fixtures: TLS material and a harness of real aiosmtpd servers and SMTP providers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.delivery.smtp_helpers import SmtpHarness, TlsMaterial, make_tls


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpHarness]:
    harness = SmtpHarness()
    try:
        yield harness
    finally:
        await harness.close()
