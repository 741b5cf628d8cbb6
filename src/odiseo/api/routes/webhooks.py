"""Webhook endpoints, their delivery log and replays: /webhooks (admin scope)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status

from odiseo.api.auth import AdminKey
from odiseo.api.body import parse_json
from odiseo.api.deps import WebhooksDep
from odiseo.api.openapi import request_body
from odiseo.api.schemas import Problem
from odiseo.api.webhook_schemas import (
    DeliveryOut,
    DeliveryPage,
    Replayed,
    ReplayIn,
    SecretRotated,
    WebhookCreated,
    WebhookIn,
    WebhookOut,
    WebhookPatch,
)
from odiseo.domain.webhooks import SECRET_OVERLAP
from odiseo.service import decode_cursor, encode_cursor

router = APIRouter(prefix="/webhooks", tags=["webhooks"], dependencies=[AdminKey])

EndpointId = Annotated[str, Path(max_length=40, description="wh_…")]
DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1)]
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": Problem}, 422: {"model": Problem}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    responses={422: {"model": Problem}},
    openapi_extra=request_body(WebhookIn),
)
async def create_webhook(request: Request, webhooks: WebhooksDep) -> WebhookCreated:
    """A new endpoint; the answer holds its signing secret, shown this once only.

    The URL must be https and resolve only to globally routable addresses (unless
    WEBHOOK_ALLOW_PRIVATE), checked now and again at every delivery.
    """
    body = await parse_json(request, WebhookIn)
    endpoint, secret = await webhooks.create(
        url=body.url, events=body.events, description=body.description, now=datetime.now(UTC)
    )
    return WebhookCreated(**WebhookOut.of(endpoint).model_dump(), secret=secret)


@router.get("", response_model=list[WebhookOut])
async def list_webhooks(webhooks: WebhooksDep) -> list[WebhookOut]:
    """Every endpoint, oldest first (secrets are never shown)."""
    return [WebhookOut.of(e) for e in await webhooks.endpoints()]


@router.get("/{endpoint_id}", response_model=WebhookOut, responses=ERRORS)
async def get_webhook(endpoint_id: EndpointId, webhooks: WebhooksDep) -> WebhookOut:
    return WebhookOut.of(await webhooks.get(endpoint_id))


@router.patch(
    "/{endpoint_id}",
    response_model=WebhookOut,
    responses=ERRORS,
    openapi_extra=request_body(WebhookPatch),
)
async def update_webhook(
    endpoint_id: EndpointId, request: Request, webhooks: WebhooksDep
) -> WebhookOut:
    """Change url, events, description or enabled. Disabling fails the pending
    deliveries; enabling forgets past failures."""
    body = await parse_json(request, WebhookPatch)
    changes = body.model_dump(include=body.model_fields_set)
    updated = await webhooks.update(endpoint_id, changes=changes, now=datetime.now(UTC))
    return WebhookOut.of(updated)


@router.delete("/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS)
async def delete_webhook(endpoint_id: EndpointId, webhooks: WebhooksDep) -> Response:
    """Delete the endpoint with its delivery log."""
    await webhooks.delete(endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{endpoint_id}/rotate-secret", response_model=SecretRotated, responses=ERRORS)
async def rotate_secret(endpoint_id: EndpointId, webhooks: WebhooksDep) -> SecretRotated:
    """A new signing secret, shown this once; the old one signs too for 24 hours."""
    now = datetime.now(UTC)
    endpoint, secret = await webhooks.rotate(endpoint_id, now=now)
    return SecretRotated(id=endpoint.id, secret=secret, previous_valid_until=now + SECRET_OVERLAP)


@router.post(
    "/{endpoint_id}/test",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryOut,
    responses=ERRORS,
)
async def test_webhook(endpoint_id: EndpointId, webhooks: WebhooksDep) -> DeliveryOut:
    """Send a `webhook.test` event to this endpoint (see its delivery log for the result)."""
    return DeliveryOut.of(await webhooks.send_test(endpoint_id, now=datetime.now(UTC)))


@router.get("/{endpoint_id}/deliveries", response_model=DeliveryPage, responses=ERRORS)
async def list_deliveries(
    endpoint_id: EndpointId,
    webhooks: WebhooksDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=32)] = None,
) -> DeliveryPage:
    """The endpoint's deliveries, newest first, each with its attempts (status code,
    duration, the start of the answer); follow `next_cursor` for older ones."""
    before = None
    if cursor is not None:
        before = decode_cursor(cursor)
        if before is None:
            raise HTTPException(422, "cursor: not a cursor this API gave out")
    page, next_id = await webhooks.deliveries(endpoint_id, limit=limit, before=before)
    return DeliveryPage(
        items=[DeliveryOut.of(d) for d in page],
        next_cursor=encode_cursor(next_id) if next_id is not None else None,
    )


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryOut,
    responses={**ERRORS, 409: {"model": Problem}},
)
async def replay_delivery(
    endpoint_id: EndpointId, delivery_id: DeliveryId, webhooks: WebhooksDep
) -> DeliveryOut:
    """Send a finished delivery again: same webhook-id, same body, a fresh schedule."""
    replayed = await webhooks.replay(endpoint_id, delivery_id, now=datetime.now(UTC))
    return DeliveryOut.of(replayed)


@router.post(
    "/{endpoint_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Replayed,
    responses=ERRORS,
    openapi_extra=request_body(ReplayIn),
)
async def replay_failed(
    endpoint_id: EndpointId, request: Request, webhooks: WebhooksDep
) -> Replayed:
    """Send again every failed delivery created since `since`."""
    body = await parse_json(request, ReplayIn)
    count = await webhooks.replay_failed(endpoint_id, since=body.since, now=datetime.now(UTC))
    return Replayed(replayed=count)
