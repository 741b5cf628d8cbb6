"""`Odiseo` (sync) and `AsyncOdiseo` (async): the same methods, over httpx.

Connection errors and 503s are retried with backoff. A send carries one
Idempotency-Key for all its tries, and each batch item one client_message_id, so a
retry after a lost answer finds the stored message instead of storing another; calls
that change state without such a key (cancel, retry, creating a webhook) are sent
again only if the first try never reached Odiseo.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import httpx

from odiseo_client import _calls as calls
from odiseo_client import models
from odiseo_client.errors import Unavailable

T = TypeVar("T")
USER_AGENT = "odiseo-client/1.0"


class _Base:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float,
        max_retries: int,
        backoff: float,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"User-Agent": USER_AGENT}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff

    def _give_up(self, exc: Exception) -> Unavailable:
        return Unavailable(f"cannot reach Odiseo at {self.base_url}: {exc!r}")


class Odiseo(_Base):
    """A client of one Odiseo API; use it as a context manager, or call close().

    Args:
        base_url: e.g. "http://127.0.0.1:8001".
        api_key: a key of API_KEYS (its scopes decide what it may do).
        max_retries: tries after the first, on connection errors and 503.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url, api_key, timeout=timeout, max_retries=max_retries, backoff=backoff
        )
        self._http = httpx.Client(
            base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Odiseo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, call: calls.Call) -> Any:
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = self._http.request(
                    call.method, call.path, params=call.params, json=call.json, headers=call.headers
                )
            except httpx.TransportError as exc:
                if last or not calls.worth_retrying(call, exc):
                    raise self._give_up(exc) from exc
                time.sleep(calls.backoff(attempt, base=self.backoff))
                continue
            if response.status_code == 503 and not last:
                wait = calls.retry_after(response) or calls.backoff(attempt, base=self.backoff)
                time.sleep(min(wait, 30.0))
                continue
            return calls.answer(call, response)
        raise AssertionError("unreachable")

    def _pages(self, path: str, params: dict[str, Any], parse: type[T]) -> Iterator[T]:
        cursor: str | None = None
        while True:
            data = self._run(calls.page(path, params, cursor))
            for item in data["items"]:
                yield models.parse(parse, item)
            cursor = data.get("next_cursor")
            if not cursor:
                return

    # -- emails --------------------------------------------------------------------------

    def send(
        self,
        to: str | Sequence[str],
        subject: str | None = None,
        html: str | None = None,
        text: str | None = None,
        *,
        template: str | None = None,
        variables: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> models.Accepted:
        """Queue one email (fields as `odiseo_client.email`); stored once however often
        it is retried."""
        body = calls.email(
            to, subject, html, text, template=template, variables=variables, **fields
        )
        result: models.Accepted = self._run(calls.send(body, idempotency_key))
        return result

    def send_batch(
        self, emails: Sequence[Mapping[str, Any]], *, atomic: bool = False
    ) -> models.BatchResult:
        """Queue up to 500 emails (each made with `odiseo_client.email`) in one request."""
        result: models.BatchResult = self._run(
            calls.send_batch([dict(e) for e in emails], atomic=atomic)
        )
        return result

    def get(self, message_id: str) -> models.Email:
        result: models.Email = self._run(calls.get(message_id))
        return result

    def search(
        self,
        *,
        status: str | None = None,
        tag: str | None = None,
        recipient: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 100,
    ) -> Iterator[models.Email]:
        """Every message matching, newest first, following the cursor from page to page."""
        params = {
            "status": status,
            "tag": tag,
            "recipient": recipient,
            "created_after": created_after,
            "created_before": created_before,
            "limit": page_size,
        }
        return self._pages("/emails", params, models.Email)

    def cancel(self, message_id: str) -> models.Email:
        result: models.Email = self._run(calls.cancel(message_id))
        return result

    def retry(self, message_id: str) -> models.Email:
        result: models.Email = self._run(calls.retry(message_id))
        return result

    def reschedule(self, message_id: str, send_at: datetime) -> models.Email:
        result: models.Email = self._run(calls.reschedule(message_id, send_at))
        return result

    def queue_status(self) -> models.QueueStatus:
        result: models.QueueStatus = self._run(calls.queue_status())
        return result

    # -- templates -----------------------------------------------------------------------

    def templates(self) -> list[models.Template]:
        result: list[models.Template] = self._run(calls.templates())
        return result

    def template(self, template_id: str, version: int | None = None) -> models.Template:
        result: models.Template = self._run(calls.template(template_id, version))
        return result

    def put_template(
        self,
        template_id: str,
        *,
        html: str,
        subject: str | None = None,
        text: str | None = None,
        sample_variables: Mapping[str, Any] | None = None,
    ) -> models.Template:
        call = calls.put_template(
            template_id, html=html, subject=subject, text=text, sample_variables=sample_variables
        )
        result: models.Template = self._run(call)
        return result

    def delete_template(self, template_id: str) -> None:
        self._run(calls.delete_template(template_id))

    def render(self, template_id: str, variables: Mapping[str, Any]) -> models.Rendered:
        result: models.Rendered = self._run(calls.render(template_id, variables))
        return result

    # -- suppressions and events ---------------------------------------------------------

    def suppressions(
        self, *, search: str | None = None, reason: str | None = None, page_size: int = 100
    ) -> Iterator[models.Suppression]:
        params = {"search": search, "reason": reason, "limit": page_size}
        return self._pages("/suppressions", params, models.Suppression)

    def suppression(self, address: str) -> models.Suppression:
        result: models.Suppression = self._run(calls.suppression(address))
        return result

    def suppress(
        self, address: str, *, reason: str = "manual", detail: str | None = None
    ) -> models.Suppression:
        result: models.Suppression = self._run(
            calls.suppress(address, reason=reason, detail=detail)
        )
        return result

    def unsuppress(self, address: str) -> None:
        self._run(calls.unsuppress(address))

    def events(
        self,
        *,
        type: str | None = None,
        message_id: str | None = None,
        recipient: str | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
        page_size: int = 100,
    ) -> Iterator[models.Event]:
        params = {
            "type": type,
            "message_id": message_id,
            "recipient": recipient,
            "after": after,
            "before": before,
            "limit": page_size,
        }
        return self._pages("/events", params, models.Event)

    # -- webhook endpoints ---------------------------------------------------------------

    def webhooks(self) -> list[models.Webhook]:
        result: list[models.Webhook] = self._run(calls.webhooks())
        return result

    def webhook(self, endpoint_id: str) -> models.Webhook:
        result: models.Webhook = self._run(calls.webhook(endpoint_id))
        return result

    def create_webhook(
        self, url: str, *, events: Sequence[str] = (), description: str | None = None
    ) -> models.Webhook:
        """A new endpoint; its `secret` (for verify_webhook) is in this answer only."""
        call = calls.create_webhook(url, events=events, description=description)
        result: models.Webhook = self._run(call)
        return result

    def update_webhook(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        events: Sequence[str] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
    ) -> models.Webhook:
        changes = {"url": url, "events": events, "description": description, "enabled": enabled}
        result: models.Webhook = self._run(calls.update_webhook(endpoint_id, changes))
        return result

    def delete_webhook(self, endpoint_id: str) -> None:
        self._run(calls.delete_webhook(endpoint_id))

    def rotate_webhook_secret(self, endpoint_id: str) -> models.SecretRotated:
        result: models.SecretRotated = self._run(calls.rotate_webhook_secret(endpoint_id))
        return result

    def test_webhook(self, endpoint_id: str) -> dict[str, Any]:
        """Send a `webhook.test` event to the endpoint; the delivery as queued."""
        result: dict[str, Any] = self._run(calls.test_webhook(endpoint_id))
        return result


class AsyncOdiseo(_Base):
    """Odiseo's client for asyncio: the methods of `Odiseo`, awaited (search, suppressions
    and events are async iterators)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url, api_key, timeout=timeout, max_retries=max_retries, backoff=backoff
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncOdiseo:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _run(self, call: calls.Call) -> Any:
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params, json=call.json, headers=call.headers
                )
            except httpx.TransportError as exc:
                if last or not calls.worth_retrying(call, exc):
                    raise self._give_up(exc) from exc
                await asyncio.sleep(calls.backoff(attempt, base=self.backoff))
                continue
            if response.status_code == 503 and not last:
                wait = calls.retry_after(response) or calls.backoff(attempt, base=self.backoff)
                await asyncio.sleep(min(wait, 30.0))
                continue
            return calls.answer(call, response)
        raise AssertionError("unreachable")

    async def _pages(self, path: str, params: dict[str, Any], parse: type[T]) -> AsyncIterator[T]:
        cursor: str | None = None
        while True:
            data = await self._run(calls.page(path, params, cursor))
            for item in data["items"]:
                yield models.parse(parse, item)
            cursor = data.get("next_cursor")
            if not cursor:
                return

    async def send(
        self,
        to: str | Sequence[str],
        subject: str | None = None,
        html: str | None = None,
        text: str | None = None,
        *,
        template: str | None = None,
        variables: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> models.Accepted:
        body = calls.email(
            to, subject, html, text, template=template, variables=variables, **fields
        )
        result: models.Accepted = await self._run(calls.send(body, idempotency_key))
        return result

    async def send_batch(
        self, emails: Sequence[Mapping[str, Any]], *, atomic: bool = False
    ) -> models.BatchResult:
        result: models.BatchResult = await self._run(
            calls.send_batch([dict(e) for e in emails], atomic=atomic)
        )
        return result

    async def get(self, message_id: str) -> models.Email:
        result: models.Email = await self._run(calls.get(message_id))
        return result

    def search(
        self,
        *,
        status: str | None = None,
        tag: str | None = None,
        recipient: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[models.Email]:
        params = {
            "status": status,
            "tag": tag,
            "recipient": recipient,
            "created_after": created_after,
            "created_before": created_before,
            "limit": page_size,
        }
        return self._pages("/emails", params, models.Email)

    async def cancel(self, message_id: str) -> models.Email:
        result: models.Email = await self._run(calls.cancel(message_id))
        return result

    async def retry(self, message_id: str) -> models.Email:
        result: models.Email = await self._run(calls.retry(message_id))
        return result

    async def reschedule(self, message_id: str, send_at: datetime) -> models.Email:
        result: models.Email = await self._run(calls.reschedule(message_id, send_at))
        return result

    async def queue_status(self) -> models.QueueStatus:
        result: models.QueueStatus = await self._run(calls.queue_status())
        return result

    async def templates(self) -> list[models.Template]:
        result: list[models.Template] = await self._run(calls.templates())
        return result

    async def template(self, template_id: str, version: int | None = None) -> models.Template:
        result: models.Template = await self._run(calls.template(template_id, version))
        return result

    async def put_template(
        self,
        template_id: str,
        *,
        html: str,
        subject: str | None = None,
        text: str | None = None,
        sample_variables: Mapping[str, Any] | None = None,
    ) -> models.Template:
        call = calls.put_template(
            template_id, html=html, subject=subject, text=text, sample_variables=sample_variables
        )
        result: models.Template = await self._run(call)
        return result

    async def delete_template(self, template_id: str) -> None:
        await self._run(calls.delete_template(template_id))

    async def render(self, template_id: str, variables: Mapping[str, Any]) -> models.Rendered:
        result: models.Rendered = await self._run(calls.render(template_id, variables))
        return result

    def suppressions(
        self, *, search: str | None = None, reason: str | None = None, page_size: int = 100
    ) -> AsyncIterator[models.Suppression]:
        params = {"search": search, "reason": reason, "limit": page_size}
        return self._pages("/suppressions", params, models.Suppression)

    async def suppression(self, address: str) -> models.Suppression:
        result: models.Suppression = await self._run(calls.suppression(address))
        return result

    async def suppress(
        self, address: str, *, reason: str = "manual", detail: str | None = None
    ) -> models.Suppression:
        call = calls.suppress(address, reason=reason, detail=detail)
        result: models.Suppression = await self._run(call)
        return result

    async def unsuppress(self, address: str) -> None:
        await self._run(calls.unsuppress(address))

    def events(
        self,
        *,
        type: str | None = None,
        message_id: str | None = None,
        recipient: str | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[models.Event]:
        params = {
            "type": type,
            "message_id": message_id,
            "recipient": recipient,
            "after": after,
            "before": before,
            "limit": page_size,
        }
        return self._pages("/events", params, models.Event)

    async def webhooks(self) -> list[models.Webhook]:
        result: list[models.Webhook] = await self._run(calls.webhooks())
        return result

    async def webhook(self, endpoint_id: str) -> models.Webhook:
        result: models.Webhook = await self._run(calls.webhook(endpoint_id))
        return result

    async def create_webhook(
        self, url: str, *, events: Sequence[str] = (), description: str | None = None
    ) -> models.Webhook:
        call = calls.create_webhook(url, events=events, description=description)
        result: models.Webhook = await self._run(call)
        return result

    async def update_webhook(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        events: Sequence[str] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
    ) -> models.Webhook:
        changes = {"url": url, "events": events, "description": description, "enabled": enabled}
        result: models.Webhook = await self._run(calls.update_webhook(endpoint_id, changes))
        return result

    async def delete_webhook(self, endpoint_id: str) -> None:
        await self._run(calls.delete_webhook(endpoint_id))

    async def rotate_webhook_secret(self, endpoint_id: str) -> models.SecretRotated:
        call = calls.rotate_webhook_secret(endpoint_id)
        result: models.SecretRotated = await self._run(call)
        return result

    async def test_webhook(self, endpoint_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._run(calls.test_webhook(endpoint_id))
        return result
