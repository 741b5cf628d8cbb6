"""The Django email backend (Django 5.2, a test dependency) against a real `odiseo run`:
Django's own EmailMessage and EmailMultiAlternatives, the arriving mail parsed."""

from __future__ import annotations

import django
import pytest
from django.conf import settings
from odiseo_client import Invalid, Unavailable

from tests.e2e.client.conftest import KEY, outbox
from tests.support.processes import Process

if not settings.configured:
    settings.configure(DEFAULT_FROM_EMAIL="Shop <noreply@odiseo.io>", EMAIL_BACKEND="")
    django.setup()

from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives

pytestmark = pytest.mark.e2e
# The dotted path issue 17 names, and the one in the client distribution.
BACKENDS = ["odiseo.django.EmailBackend", "odiseo_client.django.EmailBackend"]


@pytest.fixture(autouse=True)
def odiseo_settings(service: Process) -> None:
    settings.ODISEO_URL = service.base_url
    settings.ODISEO_API_KEY = KEY


@pytest.mark.parametrize("backend", BACKENDS)
def test_send_messages_delivers_every_part(service: Process, backend: str) -> None:
    rich = EmailMultiAlternatives(
        subject="Your receipt",
        body="Thanks, Ana.\nTotal: 10 €",
        to=["Ana <ana@example.com>"],
        cc=["boss@example.com"],
        bcc=["audit@example.com"],
        reply_to=["help@example.com"],
        headers={"X-Order": "A-17"},
    )
    rich.attach_alternative("<p>Thanks, <b>Ana</b>.</p><p>Total: 10 €</p>", "text/html")
    rich.attach("receipt.txt", "line one\n", "text/plain")
    plain = EmailMessage(subject="Plain", body="Just text", to=["bo@example.com"])
    with mail.get_connection(backend) as connection:
        assert connection.send_messages([rich, plain]) == 2

    with mail.get_connection(backend) as connection:
        client = connection.client
        found = {e.subject: e for e in client.search(recipient="ana@example.com")}
        plain_found = {e.subject: e for e in client.search(recipient="bo@example.com")}
    received = outbox(service, found["Your receipt"].message_id)
    assert received["Subject"] == "Your receipt"
    assert received["From"] == "Shop <noreply@odiseo.io>"
    assert received["To"] == "ana@example.com" and received["Cc"] == "boss@example.com"
    assert received["Bcc"] is None  # a Bcc is an envelope recipient, never a header
    assert received["Reply-To"] == "help@example.com" and received["X-Order"] == "A-17"
    html = received.get_body(("html",))
    text = received.get_body(("plain",))
    assert html is not None and "<b>Ana</b>" in html.get_content()
    assert text is not None and "Total: 10 €" in text.get_content()
    [attached] = list(received.iter_attachments())
    assert attached.get_filename() == "receipt.txt"
    assert "line one" in str(attached.get_content())
    assert found["Your receipt"].raw["bcc"] == ["audit@example.com"]
    assert outbox(service, plain_found["Plain"].message_id).get_body(("plain",)) is not None


def test_one_message_sent_alone_and_an_html_body(service: Process) -> None:
    message = EmailMessage(subject="HTML only", body="<h1>Hi</h1>", to=["cy@example.com"])
    message.content_subtype = "html"
    message.connection = mail.get_connection("odiseo.django.EmailBackend")
    assert message.send() == 1
    with mail.get_connection("odiseo_client.django.EmailBackend") as connection:
        [sent] = [e for e in connection.client.search(recipient="cy@example.com")]
    html = outbox(service, sent.message_id).get_body(("html",))
    assert html is not None and "<h1>Hi</h1>" in html.get_content()


def test_fail_silently(service: Process) -> None:
    bad = EmailMessage(subject="x", body="y", to=["not an address"])
    with pytest.raises(Invalid):
        mail.get_connection("odiseo.django.EmailBackend").send_messages([bad])
    quiet = mail.get_connection("odiseo.django.EmailBackend", fail_silently=True)
    assert quiet.send_messages([bad]) == 0
    nowhere = {"url": "http://127.0.0.1:1", "timeout": 2.0}
    good = EmailMessage(subject="x", body="y", to=["a@example.com"])
    with pytest.raises(Unavailable):
        mail.get_connection("odiseo.django.EmailBackend", **nowhere).send_messages([good])
    silent = mail.get_connection("odiseo.django.EmailBackend", fail_silently=True, **nowhere)
    assert silent.send_messages([good]) == 0
