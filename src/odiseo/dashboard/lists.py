"""Suppressions (search, add, remove) and webhooks (endpoints, their delivery log,
replay), through OutcomeService and WebhookService as the API's routes are."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import TypeAdapter, ValidationError

from odiseo.dashboard.sessions import ActionDep, ViewerDep
from odiseo.dashboard.web import PREFIX, page
from odiseo.domain.models import SuppressionReason
from odiseo.errors import NotFound, OdiseoError
from odiseo.outcomes import OutcomeService
from odiseo.requests import Address, describe_errors
from odiseo.service import decode_cursor, encode_cursor
from odiseo.webhooks.service import WebhookService

router = APIRouter(prefix=PREFIX, include_in_schema=False)
PAGE_SIZE = 50
DETAIL_CHARS = 500  # SuppressionIn.detail's limit
_ADDRESS = TypeAdapter(Address)
EndpointId = Annotated[str, Path(max_length=40)]


def _outcomes(request: Request) -> OutcomeService:
    service: OutcomeService = request.app.state.outcomes
    return service


def _webhooks(request: Request) -> WebhookService:
    service: WebhookService = request.app.state.webhooks
    return service


# -- suppressions ----------------------------------------------------------------------


@router.get("/suppressions")
async def suppressions_page(
    request: Request,
    viewer: ViewerDep,
    search: str = "",
    after: str | None = None,
    done: str | None = None,
) -> Response:
    return await _suppressions(request, search=search[:320], after=after, done=done)


async def _suppressions(
    request: Request,
    *,
    search: str = "",
    after: str | None = None,
    done: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    items, next_after = await _outcomes(request).suppressions(
        search=search or None, reason=None, limit=PAGE_SIZE, after=after
    )
    query = urlencode({"search": search, "after": next_after}) if next_after else None
    notices = {"added": "The address is suppressed.", "removed": "The address may be mailed again."}
    return page(
        request,
        "suppressions.html",
        status_code=status_code,
        section="suppressions",
        items=items,
        search=search,
        next_query=query,
        reasons=[r.value for r in SuppressionReason],
        notice=notices.get(done or ""),
        error=error,
    )


@router.post("/suppressions")
async def add_suppression(request: Request, action: ActionDep) -> Response:
    form = action.form
    try:
        address = str(_ADDRESS.validate_python(form.get("address", "").strip()))
        reason = SuppressionReason(form.get("reason") or SuppressionReason.MANUAL)
    except ValidationError as exc:
        error = "address: " + describe_errors(exc.errors())
        return await _suppressions(request, error=error, status_code=422)
    except ValueError:
        reasons = ", ".join(r.value for r in SuppressionReason)
        return await _suppressions(request, error=f"reason: one of {reasons}", status_code=422)
    detail = form.get("detail", "").strip() or None
    if detail is not None and len(detail) > DETAIL_CHARS:
        error = f"detail: at most {DETAIL_CHARS} characters"
        return await _suppressions(request, error=error, status_code=422)
    await _outcomes(request).suppress(address, reason=reason, detail=detail, now=datetime.now(UTC))
    return RedirectResponse(f"{PREFIX}/suppressions?done=added", status_code=303)


@router.post("/suppressions/remove")
async def remove_suppression(request: Request, action: ActionDep) -> Response:
    try:
        await _outcomes(request).unsuppress(action.form.get("address", "")[:320])
    except NotFound as exc:
        return await _suppressions(request, error=exc.message, status_code=404)
    return RedirectResponse(f"{PREFIX}/suppressions?done=removed", status_code=303)


# -- webhooks ---------------------------------------------------------------------------


@router.get("/webhooks")
async def webhooks_page(request: Request, viewer: ViewerDep) -> Response:
    now = datetime.now(UTC)
    service = _webhooks(request)
    return page(
        request,
        "webhooks.html",
        section="webhooks",
        endpoints=await service.endpoints(),
        oldest_pending=await service.oldest_pending_seconds(now=now),
    )


@router.get("/webhooks/{endpoint_id}")
async def endpoint_page(
    endpoint_id: EndpointId,
    request: Request,
    viewer: ViewerDep,
    cursor: str | None = None,
    done: str | None = None,
) -> Response:
    return await _endpoint(request, endpoint_id, cursor=cursor, done=done)


async def _endpoint(
    request: Request,
    endpoint_id: str,
    *,
    cursor: str | None = None,
    done: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    service = _webhooks(request)
    try:
        endpoint = await service.get(endpoint_id)
        before = decode_cursor(cursor) if cursor else None
        deliveries, next_id = await service.deliveries(endpoint_id, limit=PAGE_SIZE, before=before)
    except NotFound:
        return page(request, "not_found.html", status_code=404, what=f"endpoint {endpoint_id}")
    return page(
        request,
        "endpoint.html",
        status_code=status_code,
        section="webhooks",
        endpoint=endpoint,
        deliveries=deliveries,
        next_cursor=encode_cursor(next_id) if next_id else None,
        notice="The delivery is queued again." if done == "replayed" else None,
        error=error,
    )


@router.post("/webhooks/{endpoint_id}/deliveries/{delivery_id}/replay")
async def replay(
    endpoint_id: EndpointId, delivery_id: int, request: Request, action: ActionDep
) -> Response:
    try:
        await _webhooks(request).replay(endpoint_id, delivery_id, now=datetime.now(UTC))
    except NotFound as exc:
        return await _endpoint(request, endpoint_id, error=exc.message, status_code=404)
    except OdiseoError as exc:
        return await _endpoint(request, endpoint_id, error=exc.message, status_code=409)
    target = f"{PREFIX}/webhooks/{quote(endpoint_id, safe='')}?done=replayed"
    return RedirectResponse(target, status_code=303)
