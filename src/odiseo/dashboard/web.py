"""What every dashboard page shares: the templates, the security headers, forms.

Pages are rendered on the server by Jinja2 with autoescaping on, so what a message,
a template or a reply contains is shown as text. The Content-Security-Policy allows
scripts, styles and frames from this origin only (no inline script or style, no
eval): the vendored htmx and dashboard.js are the only scripts a page runs. A
response that sets its own policy (a message's HTML, an attachment: `sandbox`)
keeps it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import HTTPException, Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HERE = Path(__file__).parent
STATIC = HERE / "static"
PREFIX = "/ui"
ASSETS = "/assets"  # the vendored files and the dashboard's own, served by StaticFiles

templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["assets"] = ASSETS

POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
# What mail HTML and attachments are served under: no script, no plugin, no form, no
# same-origin access (an opaque origin), nothing fetched but inline images and styles.
SANDBOX = (
    "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
)
_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
FORM_FIELDS = 64
FORM_BYTES = 2 * 1024 * 1024  # a template's source fits (MAX_RENDERED_BYTES is 1 MB)


class SecurityHeaders:
    """ASGI middleware: the dashboard's headers on every answer under /ui."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                if b"content-security-policy" in names:  # a sandboxed answer: framed by us
                    headers.append((b"x-frame-options", b"SAMEORIGIN"))
                    headers += [h for h in _HEADERS[1:] if h[0] not in names]
                else:
                    headers.append((b"content-security-policy", POLICY.encode()))
                    headers += [h for h in _HEADERS if h[0] not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    """A page (or an htmx fragment) of the dashboard, with who is looking."""
    context.setdefault("viewer", getattr(request.state, "viewer", None))
    return templates.TemplateResponse(request, name, context, status_code=status_code)


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form body (the dashboard's forms), bounded; 415 or 413 otherwise.

    Read only after the session was checked (see sessions.py), like the API's bodies.
    """
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type not in ("application/x-www-form-urlencoded", ""):
        raise HTTPException(415, "send the dashboard's forms as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_BYTES:
            raise HTTPException(413, f"a dashboard form is at most {FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(
            body.decode(), keep_blank_values=True, max_num_fields=FORM_FIELDS, strict_parsing=False
        )
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "the form could not be read") from None
    return dict(pairs)
