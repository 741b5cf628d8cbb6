"""One-click unsubscribe (RFC 8058): the page a recipient's link opens, and its POST.

No API key: the signed token is the recipient's proof. A GET only shows a page with a
button (link scanners fetch URLs and must not unsubscribe anybody); the POST, from that
button or from a mailbox provider's one-click, suppresses the recipient.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse

from odiseo.api.schemas import Problem
from odiseo.errors import InvalidLink
from odiseo.outcomes import OutcomeService
from odiseo.unsubscribe import UnsubscribeLinks, Unsubscriber

router = APIRouter(tags=["unsubscribe"])
_HTML_PAGE: dict[str, Any] = {"content": {"text/html": {}}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {**_HTML_PAGE, "description": "a damaged or expired link"},
    404: {**_HTML_PAGE, "description": "unsubscribe links are not enabled"},
    422: {"model": Problem},
}
Token = Annotated[str, Path(max_length=512, description="the token of the link")]
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Unsubscribe</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}
button{{font-size:1rem;padding:.5rem 1rem}}</style></head>
<body>{body}</body></html>
"""


def _page(body: str, status: int = 200) -> HTMLResponse:
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    return HTMLResponse(_PAGE.format(body=body), status_code=status, headers=headers)


def _check(request: Request, token: str) -> Unsubscriber | HTMLResponse:
    links: UnsubscribeLinks | None = request.app.state.unsubscribe
    if links is None:
        return _page("<h1>Unsubscribe links are not enabled here</h1>", 404)
    try:
        return links.check(token, now=datetime.now(UTC))
    except InvalidLink as exc:
        return _page(f"<h1>{html.escape(str(exc).capitalize())}</h1>", 400)


@router.get("/unsubscribe/{token}", response_class=HTMLResponse, responses=RESPONSES)
async def unsubscribe_page(token: Token, request: Request) -> HTMLResponse:
    """A page asking the recipient to confirm; nothing changes until they press it."""
    who = _check(request, token)
    if isinstance(who, HTMLResponse):
        return who
    address = html.escape(who.recipient)
    return _page(
        f"<h1>Unsubscribe {address}?</h1><p>You will get no more email from this sender "
        f'at this address.</p><form method="post"><input type="hidden" '
        f'name="List-Unsubscribe" value="One-Click"><button>Unsubscribe</button></form>'
    )


@router.post("/unsubscribe/{token}", response_class=HTMLResponse, responses=RESPONSES)
async def unsubscribe(token: Token, request: Request) -> HTMLResponse:
    """RFC 8058 one-click: suppress the link's recipient (reason `unsubscribe`)."""
    who = _check(request, token)
    if isinstance(who, HTMLResponse):
        return who
    outcomes: OutcomeService = request.app.state.outcomes
    await outcomes.unsubscribe(
        address=who.recipient, message_id=who.message_id, now=datetime.now(UTC)
    )
    return _page(f"<h1>{html.escape(who.recipient)} is unsubscribed</h1>")
