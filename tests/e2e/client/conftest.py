"""A running `odiseo run` (SQLite, outbox) for the client and Django backend tests."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from odiseo_client import Odiseo

from tests.support.processes import Launcher, Process, base_env, poll

KEY = "client-test-key-0123456789"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """`odiseo run` on SQLite, delivering into an outbox, with one key of every scope."""
    tmp_path = tmp_path_factory.mktemp("client")
    launcher = Launcher(tmp_path)
    env = base_env(API_KEYS=KEY, EMAIL_PROVIDER="outbox", WEBHOOK_ALLOW_PRIVATE="true")
    env["WEBHOOK_POLL_INTERVAL"] = "0.2"
    process = launcher.start(["run"], env)
    process.wait_ready()
    yield process
    launcher.stop_all()


@pytest.fixture
def client(service: Process) -> Iterator[Odiseo]:
    with Odiseo(service.base_url, KEY, backoff=0.01) as odiseo:
        yield odiseo


def outbox(service: Process, message_id: str) -> EmailMessage:
    """The delivered message, parsed, once the worker has written it."""
    eml = service.stdout_path.parent / "data" / "outbox" / f"{message_id}.eml"
    poll(eml.exists, timeout=30, what=str(eml))
    parsed = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed
