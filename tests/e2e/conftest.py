"""Fixtures of the end-to-end tests: processes started as users start them."""

from __future__ import annotations

import pytest

from tests.support.processes import base_env, smtp_env
from tests.support.smtp import SmtpServer


@pytest.fixture
def env(database: dict[str, str], smtp_server: SmtpServer) -> dict[str, str]:
    """The environment of the parametrised tests: `database` and the recording SMTP server."""
    return base_env(**database, **smtp_env(smtp_server))
