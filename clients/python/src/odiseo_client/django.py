"""A Django email backend that hands mail to Odiseo's API.

    EMAIL_BACKEND = "odiseo_client.django.EmailBackend"   # or "odiseo.django.EmailBackend"
    ODISEO_URL = "http://127.0.0.1:8001"
    ODISEO_API_KEY = "..."                                 # a key with the send scope

`send_messages` posts every message of the call through POST /emails/batch (500 to a
request): the plain body, an HTML body or text/html alternative, attachments (inline
ones with their Content-ID), cc, bcc, reply-to, extra headers and the From name. It
returns how many were stored; with `fail_silently`, errors return 0 instead of raising.
Recipients' display names are dropped (Odiseo takes plain addresses).
"""

from __future__ import annotations

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
from odiseo_client.errors import Invalid, OdiseoError

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
        self.url = url or getattr(settings, "ODISEO_URL", None)
        if not self.url:
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
