"""Data protection: erase an address (DELETE /recipients/{address}) and read the audit
log of admin actions (GET /audit). Both need an admin key."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from odiseo.api.audit import TARGET
from odiseo.api.auth import AdminKey
from odiseo.api.schemas import Problem
from odiseo.privacy import PrivacyService
from odiseo.service import decode_cursor, encode_cursor

router = APIRouter(tags=["data protection"])
ERRORS: dict[int | str, dict[str, Any]] = {422: {"model": Problem}}


class ErasedOut(BaseModel):
    address: str = Field(description="normalised: trimmed and lower-cased")
    messages: int = Field(description="messages that named it, deleted whole")
    events: int = Field(description="events about it on other messages, deleted")
    suppression: bool = Field(description="whether it was on the suppression list")


class AuditEntryOut(BaseModel):
    at: datetime
    actor: str = Field(description="the key's label (key#…), or keyless")
    action: str = Field(description="method and route, e.g. DELETE /suppressions/{address}")
    target: str = Field(description="the path called")
    status_code: int


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None


async def _privacy(request: Request) -> PrivacyService:
    privacy: PrivacyService = request.app.state.privacy
    return privacy


PrivacyDep = Annotated[PrivacyService, Depends(_privacy)]


@router.delete(
    "/recipients/{address}", response_model=ErasedOut, responses=ERRORS, dependencies=[AdminKey]
)
async def erase_recipient(
    address: Annotated[str, Path(max_length=320)], request: Request, privacy: PrivacyDep
) -> ErasedOut:
    """Erase everything stored about an address: every message naming it (whole), events
    about it, its suppression, and its name in the audit log (this request's entry
    included)."""
    setattr(request.state, TARGET, "[erased]")
    erased = await privacy.erase(address)
    return ErasedOut(
        address=address.strip().lower(),
        messages=erased.messages,
        events=erased.events,
        suppression=erased.suppression,
    )


@router.get("/audit", response_model=AuditPage, responses=ERRORS, dependencies=[AdminKey])
async def audit_log(
    privacy: PrivacyDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=32)] = None,
) -> AuditPage:
    """Every change an admin key made, newest first."""
    before = None
    if cursor is not None and (before := decode_cursor(cursor)) is None:
        raise HTTPException(422, "cursor: not a cursor this API gave out")
    page, next_id = await privacy.audit_entries(limit=limit, before=before)
    return AuditPage(
        items=[
            AuditEntryOut(
                at=e.at,
                actor=e.actor,
                action=e.action,
                target=e.target,
                status_code=e.status_code,
            )
            for e in page
        ],
        next_cursor=encode_cursor(next_id) if next_id is not None else None,
    )
