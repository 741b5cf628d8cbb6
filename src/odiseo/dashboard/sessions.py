"""Signing in to the dashboard, and who a request comes from.

An API key is typed once into the sign-in form (a POST body: never in a URL) and
exchanged for a session: a random token in an HttpOnly, SameSite=Strict cookie
(Secure when the dashboard is reached over HTTPS), kept server-side with its expiry
(UI_SESSION_HOURS) and ended by signing out. The key itself is kept nowhere: the
session names it by ApiKey.scope_id, and its scopes are looked up again on every
request, so a key taken out of API_KEYS ends its sessions. A `read` key sees every
page; acting (retry, cancel, suppress, replay, save) needs `admin`.

Every request that changes something carries the session's CSRF token (a form
field, or the X-CSRF-Token header htmx sends), compared in constant time; the
sign-in form carries one of its own, bound to a cookie. The Host and Origin checks
of api/hosts.py run before any of this. Without API keys (loopback mode) the
dashboard is open like the API: visiting it opens a session with no key, and the
same CSRF rule holds.

The session cookie is read before anything else of a request, and a form body is
read only once the session is known (`operator`), as the API checks its key first.
"""

from __future__ import annotations

import hmac
import logging
import math
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from odiseo.dashboard.web import PREFIX, page, read_form
from odiseo.domain.operations import UiSession
from odiseo.keys import ApiKey, KeyRing, Scope
from odiseo.operations import OperationsService

log = logging.getLogger(__name__)

COOKIE = "odiseo_session"
SIGN_IN_COOKIE = "odiseo_sign_in"  # binds the sign-in form's CSRF token to this browser
SIGN_IN_TRIES_PER_MINUTE = 20  # per client address, shared by the API processes
AUDIT_ACTOR = "audit_actor"  # request.state's mark read by the audit log (api/audit.py)

router = APIRouter(prefix=PREFIX, include_in_schema=False)


class SignInNeeded(Exception):
    """No valid session: the browser is sent to the sign-in page (htmx: HX-Redirect)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


@dataclass(frozen=True, kw_only=True)
class Viewer:
    """Who is looking at the dashboard: a session, and what its key may do."""

    session: UiSession
    token: str
    label: str  # how logs and the audit log name the key (never the key)
    can_act: bool
    keyless: bool

    @property
    def csrf(self) -> str:
        return self.session.csrf


@dataclass(frozen=True, kw_only=True)
class Action:
    """A change asked for: by whom, and the form it came with."""

    viewer: Viewer
    form: dict[str, str]


def _operations(request: Request) -> OperationsService:
    service: OperationsService = request.app.state.operations
    return service


def _now() -> datetime:
    return datetime.now(UTC)


def _ring(request: Request) -> KeyRing:
    ring: KeyRing = request.app.state.keys
    return ring


def _keys(request: Request) -> list[ApiKey]:
    return _ring(request).keys


async def viewer(request: Request) -> Viewer:
    """The request's session, or SignInNeeded."""
    token = request.cookies.get(COOKIE, "")
    session = await _operations(request).session(token, now=_now()) if token else None
    if session is None:
        raise SignInNeeded(request.url.path)
    keys = _keys(request)
    if session.key_id is None:
        if keys:  # keys were configured since this keyless session began
            raise SignInNeeded(request.url.path)
        found = Viewer(session=session, token=token, label="no keys", can_act=True, keyless=True)
    else:
        key = next((k for k in keys if hmac.compare_digest(k.scope_id, session.key_id)), None)
        if key is None or not {Scope.READ, Scope.ADMIN} & key.scopes:
            raise SignInNeeded(request.url.path)
        can_act = Scope.ADMIN in key.scopes
        found = Viewer(
            session=session, token=token, label=key.label, can_act=can_act, keyless=False
        )
    request.state.viewer = found
    return found


async def checked_form(request: Request, seen: Annotated[Viewer, Depends(viewer)]) -> Action:
    """A POST of a signed-in viewer: its form, once its CSRF token matched (403 otherwise)."""
    form = await read_form(request)
    sent = request.headers.get("x-csrf-token") or form.get("csrf", "")
    if not hmac.compare_digest(sent.encode(), seen.csrf.encode()):
        raise HTTPException(403, "the form's CSRF token is missing or stale: reload the page")
    return Action(viewer=seen, form=form)


async def operator(request: Request, seen: Annotated[Viewer, Depends(viewer)]) -> Action:
    """A change: an admin session (403 otherwise, before the body is read), then the
    CSRF-checked form; marked for the audit log like the API's admin requests."""
    if not seen.can_act:
        raise HTTPException(403, "this API key lacks the admin scope: it can look, not act")
    action = await checked_form(request, seen)
    if not seen.keyless:
        setattr(request.state, AUDIT_ACTOR, seen.label)
    return action


ViewerDep = Annotated[Viewer, Depends(viewer)]
ActionDep = Annotated[Action, Depends(operator)]
FormDep = Annotated[Action, Depends(checked_form)]  # a POST that changes nothing stored


def _secure(request: Request) -> bool:
    public: str = request.app.state.settings.public_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


def _set_cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def _next_page(value: str | None) -> str:
    """Where to go after signing in: a dashboard path only (never another site)."""
    if value and value.startswith(PREFIX + "/") and "//" not in value and "\\" not in value:
        return value
    return PREFIX + "/"


async def _open(request: Request, *, key: ApiKey | None, goto: str) -> Response:
    hours: float = request.app.state.settings.ui_session_hours
    token, _ = await _operations(request).open_session(
        key_id=key.scope_id if key else None, lasting=timedelta(hours=hours), now=_now()
    )
    log.info("dashboard sign-in (%s)", key.label if key else "no keys: loopback")
    response = RedirectResponse(_next_page(goto), status_code=303)
    _set_cookie(request, response, COOKIE, token, math.ceil(hours * 3600))
    response.delete_cookie(SIGN_IN_COOKIE, path=PREFIX)
    return response


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str | None = None) -> Response:
    if not _keys(request):  # loopback mode: open, like the API
        return await _open(request, key=None, goto=next or "")
    return _sign_in_form(request, goto=next)


def _sign_in_form(
    request: Request, *, goto: str | None, error: str | None = None, status_code: int = 200
) -> Response:
    token = secrets.token_urlsafe(24)
    response = page(
        request,
        "sign_in.html",
        status_code=status_code,
        csrf=token,
        next=_next_page(goto),
        error=error,
        viewer=None,
    )
    _set_cookie(request, response, SIGN_IN_COOKIE, token, 3600)
    return response


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    await _throttle(request)
    form = await read_form(request)
    bound = request.cookies.get(SIGN_IN_COOKIE, "")
    if not bound or not hmac.compare_digest(form.get("csrf", "").encode(), bound.encode()):
        return _sign_in_form(
            request, goto=form.get("next"), error="The form expired: try again.", status_code=403
        )
    if not _keys(request):
        return await _open(request, key=None, goto=form.get("next", ""))
    key = _ring(request).find(form.get("key", "").strip())
    if key is None or not {Scope.READ, Scope.ADMIN} & key.scopes:
        why = "Wrong API key." if key is None else "This key has neither read nor admin scope."
        log.info("dashboard sign-in refused: %s", why)
        return _sign_in_form(request, goto=form.get("next"), error=why, status_code=401)
    return await _open(request, key=key, goto=form.get("next", ""))


async def _throttle(request: Request) -> None:
    """At most SIGN_IN_TRIES_PER_MINUTE sign-in attempts per client address a minute."""
    client = request.client.host if request.client else "unknown"
    window = math.floor(time.time() / 60)
    hits = await request.app.state.service.count_request(f"ui-sign-in:{client}", window=window)
    if hits > SIGN_IN_TRIES_PER_MINUTE:
        raise HTTPException(429, "too many sign-in attempts: wait a minute")


@router.post("/sign-out")
async def sign_out(request: Request, action: FormDep) -> Response:
    await _operations(request).close_session(action.viewer.token)
    log.info("dashboard sign-out (%s)", action.viewer.label)
    response = RedirectResponse(PREFIX + "/signed-out", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


@router.get("/signed-out")
async def signed_out(request: Request) -> Response:
    return page(request, "signed_out.html", viewer=None)


def sign_in_redirect(request: Request, exc: Exception) -> Response:
    """The answer to SignInNeeded: to the sign-in page, coming back here after."""
    assert isinstance(exc, SignInNeeded)
    target = f"{PREFIX}/sign-in?next={quote(exc.path)}"
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": target})
    if request.method not in ("GET", "HEAD"):
        return JSONResponse({"detail": "sign in to the dashboard first"}, status_code=401)
    return RedirectResponse(target, status_code=303)
