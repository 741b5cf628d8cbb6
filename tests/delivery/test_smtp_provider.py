"""SmtpProvider against a real aiosmtpd server: delivery, connection reuse, failures, TLS, AUTH."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from odiseo.domain.models import OutgoingEmail, Refusal
from odiseo.errors import DeliveryFailure, PermanentFailure, TransientFailure
from tests.support.factories import new_email
from tests.support.smtp import SmtpServer, free_port
from tests.support.smtp_harness import (
    SmtpHarness,
    connections,
    deliver,
    drop_connections,
)
from tests.support.tls import TlsMaterial

SENDER = "noreply@odiseo.test"


def an_email(**fields: Any) -> OutgoingEmail:
    return new_email(**fields).email


# -- plain delivery -------------------------------------------------------------------------------


async def test_delivers_message_with_envelope_headers_and_both_parts(smtp: SmtpHarness) -> None:
    server = smtp.server()
    provider = smtp.provider(server.port)
    email = an_email(
        to="to@example.com",
        cc=("cc@example.com",),
        bcc=("hidden@example.com",),
        subject="Your receipt",
        text="plain body\n",
        html="<p>html <b>body</b></p>",
    )

    receipt = await deliver(provider, email)

    assert receipt.code == 250
    assert receipt.refused == ()
    assert "Message accepted" in receipt.response
    (got,) = server.received
    assert got.sender == SENDER
    assert got.recipients == ["to@example.com", "cc@example.com", "hidden@example.com"]
    assert b"hidden@example.com" not in got.data  # Bcc: envelope only, never a header
    message = got.message
    assert message["Bcc"] is None
    assert message["To"] == "to@example.com"
    assert message["Cc"] == "cc@example.com"
    assert message["Subject"] == "Your receipt"
    assert message["Message-ID"] == email.rfc_message_id
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert text.get_content().replace("\r\n", "\n") == "plain body\n"
    assert html.get_content_type() == "text/html"
    assert "<p>html <b>body</b></p>" in html.get_content()


# -- one connection, reused; reconnect when the server hangs up -----------------------------------


async def test_reuses_one_connection_for_many_messages(smtp: SmtpHarness) -> None:
    server = smtp.server()
    provider = smtp.provider(server.port)
    emails = [an_email(to=f"user{i}@example.com") for i in range(5)]

    for email in emails:
        assert (await deliver(provider, email)).code == 250

    assert [r.message["Message-ID"] for r in server.received] == [e.rfc_message_id for e in emails]
    assert connections(server) == 1


async def test_a_refused_message_does_not_cost_the_connection(smtp: SmtpHarness) -> None:
    server = smtp.server()
    provider = smtp.provider(server.port)
    server.handler.data_reply = "550 5.7.1 Content rejected"
    with pytest.raises(PermanentFailure):
        await deliver(provider, an_email())
    server.handler.data_reply = None

    assert (await deliver(provider, an_email())).code == 250
    assert len(server.received) == 1
    assert connections(server) == 1


async def test_reconnects_when_the_server_hung_up_unnoticed(smtp: SmtpHarness) -> None:
    server = smtp.server()
    provider = smtp.provider(server.port)
    await deliver(provider, an_email(subject="first"))

    drop_connections(server)  # blocks without yielding: the client has not seen the hang-up
    # Precondition: the provider still believes in its connection, so the next
    # delivery meets the dead socket mid-transaction and must retry on a fresh one.
    assert provider._client is not None and provider._client.is_connected

    receipt = await deliver(provider, an_email(subject="second"))

    assert receipt.code == 250
    assert [r.message["Subject"] for r in server.received] == ["first", "second"]
    assert connections(server) == 2


async def test_reconnects_after_the_server_closed_an_idle_connection(smtp: SmtpHarness) -> None:
    server = smtp.server()
    provider = smtp.provider(server.port)
    await deliver(provider, an_email(subject="first"))

    drop_connections(server)
    await asyncio.sleep(0.2)  # the client sees the hang-up while idle

    assert (await deliver(provider, an_email(subject="second"))).code == 250
    assert [r.message["Subject"] for r in server.received] == ["first", "second"]
    assert connections(server) == 2


async def test_reconnects_after_the_server_restarted_on_the_same_port(smtp: SmtpHarness) -> None:
    first = SmtpServer()
    with first:
        provider = smtp.provider(first.port)
        await deliver(provider, an_email(subject="before"))
    restarted = SmtpServer()
    restarted.port = restarted.controller.port = first.port
    with restarted:
        assert (await deliver(provider, an_email(subject="after"))).code == 250
        await provider.close()
    assert [r.message["Subject"] for r in first.received] == ["before"]
    assert [r.message["Subject"] for r in restarted.received] == ["after"]


# -- failures, classified once --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("421 4.3.2 Service shutting down", TransientFailure),
        ("450 4.2.1 Mailbox busy", TransientFailure),
        ("451 4.3.0 Local error in processing", TransientFailure),
        ("452 4.3.1 Insufficient system storage", TransientFailure),
        ("550 5.1.1 Mailbox unavailable", PermanentFailure),
        ("551 5.1.6 User not local", PermanentFailure),
        ("553 5.1.3 Mailbox name not allowed", PermanentFailure),
        ("554 5.6.0 Transaction failed", PermanentFailure),
    ],
)
async def test_data_reply_is_classified_by_its_code(
    smtp: SmtpHarness, reply: str, kind: type[DeliveryFailure]
) -> None:
    server = smtp.server()
    server.handler.data_reply = reply
    provider = smtp.provider(server.port)
    code, _, text = reply.partition(" ")

    with pytest.raises(DeliveryFailure) as raised:
        await deliver(provider, an_email())

    assert type(raised.value) is kind
    assert raised.value.code == int(code)
    assert text in str(raised.value)
    assert server.received == []
    # The provider stays usable once the server answers normally again.
    server.handler.data_reply = None
    assert (await deliver(provider, an_email())).code == 250


async def test_a_wait_stated_in_a_4xx_data_reply_is_kept(smtp: SmtpHarness) -> None:
    server = smtp.server()
    server.handler.data_reply = "450 4.2.0 Greylisted, please try again in 5 minutes"
    provider = smtp.provider(server.port)

    with pytest.raises(TransientFailure) as raised:
        await deliver(provider, an_email())

    assert raised.value.code == 450
    assert raised.value.retry_after == 300


async def test_a_plain_4xx_data_reply_states_no_wait(smtp: SmtpHarness) -> None:
    server = smtp.server()
    server.handler.data_reply = "451 4.3.0 Local error in processing"
    provider = smtp.provider(server.port)

    with pytest.raises(TransientFailure) as raised:
        await deliver(provider, an_email())

    assert raised.value.retry_after is None


async def test_every_recipient_refused_for_good_is_permanent(smtp: SmtpHarness) -> None:
    server = smtp.server()
    server.handler.rcpt_replies = {
        "a@example.com": "550 5.1.1 No such user",
        "b@example.com": "553 5.1.3 Bad address",
    }
    provider = smtp.provider(server.port)

    with pytest.raises(PermanentFailure) as raised:
        await deliver(provider, an_email(to="a@example.com", cc=("b@example.com",)))

    assert raised.value.code == 550
    assert "a@example.com" in str(raised.value) and "No such user" in str(raised.value)
    assert "b@example.com" in str(raised.value) and "Bad address" in str(raised.value)
    assert server.received == []


async def test_every_recipient_deferred_is_transient(smtp: SmtpHarness) -> None:
    server = smtp.server()
    server.handler.rcpt_replies = {"a@example.com": "450 4.2.1 Mailbox busy"}
    provider = smtp.provider(server.port)

    with pytest.raises(TransientFailure) as raised:
        await deliver(provider, an_email(to="a@example.com"))

    assert raised.value.code == 450
    assert "Mailbox busy" in str(raised.value)


async def test_a_wait_stated_when_every_recipient_is_deferred_is_kept(smtp: SmtpHarness) -> None:
    server = smtp.server()
    server.handler.rcpt_replies = {"a@example.com": "450 4.2.0 Greylisted, try again in 300 s"}
    provider = smtp.provider(server.port)

    with pytest.raises(TransientFailure) as raised:
        await deliver(provider, an_email(to="a@example.com"))

    assert raised.value.retry_after == 300


async def test_recipients_refused_partly_for_good_partly_deferred_is_transient(
    smtp: SmtpHarness,
) -> None:
    server = smtp.server()
    server.handler.rcpt_replies = {
        "a@example.com": "550 5.1.1 No such user",
        "b@example.com": "451 4.3.0 Try later",
    }
    provider = smtp.provider(server.port)

    with pytest.raises(TransientFailure) as raised:
        await deliver(provider, an_email(to="a@example.com", cc=("b@example.com",)))

    assert raised.value.code == 451


async def test_some_recipients_refused_still_delivers_to_the_rest(smtp: SmtpHarness) -> None:
    server = smtp.server()
    server.handler.rcpt_replies = {"gone@example.com": "550 5.1.1 No such user"}
    provider = smtp.provider(server.port)

    receipt = await deliver(provider, an_email(to="ok@example.com", cc=("gone@example.com",)))

    assert receipt.code == 250
    assert receipt.refused == (
        Refusal(
            recipient="gone@example.com",
            code=550,
            response="550 5.1.1 No such user",
            permanent=True,
        ),
    )
    (got,) = server.received
    assert got.recipients == ["ok@example.com"]


async def test_connection_refused_is_transient(smtp: SmtpHarness) -> None:
    provider = smtp.provider(free_port())  # nothing listens there

    with pytest.raises(TransientFailure) as raised:
        await deliver(provider, an_email())

    assert raised.value.code is None
    assert raised.value.reason == "connection"


async def test_a_server_slower_than_the_timeout_is_transient(smtp: SmtpHarness) -> None:
    server = smtp.server()
    server.handler.data_delay = 60.0  # far beyond both 0.5 and the default timeout (30 s)
    provider = smtp.provider(server.port, timeout=0.5)

    started = time.monotonic()
    with pytest.raises(TransientFailure) as raised:
        await deliver(provider, an_email())

    assert server.received == []  # it gave up before the server answered
    assert time.monotonic() - started < 20  # its own 0.5 s, not the default 30 s
    assert raised.value.reason == "timeout"
    assert "timeout" in str(raised.value).lower()
    # The desynchronised connection was dropped; a fresh one works.
    server.handler.data_delay = 0.0
    assert (await deliver(provider, an_email())).code == 250
    assert connections(server) == 2


# -- TLS, certificates verified -------------------------------------------------------------------


async def test_starttls_with_a_trusted_certificate_delivers(
    smtp: SmtpHarness, tls: TlsMaterial
) -> None:
    server = smtp.server(tls_context=tls.server_context)  # refuses MAIL before STARTTLS
    provider = smtp.provider(server.port, use_tls=True, ca_file=tls.ca_file)

    email = an_email()
    assert (await deliver(provider, email)).code == 250
    assert (await deliver(provider, an_email())).code == 250

    assert server.received[0].message["Message-ID"] == email.rfc_message_id
    assert connections(server) == 1


async def test_starttls_with_an_untrusted_certificate_is_transient(
    smtp: SmtpHarness, tls: TlsMaterial
) -> None:
    server = smtp.server(tls_context=tls.server_context)
    provider = smtp.provider(server.port, use_tls=True)  # system CAs only: ours is unknown

    with pytest.raises(TransientFailure) as raised:
        await deliver(provider, an_email())

    assert raised.value.reason == "tls"
    assert "certificate" in str(raised.value).lower()
    assert server.received == []


async def test_implicit_tls_with_a_trusted_certificate_delivers(
    smtp: SmtpHarness, tls: TlsMaterial
) -> None:
    server = smtp.server(tls_context=tls.server_context, implicit_tls=True)
    provider = smtp.provider(server.port, use_tls=True, implicit_tls=True, ca_file=tls.ca_file)

    assert (await deliver(provider, an_email())).code == 250
    assert len(server.received) == 1


async def test_implicit_tls_with_an_untrusted_certificate_is_transient(
    smtp: SmtpHarness, tls: TlsMaterial
) -> None:
    server = smtp.server(tls_context=tls.server_context, implicit_tls=True)
    provider = smtp.provider(server.port, use_tls=True, implicit_tls=True)

    with pytest.raises(TransientFailure):
        await deliver(provider, an_email())
    assert server.received == []


# -- AUTH -----------------------------------------------------------------------------------------


async def test_login_over_starttls_delivers(smtp: SmtpHarness, tls: TlsMaterial) -> None:
    server = smtp.server(tls_context=tls.server_context, auth=("user", "pw"))
    provider = smtp.provider(
        server.port, use_tls=True, ca_file=tls.ca_file, username="user", password="pw"
    )

    assert (await deliver(provider, an_email())).code == 250
    assert (await deliver(provider, an_email())).code == 250
    assert len(server.received) == 2
    assert connections(server) == 1


async def test_wrong_password_is_transient_and_never_shown(
    smtp: SmtpHarness, tls: TlsMaterial
) -> None:
    secret = "Wr0ng-s3cret-pa55word"
    server = smtp.server(tls_context=tls.server_context, auth=("user", "pw"))
    provider = smtp.provider(
        server.port, use_tls=True, ca_file=tls.ca_file, username="user", password=secret
    )

    with pytest.raises(TransientFailure) as raised:
        await deliver(provider, an_email())

    assert raised.value.reason == "auth"
    assert raised.value.code == 535
    assert secret not in str(raised.value)
    assert secret not in repr(raised.value)
    assert secret not in repr(provider)
    assert server.received == []


@pytest.mark.parametrize("missing", ["starttls", "credentials"])
async def test_tls_or_login_required_by_the_server_is_transient(
    smtp: SmtpHarness, tls: TlsMaterial, missing: str
) -> None:
    if missing == "starttls":
        server = smtp.server(tls_context=tls.server_context)
        provider = smtp.provider(server.port, use_tls=False)
    else:
        server = smtp.server(tls_context=tls.server_context, auth=("user", "pw"))
        provider = smtp.provider(server.port, use_tls=True, ca_file=tls.ca_file)

    with pytest.raises(DeliveryFailure) as raised:
        await deliver(provider, an_email())

    assert raised.value.code == 530
    assert isinstance(raised.value, TransientFailure)


# -- check() --------------------------------------------------------------------------------------


async def test_check_passes_against_a_live_server(smtp: SmtpHarness) -> None:
    server = smtp.server()
    provider = smtp.provider(server.port)

    await provider.check()

    assert server.received == []


async def test_check_passes_over_verified_starttls(smtp: SmtpHarness, tls: TlsMaterial) -> None:
    server = smtp.server(tls_context=tls.server_context)
    await smtp.provider(server.port, use_tls=True, ca_file=tls.ca_file).check()


async def test_check_fails_transiently_against_a_dead_port(smtp: SmtpHarness) -> None:
    provider = smtp.provider(free_port())

    with pytest.raises(TransientFailure) as raised:
        await provider.check()

    assert raised.value.reason == "connection"


async def test_check_fails_transiently_on_an_untrusted_certificate(
    smtp: SmtpHarness, tls: TlsMaterial
) -> None:
    server = smtp.server(tls_context=tls.server_context)

    with pytest.raises(TransientFailure) as raised:
        await smtp.provider(server.port, use_tls=True).check()

    assert raised.value.reason == "tls"
