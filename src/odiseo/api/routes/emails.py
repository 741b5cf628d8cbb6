"""Sending and following emails: /emails, /emails/batch, /emails/{message_id}[/…]."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json
from starlette.routing import Route

from odiseo.api.auth import AdminKey, ReadKey, SendKey, check_send, idempotency_scope
from odiseo.api.body import parse_json
from odiseo.api.deps import ServiceDep
from odiseo.api.openapi import request_body
from odiseo.api.routes import aware
from odiseo.api.schemas import (
    Accepted,
    AttachmentOut,
    BatchIn,
    BatchOut,
    EmailOut,
    EmailPage,
    EmailSummary,
    EventOut,
    Problem,
    Requeued,
)
from odiseo.domain.models import EmailFilter, QueuedEmail, Status
from odiseo.requests import EmailIn, RescheduleIn, describe_errors
from odiseo.service import EmailRequest, EmailService, decode_cursor, encode_cursor

router = APIRouter()

MessageId = Annotated[str, Path(max_length=64, description="the message_id POST /emails gave")]
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem},
    409: {"model": Problem},
    422: {"model": Problem},
}


IDEMPOTENCY_KEY_MAX = 255  # the client_message_id column


def _idempotency_key(request: Request) -> str | None:
    """The Idempotency-Key header, checked here for both routes of POST /emails."""
    key = request.headers.get("idempotency-key")
    if key is not None and len(key) > IDEMPOTENCY_KEY_MAX:
        raise RequestValidationError(
            [
                {
                    "loc": ("header", "idempotency-key"),
                    "msg": f"at most {IDEMPOTENCY_KEY_MAX} characters",
                    "type": "string_too_long",
                }
            ]
        )
    return key


@router.post(
    "/emails",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses={
        200: {"model": Accepted, "description": "already stored under this client_message_id"},
        409: {"model": Problem, "description": "client_message_id taken by another email"},
        413: {"model": Problem, "description": "larger than MAX_MESSAGE_BYTES"},
        422: {"model": Problem},
        503: {"model": Problem, "description": "database unavailable"},
    },
    dependencies=[SendKey],
    openapi_extra={
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "the client_message_id, when the body has none",
                "schema": {"type": "string", "maxLength": IDEMPOTENCY_KEY_MAX},
            }
        ],
        **request_body(EmailIn),
    },
)
async def send_email(request: Request) -> Response:
    """Store an email for delivery. A 202 means it is committed and will not be lost."""
    idempotency_key = _idempotency_key(request)
    email = await parse_json(request, EmailIn)  # the hot path: see api/body.py
    if email.client_message_id is None and idempotency_key:
        email = email.model_copy(update={"client_message_id": idempotency_key})
    now = datetime.now(UTC)
    service: EmailService = request.app.state.service
    submitted = await service.submit(email.to_request(), now=now, scope=idempotency_scope(request))
    if submitted.created:
        answer = Accepted(
            message_id=submitted.message_id,
            detail="Email stored in queue",
            timestamp=now,
            suppressed=list(submitted.suppressed),
        )
        return _json(answer, status.HTTP_202_ACCEPTED)
    answer = Accepted(
        message_id=submitted.message_id,
        detail="Email already stored under this client_message_id",
        timestamp=now,
        duplicate=True,
    )
    return _json(answer, status.HTTP_200_OK)


async def _send_email_directly(request: Request) -> Response:
    """POST /emails without FastAPI's per-request machinery (see `direct_routes`)."""
    await check_send(request)
    return await send_email(request)


# Served ahead of the documented APIRoute of the same path (which stays for the OpenAPI
# document): the hottest endpoint skips FastAPI's routing through included routers and
# its dependency solving, a large share of that request's CPU (bench/README.md). Both
# routes run the same key check (`check_send`, SendKey's dependency) and the same
# handler (header check included), so they answer every request alike.
direct_routes = [Route("/emails", _send_email_directly, methods=["POST"])]


def _json(answer: BaseModel, code: int) -> Response:
    return Response(answer.model_dump_json(), status_code=code, media_type="application/json")


@router.post(
    "/emails/batch",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchOut,
    responses={
        422: {
            "model": BatchOut | Problem,
            "description": "nothing was stored: every item's result, or what is wrong",
        }
    },
    dependencies=[SendKey],
    openapi_extra=request_body(BatchIn),
)
async def send_batch(request: Request) -> Response:
    """Store up to 500 emails in one transaction, each with its own result.

    Valid items are stored even when others are not, unless `atomic` is true.
    """
    batch = await parse_json(request, BatchIn)
    service: EmailService = request.app.state.service
    requests: list[EmailRequest | str] = []
    for item in batch.emails:
        try:
            requests.append(EmailIn.model_validate(item).to_request())
        except ValidationError as exc:
            requests.append(describe_errors(exc.errors()))
    now = datetime.now(UTC)
    results, stored = await service.submit_batch(
        requests, atomic=batch.atomic, now=now, scope=idempotency_scope(request)
    )
    # BatchOut, written as plain values: 500 validated models would cost more than the INSERT.
    items = [
        {
            "index": r.index,
            "status": "error" if r.error else ("accepted" if r.created else "duplicate"),
            "message_id": r.message_id,
            "detail": r.error or (None if r.created else "already stored under client_message_id"),
            "suppressed": r.suppressed,
        }
        for r in results
    ]
    rejected = sum(item["status"] == "error" for item in items)
    answer = {
        "status": "rejected" if not stored else ("partial" if rejected else "accepted"),
        "accepted": 0 if not stored else len(items) - rejected,
        "rejected": len(items) if not stored else rejected,
        "results": items,
        "timestamp": now,
    }
    return Response(
        to_json(answer),
        status_code=status.HTTP_202_ACCEPTED if stored else 422,
        media_type="application/json",
    )


@router.get(
    "/emails", response_model=EmailPage, responses={422: {"model": Problem}}, dependencies=[ReadKey]
)
async def list_emails(
    service: ServiceDep,
    status_filter: Annotated[Status | None, Query(alias="status")] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    recipient: Annotated[str | None, Query(max_length=320)] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=32)] = None,
) -> EmailPage:
    """Messages, newest first, filtered; follow `next_cursor` for older ones."""
    before = None
    if cursor is not None:
        before = decode_cursor(cursor)
        if before is None:
            raise HTTPException(422, "cursor: not a cursor this API gave out")
    query = EmailFilter(
        status=status_filter,
        tag=tag,
        recipient=recipient,
        created_after=aware(created_after),
        created_before=aware(created_before),
    )
    page, next_id = await service.search(query, limit=limit, before=before)
    return EmailPage(
        items=[EmailSummary(**_summary(m)) for m in page],
        next_cursor=encode_cursor(next_id) if next_id is not None else None,
    )


@router.post(
    "/emails/retry",
    response_model=Requeued,
    responses={422: {"model": Problem}},
    dependencies=[AdminKey],
)
async def retry_failed(
    service: ServiceDep,
    status_filter: Annotated[Literal["failed"], Query(alias="status")] = "failed",
    created_after: Annotated[datetime | None, Query()] = None,
) -> Requeued:
    """Queue every failed message again (optionally only those created after a time)."""
    count = await service.retry_failed(now=datetime.now(UTC), created_after=aware(created_after))
    return Requeued(requeued=count, status=status_filter)


@router.get(
    "/emails/{message_id}",
    response_model=EmailOut,
    responses={404: {"model": Problem}, 422: {"model": Problem}},
    dependencies=[ReadKey],
)
async def get_email(message_id: MessageId, service: ServiceDep) -> EmailOut:
    """A message's state, attempts, last error, timestamps and event history."""
    return _email_out(await service.get(message_id))


@router.patch(
    "/emails/{message_id}",
    response_model=EmailOut,
    responses=ERRORS,
    dependencies=[AdminKey],
    openapi_extra=request_body(RescheduleIn),
)
async def reschedule_email(
    message_id: MessageId, request: Request, service: ServiceDep
) -> EmailOut:
    """Move a message to a new `send_at` while no worker has claimed it (409 after)."""
    change = await parse_json(request, RescheduleIn)  # after the key: see api/body.py
    now = datetime.now(UTC)
    return _email_out(await service.reschedule(message_id, send_at=change.send_at, now=now))


@router.post(
    "/emails/{message_id}/retry", response_model=EmailOut, responses=ERRORS, dependencies=[AdminKey]
)
async def retry_email(message_id: MessageId, service: ServiceDep) -> EmailOut:
    """Send a failed message again, with a fresh retry budget; its history is kept."""
    return _email_out(await service.retry(message_id, now=datetime.now(UTC)))


@router.post(
    "/emails/{message_id}/cancel",
    response_model=EmailOut,
    responses=ERRORS,
    dependencies=[AdminKey],
)
async def cancel_email(message_id: MessageId, service: ServiceDep) -> EmailOut:
    """Cancel a message that is still pending or scheduled (409 once it is being sent)."""
    return _email_out(await service.cancel(message_id, now=datetime.now(UTC)))


def _summary(message: QueuedEmail) -> dict[str, object]:
    email = message.email
    return {
        "message_id": email.message_id,
        "rfc_message_id": email.rfc_message_id,
        "client_message_id": message.client_message_id,
        "status": message.status.value,
        "attempts": message.attempts,
        "max_retries": message.max_retries,
        "priority": message.priority,
        "last_error": message.last_error,
        "created_at": message.created_at,
        "updated_at": message.updated_at,
        "next_attempt_at": message.next_attempt_at,
        "sent_at": message.sent_at,
        "from_email": email.from_email,
        "to": list(email.to),
        "cc": list(email.cc),
        "bcc": list(email.bcc),
        "subject": email.subject,
        "template_id": message.template_id,
        "template_version": message.template_version,
        "expires_at": message.expires_at,
        "tags": list(message.tags),
        "metadata": message.metadata,
    }


def _email_out(message: QueuedEmail) -> EmailOut:
    return EmailOut(
        **_summary(message),
        attachments=[
            AttachmentOut(
                filename=a.filename,
                content_type=a.content_type,
                content_id=a.content_id,
                size=len(a.data),
            )
            for a in message.email.attachments
        ],
        events=[EventOut.model_validate(event) for event in message.events],
    )
