"""Real SMTP clients submit to Odiseo's processes, on both stores: swaks to `odiseo run`,
Django's SMTP email backend to `odiseo smtp` (delivered by an `odiseo worker`). Each
message arrives at the test's SMTP server with its attachment byte-identical and its Bcc
recipient delivered but not shown, and the id of the 250 answers GET /emails/{id}."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from tests.support.app import API_KEYS, READ_KEY, SEND_KEY, auth
from tests.support.processes import Launcher, Process, base_env, poll
from tests.support.smtp import Received, SmtpServer, free_port
from tests.support.tls import TlsMaterial

QUEUED = re.compile(r"250 2\.0\.0 queued as ([0-9a-f-]{36})")
ATTACHMENT = bytes(range(256)) * 64 + b"\r\n.\r\nend"
READY = "SMTP submission listening on"

DJANGO_APP = """
import smtplib, sys
import django
from django.conf import settings

port, key, attachment = int(sys.argv[1]), sys.argv[2], sys.argv[3]
settings.configure(
    EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
    EMAIL_HOST="127.0.0.1", EMAIL_PORT=port, EMAIL_USE_TLS=True,
    EMAIL_HOST_USER="apikey", EMAIL_HOST_PASSWORD=key, EMAIL_TIMEOUT=20,
)
django.setup()
from django.core.mail import EmailMessage

data = smtplib.SMTP.data
def data_and_say(self, msg):  # the reply of DATA, which Django keeps to itself
    code, text = data(self, msg)
    print(code, text.decode())
    return code, text
smtplib.SMTP.data = data_and_say

message = EmailMessage(
    "Invoice 42", "Your invoice is attached.", "Billing <app@odiseo.io>",
    ["to@example.com"], bcc=["hidden@example.com"],
)
with open(attachment, "rb") as f:
    message.attach("invoice.bin", f.read(), "application/octet-stream")
print("sent", message.send())
"""


@pytest.fixture
def env(database: dict[str, str], smtp_server: SmtpServer, tls: TlsMaterial) -> dict[str, str]:
    """Processes on the test's database, delivering to `smtp_server`, submission on."""
    return base_env(
        **database,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp_server.port),
        SMTP_USE_TLS="false",
        API_KEYS=API_KEYS,
        SMTP_FROM_EMAIL="app@odiseo.io",
        SMTP_SUBMISSION_PORT=str(free_port()),
        SMTP_SUBMISSION_TLS_CERT=str(tls.server_pem),
        SMTP_SUBMISSION_TLS_KEY=str(tls.server_pem),
    )


def check_delivery(received: Received, *, attachment_name: str) -> None:
    assert sorted(received.recipients) == ["hidden@example.com", "to@example.com"]
    assert b"hidden@example.com" not in received.data  # delivered, never shown
    parsed = message_from_bytes(received.data, policy=policy.default)
    assert parsed["To"] == "to@example.com" and parsed["Bcc"] is None
    (part,) = parsed.iter_attachments()
    assert part.get_filename() == attachment_name
    assert part.get_payload(decode=True) == ATTACHMENT


def check_stored(api: Process, message_id: str, received: Received) -> None:
    with api.client(headers=auth(READ_KEY)) as http:
        response = http.get(f"/emails/{message_id}")
    assert response.status_code == 200, response.text
    stored = response.json()
    assert stored["bcc"] == ["hidden@example.com"] and stored["to"] == ["to@example.com"]
    parsed = message_from_bytes(received.data, policy=policy.default)
    assert stored["rfc_message_id"] == parsed["Message-ID"]


def test_swaks_through_odiseo_run(
    launcher: Launcher, env: dict[str, str], smtp_server: SmtpServer, tmp_path: Path
) -> None:
    service = launcher.start(["run"], env)
    service.wait_ready()
    service.wait_for_log(READY)
    attachment = tmp_path / "report.bin"
    attachment.write_bytes(ATTACHMENT)

    swaks = subprocess.run(
        [
            "swaks",
            "--server", f"127.0.0.1:{env['SMTP_SUBMISSION_PORT']}",
            "--tls",
            "--auth", "LOGIN", "--auth-user", "apikey", "--auth-password", SEND_KEY,
            "--from", "app@odiseo.io",
            "--to", "to@example.com,hidden@example.com",
            "--header", "To: to@example.com",
            "--header", "Subject: swaks report",
            "--attach-type", "application/octet-stream",
            "--attach-name", "report.bin",
            "--attach", f"@{attachment}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert swaks.returncode == 0, swaks.stdout + swaks.stderr
    found = QUEUED.search(swaks.stdout)
    assert found, swaks.stdout
    assert SEND_KEY not in service.stderr and SEND_KEY not in service.stdout

    (received,) = smtp_server.handler.wait_for(1, timeout=30)
    check_delivery(received, attachment_name="report.bin")
    check_stored(service, found[1], received)


def test_django_smtp_backend_through_odiseo_smtp(
    launcher: Launcher,
    env: dict[str, str],
    smtp_server: SmtpServer,
    tls: TlsMaterial,
    tmp_path: Path,
) -> None:
    listener = launcher.start(["smtp"], env)
    listener.wait_for_log(READY)
    api = launcher.start(["api", "--no-migrate"], env)
    api.wait_ready()
    launcher.start(["worker", "--no-migrate"], env)
    attachment = tmp_path / "invoice.bin"
    attachment.write_bytes(ATTACHMENT)

    app = subprocess.run(
        [sys.executable, "-c", DJANGO_APP, env["SMTP_SUBMISSION_PORT"], SEND_KEY, str(attachment)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SSL_CERT_FILE": str(tls.ca_file)},  # Django verifies the listener
        check=False,
    )
    assert app.returncode == 0, app.stdout + app.stderr
    assert "sent 1" in app.stdout, app.stdout
    found = QUEUED.search(app.stdout)
    assert found, app.stdout

    (received,) = smtp_server.handler.wait_for(1, timeout=30)
    check_delivery(received, attachment_name="invoice.bin")
    check_stored(api, found[1], received)

    def recorded() -> bool:
        with api.client(headers=auth(READ_KEY)) as http:
            return bool(http.get(f"/emails/{found[1]}").json()["status"] == "sent")

    poll(recorded, timeout=20, what="the message recorded as sent")
