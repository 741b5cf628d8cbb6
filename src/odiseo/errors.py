"""The one exception tree of Odiseo.

Each error's docstring is its default message, so raising the class alone
says something useful.
"""

from __future__ import annotations

from odiseo.domain.models import Refusal


class OdiseoError(Exception):
    """Odiseo failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(OdiseoError):
    """The configuration is invalid."""


class StoreUnavailable(OdiseoError):
    """The database is unreachable."""

    def __init__(self, cause: str | None = None) -> None:
        super().__init__(f"database unavailable: {cause}" if cause else None)
        self.cause = cause or "unreachable"


class StoreRefused(StoreUnavailable):
    """The database answers but refuses Odiseo: role, password, database name or privilege.

    A StoreUnavailable still: a running worker waits for it to be put right, as for an
    outage; a starting process stops with one line.
    """

    def __init__(self, cause: str | None = None) -> None:
        super().__init__(cause)
        self.args = (f"database refused: {self.cause}",)


class NotFound(OdiseoError):
    """No such message."""


class Duplicate(OdiseoError):
    """A message with this client_message_id is already stored."""

    def __init__(self, message_id: str, *, same_payload: bool) -> None:
        super().__init__()
        self.message_id = message_id
        self.same_payload = same_payload


class InvalidEmail(OdiseoError):
    """The email cannot be sent as given."""


class SenderRefused(InvalidEmail):
    """This sender is not allowed: use SMTP_FROM_EMAIL or an address in ALLOWED_SENDERS."""


class InvalidLink(OdiseoError):
    """This unsubscribe link is not valid."""


class TooLarge(OdiseoError):
    """The message is larger than allowed."""


class InvalidTransition(OdiseoError):
    """The message is not in a state that allows this."""


class TemplateError(OdiseoError):
    """The template could not be rendered."""


class UnknownTemplate(TemplateError):
    """No such template."""


class TemplateLimit(TemplateError):
    """Rendering the template went over one of its limits (time, memory, size, work)."""


class MissingVariable(TemplateError):
    """The template uses a variable the request did not give."""

    def __init__(self, message: str | None = None, *, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable


class DeliveryFailure(OdiseoError):
    """The provider did not accept the message."""

    def __init__(
        self,
        message: str | None = None,
        *,
        code: int | None = None,
        retry_after: float | None = None,
        reason: str = "other",
        refusals: tuple[Refusal, ...] = (),
        stage: str | None = None,
        reply: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after
        self.reason = reason  # a short label for metrics: smtp_4xx, connection, timeout…
        self.refusals = refusals  # when every recipient was refused at RCPT: each refusal
        self.stage = stage  # the SMTP step that was refused: connect, EHLO, MAIL, RCPT, DATA…
        self.reply = reply  # the server's text after its code, as it said it


class TransientFailure(DeliveryFailure):
    """Delivery failed for a reason that may pass; try again later."""


class PermanentFailure(DeliveryFailure):
    """Delivery failed for good; trying again would fail the same way."""


class WebhookRefused(OdiseoError):
    """The webhook URL is not allowed: https to globally routable addresses only."""


class ReportRefused(OdiseoError):
    """The relay's report is not authentic: its signature or credentials do not check."""


class InvalidReport(OdiseoError):
    """The relay's report is not in the form its documentation gives."""
