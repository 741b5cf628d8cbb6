"""What became of messages: GET /events, and the suppression list under /suppressions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from pydantic import AfterValidator, TypeAdapter, ValidationError

from odiseo.api.auth import AdminKey, ReadKey
from odiseo.api.body import parse_json
from odiseo.api.openapi import request_body
from odiseo.api.outcome_schemas import (
    EventPage,
    PublishedEventOut,
    SuppressionIn,
    SuppressionOut,
    SuppressionPage,
)
from odiseo.api.routes import aware
from odiseo.api.schemas import Problem
from odiseo.domain.events import EventType
from odiseo.domain.models import EventFilter, SuppressionReason
from odiseo.outcomes import OutcomeService
from odiseo.requests import Address, describe_errors
from odiseo.service import decode_cursor, encode_cursor

router = APIRouter()
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": Problem}, 422: {"model": Problem}}
_ADDRESS = TypeAdapter(Address)


async def _outcomes(request: Request) -> OutcomeService:
    outcomes: OutcomeService = request.app.state.outcomes
    return outcomes


OutcomesDep = Annotated[OutcomeService, Depends(_outcomes)]


def _no_nul(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL: refused here, before any statement (422).
    if value is not None and "\0" in value:
        raise ValueError("NUL characters are not allowed")
    return value


NoNul = AfterValidator(_no_nul)
AddressPath = Annotated[str, Path(max_length=320, description="an email address"), NoNul]


@router.get("/events", response_model=EventPage, responses=ERRORS, dependencies=[ReadKey])
async def list_events(
    outcomes: OutcomesDep,
    type_filter: Annotated[EventType | None, Query(alias="type")] = None,
    message_id: Annotated[str | None, Query(max_length=64), NoNul] = None,
    recipient: Annotated[str | None, Query(max_length=320), NoNul] = None,
    after: Annotated[datetime | None, Query(description="at or after this time")] = None,
    before: Annotated[datetime | None, Query(description="before this time")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=32)] = None,
) -> EventPage:
    """Published events, newest first (the types: README, "Events and webhooks")."""
    below = _cursor(cursor)
    query = EventFilter(
        type=type_filter.value if type_filter else None,
        message_id=message_id,
        recipient=recipient,
        after=aware(after),
        before=aware(before),
    )
    page, next_id = await outcomes.events(query, limit=limit, before=below)
    return EventPage(
        items=[PublishedEventOut.of(e, cursor=encode_cursor(e.event.id)) for e in page],
        next_cursor=encode_cursor(next_id) if next_id is not None else None,
    )


@router.get(
    "/suppressions", response_model=SuppressionPage, responses=ERRORS, dependencies=[ReadKey]
)
async def list_suppressions(
    outcomes: OutcomesDep,
    search: Annotated[
        str | None, Query(max_length=320, description="part of the address"), NoNul
    ] = None,
    reason: SuppressionReason | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=320), NoNul] = None,
) -> SuppressionPage:
    """Suppressed addresses in address order; follow `next_cursor` for more."""
    page, after = await outcomes.suppressions(
        search=search, reason=reason, limit=limit, after=cursor
    )
    return SuppressionPage(items=[SuppressionOut.of(s) for s in page], next_cursor=after)


@router.get(
    "/suppressions/{address}",
    response_model=SuppressionOut,
    responses=ERRORS,
    dependencies=[ReadKey],
)
async def get_suppression(address: AddressPath, outcomes: OutcomesDep) -> SuppressionOut:
    """Whether, why and since when an address is suppressed (404: it is not)."""
    return SuppressionOut.of(await outcomes.suppression(address))


@router.put(
    "/suppressions/{address}",
    response_model=SuppressionOut,
    responses=ERRORS,
    dependencies=[AdminKey],
    openapi_extra=request_body(SuppressionIn),
)
async def put_suppression(
    address: AddressPath, request: Request, outcomes: OutcomesDep
) -> SuppressionOut:
    """Suppress an address (or change why it is): no mail goes to it until removed."""
    change = await parse_json(request, SuppressionIn)
    valid = _valid_address(address)
    now = datetime.now(UTC)
    stored = await outcomes.suppress(valid, reason=change.reason, detail=change.detail, now=now)
    return SuppressionOut.of(stored)


@router.delete(
    "/suppressions/{address}", status_code=204, responses=ERRORS, dependencies=[AdminKey]
)
async def delete_suppression(address: AddressPath, outcomes: OutcomesDep) -> Response:
    """Send to an address again (404: it was not suppressed)."""
    await outcomes.unsuppress(address)
    return Response(status_code=204)


def _cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    below = decode_cursor(cursor)
    if below is None:
        raise HTTPException(422, "cursor: not a cursor this API gave out")
    return below


def _valid_address(address: str) -> str:
    try:
        return str(_ADDRESS.validate_python(address))
    except ValidationError as exc:
        raise HTTPException(422, "address: " + describe_errors(exc.errors())) from exc
