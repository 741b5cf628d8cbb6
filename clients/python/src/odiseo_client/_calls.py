"""What each method asks of the API, written once for both clients: a Call says the
request, whether it is safe to send again, and how to read the answer."""

from __future__ import annotations

import base64
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from odiseo_client import models
from odiseo_client.errors import BY_STATUS, OdiseoError, RateLimited

# Sent again after a dropped connection whatever happened: nothing changes twice.
ANY = "any"
# Sent again only if the request never left (connection refused) or got a 503.
CONNECT = "connect"


@dataclass
class Call:
    method: str
    path: str
    parse: Callable[[Any], Any] = lambda data: data
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    retry: str = ANY


def backoff(attempt: int, *, base: float) -> float:
    """Seconds before retry `attempt` (0-based): doubling, with jitter, at most 30 s."""
    return float(min(30.0, base * 2**attempt) * (0.5 + random.random() / 2))


def worth_retrying(call: Call, exc: httpx.TransportError) -> bool:
    """A connection error is retried when the request carries its own idempotency, or
    when it never reached the server."""
    return call.retry == ANY or isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)


def answer(call: Call, response: httpx.Response) -> Any:
    """The parsed result of a 2xx answer, or the exception its status stands for."""
    if response.status_code < 400:
        if response.status_code == 204 or not response.content:
            return None
        return call.parse(response.json())
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:500]}
    detail = body.get("detail") if isinstance(body, dict) else None
    errors = body.get("errors") if isinstance(body, dict) else None
    text = detail if isinstance(detail, str) else response.reason_phrase
    kwargs: dict[str, Any] = {"status": response.status_code, "errors": errors, "body": body}
    if response.status_code == 422 and isinstance(body, dict) and "results" in body:
        kwargs["errors"] = [r for r in body["results"] if r.get("status") != "accepted"]
    if response.status_code == 429:
        wait = float(response.headers.get("retry-after", "1") or 1)
        raise RateLimited(text, retry_after=wait, **kwargs)
    raise BY_STATUS.get(response.status_code, OdiseoError)(text, **kwargs)


def retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


# -- the calls -----------------------------------------------------------------------------


def email(
    to: str | Sequence[str],
    subject: str | None = None,
    html: str | None = None,
    text: str | None = None,
    *,
    template: str | None = None,
    variables: Mapping[str, Any] | None = None,
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    reply_to: str | Sequence[str] | None = None,
    from_email: str | None = None,
    from_name: str | None = None,
    headers: Mapping[str, str] | None = None,
    attachments: Sequence[Attachment | Path | str | Mapping[str, Any]] = (),
    tags: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
    send_at: datetime | None = None,
    priority: int | None = None,
    client_message_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The JSON of one email, for `send_batch` (and what `send` posts): `html` is the
    HTML body, `template` and `variables` a template's id and values; `extra` passes
    any other field of POST /emails as it is."""
    if reply_to is not None and not isinstance(reply_to, str):
        reply_to = list(reply_to)
    body: dict[str, Any] = {"to": [to] if isinstance(to, str) else list(to)}
    for key, value in (
        ("subject", subject),
        ("body", html),
        ("text", text),
        ("template_id", template),
        ("template_vars", dict(variables) if variables else None),
        ("cc", list(cc) or None),
        ("bcc", list(bcc) or None),
        ("reply_to", reply_to),
        ("from_email", from_email),
        ("from_name", from_name),
        ("headers", dict(headers) if headers else None),
        ("tags", list(tags) or None),
        ("metadata", dict(metadata) if metadata else None),
        ("send_at", send_at.isoformat() if send_at else None),
        ("priority", priority),
        ("client_message_id", client_message_id),
    ):
        if value is not None:
            body[key] = value
    if attachments:
        body["attachments"] = [
            dict(a) if isinstance(a, Mapping) else Attachment.of(a).json() for a in attachments
        ]
    body.update(extra)
    return body


@dataclass(frozen=True)
class Attachment:
    """A file to attach: its name, bytes and (optionally) content type."""

    filename: str
    content: bytes
    content_type: str | None = None

    @classmethod
    def of(cls, value: Attachment | Path | str) -> Attachment:
        if isinstance(value, Attachment):
            return value
        path = Path(value)
        return cls(path.name, path.read_bytes())

    def json(self) -> dict[str, Any]:
        out = {"filename": self.filename, "content": base64.b64encode(self.content).decode()}
        if self.content_type:
            out["content_type"] = self.content_type
        return out


def send(body: dict[str, Any], idempotency_key: str | None) -> Call:
    key = idempotency_key or str(uuid.uuid4())  # one key for every retry of this send
    return Call(
        "POST",
        "/emails",
        json=body,
        headers={"Idempotency-Key": key},
        parse=lambda d: models.parse(models.Accepted, d),
    )


def send_batch(emails: Sequence[dict[str, Any]], *, atomic: bool) -> Call:
    # Every item gets a client_message_id unless it has one: a retry stores none twice.
    items = [
        e if e.get("client_message_id") else {**e, "client_message_id": str(uuid.uuid4())}
        for e in emails
    ]
    return Call(
        "POST",
        "/emails/batch",
        json={"emails": items, "atomic": atomic},
        parse=lambda d: models.parse(
            models.BatchResult,
            {**d, "results": [models.parse(models.BatchItem, r) for r in d["results"]]},
        ),
    )


def email_path(message_id: str, suffix: str = "") -> str:
    return f"/emails/{quote(message_id, safe='')}{suffix}"


def get(message_id: str) -> Call:
    return Call("GET", email_path(message_id), parse=_email)


def cancel(message_id: str) -> Call:
    return Call("POST", email_path(message_id, "/cancel"), parse=_email, retry=CONNECT)


def retry(message_id: str) -> Call:
    return Call("POST", email_path(message_id, "/retry"), parse=_email, retry=CONNECT)


def reschedule(message_id: str, send_at: datetime) -> Call:
    body = {"send_at": send_at.isoformat()}
    return Call("PATCH", email_path(message_id), json=body, parse=_email)


def page(path: str, params: dict[str, Any], cursor: str | None) -> Call:
    query = {k: _query(v) for k, v in params.items() if v is not None}
    if cursor:
        query["cursor"] = cursor
    return Call("GET", path, params=query)


def template(template_id: str, version: int | None = None) -> Call:
    params = {"version": version} if version is not None else None
    return Call("GET", _template_path(template_id), params=params, parse=_template)


def templates() -> Call:
    return Call("GET", "/templates", parse=lambda d: [_template(t) for t in d])


def put_template(
    template_id: str,
    *,
    html: str,
    subject: str | None,
    text: str | None,
    sample_variables: Mapping[str, Any] | None,
) -> Call:
    body: dict[str, Any] = {"html": html, "subject": subject, "text": text}
    if sample_variables is not None:
        body["sample_variables"] = dict(sample_variables)
    return Call("PUT", _template_path(template_id), json=body, parse=_template)


def delete_template(template_id: str) -> Call:
    return Call("DELETE", _template_path(template_id))


def render(template_id: str, variables: Mapping[str, Any]) -> Call:
    return Call(
        "POST",
        _template_path(template_id) + "/render",
        json={"variables": dict(variables)},
        parse=lambda d: models.parse(models.Rendered, d),
    )


def suppression(address: str) -> Call:
    return Call("GET", _suppression_path(address), parse=_suppression)


def suppress(address: str, *, reason: str, detail: str | None) -> Call:
    body = {"reason": reason, **({"detail": detail} if detail else {})}
    return Call("PUT", _suppression_path(address), json=body, parse=_suppression)


def unsuppress(address: str) -> Call:
    return Call("DELETE", _suppression_path(address))


def webhooks() -> Call:
    return Call("GET", "/webhooks", parse=lambda d: [_webhook(w) for w in d])


def webhook(endpoint_id: str) -> Call:
    return Call("GET", _webhook_path(endpoint_id), parse=_webhook)


def create_webhook(url: str, *, events: Sequence[str], description: str | None) -> Call:
    body = {"url": url, "events": list(events), "description": description}
    return Call("POST", "/webhooks", json=body, parse=_webhook, retry=CONNECT)


def update_webhook(endpoint_id: str, changes: dict[str, Any]) -> Call:
    body = {k: v for k, v in changes.items() if v is not None}
    return Call("PATCH", _webhook_path(endpoint_id), json=body, parse=_webhook)


def delete_webhook(endpoint_id: str) -> Call:
    return Call("DELETE", _webhook_path(endpoint_id))


def rotate_webhook_secret(endpoint_id: str) -> Call:
    return Call(
        "POST",
        _webhook_path(endpoint_id) + "/rotate-secret",
        parse=lambda d: models.parse(models.SecretRotated, d),
        retry=CONNECT,
    )


def test_webhook(endpoint_id: str) -> Call:
    return Call("POST", _webhook_path(endpoint_id) + "/test", retry=CONNECT)


def queue_status() -> Call:
    return Call("GET", "/queue/status", parse=lambda d: models.parse(models.QueueStatus, d))


def _query(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _email(data: dict[str, Any]) -> models.Email:
    return models.parse(models.Email, data)


def _template(data: dict[str, Any]) -> models.Template:
    return models.parse(models.Template, data)


def _suppression(data: dict[str, Any]) -> models.Suppression:
    return models.parse(models.Suppression, data)


def _webhook(data: dict[str, Any]) -> models.Webhook:
    return models.parse(models.Webhook, data)


def _template_path(template_id: str) -> str:
    return f"/templates/{quote(template_id, safe='')}"


def _suppression_path(address: str) -> str:
    return f"/suppressions/{quote(address, safe='@')}"


def _webhook_path(endpoint_id: str) -> str:
    return f"/webhooks/{quote(endpoint_id, safe='')}"
