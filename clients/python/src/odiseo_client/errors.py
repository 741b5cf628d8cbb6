"""One exception per kind of answer, all under OdiseoError."""

from __future__ import annotations

from typing import Any


class OdiseoError(Exception):
    """Odiseo answered with an error, or could not be reached."""

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        errors: list[dict[str, Any]] | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(f"{status} {detail}" if status else detail)
        self.detail = detail
        self.status = status
        self.errors = errors or []
        self.body = body


class Unauthorized(OdiseoError):
    """401: no key or a wrong one; 403: the key lacks the scope (send, read, admin)."""


class NotFound(OdiseoError):
    """404: no such message, template, suppression or webhook endpoint."""


class Conflict(OdiseoError):
    """409: a client_message_id used for another email, or a state that forbids the change."""


class Invalid(OdiseoError):
    """400, 413, 415, 422: the request cannot be taken; `errors` lists each field's problem."""


class RateLimited(OdiseoError):
    """429: RATE_LIMIT_PER_MINUTE reached; `retry_after` is the wait in seconds."""

    def __init__(self, detail: str, *, retry_after: float, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.retry_after = retry_after


class Unavailable(OdiseoError):
    """503 or no connection, after the retries: nothing was stored."""


class WebhookVerificationError(Exception):
    """A webhook delivery whose signature or timestamp does not check out."""


BY_STATUS: dict[int, type[OdiseoError]] = {
    400: Invalid,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: Invalid,
    415: Invalid,
    422: Invalid,
    503: Unavailable,
}
