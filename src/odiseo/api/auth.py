"""The API's key checks (keys.py holds the keys themselves) and per-key rate limits."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Depends, HTTPException, Request, status

from odiseo.api.audit import ACTOR
from odiseo.keys import ApiKey, KeyRing, Scope

__all__ = ["ApiKey", "KeyRing", "Scope", "idempotency_scope", "requires"]


def idempotency_scope(request: Request) -> str:
    """The namespace of the calling key's client_message_ids ('' without keys)."""
    key: ApiKey | None = getattr(request.state, "api_key", None)
    return key.scope_id if key is not None else ""


# The attribute that marks a key-checking dependency with its scope: api/openapi.py
# documents the routes that have one, and the tests find them by it.
SCOPE_MARK = "odiseo_scope"


def requires(scope: Scope) -> Callable[..., Awaitable[ApiKey | None]]:
    """A dependency admitting requests whose key has `scope` (everything when no keys exist).

    The Authorization header is read here rather than through fastapi.security's
    HTTPBearer, a nested dependency FastAPI would solve on every request (its cost
    is in bench/README.md); api/openapi.py declares the scheme in the document instead.
    """

    async def check(request: Request) -> ApiKey | None:
        ring: KeyRing = request.app.state.keys
        if not ring.enabled:
            if scope is Scope.ADMIN:
                setattr(request.state, ACTOR, "keyless")
            return None
        token = _bearer_token(request)
        if token is None:
            raise _unauthorized("missing API key: send Authorization: Bearer <key>")
        key = ring.find(token)
        if key is None:
            raise _unauthorized("wrong API key")
        if scope not in key.scopes:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this API key lacks the {scope} scope")
        await _rate_limit(request, key)
        request.state.api_key = key
        if scope is Scope.ADMIN:
            setattr(request.state, ACTOR, key.label)
        return key

    setattr(check, SCOPE_MARK, scope)
    return check


def _bearer_token(request: Request) -> str | None:
    """The credentials of an `Authorization: Bearer <key>` header (scheme in any case)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def _rate_limit(request: Request, key: ApiKey) -> None:
    limit: int = request.app.state.settings.rate_limit_per_minute
    service = request.app.state.service
    retry_after = await service.rate_limited(key.label, limit=limit, now=time.time())
    if retry_after is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"rate limit of {limit} requests per minute reached; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )


check_send = requires(Scope.SEND)  # run by both routes of POST /emails (routes/emails.py)
SendKey = Depends(check_send)
ReadKey = Depends(requires(Scope.READ))
AdminKey = Depends(requires(Scope.ADMIN))
