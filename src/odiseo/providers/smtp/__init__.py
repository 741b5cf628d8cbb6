"""Delivery over SMTP: our own pipelining client, and the provider that pools it.

`_wire.py` (replies cut from the byte stream, the client's errors) and `_client.py`
(one SMTP session) import nothing else of odiseo, as httpcore sits under httpx;
`smtp.py` holds the provider and `classify`, the one function that decides what a
reply or an error means for the message.
"""

from __future__ import annotations

from odiseo.domain.retry import stated_wait
from odiseo.providers.smtp.smtp import SmtpProvider, classify, client_tls_context

__all__ = ["SmtpProvider", "classify", "client_tls_context", "stated_wait"]
