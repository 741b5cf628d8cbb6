"""The audit log of admin actions: who (the key's label), what, when, and the answer.

The admin-scope check (`api/auth.requires`) marks the request with its key's label;
this middleware writes the entry for every marked request that can change something
(any method but GET, HEAD and OPTIONS) once its status is known, before the answer
leaves — so a client that saw the answer can find the entry.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

ACTOR = "audit_actor"  # the key in scope["state"] the admin check sets
TARGET = "audit_target"  # set by a route whose path must not be kept (an erased address)
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


class AuditLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _READS:
            await self.app(scope, receive, send)
            return

        async def noted(message: Message) -> None:
            if message["type"] == "http.response.start":
                actor = scope.get("state", {}).get(ACTOR)
                if actor is not None:
                    await _write(scope, actor, message["status"])
            await send(message)

        await self.app(scope, receive, noted)


async def _write(scope: Scope, actor: str, status_code: int) -> None:
    route: Any = scope.get("route")
    action = f"{scope['method']} {getattr(route, 'path', scope['path'])}"
    try:
        await scope["app"].state.privacy.audit(
            actor=actor,
            action=action,
            target=scope.get("state", {}).get(TARGET, scope["path"]),
            status_code=status_code,
            now=datetime.now(UTC),
        )
    except Exception as exc:  # the action is done: say so loudly rather than fail it
        log.error("cannot write the audit entry of %s by %s: %s", action, actor, exc)
