"""Messages: search, detail, the HTML part and attachments (sandboxed), and the actions
retry, cancel and reschedule, each through EmailService as the API's routes are.

A message's HTML is never put into a dashboard page: it is served from its own path
under `Content-Security-Policy: sandbox` (an opaque origin, no script, nothing
fetched) and shown in a sandboxed frame. Attachments are served the same way and as
`Content-Disposition: attachment`, so an HTML or SVG file is downloaded, not run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response

from odiseo.dashboard.sessions import ActionDep, ViewerDep
from odiseo.dashboard.web import PREFIX, SANDBOX, page
from odiseo.domain.models import EmailFilter, QueuedEmail, Status
from odiseo.errors import InvalidTransition, NotFound
from odiseo.requests import utc
from odiseo.service import EmailService, decode_cursor, encode_cursor

router = APIRouter(prefix=PREFIX, include_in_schema=False)
PAGE_SIZE = 50
SCAN = 20_000  # messages a tag or recipient search looks through per page at most
MessageId = Annotated[str, Path(max_length=64)]
NOTICES = {  # ?done= after an action: fixed texts, never anything from the request
    "retried": "The message is queued again.",
    "cancelled": "The message is cancelled.",
    "rescheduled": "The message is rescheduled.",
}


def _service(request: Request) -> EmailService:
    service: EmailService = request.app.state.service
    return service


@dataclass(frozen=True, kw_only=True)
class Search:
    """The list's filters as the form gave them, and what was wrong with them."""

    status: str = ""
    tag: str = ""
    recipient: str = ""
    after: str = ""
    before: str = ""
    problems: tuple[str, ...] = ()

    def query(self, **changes: str) -> str:
        fields = {
            "status": self.status,
            "tag": self.tag,
            "recipient": self.recipient,
            "after": self.after,
            "before": self.before,
            **changes,
        }
        return urlencode({k: v for k, v in fields.items() if v})


def _moment(name: str, value: str, problems: list[str]) -> datetime | None:
    """A datetime-local field, read as UTC."""
    if not value:
        return None
    try:
        return utc(datetime.fromisoformat(value))
    except ValueError:
        problems.append(f"{name}: not a date and time (YYYY-MM-DDTHH:MM)")
        return None


def _filter(params: dict[str, str]) -> tuple[Search, EmailFilter]:
    problems: list[str] = []
    status = params.get("status", "")
    if status and status not in {s.value for s in Status}:
        problems.append(f"status: one of {', '.join(s.value for s in Status)}")
        status = ""
    given = {k: params.get(k, "")[:320].strip() for k in ("tag", "recipient", "after", "before")}
    query = EmailFilter(
        status=Status(status) if status else None,
        tag=given["tag"] or None,
        recipient=given["recipient"] or None,
        created_after=_moment("after", given["after"], problems),
        created_before=_moment("before", given["before"], problems),
    )
    return Search(status=status, **given, problems=tuple(problems)), query


@router.get("/messages")
async def messages_page(request: Request, viewer: ViewerDep) -> Response:
    return await _list(request, "messages.html")


@router.get("/messages/rows")
async def messages_rows(request: Request, viewer: ViewerDep) -> Response:
    """The first page's rows alone: htmx refreshes them while the page is open."""
    return await _list(request, "_message_rows.html")


async def _list(request: Request, template: str) -> Response:
    params = dict(request.query_params)
    search, query = _filter(params)
    cursor = params.get("cursor") or None
    before = decode_cursor(cursor) if cursor else None
    if cursor and before is None:
        search = Search(**{**search.__dict__, "problems": (*search.problems, "cursor: unknown")})
    items, next_id = await _service(request).search(
        query, limit=PAGE_SIZE, before=before, scan=SCAN
    )
    return page(
        request,
        template,
        status_code=422 if search.problems else 200,
        section="messages",
        search=search,
        items=items,
        statuses=[s.value for s in Status],
        first_page=cursor is None,
        scanned=bool(query.tag or query.recipient) and len(items) < PAGE_SIZE and next_id,
        scan=SCAN,
        next_query=search.query(cursor=encode_cursor(next_id)) if next_id else None,
        rows_query=search.query(),
    )


@router.get("/messages/{message_id}")
async def message_page(
    message_id: MessageId, request: Request, viewer: ViewerDep, done: str | None = None
) -> Response:
    return await _detail(request, message_id, notice=NOTICES.get(done or ""))


async def _detail(
    request: Request,
    message_id: str,
    *,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    try:
        message = await _service(request).get(message_id)
    except NotFound:
        return page(request, "not_found.html", status_code=404, what=f"message {message_id}")
    return page(
        request,
        "message.html",
        status_code=status_code,
        section="messages",
        message=message,
        outcomes=recipient_outcomes(message),
        headers=envelope(message),
        notice=notice,
        error=error,
        now=datetime.now(UTC),
    )


def envelope(message: QueuedEmail) -> list[tuple[str, str]]:
    email = message.email
    sender = f"{email.from_name} <{email.from_email}>" if email.from_name else email.from_email
    rows = [
        ("From", sender),
        ("To", ", ".join(email.to)),
        ("Cc", ", ".join(email.cc)),
        ("Bcc", ", ".join(email.bcc)),
        ("Reply-To", ", ".join(email.reply_to)),
        ("Subject", email.subject),
        ("Message-ID", email.rfc_message_id),
        ("List-Unsubscribe", f"<{email.list_unsubscribe}>" if email.list_unsubscribe else ""),
        *email.headers,
    ]
    return [(name, value) for name, value in rows if value]


def recipient_outcomes(message: QueuedEmail) -> list[tuple[str, str, str]]:
    """Each recipient, what became of it (the latest word on it), and the reply."""
    found: dict[str, tuple[str, str]] = {r: ("waiting", "") for r in message.email.recipients}
    for event in message.events:
        for address in event.accepted:
            found[address] = ("accepted", f"{event.smtp_code or ''} {event.response or ''}")
        for refusal in event.refused:
            found[refusal.recipient] = ("refused", f"{refusal.code} {refusal.response}")
        for address in event.suppressed:
            found[address] = ("suppressed", "on the suppression list")
        if event.recipient and event.type:
            word = event.type.removeprefix("email.")
            found[event.recipient] = (word, event.response or "")
    return [(address, word, reply.strip()) for address, (word, reply) in found.items()]


@router.get("/messages/{message_id}/html")
async def message_html(message_id: MessageId, request: Request, viewer: ViewerDep) -> Response:
    """The HTML part, sandboxed: framed by the detail page, never run in our origin."""
    try:
        message = await _service(request).get(message_id)
    except NotFound:
        return Response("no such message", status_code=404, media_type="text/plain")
    return Response(
        message.email.html or "",
        media_type="text/html",
        headers={"Content-Security-Policy": SANDBOX},
    )


@router.get("/messages/{message_id}/attachments/{position}")
async def attachment(
    message_id: MessageId, position: int, request: Request, viewer: ViewerDep
) -> Response:
    """One attachment as a download, under a sandbox policy whatever its type."""
    try:
        message = await _service(request).get(message_id)
    except NotFound:
        return Response("no such message", status_code=404, media_type="text/plain")
    files = message.email.attachments
    if not 0 <= position < len(files):
        return Response("no such attachment", status_code=404, media_type="text/plain")
    found = files[position]
    name = quote(found.filename, safe="")
    return Response(
        found.data,
        media_type="application/octet-stream",
        headers={
            "Content-Security-Policy": SANDBOX,
            "Content-Disposition": f"attachment; filename*=UTF-8''{name}",
        },
    )


# -- actions --------------------------------------------------------------------------


async def _act(request: Request, message_id: str, done: str, change: Any) -> Response:
    try:
        await change
    except NotFound:
        return page(request, "not_found.html", status_code=404, what=f"message {message_id}")
    except InvalidTransition as exc:
        return await _detail(request, message_id, error=exc.message, status_code=409)
    target = f"{PREFIX}/messages/{quote(message_id, safe='')}?done={done}"
    return RedirectResponse(target, status_code=303)


@router.post("/messages/{message_id}/retry")
async def retry(message_id: MessageId, request: Request, action: ActionDep) -> Response:
    change = _service(request).retry(message_id, now=datetime.now(UTC))
    return await _act(request, message_id, "retried", change)


@router.post("/messages/{message_id}/cancel")
async def cancel(message_id: MessageId, request: Request, action: ActionDep) -> Response:
    change = _service(request).cancel(message_id, now=datetime.now(UTC))
    return await _act(request, message_id, "cancelled", change)


@router.post("/messages/{message_id}/reschedule")
async def reschedule(message_id: MessageId, request: Request, action: ActionDep) -> Response:
    problems: list[str] = []
    send_at = _moment("send_at", action.form.get("send_at", ""), problems)
    if send_at is None:
        error = problems[0] if problems else "send_at: give the new date and time (UTC)"
        return await _detail(request, message_id, error=error, status_code=422)
    change = _service(request).reschedule(message_id, send_at=send_at, now=datetime.now(UTC))
    return await _act(request, message_id, "rescheduled", change)
