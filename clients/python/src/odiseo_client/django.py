"""A Django email backend that hands mail to Odiseo's API.

    EMAIL_BACKEND = "odiseo_client.django.EmailBackend"   # or "odiseo.django.EmailBackend"
    ODISEO_URL = "http://127.0.0.1:8001"
    ODISEO_API_KEY = "..."                                 # a key with the send scope

`send_messages` posts every message of the call through POST /emails/batch (500 to a
request): the plain body, an HTML body or text/html alternative, attachments (inline
ones with their Content-ID), cc, bcc, reply-to, extra headers and the From name. It
returns how many were stored; with `fail_silently`, errors return 0 instead of raising.
Recipients' display names are dropped (Odiseo takes plain addresses).

    ODISEO_TRANSACTIONAL = True      # when Odiseo's schema lives in the app's database
    ODISEO_SCHEMA = "odiseo"         # its SCHEMA_NAME
    ODISEO_DATABASE = "default"      # the Django database alias

With ODISEO_TRANSACTIONAL the same emails are queued through the application's own
database connection instead, by Odiseo's SQL function `<ODISEO_SCHEMA>.enqueue()`: a
`send_mail()` inside `transaction.atomic()` is queued if and only if that transaction
commits, as with django-post_office (the server's README, "Queue mail in your own
transaction"). Each email goes in a savepoint of its own, so one the function refuses
raises `Invalid` (or, with `fail_silently`, is skipped) and leaves the caller's
transaction usable.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from email.mime.base import MIMEBase
from email.utils import getaddresses, parseaddr
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from odiseo_client._calls import Attachment
from odiseo_client._calls import email as one_email
from odiseo_client.client import Odiseo
from odiseo_client.errors import Invalid, OdiseoError, Unavailable

BATCH = 500  # the most POST /emails/batch takes
# Headers Odiseo writes itself: a message's own values travel as fields, not headers.
_OWN_HEADERS = {"from", "to", "cc", "bcc", "reply-to", "subject", "message-id", "date"}


class EmailBackend(BaseEmailBackend):  # type: ignore[misc]
    """Django's mail through Odiseo: settings ODISEO_URL and ODISEO_API_KEY (or the
    `url` and `api_key` arguments of get_connection)."""

    def __init__(
        self,
        fail_silently: bool = False,
        *,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(fail_silently=fail_silently, **kwargs)
        self.transactional = bool(getattr(settings, "ODISEO_TRANSACTIONAL", False))
        self.schema = str(getattr(settings, "ODISEO_SCHEMA", "odiseo"))
        self.database = str(getattr(settings, "ODISEO_DATABASE", "default"))
        self.url = url or getattr(settings, "ODISEO_URL", None)
        if not self.url and not self.transactional:
            raise ImproperlyConfigured("set ODISEO_URL, e.g. http://127.0.0.1:8001")
        self.api_key = api_key or getattr(settings, "ODISEO_API_KEY", None)
        self.timeout = timeout
        self.client: Odiseo | None = None

    def open(self) -> bool:
        if self.client is not None:
            return False
        assert self.url is not None
        self.client = Odiseo(self.url, self.api_key, timeout=self.timeout)
        return True

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        if not email_messages:
            return 0
        if self.transactional:
            return self._enqueue_all(email_messages)
        opened = self.open()
        assert self.client is not None
        sent = 0
        try:
            for start in range(0, len(email_messages), BATCH):
                items = [odiseo_email(m) for m in email_messages[start : start + BATCH]]
                result = self.client.send_batch(items)
                sent += result.accepted
                if result.rejected:
                    refused = [r.raw for r in result.results if r.status != "accepted"]
                    raise Invalid(
                        f"{result.rejected} of {len(items)} emails refused",
                        status=202,
                        errors=refused,
                    )
        except (OdiseoError, ValueError, OSError):
            if not self.fail_silently:
                raise
        finally:
            if opened:
                self.close()
        return sent

    def _enqueue_all(self, email_messages: Sequence[EmailMessage]) -> int:
        """Queue each message in the caller's transaction (ODISEO_TRANSACTIONAL)."""
        from django.db import connections, transaction

        query = f"SELECT {_quoted(self.schema)}.enqueue(%s::jsonb)"
        sent = 0
        for message in email_messages:
            try:
                payload = json.dumps(odiseo_email(message))
                with (
                    transaction.atomic(using=self.database),  # a savepoint inside atomic()
                    connections[self.database].cursor() as cursor,
                ):
                    cursor.execute(query, [payload])
                sent += 1
            except Exception as exc:
                error = _refusal(exc)
                if not self.fail_silently:
                    if error is None:
                        raise
                    raise error from exc
        return sent


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# The SQLSTATEs of Odiseo's enqueue() function (the server's README) and the HTTP status
# the API answers for the same refusal.
_REFUSALS = {"OD422": 422, "OD413": 413, "OD409": 409}


def _refusal(exc: BaseException) -> OdiseoError | None:
    """The client's error for one of the function's refusals, found under Django's
    wrapper (the driver's error is its __cause__); None for any other error."""
    seen: BaseException | None = exc
    while seen is not None:
        code = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if isinstance(code, str):
            diag = getattr(seen, "diag", None)
            detail = str(getattr(diag, "message_primary", None) or seen)
            if code in _REFUSALS:
                return Invalid(detail, status=_REFUSALS[code])
            if code == "OD503":
                return Unavailable(detail)
            return None
        seen = seen.__cause__
    return None


def odiseo_email(message: EmailMessage) -> dict[str, Any]:
    """Django's EmailMessage (or EmailMultiAlternatives) as one email of a batch."""
    name, address = parseaddr(message.from_email or settings.DEFAULT_FROM_EMAIL)
    html = message.body if message.content_subtype == "html" else None
    text = None if html is not None else message.body
    for content, mimetype in getattr(message, "alternatives", []) or []:
        if mimetype == "text/html" and html is None:
            html = str(content)
    headers = {k: str(v) for k, v in message.extra_headers.items() if k.lower() not in _OWN_HEADERS}
    return one_email(
        _addresses(message.to),
        message.subject,
        html,
        text or None,
        cc=_addresses(message.cc),
        bcc=_addresses(message.bcc),
        reply_to=_addresses(message.reply_to) or None,
        from_email=address,
        from_name=name or None,
        headers=headers or None,
        attachments=[_attachment(a) for a in message.attachments],
    )


def _addresses(values: Sequence[str]) -> list[str]:
    return [address for _, address in getaddresses(list(values)) if address]


def _attachment(item: Any) -> Attachment | dict[str, Any]:
    if isinstance(item, MIMEBase):
        payload = item.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
        filename = item.get_filename() or "attachment"
        content_id = item.get("Content-ID")
        if content_id:
            found = Attachment(filename, content, item.get_content_type())
            return {**found.json(), "content_id": content_id.strip("<>")}
        return Attachment(filename, content, item.get_content_type())
    filename, content, mimetype = item
    data = content.encode() if isinstance(content, str) else bytes(content)
    return Attachment(filename or "attachment", data, mimetype)
