"""DKIM: what we sign verifies with verifiers that share none of our signing code.

Our signer makes the signature with `cryptography` (OpenSSL). It is checked by
dkimpy's verifier (its own pure-Python RSA, and libsodium through PyNaCl for
Ed25519), by Perl's Mail::DKIM (an independent canonicalisation too; RSA only in the
Debian version), and byte for byte against the header dkimpy's own signer writes.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import re
import signal
import subprocess
import types
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from dkim.canonicalization import Relaxed
from hypothesis import given, settings
from hypothesis import strategies as st

from odiseo.api.wiring import build_signer, build_worker
from odiseo.config import Settings
from odiseo.dkim_signing import SIGNED_HEADERS, DkimSigner, relaxed_body, split_message
from odiseo.domain.models import Attachment, Status
from odiseo.errors import ConfigError
from odiseo.mime import build_message
from odiseo.storage.contract import Store
from tests.support.factories import new_email
from tests.support.smtp import SmtpServer

DOMAIN = "odiseo.test"
SELECTOR = "mail2026"
NOW = 1_796_083_200  # 2026-12-01T00:00:00Z, the t= of the fixed-time signatures


@dataclass(frozen=True)
class Key:
    kind: str  # "rsa" or "ed25519"
    pem: bytes
    record: bytes  # the TXT record published at SELECTOR._domainkey.DOMAIN
    dkimpy_private: bytes  # what dkimpy's own signer takes for this key

    def lookup(self, name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode()
        return self.record


def pkcs8(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def rsa_key() -> Key:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Key("rsa", pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public), pem)


@pytest.fixture(scope="module")
def ed25519_key() -> Key:
    key = ed25519.Ed25519PrivateKey.generate()
    raw = serialization.Encoding.Raw
    public = key.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
    private = key.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    record = b"v=DKIM1; k=ed25519; p=" + base64.b64encode(public)
    return Key("ed25519", pkcs8(key), record, base64.b64encode(private))


@pytest.fixture(params=["rsa", "ed25519"])
def key(request: pytest.FixtureRequest) -> Key:
    return request.getfixturevalue(f"{request.param}_key")  # type: ignore[no-any-return]


def signer_for(key: Key) -> DkimSigner:
    return DkimSigner(domain=DOMAIN, selector=SELECTOR, private_key=key.pem)


def built(**fields: object) -> bytes:
    return build_message(new_email(**fields).email, date=datetime(2026, 12, 1, tzinfo=UTC))


LONG_WORDS = " ".join(f"word{n}" for n in range(60))
MESSAGES: dict[str, bytes] = {
    "multipart with an attachment and an inline image": built(
        html='<p>Hi <img src="cid:logo"></p>',
        text="Hi\n",
        cc=("c@example.com",),
        reply_to=("help@example.com",),
        attachments=(
            Attachment(filename="report.pdf", content_type="application/pdf", data=b"%PDF" * 300),
            Attachment(
                filename="logo.png", content_type="image/png", data=b"\x89PNG", content_id="logo"
            ),
        ),
    ),
    "non-ASCII encoded words": built(
        subject="Pedido ✓ confirmado — ñandú, Zoë, 東京 " * 3,
        from_name="Zoë Ågren-Ñúñez",
        text="Olá, ça va? 東京\n",
        html=None,
    ),
    "long folded headers with tabs and runs of spaces": (
        b"From: Odiseo <noreply@odiseo.test>\r\n"
        b"To: a@example.com,\r\n\t b@example.com,   \r\n    c@example.com\r\n"
        b"Subject: " + LONG_WORDS[:300].encode() + b"\r\n\t" + LONG_WORDS[300:].encode() + b"\r\n"
        b"X-Unsigned:   not   in   h=\r\n"
        b"Message-ID: <folded@odiseo.test>\r\n"
        b"Date: Tue, 01 Dec 2026 00:00:00 +0000\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: text/plain;\r\n charset="us-ascii"\r\n'
        b"\r\n"
        b"Hello\r\n"
    ),
    "trailing blank lines and lines of lone whitespace": (
        b"From: noreply@odiseo.test\r\nTo: a@example.com\r\nSubject: edges\r\n"
        b"Content-Type: text/plain\r\n\r\n"
        b"  leading and trailing  \t\r\n"
        b"\t\r\n"
        b"   \r\n"
        b"inner\t\ttabs  and   spaces\r\n"
        b"\r\n"
        b" \r\n"
        b"\r\n\r\n\r\n"
    ),
    "an empty body": b"From: noreply@odiseo.test\r\nTo: a@example.com\r\nSubject: empty\r\n\r\n",
}


def dkimpy_sign(message: bytes, key: Key, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """dkimpy's own signature of `message`, made at NOW, with the headers ours signs."""
    monkeypatch.setattr(dkim, "time", types.SimpleNamespace(time=lambda: NOW))
    head = message.split(b"\r\n\r\n", 1)[0].lower()
    present = {line.split(b":", 1)[0] for line in head.split(b"\r\n")}
    header: bytes = dkim.sign(
        message,
        SELECTOR.encode(),
        DOMAIN.encode(),
        key.dkimpy_private,
        signature_algorithm=b"rsa-sha256" if key.kind == "rsa" else b"ed25519-sha256",
        include_headers=[name for name in SIGNED_HEADERS if name in present],
        canonicalize=(b"relaxed", b"relaxed"),
    )
    return header + message


def mail_dkim(message: bytes, key: Key) -> str:
    """Perl Mail::DKIM's result for each signature of `message`, e.g. "pass"."""
    if subprocess.run(["perl", "-MMail::DKIM::Verifier", "-e1"], check=False).returncode:
        pytest.fail("Perl Mail::DKIM is missing: `make system-deps` installs libmail-dkim-perl")
    done = subprocess.run(
        ["perl", "-e", MAIL_DKIM_VERIFY, f"{SELECTOR}._domainkey.{DOMAIN}", key.record],
        input=message,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return done.stdout.decode().strip()


# Feeds the message to Mail::DKIM::Verifier, with a resolver that answers our record.
MAIL_DKIM_VERIFY = r"""
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Net::DNS;
my ($name, $record) = @ARGV;

package StaticResolver;
sub new { return bless {}, shift }
sub errorstring { return 'NOERROR' }
sub send {
    my ($self, $domain, $type) = @_;
    my $packet = Net::DNS::Packet->new($domain, $type);
    if (lc($domain) eq lc($name) && $type eq 'TXT') {
        my @strings = unpack('(A255)*', $record);
        $packet->push(answer => Net::DNS::RR->new(
            name => $domain, type => 'TXT', ttl => 60, txtdata => \@strings));
    } else {
        $packet->header->rcode('NXDOMAIN');
    }
    return $packet;
}

package main;
Mail::DKIM::DNS::resolver(StaticResolver->new);
binmode STDIN;
my $message = do { local $/; <STDIN> };
my $dkim = Mail::DKIM::Verifier->new();
$dkim->PRINT($message);
$dkim->CLOSE;
print join(' ', map { $_->result_detail } $dkim->signatures), "\n";
"""


def tamper(message: bytes) -> bytes:
    head, body = message.split(b"\r\n\r\n", 1)
    return head + b"\r\n\r\n" + body + b"One more line.\r\n"


@pytest.mark.parametrize("name", MESSAGES)
def test_dkimpy_verifies_what_we_sign(name: str, key: Key) -> None:
    signed = signer_for(key).sign(MESSAGES[name])
    assert signed.startswith(b"DKIM-Signature: v=1; a=" + key.kind.encode() + b"-sha256;")
    assert dkim.verify(signed, dnsfunc=key.lookup)
    assert not dkim.verify(tamper(signed), dnsfunc=key.lookup)
    resigned_header = signed.replace(b"Subject:", b"Subject: Re:", 1)
    assert not dkim.verify(resigned_header, dnsfunc=key.lookup)


@pytest.mark.parametrize("name", MESSAGES)
def test_mail_dkim_verifies_what_we_sign(name: str, rsa_key: Key) -> None:
    signed = signer_for(rsa_key).sign(MESSAGES[name])
    assert mail_dkim(signed, rsa_key) == "pass"
    assert mail_dkim(tamper(signed), rsa_key) == "fail (body has been altered)"
    assert mail_dkim(signed.replace(b"\r\nTo: ", b"\r\nTo: x@example.net, ", 1), rsa_key) == (
        "fail (message has been altered)"
    )


@pytest.mark.parametrize("name", MESSAGES)
def test_the_signature_is_the_one_dkimpy_writes(
    name: str, key: Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RSA PKCS#1 v1.5 and Ed25519 are deterministic: the same key over the same bytes
    # at the same time gives the same header, b= included, whoever computes it.
    ours = signer_for(key).sign(MESSAGES[name], timestamp=NOW)
    assert ours == dkimpy_sign(MESSAGES[name], key, monkeypatch)


async def test_signing_off_the_event_loop_gives_the_same_signature(key: Key) -> None:
    signer = signer_for(key)
    for message in MESSAGES.values():
        off_loop = await signer.sign_off_loop(message, timestamp=NOW)
        assert off_loop == signer.sign(message, timestamp=NOW)


def signing_pid(signer: DkimSigner) -> int:
    popen = signer._process._popen
    assert popen is not None and popen.poll() is None
    return popen.pid


def proc_file(pid: int, name: str) -> bytes:
    return Path(f"/proc/{pid}/{name}").read_bytes()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


async def test_the_signing_process_never_sees_the_key_in_its_arguments(rsa_key: Key) -> None:
    signer = signer_for(rsa_key)
    await signer.sign_off_loop(MESSAGES["an empty body"])
    pid = signing_pid(signer)
    key_line = rsa_key.pem.splitlines()[1]
    assert key_line not in proc_file(pid, "cmdline")
    assert key_line not in proc_file(pid, "environ")
    signer.close()
    assert gone(pid)


async def test_a_lost_signing_process_costs_no_signature(
    key: Key, caplog: pytest.LogCaptureFixture
) -> None:
    signer = signer_for(key)
    messages = list(MESSAGES.values())
    await signer.sign_off_loop(messages[0])
    pid = signing_pid(signer)
    os.kill(pid, signal.SIGSTOP)  # the digests wait in the pipe, unanswered
    waiting = [asyncio.ensure_future(signer.sign_off_loop(m, timestamp=NOW)) for m in messages]
    await asyncio.sleep(0.05)
    assert not any(task.done() for task in waiting)
    os.kill(pid, signal.SIGKILL)
    signed = await asyncio.gather(*waiting)  # made in-process instead
    assert signed == [signer.sign(m, timestamp=NOW) for m in messages]
    assert "signing process is gone" in caplog.text
    again = await signer.sign_off_loop(messages[1], timestamp=NOW)  # a new process
    assert again == signer.sign(messages[1], timestamp=NOW)
    assert signing_pid(signer) != pid
    signer.close()


async def test_a_cancelled_signature_does_not_shift_the_next_ones(key: Key) -> None:
    signer = signer_for(key)
    messages = list(MESSAGES.values())
    await signer.sign_off_loop(messages[0])
    pid = signing_pid(signer)
    os.kill(pid, signal.SIGSTOP)
    first, *rest = [asyncio.ensure_future(signer.sign_off_loop(m, timestamp=NOW)) for m in messages]
    await asyncio.sleep(0.05)
    first.cancel()
    os.kill(pid, signal.SIGCONT)
    assert await asyncio.gather(*rest) == [signer.sign(m, timestamp=NOW) for m in messages[1:]]
    assert first.cancelled()
    assert signing_pid(signer) == pid  # answered by the same process throughout
    signer.close()


def test_the_signed_headers_are_those_present_of_the_fixed_list(rsa_key: Key) -> None:
    signed = signer_for(rsa_key).sign(MESSAGES["multipart with an attachment and an inline image"])
    name, value = dkim.rfc822_parse(signed)[0][0]
    assert name == b"DKIM-Signature"
    tags = dkim.util.parse_tag_value(value)
    assert tags[b"c"] == b"relaxed/relaxed"
    assert re.sub(rb"\s", b"", tags[b"h"]).split(b":") == [
        b"from", b"to", b"cc", b"reply-to", b"subject", b"date", b"message-id",
        b"mime-version", b"content-type",
    ]  # fmt: skip


WIRE_BYTES = st.lists(
    st.sampled_from([b"a", b"Z", b"0", b" ", b"  ", b"\t", b"\r\n", b"\r", b"\n", b"\xc3\xa9"]),
    max_size=40,
).map(b"".join)


@given(WIRE_BYTES)
def test_the_relaxed_body_is_dkimpys(body: bytes) -> None:
    crlf_only = body.replace(b"\r\n", b"\n").replace(b"\r", b"").replace(b"\n", b"\r\n")
    for case in (body, crlf_only):
        assert relaxed_body(case) == Relaxed.canonicalize_body(case)


HEADER_LINES = st.lists(
    st.tuples(
        st.sampled_from([b"From", b"to", b"SUBJECT", b"Cc", b"X-Other", b"Date", b"Content-Type"]),
        st.lists(st.sampled_from([b"v", b"w", b" ", b"\t", b"\r\n ", b"\r\n\t", b"\xc3\xa9"])),
    ).map(lambda pair: pair[0] + b":" + b"".join(pair[1])),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(headers=HEADER_LINES, body=WIRE_BYTES)
def test_any_message_is_signed_as_dkimpy_signs_it(
    headers: list[bytes], body: bytes, ed25519_key: Key
) -> None:
    message = b"From: a@example.com\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + body
    with pytest.MonkeyPatch.context() as monkeypatch:
        expected = dkimpy_sign(message, ed25519_key, monkeypatch)
    assert split_message(message) == dkim.rfc822_parse(message)
    assert signer_for(ed25519_key).sign(message, timestamp=NOW) == expected


@pytest.mark.parametrize(
    "message",
    [
        b"\r\nFrom: a@example.com\r\n\r\nbody\r\n",  # an empty line first: no headers
        b"From: a@example.com\r\nSubject: no body\r\n",  # no empty line at all
        b"From: a@example.com\r\n\r\nbare\nline feeds\n\n",
        b"From: a@example.com\r\n\r\nCR\r\r\nbefore CRLF\r\n",
        b"From: a@example.com\r\n\r\n",
    ],
    ids=["empty line first", "no empty line", "bare LF", "CR before CRLF", "empty body"],
)
def test_the_message_is_split_as_dkimpy_splits_it(message: bytes) -> None:
    assert split_message(message) == dkim.rfc822_parse(message)


async def test_delivered_message_carries_a_valid_signature(
    store: Store, smtp_server: SmtpServer, key: Key, tmp_path: Path
) -> None:
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(key.pem)  # a path works as well as the PEM itself
    settings = Settings(
        email_provider="smtp",
        smtp_host="127.0.0.1",
        smtp_port=smtp_server.port,
        smtp_use_tls=False,
        dkim_domain=DOMAIN,
        dkim_selector=SELECTOR,
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
    assert dkim.verify(received.data, dnsfunc=key.lookup)
    tampered = received.data.replace(b"hello", b"HELLO")
    assert not dkim.verify(tampered, dnsfunc=key.lookup)
    if key.kind == "rsa":
        assert mail_dkim(received.data, key) == "pass"


async def test_a_batch_is_signed_ahead_of_its_lanes(
    store: Store, smtp_server: SmtpServer, rsa_key: Key
) -> None:
    settings = Settings(
        email_provider="smtp",
        smtp_host="127.0.0.1",
        smtp_port=smtp_server.port,
        smtp_use_tls=False,
        smtp_pool_size=3,
        dkim_domain=DOMAIN,
        dkim_selector=SELECTOR,
        dkim_private_key=rsa_key.pem.decode(),
        log_to_file=False,
    )
    now = datetime.now(UTC)
    emails = [new_email(subject=f"Signed {n}", text=f"message {n}\n") for n in range(10)]
    emails[4] = dataclasses.replace(
        new_email(subject="too late"), expires_at=now - timedelta(minutes=1)
    )
    await store.enqueue(emails, now=now)
    worker = build_worker(settings, store)
    assert await worker.run_until_idle() == 9
    await worker.provider.close()
    received = smtp_server.wait_for(9)
    assert sorted(r.message["Subject"] for r in received) == [
        f"Signed {n}" for n in range(10) if n != 4
    ]
    for message in received:
        assert dkim.verify(message.data, dnsfunc=rsa_key.lookup)
        assert f"message {message.message['Subject'][7:]}".encode() in message.data
    assert (await store.counts())[Status.FAILED] == 1


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


@pytest.fixture(scope="module")
def unusable_keys() -> dict[str, bytes]:
    # `cryptography` refuses to make a key this small; OpenSSL's command line still does.
    small = subprocess.run(
        ["openssl", "genrsa", "768"], capture_output=True, check=True, timeout=60
    ).stdout
    secret = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encrypted = secret.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    return {
        "an RSA key under 1024 bits": small,
        "an encrypted key": encrypted,
        "an EC key": pkcs8(ec.generate_private_key(ec.SECP256R1())),
        "a truncated key": pkcs8(secret)[:400],
    }


@pytest.mark.parametrize(
    "case", ["an RSA key under 1024 bits", "an encrypted key", "an EC key", "a truncated key"]
)
def test_an_unusable_key_stops_the_start_without_quoting_it(
    case: str, unusable_keys: dict[str, bytes]
) -> None:
    pem = unusable_keys[case]
    settings = Settings(dkim_domain=DOMAIN, dkim_selector=SELECTOR, dkim_private_key=pem.decode())
    with pytest.raises(ConfigError, match="DKIM_PRIVATE_KEY") as raised:
        build_signer(settings)
    body_lines = [line for line in pem.decode().splitlines() if "-----" not in line]
    assert not any(line[:20] in str(raised.value) for line in body_lines), raised.value


def test_the_one_click_unsubscribe_headers_are_signed(rsa_key: Key) -> None:
    """RFC 8058 asks for both List-Unsubscribe fields under the DKIM signature."""
    url = "https://mail.odiseo.test/unsubscribe/" + "t" * 120
    signed = signer_for(rsa_key).sign(built(list_unsubscribe=url))
    signature = signed.split(b"\r\n\r\n", 1)[0].split(b"\r\nFrom:", 1)[0]
    tags = re.sub(rb"\s+", b"", signature).split(b";")
    h = next(t for t in tags if t.startswith(b"h="))[2:].lower().split(b":")
    assert b"list-unsubscribe" in h and b"list-unsubscribe-post" in h
    assert dkim.verify(signed, dnsfunc=rsa_key.lookup)
    moved = signed.replace(b"/unsubscribe/", b"/unsubscribe-elsewhere/", 1)
    assert not dkim.verify(moved, dnsfunc=rsa_key.lookup)
