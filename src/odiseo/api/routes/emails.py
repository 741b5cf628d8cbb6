"""POST /emails and GET /emails/{message_id}."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query, status
from fastapi.responses import JSONResponse

from odiseo.api.deps import ServiceDep
from odiseo.api.schemas import Accepted, EmailIn, EmailOut, EventOut, Problem, Requeued
from odiseo.domain.models import QueuedEmail

router = APIRouter()

MessageId = Annotated[str, Path(max_length=64, description="the message_id POST /emails gave")]


@router.post(
    "/emails",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses={
        200: {"model": Accepted, "description": "already stored under this client_message_id"},
        409: {"model": Problem, "description": "client_message_id taken by another email"},
        422: {"model": Problem},
        503: {"model": Problem, "description": "database unavailable"},
    },
)
async def send_email(
    email: EmailIn,
    service: ServiceDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Accepted | JSONResponse:
    """Store an email for delivery. A 202 means it is committed and will not be lost."""
    request = email.to_request()
    if request.client_message_id is None and idempotency_key:
        request = email.model_copy(update={"client_message_id": idempotency_key}).to_request()
    now = datetime.now(UTC)
    submitted = await service.submit(request, now=now)
    if not submitted.created:
        answer = Accepted(
            message_id=submitted.message_id,
            detail="Email already stored under this client_message_id",
            timestamp=now,
            duplicate=True,
        )
        return JSONResponse(answer.model_dump(mode="json"), status_code=status.HTTP_200_OK)
    return Accepted(message_id=submitted.message_id, detail="Email stored in queue", timestamp=now)


@router.get("/emails/{message_id}", response_model=EmailOut, responses={404: {"model": Problem}})
async def get_email(message_id: MessageId, service: ServiceDep) -> EmailOut:
    """A message's state, attempts, last error, timestamps and event history."""
    return _email_out(await service.get(message_id))


@router.post(
    "/emails/retry",
    response_model=Requeued,
    responses={422: {"model": Problem}},
)
async def retry_failed(
    service: ServiceDep,
    status_filter: Annotated[Literal["failed"], Query(alias="status")] = "failed",
    created_after: Annotated[datetime | None, Query()] = None,
) -> Requeued:
    """Queue every failed message again (optionally only those created after a time)."""
    count = await service.retry_failed(now=datetime.now(UTC), created_after=created_after)
    return Requeued(requeued=count, status=status_filter)


@router.post(
    "/emails/{message_id}/retry",
    response_model=EmailOut,
    responses={404: {"model": Problem}, 409: {"model": Problem}},
)
async def retry_email(message_id: MessageId, service: ServiceDep) -> EmailOut:
    """Send a failed message again, with a fresh retry budget; its history is kept."""
    return _email_out(await service.retry(message_id, now=datetime.now(UTC)))


@router.post(
    "/emails/{message_id}/cancel",
    response_model=EmailOut,
    responses={404: {"model": Problem}, 409: {"model": Problem}},
)
async def cancel_email(message_id: MessageId, service: ServiceDep) -> EmailOut:
    """Cancel a message that is still pending or scheduled (409 once it is being sent)."""
    return _email_out(await service.cancel(message_id, now=datetime.now(UTC)))


def _email_out(message: QueuedEmail) -> EmailOut:
    email = message.email
    return EmailOut(
        message_id=email.message_id,
        rfc_message_id=email.rfc_message_id,
        client_message_id=message.client_message_id,
        status=message.status.value,
        attempts=message.attempts,
        max_retries=message.max_retries,
        priority=message.priority,
        last_error=message.last_error,
        created_at=message.created_at,
        updated_at=message.updated_at,
        next_attempt_at=message.next_attempt_at,
        sent_at=message.sent_at,
        from_email=email.from_email,
        to=list(email.to),
        cc=list(email.cc),
        bcc=list(email.bcc),
        subject=email.subject,
        template_id=message.template_id,
        tags=list(message.tags),
        metadata=message.metadata,
        events=[EventOut.model_validate(event) for event in message.events],
    )
